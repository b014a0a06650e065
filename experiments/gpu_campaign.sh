#!/usr/bin/env bash
# The multi-seed runs behind docs/results/, as run on a rented GPU machine
# (one H100, 16 CPU cores; see docs/accuracy.md). Every step is a plain mnistlite
# command; `table` and `tune` skip runs already finished, so the script resumes.
#
#   MNISTLITE_DATA=/path/to/data bash experiments/gpu_campaign.sh [SECONDS_PER_STEP]
#
# Several commands share the GPU at once: each 15-epoch run of a sub-8k model
# keeps a CPU core busy launching small kernels, so 16 runs side by side use the
# machine far better than one after the other.
set -u
limit=${1:-400}
m="python3 -m mnistlite"
out=${OUT:-runs/gpu_campaign}
mkdir -p "$out"

# 1. Speed on the GPU, alone on it (BENCH=0 skips it).
[ "${BENCH:-1}" = 0 ] || $m bench --device cuda --model mnistlite8k_model3 --baseline-batches 0 --json > "$out/bench_model3_cuda.json"
[ "${BENCH:-1}" = 0 ] || $m bench --device cuda --model mnistlite_flagship --baseline-batches 0 --full --json > "$out/bench_flagship_cuda.json"

# 2. Every model's seeds as its own command, all at once: `table` trains its
#    models one after another, which leaves most of the machine idle. One CPU
#    thread per run; the GPU does the arithmetic.
seeds() {  # seeds MODEL FOLDER
  timeout "$limit" $m seeds "$1" --seeds 5 --jobs 5 --threads 1 --device cuda --out "$2/$1" \
    > "$out/seeds_$1.log" 2>&1 &
}
for model in mnistlite8k_model1 mnistlite8k_model2 mnistlite8k_model3 mnist8k_model3 lowparam_7544 \
             progression_model1 progression_model2 efficientmnist_20k; do
  seeds $model docs/results/reproduction
done
for model in mnistlite_flagship mnistlite_frontier mnistlite_2k mnistlite_3k mnistlite_20k; do
  seeds $model docs/results/ladder
done
timeout "$limit" $m tune experiments/tuning/frontier_round2.toml --device cuda --jobs 4 --threads 1 \
  --out docs/results/tuning/frontier_round2 > "$out/tune_frontier_round2.log" 2>&1 &
wait

# 3. The tables, from the finished runs (no training).
$m table --tag seed --no-train --out docs/results/reproduction --markdown docs/results/reproduction.md
$m table --tag ladder --no-train --out docs/results/ladder --markdown docs/results/ladder.md
