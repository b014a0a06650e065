"""From a model's name to the model: registered names, users' references, shipped weights, a recipe
(the one front door above registry.py, usercode.py and pretrained.py)."""

from __future__ import annotations

from typing import Any

from torch import nn

from ..config import TrainConfig
from .pretrained import load_pretrained
from .registry import ModelEntry, list_models, registered
from .usercode import parse_ref, resolve


def get_entry(name: str) -> ModelEntry:
    """A registered name, or a reference to a user's model (`file.py:Name`, `package.module:Name`)."""
    ref = parse_ref(name) if name not in list_models() else None
    return resolve(ref) if ref is not None else registered(name)


def create_model(name: str, pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """Build a model by name or reference; `pretrained=True` loads the weights shipped with the package."""
    if pretrained:
        return load_pretrained(name)
    return get_entry(name).build(**kwargs)


def config_for(model: str | ModelEntry, **overrides: Any) -> TrainConfig:
    """A run's config: defaults, then the model's recipe, then `overrides` (None: not given)."""
    entry = get_entry(model) if isinstance(model, str) else model
    recipe = dict(entry.recipe)
    recipe.update({k: v for k, v in overrides.items() if v is not None})
    recipe["model"] = entry.name  # a user model's reference, made canonical
    recipe["model_sha256"] = entry.code.sha256 if entry.code else None
    return TrainConfig.from_dict(recipe)
