#!/usr/bin/env bash
# Ablation of the policy recipe (issue "A Gato policy that stacks"): every arm trains on the same
# episode store for the same number of samples (STEPS x 24 one-timestep windows; BC-IMP the same
# samples in batches of 32), and is evaluated on the same EVAL_EPISODES training-distribution
# seeds starting at EVAL_SEED, which no training run ever used (training data: seeds 1000000+).
# Resumable: a finished run or report is kept; run it again after an interruption.
# Never run two of these steps at once on 2 cores.
#
#   bash scripts/ablation.sh                    # every arm
#   ARMS="all paper" bash scripts/ablation.sh   # some arms
set -euo pipefail
cd "$(dirname "$0")/.."
G=.venv/bin/gato-robot
STORE=${STORE:-../data/mujoco-dart-g}    # sim generate --episodes 700 --seed 1000000 --noise 0.2 --gripper-noise 0.01
RUNS=${RUNS:-../runs/ablation}       # outside the work tree
OUT=${OUT:-results/ablation}
STEPS=${STEPS:-5000}
EVAL_EPISODES=${EVAL_EPISODES:-50}
EVAL_SEED=${EVAL_SEED:-5000000}
ARMS=${ARMS:-"all all-gf all-novel all-novel-gf all-novel-gf-240k all-novel-dagger1 bc-imp paper"}
mkdir -p "$OUT"

[ -d "$STORE" ] || $G sim generate --out "$STORE" --engine mujoco --triplets train --episodes 700 --seed 1000000 \
  --noise 0.2 --gripper-noise 0.01

flags() {  # the recipe of each arm; "paper" is Gato's, "all" every change, "all-novel" also without joint velocities
  case $1 in
    all)          echo "--image-encoder conv_stem --action-loss hl_gauss --standardize-proprio --random-shift 4" ;;
    all-gf)       echo "--image-encoder conv_stem --action-loss hl_gauss --standardize-proprio --random-shift 4 --gripper-first" ;;
    all-novel-gf) echo "--image-encoder conv_stem --action-loss hl_gauss --standardize-proprio --random-shift 4 --no-joint-velocities --gripper-first" ;;
    all-novel)    echo "--image-encoder conv_stem --action-loss hl_gauss --standardize-proprio --random-shift 4 --no-joint-velocities" ;;
    paper)        echo "--image-encoder patch_resnet --action-loss vocab_ce" ;;
    *) echo "unknown arm $1" >&2; exit 2 ;;
  esac
}

for arm in $ARMS; do
  printf '\n== %s\n' "$arm"
  if [ "$arm" = all-novel-dagger1 ]; then  # one DAgger round on top of all-novel: the policy drives, the expert labels
    $G sim dagger --store "$STORE-dagger1" --policy "$RUNS/all-novel/checkpoint" --episodes 120 --seed 6000000 --temperature 1
    mkdir -p "$STORE-merged1" && ln -sf "$(realpath "$STORE")"/episode-*.h5 "$(realpath "$STORE-dagger1")"/episode-*.h5 "$STORE-merged1/"
    [ -s "$RUNS/$arm/summary.json" ] || $G train --store "$STORE-merged1" --run "$RUNS/$arm" \
      --init-from "$RUNS/all-novel/checkpoint" --preset cpu-small --steps 2000 --batch-size 24 --window 1 --lr 5e-4 \
      --warmup 100 --checkpoint-every 500 --no-patch-jitter $(flags all-novel)
    policy=$RUNS/$arm/checkpoint
  elif [ "$arm" = all-novel-gf-240k ]; then  # all-novel-gf trained for another 120k samples (new cosine cycle)
    [ -s "$RUNS/$arm/summary.json" ] || $G train --store "$STORE" --run "$RUNS/$arm" \
      --init-from "$RUNS/all-novel-gf/checkpoint" --preset cpu-small --steps "$STEPS" --batch-size 24 --window 1 --lr 5e-4 \
      --warmup 100 --checkpoint-every 500 --no-patch-jitter $(flags all-novel-gf)
    policy=$RUNS/$arm/checkpoint
  elif [ "$arm" = bc-imp ]; then
    [ -s "$RUNS/bc-imp/summary.json" ] || $G train-baseline --store "$STORE" --out "$RUNS/bc-imp" \
      --steps $((STEPS * 24 / 32)) --batch-size 32 --random-shift 4
    policy=$RUNS/bc-imp
  else
    # shellcheck disable=SC2046
    [ -s "$RUNS/$arm/summary.json" ] || $G train --store "$STORE" --run "$RUNS/$arm" --preset cpu-small \
      --steps "$STEPS" --batch-size 24 --window 1 --lr 1e-3 --warmup 200 --checkpoint-every 500 --no-patch-jitter $(flags "$arm")
    policy=$RUNS/$arm/checkpoint
  fi
  [ -s "$OUT/$arm-sampled.json" ] || $G sim eval --engine mujoco --policy "$policy" --triplets train \
    --episodes "$EVAL_EPISODES" --seed "$EVAL_SEED" --temperature 1 --report "$OUT/$arm-sampled.json"
  if [ "$arm" = all ]; then  # the ordinal loss's decoding, beside sampling
    [ -s "$OUT/$arm-expectation.json" ] || $G sim eval --engine mujoco --policy "$policy" --triplets train \
      --episodes "$EVAL_EPISODES" --seed "$EVAL_SEED" --temperature 1 --expectation companded --report "$OUT/$arm-expectation.json"
  fi
  if [ "$arm" = all-gf ] || [ "$arm" = all-novel-gf ] || [ "$arm" = all-novel-gf-240k ]; then  # deterministic: motion by expectation, gripper by argmax
    [ -s "$OUT/$arm-expectation-greedy.json" ] || $G sim eval --engine mujoco --policy "$policy" --triplets train \
      --episodes "$EVAL_EPISODES" --seed "$EVAL_SEED" --temperature 0 --expectation companded --report "$OUT/$arm-expectation-greedy.json"
  fi
done
.venv/bin/python scripts/ablation_table.py --runs "$RUNS" --reports "$OUT" --out results/ablation.md
