"""The model zoo. Importing this package registers every model."""

from . import (
    mnistlite_zoo,  # noqa: F401  (registers our own models)
    seed_zoo,  # noqa: F401  (registers the seed reproductions)
    tiny_zoo,  # noqa: F401  (registers the nets under 2k and 1k)
)
from .registry import (  # noqa: F401
    BUDGET,
    ModelEntry,
    count_params,
    create_model,
    get_entry,
    list_models,
    register_model,
)
