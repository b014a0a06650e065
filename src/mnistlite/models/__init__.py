"""The model zoo. Importing this package registers every model."""
from .registry import (  # noqa: F401
    BUDGET,
    ModelEntry,
    count_params,
    create_model,
    get_entry,
    list_models,
    register_model,
)
from . import seed_zoo  # noqa: F401,E402  (registers the seed reproductions)
from . import mnistlite_zoo  # noqa: F401,E402  (registers our own models)
