"""The notebook API: `from mnistlite import train, seeds, summary`. A model is a name, a `file.py:Name`, an nn.Module
class or a function building one (built fresh under the run's seed), or an instance (trained in place). A top-level
class or function trains through its reference, so its run directory keeps the source file like the CLI's runs do."""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from .config import DRY_RUN, TrainConfig
from .errors import MnistliteError
from .models import ModelEntry, config_for, get_entry
from .models.usercode import canonical_path, check_model, factory_of

ModelLike = str | nn.Module | Callable[[], nn.Module] | type


def _reference(obj: Any) -> str | None:
    """`file.py:Name` (or `__main__:Name` in a notebook) for a top-level class or function, else None."""
    name = getattr(obj, "__qualname__", "")
    if not name.isidentifier():
        return None  # nested in a function or class: only the object itself can build it
    module = sys.modules.get(getattr(obj, "__module__", ""), None)
    if module is None or getattr(module, name, None) is not obj:
        return None
    file = getattr(module, "__file__", None)
    if module.__name__ == "__main__" or not file or not str(file).endswith(".py"):
        return f"{module.__name__}:{name}"
    return f"{canonical_path(file)}:{name}"


def resolve(model: ModelLike) -> tuple[str, ModelEntry | None]:
    """(the name a run records, the entry to build from when the name alone cannot)."""
    if isinstance(model, str):
        return model, None
    if isinstance(model, nn.Module):
        ref = _reference(type(model)) or f"__main__:{type(model).__name__}"
        base = _entry_or_none(ref)
        check_model(lambda: model, f"{type(model).__name__} instance")
        source = "an instance passed to mnistlite.train"
        return ref, ModelEntry(ref, lambda dropout=None: model, source, ("user",), code=base.code if base else None)
    if not callable(model):
        raise MnistliteError(
            f"a model must be a name, an nn.Module, or a class or function building one; got {type(model).__name__}"
        )
    ref = _reference(model)
    if ref is not None and _entry_or_none(ref) is not None:
        return ref, None
    label = getattr(model, "__qualname__", repr(model))
    factory = factory_of(model, label)
    check_model(factory, label)
    name = f"__main__:{getattr(model, '__name__', 'model')}"
    return name, ModelEntry(
        name, factory, "defined in this session", ("user",), {}, None, (inspect.getdoc(model) or "").split("\n")[0]
    )


def _entry_or_none(ref: str) -> ModelEntry | None:
    try:
        return get_entry(ref)
    except MnistliteError:
        return None


def _config(name: str, entry: ModelEntry | None, recipe: dict[str, Any]) -> TrainConfig:
    unknown = sorted(set(recipe) - set(TrainConfig.__dataclass_fields__))
    if unknown:
        raise MnistliteError(f"unknown argument(s): {', '.join(unknown)} (see 'mnistlite train --help')")
    return config_for(entry or name, **recipe)


def train(
    model: ModelLike = "mnistlite_flagship",
    *,
    out: str | Path | None = None,
    progress: bool = True,
    quiet: bool = False,
    dry_run: bool = False,
    data: Any = None,
    **recipe: Any,
):
    """Train one model (into the run directory `out`, as `train --out`); returns a RunResult (`.metrics`, `.summary`,
    `.model`, `.plot()`). Other keywords are TrainConfig fields; `dry_run`: one epoch on 1,000 images."""
    from .engine import train as train_config

    name, entry = resolve(model)
    cfg = _config(name, entry, {**(DRY_RUN if dry_run else {}), **recipe})
    return train_config(cfg, run_dir=out, data=data, progress=progress, quiet=quiet, model=entry)


def resume(out: str | Path, *, progress: bool = True, quiet: bool = False, data: Any = None, trust_code: bool = False):
    """Continue an interrupted run directory (`train(..., out=DIR)`) from its last epoch, bit-identical on the CPU.
    A run of your own model's file is rebuilt from the run's copy of that file, which needs `trust_code=True`."""
    from .engine import resume as resume_run

    return resume_run(out, progress=progress, quiet=quiet, data=data, trust_code=trust_code)


@dataclass
class SeedsResult:
    """What `seeds` returns: the statistics of consistency.json, and where the runs are."""

    summary: dict[str, Any]  # runs/seeds.aggregate
    out: Path

    def __str__(self) -> str:
        from .runs.seeds import format_aggregate

        return format_aggregate(self.summary)

    def _repr_pretty_(self, p, cycle) -> None:  # IPython
        p.text(str(self))

    def plot(self):
        """consistency.png (test accuracy per epoch, every seed) as a matplotlib Figure."""
        import matplotlib.image as mpimg
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(9, 5))
        ax.imshow(mpimg.imread(self.out / "consistency.png"))
        ax.axis("off")
        plt.close(fig)
        return fig


def seeds(
    model: ModelLike = "mnistlite_flagship",
    n: int = 5,
    *,
    seed_list: list[int] | None = None,
    out: str | Path | None = None,
    jobs: int = 1,
    dry_run: bool = False,
    **recipe: Any,
) -> SeedsResult:
    """Train seeds 1..n (or `seed_list`) into `out/seed<k>/` (reusing finished ones) and aggregate, as `mnistlite seeds`
    does. The model must build fresh copies: a name, a class or a function, not an instance."""
    from .runs.seeds import run_seeds

    if isinstance(model, nn.Module):
        raise MnistliteError("seeds needs a class or function that builds a fresh model per seed, not an instance")
    name, entry = resolve(model)
    if entry is not None:
        raise MnistliteError(
            f"{getattr(model, '__qualname__', model)} is not defined at the top level of a file or notebook; "
            "seeds looks models up by name, so define it there"
        )
    if name.startswith("__main__:"):
        jobs = 1  # defined in this notebook or script: worker processes could not import it
    cfg = _config(name, None, {**(DRY_RUN if dry_run else {}), **recipe})
    chosen = list(seed_list) if seed_list else list(range(1, n + 1))
    where = Path(out) if out else Path("runs") / "seeds" / name.replace("/", "_").replace(":", "-")
    return SeedsResult(run_seeds(cfg, chosen, where, jobs=jobs), where)


def summary(model: ModelLike):
    """The layer table, parameters, MACs per image and 8k-budget verdict; prints in a notebook cell."""
    from .modelinfo import profile_entry, profile_registered

    name, entry = resolve(model)
    return profile_registered(name) if entry is None else profile_entry(entry)
