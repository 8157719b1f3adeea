#!/usr/bin/env bash
# Round 7 of the recipe ablation (results/ablation-history.md): one DAgger round with the state-based labeller from the
# shipped recipe (all-novel-gf-global), 96 episodes, then 48k samples on the union; evaluated on the
# round-5 seeds. Paths as run on 2026-12-03 (data and runs outside the work tree).
set -euo pipefail
cd "$(dirname "$0")/.."
export MUJOCO_GL=${MUJOCO_GL:-egl}
G=.venv/bin/gato-robot
BASE=../runs/ablation/all-novel-gf-global/checkpoint
$G sim dagger --store ../data/dagger-state1 --policy $BASE --episodes 96 --seed 6100000
mkdir -p ../data/merged-state1 && ln -sf "$(realpath ../data/mujoco-dart-g)"/episode-*.h5 "$(realpath ../data/dagger-state1)"/episode-*.h5 ../data/merged-state1/
[ -s ../runs/dagger-state1/summary.json ] || $G train --store ../data/merged-state1 --run ../runs/dagger-state1 --init-from $BASE --preset cpu-small --steps 2000 --batch-size 24 --window 1 --lr 5e-4 --warmup 100 --checkpoint-every 500 --no-patch-jitter --heldout-store ../data/heldout --image-encoder conv_stem_global --action-loss hl_gauss --standardize-proprio --random-shift 4 --no-joint-velocities --gripper-first
$G sim eval --policy ../runs/dagger-state1/checkpoint --triplets train --episodes 50 --seed 5000000 --report ../runs/dagger-state1-eval.json
echo dagger2 done
