"""Does recomputing BatchNorm statistics after training help? (validation split only)

A trained net's BatchNorm running statistics were collected on augmented
images, and with --ema they are an average of statistics of older weights.
Re-estimating them on clean training images for the final weights
(torch.optim.swa_utils.update_bn, a cumulative average over one pass) is a
post-hoc step that does not change training, so it can be compared on the same
weights: a paired test, free of seed-to-seed noise.

    python experiments/bn_recalibration.py docs/results/tuning/flagship_ema/flagship_ema998/seed{1,2,3} \
        docs/results/tuning/frontier_ema/frontier_ema999/seed{1,2,3}

Each run directory must have been trained with a validation split; the script
reads its model.pt (the weights the run is judged by), rebuilds the same split
and prints the final validation accuracy as saved, after re-estimating the
statistics on all the run's training images, and on the first 10,000.
"""
from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import torch
from torch.optim.swa_utils import update_bn

from mnistlite.cli.common import Parser
from mnistlite.data.loading import load_dataset
from mnistlite.deploy.predict import load_run
from mnistlite.engine import evaluate
from mnistlite.errors import MnistliteError


def recalibrated(model: torch.nn.Module, images: torch.Tensor, batch_size: int = 500) -> torch.nn.Module:
    m = copy.deepcopy(model)
    update_bn([images[i : i + batch_size] for i in range(0, len(images), batch_size)], m)
    return m.eval()


def _threads(text: str) -> int:
    n = int(text) if text.isdigit() else 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, got {text!r}")
    return n


def report(runs: list[Path]) -> None:
    """Print the table; a run that cannot be scored raises MnistliteError before its row."""
    print("| run | params | val, as saved | recalibrated on all training images | on the first 10,000 |")
    print("|---|---:|---:|---:|---:|")
    totals = [0.0, 0.0, 0.0]
    data = {}  # runs of one split share its tensors
    for run in runs:
        rm = load_run(run)
        cfg = rm.config
        if not cfg.val_size:
            raise MnistliteError(f"{run}: trained without a validation split (--val-size)")
        key = (cfg.dataset, cfg.data_dir, cfg.val_size, cfg.limit_train)
        if key not in data:
            data[key] = load_dataset(cfg.dataset, cfg.data_dir, val_size=cfg.val_size, limit_train=cfg.limit_train,
                                     download=False)
        ds = data[key]
        accs = [evaluate(m, ds.val, 1000)[1] for m in
                (rm.model, recalibrated(rm.model, ds.train.images), recalibrated(rm.model, ds.train.images[:10000]))]
        totals = [t + a for t, a in zip(totals, accs)]
        print(f"| {run} | {rm.params:,} | " + " | ".join(f"{a:.2f}" for a in accs) + " |", flush=True)
    print("| **mean** | | " + " | ".join(f"**{t / len(runs):.3f}**" for t in totals) + " |")


def main(argv: list[str] | None = None) -> int:
    ap = Parser(prog="bn_recalibration.py", description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path, help="run directories trained with --val-size")
    ap.add_argument("--threads", type=_threads, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    try:
        report(args.runs)
    except MnistliteError as e:  # like the mnistlite CLI: one line, exit code 2
        print(f"bn_recalibration.py: error: {e}", file=sys.stderr)
        return e.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
