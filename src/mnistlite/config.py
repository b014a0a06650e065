"""The training configuration: one frozen dataclass, printed at start and saved with the run.

Precedence: these defaults, then the model's registered recipe, then the user's explicit overrides.
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
import typing
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

from .challenge import MAX_EPOCHS
from .errors import MnistliteError


@dataclass(frozen=True)
class TrainConfig:
    model: str = "mnistlite_flagship"  # a registered name, or a user's `file.py:Name` / `package.module:Name`
    model_sha256: str | None = None  # of a user model's file, set when resolved; the run keeps model_source.py
    dataset: str = "mnist"  # mnist | fashion-mnist
    data_dir: str | None = None  # else $MNISTLITE_DATA, else a default folder
    val_size: int = 0  # images held out of the training set, never trained on
    limit_train: int = 0  # train on the first N images only (smoke runs); 0 = all
    download: bool = True  # fetch missing files from the public mirrors

    epochs: int = MAX_EPOCHS
    batch_size: int = 128
    eval_batch_size: int = 500  # on the 2-core CPU as fast as 2,000, with a quarter of the memory

    optimizer: str = "sgd"  # sgd | adam | adamw
    lr: float = 0.01
    momentum: float = 0.9  # SGD only
    nesterov: bool = False  # SGD only
    weight_decay: float = 0.0
    label_smoothing: float = 0.0
    ema: float = 0.0  # EMA decay per step, 0 = off; eval and model.pt use it, metrics.csv adds raw_*_acc
    # airbench-style parameter groups (engine/optim.py): "bias-like" = every bias and BatchNorm weight.
    bias_lr_scale: float = 1.0  # their learning rate, as a multiple of the rest's
    bias_decay: bool = True  # does weight_decay apply to them?
    bn_scale_frozen: bool = False  # BatchNorm weights (scales) stay at 1, never trained
    whiten: str = "off"  # airbench's whitening input conv (engine/whiten.py): off | init | frozen

    scheduler: str = "none"  # none | step | onecycle
    step_size: int = 6  # StepLR: epochs between decays
    gamma: float = 0.1  # StepLR: decay factor
    max_lr: float = 0.05  # OneCycleLR (stepped per batch)
    pct_start: float = 0.2
    div_factor: float = 25.0
    final_div_factor: float = 1e4
    anneal_strategy: str = "cos"  # cos | linear
    three_phase: bool = False

    dropout: float | None = None  # None = the model's own default

    rotation: float = 0.0  # max |angle| in degrees; the seeds use 7 and 15
    translate: float = 0.0  # max shift as a fraction of the image side
    scale: float = 0.0  # zoom drawn from [1 - scale, 1 + scale]
    shear: float = 0.0  # max |shear| in degrees
    crop_p: float = 0.0  # probability of the seeds' "centre crop, resize back" zoom
    crop_size: int = 22  # side of that centre crop, in pixels of 28
    elastic_alpha: float = 0.0  # elastic distortion (Simard 2003) scale in pixels; 0 = off
    elastic_sigma: float = 4.0  # width of its Gaussian smoothing, in pixels

    seed: int = 1
    device: str = "auto"  # auto | cpu | cuda
    threads: int = 0  # CPU threads; 0 = all cores
    channels_last: bool = True  # NHWC activations: faster on CPU (oneDNN) and CUDA
    precision: str = "auto"  # auto | fp32 | bf16 (engine/precision.py); saved resolved; auto = fp32 until cleared
    bf16: bool = False  # deprecated: true forces precision bf16 (configs saved before `precision`)
    bn_fusion: str = "auto"  # auto | fused (mnistlite.fast) | torch (engine/bn_path.py); saved resolved; auto: per CPU
    cuda_graph: str = "auto"  # auto (on for SGD on CUDA) | on | off: engine/cuda_graph.py; a run saves what ran

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False)

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes).validated()

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        if not isinstance(d, dict):
            raise MnistliteError(f"a config must be a mapping of field names to values, got {type(d).__name__}")
        unknown = sorted(set(d) - {f.name for f in fields(cls)})
        if unknown:
            raise MnistliteError(f"unknown config field(s): {', '.join(unknown)}")
        hints = typing.get_type_hints(cls)
        for k, v in d.items():
            if not _type_ok(v, hints[k]):
                want = " or ".join(getattr(t, "__name__", str(t)) for t in (typing.get_args(hints[k]) or (hints[k],)))
                raise MnistliteError(f"config field {k!r} must be {want.replace('NoneType', 'null')}, got {v!r}")
        return cls(**d).validated()

    def validated(self) -> TrainConfig:
        """Raise MnistliteError naming the field and the fix for any bad value."""

        def bad(name: str, why: str) -> MnistliteError:
            return MnistliteError(f"--{name.replace('_', '-')} {why}")

        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, float) and not math.isfinite(v):
                raise bad(f.name, f"must be a finite number, got {v}")
        for name, allowed in CHOICES.items():
            if getattr(self, name) not in allowed:
                raise bad(name, f"must be {', '.join(allowed[:-1])} or {allowed[-1]}, got {getattr(self, name)!r}")
        if self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:"):
            raise bad("device", f"must be auto, cpu or cuda, got {self.device!r}")
        for name, (ok, what) in _LIMITS.items():
            v = getattr(self, name)
            if v is not None and not ok(v):  # None: dropout's "the model's own"
                raise bad(name, f"must be {what}, got {v}")
        return self


CHOICES = {
    "optimizer": ("sgd", "adam", "adamw"),
    "scheduler": ("none", "step", "onecycle"),
    "anneal_strategy": ("cos", "linear"),
    "dataset": ("mnist", "fashion-mnist"),
    "precision": ("auto", "fp32", "bf16"),
    "whiten": ("off", "init", "frozen"),
    "bn_fusion": ("auto", "fused", "torch"),
    "cuda_graph": ("auto", "on", "off"),
}

# Numeric fields' ranges: (test, what the value must be).
_AT_LEAST_0 = (lambda v: v >= 0, "0 or more")
_LIMITS: dict[str, tuple[Callable[[Any], bool], str]] = {
    **dict.fromkeys(("epochs", "batch_size", "eval_batch_size", "step_size"), (lambda v: v >= 1, "at least 1")),
    **dict.fromkeys(("lr", "elastic_sigma", "bias_lr_scale"), (lambda v: v > 0, "positive")),
    **dict.fromkeys(("val_size", "limit_train", "threads", "weight_decay", "momentum"), _AT_LEAST_0),
    **dict.fromkeys(("rotation", "translate", "shear", "elastic_alpha"), _AT_LEAST_0),
    **dict.fromkeys(("label_smoothing", "scale", "dropout"), (lambda v: 0 <= v < 1, "in [0, 1)")),
    "ema": (lambda v: 0 <= v < 1, "in [0, 1) (a decay per step, e.g. 0.999; 0 = off)"),
    "crop_p": (lambda v: 0 <= v <= 1, "in [0, 1]"),
    "crop_size": (lambda v: 1 <= v <= 28, "between 1 and 28"),
    "pct_start": (lambda v: 0 < v < 1, "in (0, 1)"),
}


def _type_ok(value: Any, hint: Any) -> bool:
    allowed = typing.get_args(hint) or (hint,)
    if value is None or isinstance(value, bool):
        return type(value) in allowed
    kinds = {float: numbers.Real, int: numbers.Integral, str: str}
    return any(isinstance(value, kinds[t]) for t in allowed if t in kinds)


# --dry-run (train, seeds, table) and dry_run=True (api): one epoch on 1,000 images, a smoke test.
DRY_RUN = {"epochs": 1, "limit_train": 1000}

# Where or how fast a run happens, not what it computes: configs that differ only here are the same run.
# The speed switches differ only in float rounding (tests/test_fused.py); `precision` is not one:
# bf16 moves the numbers far more, so fp32 and bf16 runs are two runs.
RUN_ONLY_FIELDS = frozenset(
    {"data_dir", "download", "threads", "eval_batch_size", "device", "channels_last", "bn_fusion", "cuda_graph"}
)
_DEFAULTS = {f.name: f.default for f in fields(TrainConfig)}


# Device types bf16 training is cleared for (engine/precision.py: `auto` picks bf16 only there). The CPU failed:
# 1.5x faster, but 0.087 points lower on validation over 8 seeds, past the 0.05 allowed (docs/performance.md).
ACCURACY_CLEARED = {"cpu": False, "cuda": False}


def saved_precision(saved: dict[str, Any]) -> str:
    """The precision a saved config ran in: one saved before the field existed ran fp32, or bf16 if bf16=true."""
    p = saved.get("precision")
    if p in ("fp32", "bf16"):
        return p
    return "bf16" if saved.get("bf16") else ("fp32" if p is None else str(p))


def saved_value(saved: dict[str, Any], name: str) -> Any:
    """A field of a saved config; one saved before the field existed ran with its default."""
    return saved_precision(saved) if name == "precision" else saved.get(name, _DEFAULTS.get(name))


def same_value(saved: dict[str, Any], name: str, value: Any, want: dict[str, Any]) -> bool:
    """Does field `name` of a saved config equal `value` (of `want`)? A user model is the same when
    its code is: the same name in a file with the same SHA-256, wherever the file was."""
    if name == "bf16":  # deprecated, folded into precision
        return True
    if name == "precision":  # `auto` stands for any precision auto may pick on some device
        auto = {"fp32", "bf16"} if any(ACCURACY_CLEARED.values()) else {"fp32"}
        new = "bf16" if want.get("bf16") else value
        old_picks, new_picks = (auto if p == "auto" else {p} for p in (saved_precision(saved), new))
        return bool(old_picks & new_picks)
    old = saved_value(saved, name)
    if name == "model" and old != value and isinstance(old, str) and isinstance(value, str):
        digest = want.get("model_sha256")
        return digest is not None and saved.get("model_sha256") == digest and old.split(":")[-1] == value.split(":")[-1]
    return old == value


def config_differences(saved: dict[str, Any], cfg: TrainConfig) -> dict[str, tuple[Any, Any]]:
    """{field: (saved, wanted)} for every field, RUN_ONLY_FIELDS aside, that makes `saved` another run than `cfg`."""
    want = cfg.to_dict()
    out = {k: (saved_value(saved, k), v) for k, v in want.items() if k not in RUN_ONLY_FIELDS}
    out = {k: ov for k, ov in out.items() if not same_value(saved, k, want[k], want)}
    out.update({k: (saved[k], None) for k in saved if k not in want and k not in RUN_ONLY_FIELDS})
    return out


def changed_fields(saved: dict[str, Any], cfg: TrainConfig) -> list[str]:
    return list(config_differences(saved, cfg))


def describe_differences(saved: dict[str, Any], cfg: TrainConfig) -> list[str]:
    """config_differences as 'field old -> new' lines, for messages."""
    return [f"{k} {old!r} -> {new!r}" for k, (old, new) in config_differences(saved, cfg).items()]
