"""Model registry: one small factory per variant, looked up by name (timm style).

A factory is registered with its provenance (`source`), searchable `tags`, the
training `recipe` it was published with (TrainConfig field overrides) and, for
reproductions, the parameter count its source states, which tests assert.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any, Callable

from torch import nn

from ..errors import MnistliteError

BUDGET = 8000  # the challenge's parameter budget (trainable, BatchNorm included)


@dataclass(frozen=True)
class ModelEntry:
    name: str
    factory: Callable[..., nn.Module]
    source: str
    tags: tuple[str, ...] = ()
    recipe: dict[str, Any] = field(default_factory=dict)
    stated_params: int | None = None
    description: str = ""

    def build(self, **kwargs: Any) -> nn.Module:
        return self.factory(**kwargs)


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(
    name: str,
    *,
    source: str,
    tags: tuple[str, ...] | list[str] = (),
    recipe: dict[str, Any] | None = None,
    stated_params: int | None = None,
    description: str = "",
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator: register `factory` under `name`. Names are unique."""

    def deco(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} registered twice")
        _REGISTRY[name] = ModelEntry(
            name=name,
            factory=factory,
            source=source,
            tags=tuple(tags),
            recipe=dict(recipe or {}),
            stated_params=stated_params,
            description=description or (factory.__doc__ or "").strip().split("\n")[0],
        )
        return factory

    return deco


def list_models(tag: str | None = None) -> list[str]:
    return [n for n, e in _REGISTRY.items() if tag is None or tag in e.tags]


def get_entry(name: str) -> ModelEntry:
    try:
        return _REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=3)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise MnistliteError(
            f"unknown model {name!r}.{hint} Run 'mnistlite models' to list them."
        ) from None


def create_model(name: str, **kwargs: Any) -> nn.Module:
    return get_entry(name).build(**kwargs)


def count_params(model: nn.Module) -> int:
    """Trainable parameters, BatchNorm affine included (the challenge's count)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
