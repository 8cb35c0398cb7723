#!/usr/bin/env bash
# The toy-suite runs of the method issues, in the order they are wanted (central claims first, seed by seed),
# as one worker of N: `bash benchmarks/runs/queue.sh I N [OUT]` (I = 0..N-1; run N of them side by
# side, one torch thread each). Cells land in OUT (default /work/scratch: videos and adapters
# included); finished cells are skipped, so the queue goes on from where it stopped. Copy the JSON
# here with `bash benchmarks/runs/queue.sh sync OUT`; on a new machine, `bash benchmarks/runs/queue.sh restore OUT`
# first puts the JSON kept here back into OUT.
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ "${1:-}" = "restore" ]; then
  # on a new machine: the finished cells' JSON back into OUT, so that the queue skips them
  out=${2:-/work/scratch}
  for run in toy-joint-e1 toy-suite-e1 toy-fewshot-e1; do
    [ -d "benchmarks/runs/$run" ] || continue
    mkdir -p "$out/$run" && cp -rn "benchmarks/runs/$run/." "$out/$run/"
  done
  exit 0
fi
if [ "${1:-}" = "sync" ]; then
  out=${2:-/work/scratch}
  for run in toy-joint-e1 toy-suite-e1 toy-fewshot-e1; do
    [ -d "$out/$run" ] || continue
    (cd "$out/$run" && find -L . -name '*.json' -not -path '*/adapter/*' -not -path '*/videos/*' -print0) |
      while IFS= read -r -d '' f; do mkdir -p "benchmarks/runs/$run/$(dirname "$f")"; cp "$out/$run/$f" "benchmarks/runs/$run/$f"; done
  done
  exit 0
fi
i=$1; n=$2; out=${3:-/work/scratch}
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 TQDM_DISABLE=1
suite() { python benchmarks/toy_suite.py --train-steps 400 --shard "$i/$n" "$@" || echo "queue: failed: $*" >&2; }
BASE="none,lora,motiondirector"
JOINT="$BASE,jointtuner,dualreal"
FEW="$BASE,synmotion"
FYM="follow_your_motion@sparse_stride=3"
SYN_ABL="synmotion@motion_residue=false@subject_residue=false@refiner=false@sample_alpha=1.0,synmotion@subject_residue=false@refiner=false@sample_alpha=1.0,synmotion@refiner=false@sample_alpha=1.0,synmotion@sample_alpha=1.0"
FYM_ABL="$FYM@motion_loss=none,follow_your_motion@sparse_stride=1,$FYM@adaptive_rope=false,$FYM@head_split=none"
# first the rows of each paper's central claim (seed 0, then 1, then 2), then the ablations and the
# remaining method x scenario rows
for seed in 0 1 2; do
  suite --suite toy --recipes "none,lora,timestep,motiondirector" --seed "$seed" --output "$out/toy-suite-e1/seed$seed"
done
for seed in 0 1 2; do
  suite --suite toy:joint --recipes "$JOINT" --seed "$seed" --output "$out/toy-joint-e1/seed$seed"
  suite --suite toy:fewshot --recipes "$FEW" --seed "$seed" --output "$out/toy-fewshot-e1/seed$seed"
  suite --suite toy --recipes "$FYM" --seed "$seed" --output "$out/toy-suite-e1/seed$seed"
done
# then each method issue's remaining rows, one issue at a time (all three seeds), the cheapest first:
# JointTuner, DualReal, Follow-Your-Motion, SynMotion
JT_ABL="jointtuner@gate=none,jointtuner@ait=false"
DR_ABL="dualreal@groups=2,dualreal@groups=3,dualreal@blocks_per_group=1,dualreal@controller=false,dualreal@alternation=nomask,dualreal@alternation=gradmask"
# one suite run per seed: each_seed SUITE RECIPES RUN (cells into OUT/RUN/seed<N>)
each_seed() { for seed in 0 1 2; do suite --suite "$1" --recipes "$2" --seed "$seed" --output "$out/$3/seed$seed"; done; }
each_seed toy:joint "$JT_ABL" toy-joint-e1
each_seed toy jointtuner toy-suite-e1
each_seed toy:joint "$DR_ABL" toy-joint-e1
each_seed toy dualreal toy-suite-e1
each_seed toy "$FYM_ABL" toy-suite-e1
each_seed toy:fewshot "$SYN_ABL" toy-fewshot-e1
each_seed toy synmotion toy-suite-e1
each_seed toy:fewshot "jointtuner,dualreal,$FYM" toy-fewshot-e1
# SynMotion's semantic-only arm (the embeddings without the motion LoRA), for its central claim
each_seed toy:fewshot "synmotion@motion_lora=false" toy-fewshot-e1
