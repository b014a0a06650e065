"""A search study in an Optuna storage: its protocol, sampler and pruner, and its trials' states.

A trial counts towards `--trials` when it was trained (COMPLETE, or PRUNED by the pruner), not when
rejected for the budget. torch-free at import, so a worker that only reports starts fast.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass

from ..errors import MnistliteError
from ..runs import storage as st

KIND = "mnistlite-search"


@dataclass(frozen=True)
class Protocol:
    """What every trial of a study shares; stored on the study, and a worker with other flags is refused."""

    budget: int = 8000
    epochs: int = 15
    val_size: int = 5000
    limit_train: int = 0
    dataset: str = "mnist"
    seed: int = 1  # the training seed of every trial (configs compete on equal terms)


def make_pruner(name: str = "median", epochs: int = 15):
    optuna = st.import_optuna()
    if name == "median":
        # No pruning before 4 trials completed, nor before epoch max(1, epochs // 4): steps are 1-based epochs.
        return optuna.pruners.MedianPruner(n_startup_trials=4, n_warmup_steps=max(1, epochs // 4))
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=epochs)
    if name == "none":
        return optuna.pruners.NopPruner()
    raise MnistliteError(f"--pruner must be median, hyperband or none, got {name!r}")


def make_sampler(seed: int | None = None, startup: int = 8):
    optuna = st.import_optuna()
    # constant_liar: parallel workers do not all sample next to the same running trial.
    return optuna.samplers.TPESampler(n_startup_trials=startup, seed=seed, constant_liar=True)


def open_search_study(storage, name: str, protocol: Protocol, *, sampler=None, pruner=None):
    """Create the study, or join it when it exists with the same protocol."""
    optuna = st.import_optuna()
    try:
        study = optuna.create_study(
            storage=storage, study_name=name, direction="maximize", load_if_exists=True, sampler=sampler, pruner=pruner
        )
    except Exception as e:
        if type(e).__module__.startswith("sqlalchemy"):
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise MnistliteError(f"storage error opening study {name!r}: {first}") from None
        raise
    attrs = study.user_attrs
    if not attrs.get("kind"):
        # The protocol first: a worker joining between the two writes that sees `kind` must see it too.
        study.set_user_attr("protocol", asdict(protocol))
        study.set_user_attr("kind", KIND)
        attrs = study.user_attrs
    if attrs.get("kind") != KIND:
        raise MnistliteError(f"study {name!r} is a {attrs.get('kind')}, not a search; choose another --study")
    stored = attrs.get("protocol", {})
    diff = {k: (stored.get(k), v) for k, v in asdict(protocol).items() if stored.get(k) != v}
    if diff:
        what = ", ".join(f"--{k.replace('_', '-')} {a} (this worker: {b})" for k, (a, b) in diff.items())
        raise MnistliteError(f"study {name!r} was started with {what}; use the same flags or another --study")
    return study


def load_study(storage, study_name: str):
    optuna = st.import_optuna()
    try:
        return optuna.load_study(study_name=study_name, storage=storage)
    except KeyError:
        url = getattr(storage, "url", storage)
        where = st.redact(url) if isinstance(url, str) else repr(storage)
        raise MnistliteError(f"no study named {study_name!r} in {where}") from None


def is_counted(t) -> bool:
    """Was trial `t` trained (completed, or pruned while training)? Those count towards n_trials."""
    from optuna.trial import TrialState

    return t.state == TrialState.COMPLETE or (t.state == TrialState.PRUNED and "rejected" not in t.user_attrs)


def counted_trials(study) -> list:
    return [t for t in study.get_trials(deepcopy=False) if is_counted(t)]


def best_trials(study, k: int = 10) -> list:
    from optuna.trial import TrialState

    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    return sorted(done, key=lambda t: (-t.value, t.user_attrs.get("params", 0), t.number))[:k]


def state_counts(study) -> dict[str, int]:
    return Counter(
        "REJECTED" if "rejected" in t.user_attrs else "SURPLUS" if "surplus" in t.user_attrs else t.state.name
        for t in study.get_trials(deepcopy=False)
    )
