#!/usr/bin/env bash
# Reproduce the two robotics results of Gato (Reed et al. 2022, Sec. 5.2) in our simulations:
#   (a) skill generalization: Gato vs the BC-IMP specialist on the held-out test triplets,
#       MuJoCo and PyBullet, plus cross-engine (trained in MuJoCo, evaluated in PyBullet);
#   (b) few-shot fine-tuning curves on a held-out triplet, pretrained vs from scratch.
# Sized for a 2-core CPU (about 2.5 hours end to end). Every step is resumable: data generation
# skips committed episodes, training resumes from its checkpoint, finished evaluations and sweep
# rows are kept. Run it again after an interruption and it continues.
#
#   bash scripts/reproduce.sh            # everything
#   STEPS=12000 DEVICE=cuda bash scripts/reproduce.sh   # the same recipe, longer, on a GPU
set -euo pipefail
cd "$(dirname "$0")/.."
G=.venv/bin/gato-robot
STEPS=${STEPS:-6000}
DEVICE=${DEVICE:-cpu}
EVAL_EPISODES=${EVAL_EPISODES:-20}   # per test triplet
FEWSHOT_TRIPLET=${FEWSHOT_TRIPLET:-test-3-prism}
mkdir -p results runs

step() { printf '\n== %s\n' "$*"; }
have() { [ -s "$1" ]; }

step "1. expert data: 600 MuJoCo episodes on training triplets (DART noise 0.2; seeds disjoint from evaluation)"
$G sim generate --out data/mujoco-dart --engine mujoco --triplets train --episodes 600 --seed 1000000 --noise 0.2

step "2. Gato (cpu-small) behaviour cloning"
$G train --store data/mujoco-dart --run runs/gato-cpu-small --preset cpu-small --steps "$STEPS" --batch-size 8 \
  --window 3 --lr 1e-3 --warmup 200 --checkpoint-every 500 --no-patch-jitter --device "$DEVICE"

step "3. BC-IMP specialist on the same episodes"
have runs/bc-imp/model.safetensors || $G train-baseline --store data/mujoco-dart --out runs/bc-imp --steps 1500

step "4. evaluations (training distribution: seeds 0.., never used for data)"
have results/gato-mujoco-train.json || $G sim eval --engine mujoco --policy runs/gato-cpu-small/checkpoint \
  --triplets train --episodes 100 --report results/gato-mujoco-train.json --videos results/videos/gato
for engine in mujoco pybullet; do
  have "results/gato-$engine-test.json" || $G sim eval --engine "$engine" --policy runs/gato-cpu-small/checkpoint \
    --triplets test --episodes "$EVAL_EPISODES" --report "results/gato-$engine-test.json"
  have "results/bc-imp-$engine-test.json" || $G sim eval --engine "$engine" --policy runs/bc-imp \
    --triplets test --episodes "$EVAL_EPISODES" --report "results/bc-imp-$engine-test.json"
done
have results/bc-imp-mujoco-train.json || $G sim eval --engine mujoco --policy runs/bc-imp --triplets train \
  --episodes 100 --report results/bc-imp-mujoco-train.json

step "5. skill-generalization table"
$G sim table --out results/skill-generalization.md \
  --column "Gato, MuJoCo=results/gato-mujoco-test.json" --column "BC-IMP, MuJoCo=results/bc-imp-mujoco-test.json" \
  --column "Gato, MuJoCo->PyBullet=results/gato-pybullet-test.json" \
  --column "BC-IMP, MuJoCo->PyBullet=results/bc-imp-pybullet-test.json"

step "6. few-shot fine-tuning on $FEWSHOT_TRIPLET (held out of pretraining)"
$G sim generate --out "data/mujoco-$FEWSHOT_TRIPLET" --engine mujoco --triplets "$FEWSHOT_TRIPLET" --episodes 120 \
  --seed 2000000 --noise 0.2
$G finetune-sweep --pretrained runs/gato-cpu-small/checkpoint --store "data/mujoco-$FEWSHOT_TRIPLET" \
  --triplet "$FEWSHOT_TRIPLET" --out results/fewshot --counts 0,10,25,50,100 --steps 300 --eval-episodes 20
