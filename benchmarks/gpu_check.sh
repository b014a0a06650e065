#!/usr/bin/env bash
# The GPU path's check (issue 15, item 4), one script for a lent GPU machine:
#   1. the CUDA tests (tests/test_cuda_graph.py: the captured step replays the uncaptured one);
#   2. the flagship's 15 epochs, eager (--cuda-graph off) against graphed (auto), seed 1;
#   3. ten seeds (1-10) of the flagship, graphed, one after another.
# Every run holds out 5,000 validation images and reports the test split, as the CPU runs do;
# nothing here chooses anything. Writes log.txt and gpu_check.json under $OUT (default ./gpu-out).
#
#   OUT=/tmp/gpu bash benchmarks/gpu_check.sh     (a CPU smoke: EPOCHS=1 EXTRA='--limit-train 2000')
# Where mnistlite is not installed, PYTHONPATH=src (plus a folder of wheels for torchinfo) will do.
set -euo pipefail
OUT=${OUT:-gpu-out}
RUNS=${RUNS:-/tmp/gpu-runs}
PY=${PYTHON:-python3}
EPOCHS=${EPOCHS:-15}
EXTRA=${EXTRA:-}  # e.g. "--limit-train 2000" for a smoke run of this script
mkdir -p "$OUT"
rm -rf "$RUNS"
export PYTHONUNBUFFERED=1
ml() { "$PY" -m mnistlite "$@"; }
timed() {  # timed NAME CMD...: wall seconds of one whole process into $RUNS/NAME.seconds
  local name=$1; shift
  local t0; t0=$(date +%s.%N)
  "$@" || { echo "gpu_check: $name FAILED"; return 0; }
  awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f\n", b - a }' > "$RUNS/$name.seconds"
}
{
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
  "$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"
  "$PY" -m pytest -q -p no:cacheprovider tests/test_cuda_graph.py || echo "gpu_check: the CUDA tests FAILED"
  mkdir -p "$RUNS"
  # shellcheck disable=SC2206
  common=(--epochs "$EPOCHS" --val-size 5000 $EXTRA)
  timed eager ml train --model mnistlite_flagship "${common[@]}" --seed 1 --cuda-graph off --out "$RUNS/eager"
  timed graph ml train --model mnistlite_flagship "${common[@]}" --seed 1 --out "$RUNS/graph"
  timed seeds10 ml seeds mnistlite_flagship "${common[@]}" --seed-list 1,2,3,4,5,6,7,8,9,10 --out "$RUNS/seeds10"
} 2>&1 | tee "$OUT/log.txt"

"$PY" - "$RUNS" "$OUT/gpu_check.json" <<'EOF'
import json, statistics, sys
from pathlib import Path

runs, out = Path(sys.argv[1]), Path(sys.argv[2])
def result(d):
    if not (d / "result.json").is_file():
        return None
    r = json.loads((d / "result.json").read_text())
    keep = ("seed", "final_val_acc", "final_test_acc", "last3_min_test_acc", "wall_seconds", "device",
            "cuda_graph", "cuda_graph_reason")
    return {k: r.get(k) for k in keep}
report = {"wall_seconds": {p.stem: round(float(p.read_text()), 2) for p in runs.glob("*.seconds")}}
report["eager"], report["graph"] = result(runs / "eager"), result(runs / "graph")
seeds = [r for d in sorted((runs / "seeds10").glob("seed*"), key=lambda d: int(d.name[4:])) if (r := result(d))]
report["seeds10"] = seeds
for key in ("final_val_acc", "final_test_acc") if len(seeds) > 1 else ():
    xs = [s[key] for s in seeds]
    report[f"seeds10_{key}"] = {"mean": round(statistics.mean(xs), 3), "std": round(statistics.stdev(xs), 3),
                                "min": min(xs), "n": len(xs)}
out.write_text(json.dumps(report, indent=1) + "\n")
print(json.dumps(report, indent=1))
EOF
