"""Shared CLI pieces: a parser whose errors are one line, TrainConfig flags, and the flags several commands take."""

from __future__ import annotations

import argparse
import contextlib
import json
import shlex
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any, NoReturn

from ..config import CHOICES, DRY_RUN, TrainConfig
from ..config_files import field_types, parse_seeds
from ..errors import MnistliteError
from ..models import config_for


def shipped_names() -> str:
    """The models with shipped weights ("a / b / c"), from the catalogue file: importing pretrained.py loads torch."""
    path = Path(__file__).resolve().parents[1] / "models" / "weights" / "pretrained.json"
    return " / ".join(json.loads(path.read_text()))


# Flags whose help the dataclass comments cannot give well enough.
_HELP = {
    "model": "a registered name (see 'mnistlite models'), or your own: my_models.py:Net or package.module:Net",
    "data_dir": "data root holding MNIST/raw/ (else $MNISTLITE_DATA, else the default folder)",
    "val_size": "hold out N training images as a validation split (never trained on)",
    "limit_train": "train on the first N training images only (smoke runs)",
    "dropout": "dropout rate for every dropout layer (default: the model's own)",
    "rotation": "random rotation, max degrees",
    "crop_p": "probability of the seeds' centre-crop-and-resize zoom",
    "elastic_alpha": "elastic distortion strength (Simard et al. 2003), in pixels, e.g. 8; 0 = off",
    "elastic_sigma": "smoothness of the elastic displacement field: Gaussian sigma in pixels",
    "bias_lr_scale": "learning-rate multiplier for biases and BatchNorm weights",
    "bias_decay": "apply weight decay to biases and BatchNorm weights (--no-bias-decay: do not)",
    "bn_scale_frozen": "keep every BatchNorm scale at 1 (not trained)",
    "whiten": "start the input convolution as a whitening of the training images' patches (airbench): "
    "off, init (then trained) or frozen",
    "ema": "evaluate and save an EMA of the weights with this decay per step (e.g. 0.999); 0 = off",
    "precision": "fp32, bf16 autocast, or auto: bf16 where the machine has bf16 units and bf16 is cleared "
    "for accuracy (today: fp32); the run's config.json records the choice",
    "bf16": "deprecated: same as --precision bf16",
    "bn_fusion": "the CPU fast path: BatchNorm-ReLU and 2x2 max-pools through mnistlite's compiled loops (fused), "
    "torch's own layers, or auto: the rule `mnistlite bench` measured for this CPU kind and thread count "
    "(engine/bn_path.py); config.json records the choice",
    "cuda_graph": "on a GPU, replay the whole training step as one CUDA graph (auto: on for SGD runs on CUDA, "
    "off elsewhere); config.json records what ran",
}

# Flags whose fixed set of values argparse checks (the others: TrainConfig.validated).
_CHOICES = {k: CHOICES[k] for k in ("precision", "bn_fusion", "cuda_graph", "whiten")}


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (and exit code 2), not a usage dump."""

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: error: {message} (see '{self.prog} --help')", file=sys.stderr)
        sys.exit(2)


def add_config_flags(parser: argparse.ArgumentParser, skip: tuple[str, ...] = ()) -> None:
    """One flag per TrainConfig field, default None so that only what the user typed overrides the model's recipe."""
    group = parser.add_argument_group("recipe (defaults: the model's registered recipe)")
    types = field_types()
    for f in fields(TrainConfig):
        if f.name in skip or f.name == "model_sha256":  # filled in when a model is resolved, never typed
            continue
        flag = "--" + f.name.replace("_", "-")
        typ = types[f.name]
        help_ = _HELP.get(f.name, f"default {f.default!r}")
        if typ is bool:
            group.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=help_)
        else:
            choices = _CHOICES.get(f.name)
            metavar = None if choices else f.name.upper()
            group.add_argument(flag, type=typ, default=None, choices=choices, metavar=metavar, help=help_)


def config_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The recipe flags the user typed; --dry-run's smoke settings win over them."""
    over = {f.name: getattr(args, f.name) for f in fields(TrainConfig) if getattr(args, f.name, None) is not None}
    return {**over, **(DRY_RUN if args.dry_run else {})}


def config_from_args(args: argparse.Namespace, **extra: Any) -> TrainConfig:
    over = {**config_overrides(args), **extra}
    model = over.pop("model", None) or TrainConfig.model
    return config_for(model, **over)


def check_at_least(args: argparse.Namespace, **least: int) -> None:
    """Refuse the first of these flags below its least value (an absent one, None, passes)."""
    for name, low in least.items():
        value = getattr(args, name)
        if value is not None and value < low:
            bound = "0 or more" if low == 0 else f"at least {low}"
            raise MnistliteError(f"--{name.replace('_', '-')} must be {bound}, got {value}")


def add_trust_code(
    parser: argparse.ArgumentParser,
    help_: str = "allow rebuilding a user model from the run's copy of its source (runs that code)",
) -> None:
    parser.add_argument("--trust-code", action="store_true", help=help_)


def add_model_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "model",
        metavar="MODEL",
        help="a run directory, a model.pt, an .onnx from 'mnistlite export', "
        f"or a model with shipped weights ({shipped_names()})",
    )


def add_storage_flags(parser: argparse.ArgumentParser, what: str, default_study: str) -> None:
    parser.add_argument(
        "--storage",
        metavar="URL",
        help=f"share the {what} among workers through an Optuna storage (sqlite:///f.db, postgresql://...)",
    )
    parser.add_argument("--study", metavar="NAME", help=f"sweep name in --storage (default: {default_study})")
    add_patience_flag(parser)


def add_patience_flag(parser: argparse.ArgumentParser) -> None:
    """--storage-patience: how long a database server may be unreachable (main() hands it to runs/storage.py)."""
    from ..runs.storage import DEFAULT_PATIENCE

    def seconds(text: str) -> float:
        with contextlib.suppress(ValueError):
            if 0 < float(text) < float("inf"):
                return float(text)
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text!r}")

    parser.add_argument(
        "--storage-patience",
        type=seconds,
        metavar="S",
        help=f"wait out a database server restart or outage of up to S seconds, then exit 2 "
        f"(default {DEFAULT_PATIENCE:g}; PostgreSQL and other servers, not SQLite)",
    )


def add_dry_run(
    parser: argparse.ArgumentParser, help_: str = "one epoch on 1,000 training images: checks the whole path in seconds"
) -> None:
    parser.add_argument("--dry-run", action="store_true", help=help_)


def add_seed_flags(parser: argparse.ArgumentParser, what: str = "") -> None:
    g = parser.add_mutually_exclusive_group()
    g.add_argument("--seeds", type=int, default=5, metavar="N", help=f"run seeds 1..N{what} (default 5)")
    g.add_argument("--seed-list", metavar="S,S,...", help="run exactly these seeds, e.g. 7,8,9")
    add_jobs_flag(parser, "seeds trained at once, each on cores/jobs threads")


def add_jobs_flag(parser: argparse.ArgumentParser, help_: str) -> None:
    """--jobs N|auto: runs trained at once through the one pool (runs/plan.py); auto by a rule (runs/splits.py)."""
    from ..runs.splits import parse_jobs

    def jobs_value(text: str) -> int | str:
        try:
            return parse_jobs(text)
        except MnistliteError as e:  # argparse's one-line usage error, exit 2
            raise argparse.ArgumentTypeError(str(e).removeprefix("--jobs ")) from None

    parser.add_argument(
        "--jobs",
        type=jobs_value,
        default=1,
        metavar="N|auto",
        help=f"{help_} (default 1); auto: the jobs x threads split of the cores that finishes the runs "
        "soonest by a committed rule (runs/splits.py), written to split.json",
    )


def seeds_from_args(args: argparse.Namespace) -> list[int]:
    check_at_least(args, seeds=1)
    return list(parse_seeds(args.seed_list, "--seed-list")) if args.seed_list else list(range(1, args.seeds + 1))


# --- commands driven by a TOML file (experiment, tune) ------------------------------
FILE_RUN_FLAGS = ("seeds", "seed_list", "out", "epochs", "limit_train", "data_dir", "device")


def add_file_run_flags(parser: argparse.ArgumentParser, what: str, default_out: str) -> None:
    g = parser.add_mutually_exclusive_group()
    g.add_argument("--seeds", type=int, metavar="N", help="seeds 1..N (default: the file's `seeds`)")
    g.add_argument("--seed-list", metavar="S1,S2", help="these seeds, comma-separated")
    parser.add_argument("--out", metavar="DIR", help=f"output folder (default: {default_out})")
    parser.add_argument("--epochs", type=int, metavar="N", help=f"override every {what}'s epochs")
    parser.add_argument("--limit-train", type=int, metavar="N", help="train on the first N images only (smoke runs)")
    parser.add_argument("--data-dir", metavar="DIR", help="data root holding MNIST/raw/")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], help="device of every run (default auto)")


def file_seeds(args: argparse.Namespace) -> tuple[int, ...] | None:
    """--seeds / --seed-list as a tuple, or None for the file's own seeds."""
    check_at_least(args, seeds=1)
    if args.seeds is not None:
        return tuple(range(1, args.seeds + 1))
    return parse_seeds(args.seed_list, "--seed-list") if args.seed_list is not None else None


def file_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The TrainConfig fields the flags override for every run; --dry-run fills in a smoke run."""
    over = {"epochs": args.epochs, "limit_train": args.limit_train, "data_dir": args.data_dir, "device": args.device}
    if args.dry_run:
        over.update({k: v for k, v in DRY_RUN.items() if over.get(k) is None})
    return {k: v for k, v in over.items() if v is not None}


def file_out(args: argparse.Namespace, root: Path) -> Path:
    """--out, else ROOT/<file stem>, with -dry-run appended for smoke runs so they never mix with real ones."""
    return Path(args.out) if args.out else root / (Path(args.file).stem + ("-dry-run" if args.dry_run else ""))


def command_line(
    command: str, args: argparse.Namespace, extra: tuple[str, ...] = (), switches: tuple[str, ...] = ("dry_run",)
) -> str:
    """The command as typed, rebuilt from the parsed flags: the provenance line of a generated report."""
    parts = ["mnistlite", command, args.file]
    for flag in extra + FILE_RUN_FLAGS:
        v = getattr(args, flag)
        if v is not None:
            parts += ["--" + flag.replace("_", "-"), str(v)]
    parts += [f"--{f.replace('_', '-')}" for f in switches if getattr(args, f)]
    return shlex.join(parts)
