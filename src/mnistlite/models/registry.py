"""Model registry: one small factory per variant, registered by name (timm style), with its
provenance, tags, published recipe (TrainConfig overrides) and stated parameter count."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from ..challenge import BUDGET  # noqa: F401  (re-exported: models.BUDGET)
from ..errors import MnistliteError


@dataclass(frozen=True)
class SourceCode:
    """The exact bytes a user model was built from, kept so a run can be rebuilt as trained."""

    path: str
    sha256: str
    data: bytes = field(repr=False)


@dataclass(frozen=True)
class ModelEntry:
    name: str
    factory: Callable[..., nn.Module]
    source: str
    tags: tuple[str, ...] = ()
    recipe: dict[str, Any] = field(default_factory=dict)
    stated_params: int | None = None
    description: str = ""
    code: SourceCode | None = None  # set for models from a user's file (models/usercode.py)

    def build(self, **kwargs: Any) -> nn.Module:
        return self.factory(**kwargs)


_REGISTRY: dict[str, ModelEntry] = {}
# While a user's model file is imported, its @register_model calls land here instead (named
# through the file, so two versions never clash), with the check the importer hands in.
_COLLECTOR: list[tuple[dict[str, ModelEntry], Callable[[Any, str], Callable[..., nn.Module]]]] = []


@contextmanager
def collecting(check: Callable[[Any, str], Callable[..., nn.Module]]) -> Iterator[dict[str, ModelEntry]]:
    found: dict[str, ModelEntry] = {}
    _COLLECTOR.append((found, check))
    try:
        yield found
    finally:
        _COLLECTOR.pop()


def register_model(
    name: str,
    *,
    source: str = "",
    tags: tuple[str, ...] | list[str] = (),
    recipe: dict[str, Any] | None = None,
    stated_params: int | None = None,
    description: str = "",
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator: register `factory` under `name`. Names are unique."""

    def deco(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        target, check = _COLLECTOR[-1] if _COLLECTOR else (_REGISTRY, None)
        if name in target:
            raise MnistliteError(f"model {name!r} registered twice")
        built = check(factory, name) if check is not None else factory
        doc = description or (factory.__doc__ or "").strip().split("\n")[0]
        target[name] = ModelEntry(name, built, source, tuple(tags), dict(recipe or {}), stated_params, doc)
        return factory

    return deco


def list_models(tag: str | None = None) -> list[str]:
    return [n for n, e in _REGISTRY.items() if tag is None or tag in e.tags]


def registered(name: str) -> ModelEntry:
    """A registered model by name (models/lookup.py's `get_entry` also takes users' references)."""
    try:
        return _REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=3)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise MnistliteError(
            f"unknown model {name!r}.{hint} Run 'mnistlite models' to list them"
            " ('--all' adds the tuning candidates, which are named file.py:name)."
        ) from None


def count_params(model: nn.Module) -> int:
    """Trainable parameters, BatchNorm affine included (the challenge's count)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
