"""End to end: five seeds through `mnistlite seeds`, grouped and not, against one run.

    PYTHONPATH=src python benchmarks/grouped_seeds.py [--epochs 2] [--out /tmp/grouped-e2e] > e2e.json

Runs, as whole processes timed wall-clock, in this order: one seed
(`seeds --seed-list 1`), the five seeds with `--group auto`, and the five with
`--group off` (and, asked by --only, the five on two one-thread workers, grouped
as 3 + 2 where auto's calibration says so, always (--group 3), or not:
jobs2_group, jobs2_group3, jobs2), each into a fresh folder under --out, on the validation split
(--val-size 5000). Reports each time, the ratios to the one run, and every
seed's final validation accuracy grouped and separate (the same seeds, the
same data order and augmentation draws: they differ by float rounding only).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path


def run(args: list[str], out: Path) -> float:
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "mnistlite", *args, "--out", str(out)], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="mnistlite_flagship")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--seeds", default="1,2,3,4,5")
    ap.add_argument("--out", default="/tmp/grouped-e2e")
    ap.add_argument("--only", default="one,auto,off", help="which to run: one,auto,off,jobs2_group,jobs2_group3,jobs2")
    a = ap.parse_args()
    out = Path(a.out)
    common = ["seeds", a.model, "--epochs", str(a.epochs), "--val-size", "5000"]
    times: dict[str, float] = {}
    commands = {
        "one": common + ["--seed-list", a.seeds.split(",")[0], "--group", "off"],
        "auto": common + ["--seed-list", a.seeds, "--group", "auto"],
        "off": common + ["--seed-list", a.seeds, "--group", "off"],
        # two workers of one thread, the seeds spread over them as two groups (3 + 2 of five)
        "jobs2_group": common + ["--seed-list", a.seeds, "--group", "auto", "--jobs", "2", "--threads", "1"],
        "jobs2_group3": common + ["--seed-list", a.seeds, "--group", "3", "--jobs", "2", "--threads", "1"],
        "jobs2": common + ["--seed-list", a.seeds, "--group", "off", "--jobs", "2", "--threads", "1"],
    }
    for name in a.only.split(","):
        times[name] = run(commands[name], out / name)
    report: dict = {
        "command": "PYTHONPATH=src python benchmarks/grouped_seeds.py "
        + " ".join(f"--{k} {v}" for k, v in vars(a).items()),
        "commands": {k: "mnistlite " + " ".join(v) + f" --out {out / k}" for k, v in commands.items() if k in times},
        "wall_seconds": times,
    }
    if "one" in times:
        report["ratio_to_one_run"] = {k: v / times["one"] for k, v in times.items()}
    acc = {}
    for name in ("auto", "off", "jobs2_group", "jobs2_group3", "jobs2"):
        if name in times:
            summary = json.loads((out / name / "consistency.json").read_text())
            acc[name] = {s: v["final_val_acc"] for s, v in summary["per_seed"].items()}
            result = json.loads((out / name / "seed1" / "result.json").read_text())
            report[f"{name}_trained_grouped"] = result.get("trained_grouped")
    if acc:
        report["final_val_acc"] = acc
    if "auto" in acc and "off" in acc:
        report["val_acc_difference_auto_minus_off"] = {s: acc["auto"][s] - acc["off"][s] for s in acc["off"]}
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
