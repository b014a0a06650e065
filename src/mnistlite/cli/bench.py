"""`mnistlite bench`: training/eval throughput and epoch time against the seeds' pipeline."""

from __future__ import annotations

import json

from ..bench import format_bench, run_bench
from ..errors import MnistliteError
from .common import check_at_least


def register(sub) -> None:
    p = sub.add_parser("bench", help="measure speed against a naive per-sample DataLoader baseline")
    p.add_argument(
        "--model",
        default="mnistlite8k_model3",
        help="model to time, by name or file.py:Name (default: seed 000 Model3)",
    )
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    p.add_argument("--data-dir", help="data root")
    p.add_argument("--steps", type=int, default=100, help="training steps for the throughput figure")
    p.add_argument(
        "--baseline-batches",
        type=int,
        default=100,
        help="batches of the baseline to time (0 skips it, -1 times a full epoch)",
    )
    p.add_argument("--baseline-workers", type=int, default=2, help="DataLoader workers of the baseline")
    p.add_argument("--no-epoch", action="store_true", help="skip the full-epoch timing")
    p.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="time the epoch and the baseline this many times in turns; medians (default 3)",
    )
    p.add_argument("--full", action="store_true", help="also time a complete run of the model's recipe")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0 = all cores)")
    p.add_argument("--batch-size", type=int, help="override the batch size")
    p.add_argument(
        "--against",
        metavar="MODEL",
        help="also time this model (e.g. your plain-torch file.py:Net) with the same recipe, "
        "on the fused unit and on torch's layers",
    )
    p.add_argument(
        "--no-precision", action="store_true", help="skip the fp32 against bf16 autocast training comparison"
    )
    p.add_argument("--no-paths", action="store_true", help="skip the BN paths (fused unit against torch's layers)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run)


def run(args) -> None:
    if args.steps < 1:
        raise MnistliteError("--steps must be at least 1")
    check_at_least(args, rounds=1)
    if args.baseline_workers < 0:
        raise MnistliteError(f"--baseline-workers must be 0 (no worker processes) or more, got {args.baseline_workers}")
    over = {"batch_size": args.batch_size} if args.batch_size is not None else {}  # 0 is refused, not ignored
    r = run_bench(
        args.model,
        device=args.device,
        data_dir=args.data_dir,
        steps=args.steps,
        baseline_batches=None if args.baseline_batches < 0 else args.baseline_batches,
        baseline_workers=args.baseline_workers,
        epoch=not args.no_epoch,
        full=args.full,
        threads=args.threads,
        overrides=over,
        against=args.against,
        precision=not args.no_precision,
        paths=not args.no_paths,
        rounds=args.rounds,
    )
    print(json.dumps(r, indent=2) if args.json else format_bench(r))
