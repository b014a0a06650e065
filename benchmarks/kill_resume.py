"""kill -9 and resume, K times, against an uninterrupted run of the same recipe: bit for bit.

    python benchmarks/kill_resume.py [--model mnistlite_flagship] [--epochs 8] [--limit-train 5000]
                                     [--kills 5] [--seed 39] [--threads 1] [--out DIR]

1. `mnistlite train` runs the recipe start to finish (the reference).
2. The same recipe runs again and is killed with SIGKILL K times. Each process (the first a fresh
   `train`, then `train --resume`) is let run until it has saved a new epoch. Then it is killed
   after a seeded random delay of up to one epoch's time (the reference's median), so the kill
   lands in the next epoch's training, its evaluation or its checkpoint write. Each process saves
   about one epoch: --epochs must exceed K, with a margin (default 8 for K = 5).
3. A last `--resume` finishes the run. metrics.csv (every column but `seconds`) and model.pt
   (every tensor with torch.equal; the zip members' bytes but torch's random serialization id and
   the pickle of their layout) are compared with the reference's.

For each kill it prints the moment (seconds after the process started and after its first save),
where it landed (from the last line of log.txt, or inside a checkpoint write when the temporary
file is there, not yet renamed) and the epoch checkpoint.pt holds after it. The last line is the
verdict; the exit code is 0 only when bit-identical.
Needs MNIST ($MNISTLITE_DATA or --data-dir) and PYTHONPATH=src, as the other scripts.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import random
import signal
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import torch

from mnistlite.engine import load_checkpoint
from mnistlite.engine import rundir as rd


def saved_epoch(run: Path) -> int:
    return int(load_checkpoint(run / rd.CHECKPOINT)["epoch"]) if (run / rd.CHECKPOINT).exists() else 0


def checkpoint_id(run: Path) -> int:
    """Changes with every checkpoint write (each renames a new file over the old): cheaper to poll
    than loading it."""
    try:
        return (run / rd.CHECKPOINT).stat().st_ino
    except FileNotFoundError:
        return 0


def mnistlite(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "mnistlite", *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )


def finish(proc: subprocess.Popen[str], what: str) -> None:
    _, err = proc.communicate()
    if proc.returncode != 0:
        sys.exit(f"{what} failed (exit {proc.returncode}): {err.strip()}")


def phase(run: Path, epochs: int) -> str:
    """Where a killed process was, from the last line of its log (written and flushed line by line)."""
    lines = (run / rd.LOG).read_text().splitlines()
    k = int(next(line for line in reversed(lines) if line.startswith("Epoch ")).split()[1])
    if (run / f".{rd.CHECKPOINT}.tmp").exists():
        return f"inside epoch {k}'s checkpoint write"
    if lines[-1].startswith("Epoch "):
        return f"in epoch {k}'s training"
    if lines[-1].startswith("Train loss"):
        return f"in epoch {k}'s evaluation"
    if saved_epoch(run) < k:
        return f"after epoch {k}'s evaluation, before its checkpoint write"
    return "writing the final files" if k == epochs else f"just after epoch {k} was saved"


def rows_without_seconds(run: Path) -> list[dict[str, str]]:
    with open(run / rd.METRICS, newline="") as f:
        return [{k: v for k, v in r.items() if k != "seconds"} for r in csv.DictReader(f)]


def zip_members(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as z:
        return {n: z.read(n) for n in z.namelist() if not n.endswith(("/.data/serialization_id", "/data.pkl"))}


def tensors(obj, prefix: str = ""):
    """Every tensor in a loaded model.pt, by its path; other leaves as themselves."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from tensors(v, f"{prefix}{k}.")
    else:
        yield prefix.rstrip("."), obj


def compare(ref: Path, run: Path) -> list[str]:
    """What differs between the two finished runs (empty: bit-identical)."""
    diffs = []
    if rows_without_seconds(ref) != rows_without_seconds(run):
        diffs.append("metrics.csv differs")
    a, b = (dict(tensors(torch.load(r / rd.MODEL, weights_only=True))) for r in (ref, run))
    if a.keys() != b.keys():
        diffs.append(f"model.pt entries differ: {sorted(a.keys() ^ b.keys())[:5]}")
    for k in sorted(a.keys() & b.keys()):
        x, y = a[k], b[k]
        same = torch.equal(x, y) if isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor) else x == y
        if not same:
            diffs.append(f"model.pt {k} differs")
    if zip_members(ref / rd.MODEL) != zip_members(run / rd.MODEL):
        diffs.append("model.pt storage bytes differ")
    return diffs


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="mnistlite_flagship")
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--limit-train", type=int, default=5000)
    ap.add_argument("--kills", type=int, default=5)
    ap.add_argument("--seed", type=int, default=39, help="seeds the kill moments (default 39)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--data-dir", help="data root holding MNIST/raw (else $MNISTLITE_DATA)")
    ap.add_argument("--out", help="work folder (default: a new temporary folder, kept)")
    a = ap.parse_args()
    if a.kills < 1 or a.epochs < a.kills + 1:
        ap.error(f"--kills must be at least 1 and --epochs at least kills + 1 = {a.kills + 1}")
    work = Path(a.out) if a.out else Path(tempfile.mkdtemp(prefix="kill_resume-"))
    ref, run = work / "ref", work / "run"
    if ref.exists() or run.exists():
        ap.error(f"{work} already holds ref/ or run/; choose another --out")
    rng = random.Random(a.seed)
    recipe = ["--model", a.model, "--epochs", str(a.epochs), "--limit-train", str(a.limit_train)]
    recipe += ["--threads", str(a.threads), "--seed", "1", "--no-progress"]
    recipe += ["--data-dir", a.data_dir] if a.data_dir else []

    print(f"# command: python benchmarks/kill_resume.py {' '.join(sys.argv[1:])}".rstrip())
    print(f"# torch {torch.__version__}, {platform.machine()}, {os.cpu_count()} cores; work folder {work}")
    print(f"# recipe: mnistlite train {' '.join(recipe)}")
    t0 = time.monotonic()
    finish(mnistlite("train", *recipe, "--out", str(ref)), "the reference run")
    epoch_s = sorted(float(r["seconds"]) for r in rd.read_metrics(ref / rd.METRICS))[a.epochs // 2]
    print(f"reference: {a.epochs} epochs uninterrupted in {time.monotonic() - t0:.1f} s (median epoch {epoch_s:.2f} s)")

    for k in range(1, a.kills + 1):
        args = ["train", *recipe, "--out", str(run)] if k == 1 else ["train", "--resume", str(run), "--no-progress"]
        before, first = saved_epoch(run), checkpoint_id(run)
        started = time.monotonic()
        proc = mnistlite(*args)
        while checkpoint_id(run) == first:  # this process saves an epoch of its own first
            if proc.poll() is not None:
                finish(proc, f"kill {k}: the process ended before it saved an epoch;")
            time.sleep(0.02)
        saved_at = time.monotonic()
        time.sleep(delay := rng.uniform(0.0, epoch_s))
        if proc.poll() is not None:
            sys.exit(f"kill {k}: the process finished the run before the kill; use more --epochs")
        killed_at = time.monotonic()
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        where = phase(run, a.epochs)
        print(
            f"kill {k}: {killed_at - started:5.2f} s after start ({' '.join(args[:2])} ...), "
            f"{delay:.2f} s drawn after its first save ({killed_at - saved_at:.2f} s measured), "
            f"exit {proc.returncode}: "
            f"{where}; checkpoint.pt holds epoch {saved_epoch(run)} (was {before})"
        )

    resumed_from = saved_epoch(run)
    finish(mnistlite("train", "--resume", str(run), "--no-progress"), "the final --resume")
    print(f"final --resume: from epoch {resumed_from}, exit 0; {time.monotonic() - t0:.0f} s in all")
    diffs = compare(ref, run)
    n = sum(isinstance(t, torch.Tensor) for _, t in tensors(torch.load(run / rd.MODEL, weights_only=True)))
    if diffs:
        print(f"verdict: DIFFERENT after {a.kills} kills: {'; '.join(diffs)}")
        return 1
    print(
        f"verdict: BIT-IDENTICAL after {a.kills} SIGKILLs and resumes: metrics.csv ({a.epochs} rows, all columns "
        f"but seconds) and model.pt ({n} tensors, torch.equal, and their bytes) equal the uninterrupted run's"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
