"""Is bf16's validation deficit in the trained weights or in bf16 inference? Score committed runs both ways.

    PYTHONPATH=src python benchmarks/precision_eval.py RUN_DIR [RUN_DIR ...] > out.json

Each run directory's model.pt (the judged weights) is scored on its own run's
validation and test splits (its config's --val-size) with float32 inference
and with bf16 autocast, as the trainer's judge runs it for a bf16 run. A run
trained in bf16 and judged in bf16 reads its recorded final_val_acc; the
float32 column says what the same weights score without bf16 rounding in the
forward. The test columns are read, not used for any choice.
"""

from __future__ import annotations

import argparse
import json
import sys
from contextlib import nullcontext

import torch

from mnistlite.bench import machine_info
from mnistlite.deploy.predict import load_run
from mnistlite.engine.device import set_threads
from mnistlite.engine.evaluation import evaluate
from mnistlite.engine.parts import load_data
from mnistlite.errors import MnistliteError


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    set_threads(args.threads)
    inference = {"fp32": nullcontext, "bf16": lambda: torch.autocast("cpu", dtype=torch.bfloat16)}
    out: dict = {"command": "PYTHONPATH=src python " + " ".join(sys.argv), "machine": machine_info(), "runs": []}
    for path in args.runs:
        try:
            run = load_run(path)
            data = load_data(run.config)
        except MnistliteError as e:  # a bad run folder or missing data: one line, nothing printed half-way
            print(f"precision_eval: {e}", file=sys.stderr)
            return 2
        model = run.model.to(memory_format=torch.channels_last)
        row: dict = {
            "run": path,
            "trained": run.config.precision,
            "recorded_val_acc": (run.result or {}).get("final_val_acc"),
        }
        for name, ctx in inference.items():
            for split in ("val", "test"):
                s = getattr(data, split)
                if s is not None:
                    loss, acc = evaluate(model, s, run.config.eval_batch_size, ctx)
                    row[f"{split}_acc_{name}_inference"] = round(acc, 2)
                    row[f"{split}_loss_{name}_inference"] = round(loss, 5)
        out["runs"].append(row)
    for trained in ("fp32", "bf16"):
        rows = [r for r in out["runs"] if r["trained"] == trained and "val_acc_fp32_inference" in r]
        if rows:
            out[f"mean_val_{trained}_trained"] = {
                inf: round(sum(r[f"val_acc_{inf}_inference"] for r in rows) / len(rows), 3) for inf in inference
            }
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
