"""mnistlite's own models: the flagship (< 8k), the frontier (< 5k), and the
budget ladder of the params -> accuracy plot. All are members of the
parametric family (family.py), so their parameter counts are exact by formula.

Every recipe here was chosen on the validation split (see docs/accuracy.md
for the protocol); the test set only reports.
"""
from __future__ import annotations

from .family import NetSpec, build
from .registry import register_model

SOURCE = "mnistlite"

# The recipe all our models share: SGD + Nesterov under a one-cycle schedule,
# light geometric augmentation (MNIST digits are already centred and upright,
# so strong warps cost more accuracy than they buy).
BASE_RECIPE = dict(
    epochs=15, batch_size=128, optimizer="sgd", momentum=0.9, nesterov=True, weight_decay=1e-4,
    scheduler="onecycle", lr=0.01, max_lr=0.08, pct_start=0.25, div_factor=10.0, final_div_factor=100.0,
    rotation=8.0, translate=0.08, scale=0.08, label_smoothing=0.0,
)


def _family_model(name: str, spec: NetSpec, tags: tuple[str, ...], description: str, **recipe):
    full = {**BASE_RECIPE, **recipe}

    def factory(dropout: float | None = None):
        s = spec if dropout is None else NetSpec(**{**spec.to_dict(), "dropout": dropout})
        return build(s)

    factory.__doc__ = description
    factory.spec = spec  # type: ignore[attr-defined]
    register_model(name, source=f"{SOURCE}, {name}", tags=tags, recipe=full, description=description)(factory)
    return factory


FLAGSHIP = NetSpec(stages=((8, 16), (16, 16, 16)), transitions=(10,))
_family_model(
    "mnistlite_flagship", FLAGSHIP, ("mnistlite", "flagship", "under8k"),
    "Flagship: BN-ReLU family net, pool + 1x1 transition, GAP head.",
)
