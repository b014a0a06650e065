"""The ladder's 2k point before the rounds below 2,000 parameters (tiny_round*.toml), whose
baseline it was: the flagship's shape scaled down in width (2,130 parameters, 99.05 ± 0.10%, n=5).

`tiny2k_deep_ema` beats it with fewer parameters (1,926: 99.18 ± 0.11%, n=10), so it left the
supported zoo; its committed runs stay in docs/results/ladder/mnistlite_2k/ and train again as
`experiments/tuning/ladder_2k.py:mnistlite_2k`.
"""

from mnistlite import register_model
from mnistlite.models.family import NetSpec, build
from mnistlite.models.mnistlite_zoo import BASE_RECIPE

SPEC = NetSpec(stages=((4, 8), (8, 8, 8)), transitions=(6,))


@register_model(
    "mnistlite_2k",
    source="mnistlite, mnistlite_2k",
    tags=("mnistlite", "under8k"),
    recipe=dict(BASE_RECIPE),
    stated_params=2130,
    description="Ladder point at 2.1k parameters (until the tiny rounds).",
)
def mnistlite_2k(dropout=None):
    return build(SPEC if dropout is None else NetSpec(**{**SPEC.to_dict(), "dropout": dropout}))
