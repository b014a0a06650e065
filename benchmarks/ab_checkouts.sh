#!/usr/bin/env bash
# The flagship's training step in two checkouts of mnistlite, alternating in one sitting, so that a
# restructuring can show it kept the speed: ms per step from `mnistlite bench` (300 steps, no baseline).
#   benchmarks/ab_checkouts.sh OLD_SRC NEW_SRC [ROUNDS]   (e.g. a `git worktree` of the old commit's src/)
set -euo pipefail
usage="usage: ab_checkouts.sh OLD_SRC NEW_SRC [ROUNDS] (each SRC a folder holding mnistlite/)"
if [ $# -lt 2 ] || [ ! -d "$1/mnistlite" ] || [ ! -d "$2/mnistlite" ] || ! [[ "${3:-6}" =~ ^[1-9][0-9]*$ ]]; then
  echo "$usage" >&2
  exit 2
fi
old=$1 new=$2
python=${PYTHON:-python3}
out=$(mktemp -d)
for r in $(seq 1 "${3:-6}"); do
  for side in old new; do
    src=$old; [ "$side" = new ] && src=$new
    PYTHONPATH=$src "$python" -m mnistlite bench --model mnistlite_flagship --json --no-precision --no-paths \
      --no-epoch --baseline-batches 0 --steps 300 > "$out/$side.json"
    "$python" -c "import json,sys; d=json.load(open(sys.argv[1])); print(sys.argv[2], sys.argv[3], \
round(d['batch_size'] / d['train_images_per_s'] * 1000, 3), 'ms/step', d['train_bn_fusion'])" "$out/$side.json" "$side" "$r"
  done
done
rm -r "$out"
