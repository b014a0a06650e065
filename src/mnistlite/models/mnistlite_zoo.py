"""mnistlite's own models: the flagship (< 8k), the frontier (< 5k) and the budget ladder, all of the parametric
family (family.py). Every recipe was chosen on the validation split (docs/accuracy.md); the test set only reports."""

from __future__ import annotations

from .family import NetSpec, build
from .registry import list_models, register_model, registered

SOURCE = "mnistlite"

# The recipe all our models share: SGD + Nesterov under a one-cycle schedule, light geometric augmentation
# (MNIST digits are already centred and upright, so strong warps cost more accuracy than they buy).
BASE_RECIPE = dict(epochs=15, batch_size=128, optimizer="sgd", momentum=0.9, nesterov=True, weight_decay=1e-4)
BASE_RECIPE.update(scheduler="onecycle", lr=0.01, max_lr=0.08, pct_start=0.25, div_factor=10.0, final_div_factor=100.0)
BASE_RECIPE.update(rotation=8.0, translate=0.08, scale=0.08, label_smoothing=0.0)


def _family_model(name: str, spec: NetSpec, tags: tuple[str, ...], description: str, **recipe):
    full = {**BASE_RECIPE, **recipe}

    def factory(dropout: float | None = None):
        return build(spec if dropout is None else NetSpec(**{**spec.to_dict(), "dropout": dropout}))

    factory.__doc__ = description
    factory.spec = spec  # type: ignore[attr-defined]
    register_model(name, source=f"{SOURCE}, {name}", tags=tags, recipe=full, description=description)(factory)
    return factory


FLAGSHIP = NetSpec(stages=((8, 16), (16, 16, 16)), transitions=(10,))
_family_model(
    "mnistlite_flagship",
    FLAGSHIP,
    ("mnistlite", "flagship", "ladder", "under8k"),
    "Flagship: BN-ReLU family net, pool + 1x1 transition, GAP head; EMA of the weights.",
    ema=0.998,
    weight_decay=5e-4,
)

FRONTIER = NetSpec(stages=((8, 12), (24, 24, 24, 24)), transitions=(12,), first_padding=1, sep_stages=1)
_family_model(
    "mnistlite_frontier",
    FRONTIER,
    ("mnistlite", "frontier", "ladder", "under8k", "under5k"),
    "Frontier: 4.5k parameters, depthwise-separable second stage; EMA of the weights.",
    batch_size=64,
    ema=0.998,
    weight_decay=5e-4,
)

# +0.08 over the flagship on validation, but about 1.7x its time per run on a 2-core CPU,
# so the flagship stays the speed benchmarks' model.
SEP8K = NetSpec(stages=((8, 16), (30, 30, 30, 30, 30)), transitions=(16,), first_padding=1, sep_stages=1)
_family_model(
    "mnistlite_sep8k",
    SEP8K,
    ("mnistlite", "ladder", "under8k"),
    "7.7k parameters: the frontier's separable design at the 8k budget; EMA of the weights.",
    batch_size=64,
    ema=0.998,
    weight_decay=5e-4,
)

# The budget ladder of the params -> accuracy plot: one shape, scaled in width (its 2k point,
# beaten by tiny2k_deep_ema, moved to experiments/tuning/ladder_2k.py).
LADDER_3K = NetSpec(stages=((6, 10), (10, 10, 10)), transitions=(8,))
_family_model("mnistlite_3k", LADDER_3K, ("mnistlite", "ladder", "under8k"), "Ladder point at 3.4k parameters.")
_family_model(
    "mnistlite_20k",
    NetSpec(stages=((12, 24), (24, 24, 24)), transitions=(16,)),
    ("mnistlite", "ladder"),
    "Ladder point at 17.4k parameters, trained for 20 epochs (seed 003's setting).",
    epochs=20,
)


def register_spec(
    name: str,
    spec: NetSpec,
    recipe: dict | None = None,
    *,
    tags: tuple[str, ...] = ("family", "search"),
    description: str = "",
):
    """Register family `spec` under `name` (a search's `family:<json>`) unless it is (under another spec: error)."""
    if name in list_models():
        existing = getattr(registered(name).factory, "spec", None)
        if existing != spec:
            raise ValueError(f"model {name!r} is already registered with another spec: {existing}")
        return registered(name).factory
    return _family_model(name, spec, tags, description or f"Family spec {name}.", **dict(recipe or {}))
