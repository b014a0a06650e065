"""Layer tables, parameter counts, MACs and architecture features (torchinfo); and the tuning candidates: the models
of the files that experiment or tuning files under ./experiments/ name (`models = [...]`), outside the package.
Reports find a candidate by its bare name, as older runs record it."""

from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import torch
from torch import nn

from .config_files import load_toml
from .errors import MnistliteError
from .models import BUDGET, ModelEntry, count_params, get_entry

EXPERIMENTS = Path("experiments")

INPUT_SIZE = (1, 1, 28, 28)


@dataclass(frozen=True)
class ModelProfile:
    name: str
    params: int
    macs: int  # multiply-accumulates per image, forward pass
    table: str  # torchinfo's layer table

    def __str__(self) -> str:
        return (
            f"{self.table}\nTrainable params: {self.params:,}\nMACs per image:   {self.macs:,}\n"
            f"Budget:           {budget_verdict(self.params)}"
        )

    def _repr_pretty_(self, p, cycle) -> None:  # IPython
        p.text(str(self))


def budget_verdict(params: int) -> str:
    """One phrase for the log, the layer table and the notebook summary."""
    if params < BUDGET:
        return f"fits the {BUDGET:,}-parameter budget ({BUDGET - params:,} to spare)"
    return f"over the {BUDGET:,}-parameter budget by {params - BUDGET + 1:,}"


def profile_model(model: nn.Module, name: str = "") -> ModelProfile:
    import torchinfo

    was_training = model.training
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    with torch.random.fork_rng(devices=[]):  # a model's forward may draw (dropout is off, but user code)
        stats = torchinfo.summary(
            model,
            input_size=INPUT_SIZE,
            col_names=("output_size", "num_params", "mult_adds"),
            row_settings=("var_names",),
            depth=4,
            verbose=0,
            device=device,
            mode="eval",
        )
    model.train(was_training)
    return ModelProfile(name=name, params=count_params(model), macs=int(stats.total_mult_adds), table=str(stats))


_PROFILES: dict[tuple[str, str | None], ModelProfile] = {}


def profile_entry(entry: ModelEntry) -> ModelProfile:
    """The profile of the model an entry builds, never moving the caller's RNG; cached where name and source fix it."""
    key = (entry.name, entry.code.sha256 if entry.code else None)
    if key in _PROFILES:
        return _PROFILES[key]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = entry.build()
    prof = profile_model(model, entry.name)
    if entry.code is not None or "user" not in entry.tags:
        _PROFILES[key] = prof
    return prof


def profile_registered(name: str) -> ModelProfile:
    return profile_entry(get_entry(name))


def architecture_of(net: nn.Module) -> dict[str, str]:
    """Comparable features of a model (conv widths, BN, dropout, GAP, ...), for "what changed" in reports."""
    try:
        net = copy.deepcopy(net).cpu().float().eval()
    except Exception:  # noqa: BLE001 -- a user module that cannot be copied: no features, not a failure
        return {}
    calls: list[tuple[nn.Module, tuple[int, ...]]] = []  # leaf modules in call order, with output shapes

    def hook(mod, inp, out):
        if isinstance(out, torch.Tensor):
            calls.append((mod, tuple(out.shape)))

    handles = [m.register_forward_hook(hook) for m in net.modules() if not list(m.children())]
    try:
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            net(torch.zeros(1, 1, 28, 28))
    except Exception:  # noqa: BLE001
        return {}
    finally:
        for h in handles:
            h.remove()

    convs = [m for m, _ in calls if isinstance(m, nn.Conv2d)]
    drops = [m.p for m, _ in calls if isinstance(m, nn.Dropout) and m.p > 0]
    # Global average pooling: the map collapses to 1x1 through an average pool, or disappears between two layers.
    gap, last_side = False, 28
    for m, o in calls:
        if len(o) == 4:
            if isinstance(m, (nn.AvgPool2d, nn.AdaptiveAvgPool2d)) and o[2] * o[3] == 1 and last_side > 1:
                gap = True
            last_side = o[2]
        elif isinstance(m, nn.Linear) and last_side > 1:
            gap = True
    return {
        "convolutions": str(len(convs)),
        "conv widths": "-".join(str(c.out_channels) for c in convs),
        "1x1 convs": str(sum(1 for c in convs if c.kernel_size == (1, 1))),
        "conv bias": "yes" if any(c.bias is not None for c in convs) else "no",
        "BatchNorm layers": str(sum(isinstance(m, nn.BatchNorm2d) for m, _ in calls)),
        "dropout": f"{'/'.join(f'{p:g}' for p in sorted(set(drops)))} x{len(drops)}" if drops else "none",
        "max-pools": str(sum(isinstance(m, nn.MaxPool2d) for m, _ in calls)),
        "GAP": "yes" if gap else "no",
        "linear layers": str(sum(isinstance(m, nn.Linear) for m, _ in calls)),
    }


@dataclass(frozen=True)
class Candidate:
    entry: ModelEntry  # named by its reference, `experiments/tuning/tiny_candidates.py:tiny2k_fact`
    rounds: tuple[str, ...]  # the experiment or tuning files whose runs use it

    @property
    def name(self) -> str:
        return self.entry.name.rpartition(":")[2]


def _uses(doc: dict, name: str) -> bool:
    items = [c for key in ("candidates", "steps") if isinstance(doc.get(key), list) for c in doc[key]]
    return any(isinstance(c, dict) and c.get("model") == name for c in items)


def candidates(root: Path = EXPERIMENTS) -> tuple[Candidate, ...]:
    """The models of every file named by an experiment or tuning file (`models = [...]`) under `root`."""
    return _candidates(Path(root).resolve())


@cache  # per folder and process: every file is imported and checked once
def _candidates(root: Path) -> tuple[Candidate, ...]:
    from .models.usercode import canonical_path, file_entries

    tomls = sorted(root.rglob("*.toml"))
    docs = {canonical_path(t): load_toml(t, "experiment or tuning file") for t in tomls}
    files: dict[str, list[str]] = {}
    for where, doc in docs.items():
        named = doc.get("models", [])
        for f in named if isinstance(named, list) else []:
            files.setdefault(canonical_path(f, Path(where).parent), []).append(where)
    out = []
    for f, naming in files.items():
        for e in file_entries(f):
            name = e.name.rpartition(":")[2]
            out.append(Candidate(e, tuple(w for w in naming if _uses(docs[w], name)) or tuple(naming)))
    return tuple(out)


def find_entry(name: str) -> ModelEntry | None:
    """A registered model or reference; else a candidate under ./experiments by its bare name; else None."""
    with contextlib.suppress(MnistliteError):
        return get_entry(name)
    return next((c.entry for c in candidates() if c.name == name), None) if EXPERIMENTS.is_dir() else None
