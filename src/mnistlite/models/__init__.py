"""The model zoo, in plain torch (engine/parts.py puts every model on the fast path, mnistlite.fast).
Importing this package registers every supported model (tuning candidates live with their rounds, in experiments/).

registry.py       one small factory per model, registered by name; the parameter count
lookup.py         from a name or a user's reference to the entry, the model, its recipe's config
family.py         the parametric family (NetSpec) whose parameter count is known before building
mnistlite_zoo.py  our own models: the flagship, the frontier and their relatives
seed_zoo.py       reproductions of the seed projects' models, as layer tables
tiny_zoo.py       the nets under 2k and 1k parameters (the ladder's smallest rows)
usercode.py       models the user wrote: `file.py:Name`, `package.module:Name`
pretrained.py     the weights shipped in weights/ (pretrained.json lists them)
"""

from . import mnistlite_zoo, seed_zoo, tiny_zoo  # noqa: F401  (importing them registers their models)
from .lookup import config_for, create_model, get_entry  # noqa: F401
from .registry import BUDGET, ModelEntry, count_params, list_models, register_model  # noqa: F401
