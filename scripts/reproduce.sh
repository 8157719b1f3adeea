#!/usr/bin/env bash
# Reproduce the two robotics results of Gato (Reed et al. 2022, Sec. 5.2) in our simulations:
#   (a) skill generalization: Gato vs the BC-IMP specialist on the held-out test triplets,
#       MuJoCo and PyBullet, plus cross-engine (trained in MuJoCo, evaluated in PyBullet);
#   (b) few-shot fine-tuning curves on a held-out triplet, pretrained vs from scratch.
# Sized for a 2-core CPU (about 2 hours end to end). Every step is resumable: data generation
# skips committed episodes, training resumes from its checkpoint, finished evaluations and sweep
# rows are kept. Run it again after an interruption and it continues. Never run two of these
# steps at once on 2 cores: they share the cores and each slows the other several-fold.
#
#   bash scripts/reproduce.sh                               # the recorded configuration
#   STEPS=20000 DEVICE=cuda bash scripts/reproduce.sh       # the same recipe, longer, on a GPU
#   WINDOW=3 FIRST_STEPS=5000 STEPS=5000 RUN=runs/gato-cpu-small TAG= bash scripts/reproduce.sh
#       the previous recipe (3-timestep windows; it copies its own actions, results/diagnostics.md)
set -euo pipefail
cd "$(dirname "$0")/.."
G=.venv/bin/gato-robot
GENERATE=${GENERATE:-1}                  # 0: use data/mujoco-dart as it is
FIRST_STEPS=${FIRST_STEPS:-6000}         # Gato: a first cosine cycle of this many steps (24 timesteps each),
STEPS=${STEPS:-16000}                    # then resumed to STEPS (the schedule restarts for the new length)
WINDOW=${WINDOW:-1}                      # timesteps per training window (1: no history, results/diagnostics.md)
TAG=${TAG:--sampled}                     # Gato report names: results/gato-ENGINE-SPLIT$TAG.json
BC_STEPS=${BC_STEPS:-3750}               # BC-IMP steps of 32 timesteps: 120k samples (Gato sees 384k)
DEVICE=${DEVICE:-cpu}
TRAIN_EPISODES=${TRAIN_EPISODES:-100}    # training-distribution evaluation
MUJOCO_EPISODES=${MUJOCO_EPISODES:-20}   # per test triplet
PYBULLET_EPISODES=${PYBULLET_EPISODES:-10}  # per test triplet (TinyRenderer: ~30 steps/s)
FEWSHOT_TRIPLET=${FEWSHOT_TRIPLET:-test-3-prism}
FEWSHOT_COUNTS=${FEWSHOT_COUNTS:-0,10,25,50,100}
FEWSHOT_STEPS=${FEWSHOT_STEPS:-300}
FEWSHOT_EVAL=${FEWSHOT_EVAL:-20}
RUN=${RUN:-runs/gato-w1}                 # a new run directory for another WINDOW
GATO=$RUN/checkpoint
BC=runs/bc-imp
mkdir -p results runs

step() { printf '\n== %s\n' "$*"; }
have() { [ -s "$1" ]; }
evaluate() {  # evaluate NAME POLICY ENGINE TRIPLETS EPISODES [extra args]
  local name=$1 policy=$2 engine=$3 triplets=$4 episodes=$5; shift 5
  have "results/$name.json" || $G sim eval --engine "$engine" --policy "$policy" --triplets "$triplets" \
    --episodes "$episodes" --report "results/$name.json" "$@" | tee "results/$name.txt"
}

if [ "$GENERATE" = 1 ]; then
  step "1. expert data: 600 MuJoCo episodes on training triplets (DART noise 0.2; seeds disjoint from evaluation)"
  $G sim generate --out data/mujoco-dart --engine mujoco --triplets train --episodes 600 --seed 1000000 --noise 0.2
fi

step "2. Gato (cpu-small) behaviour cloning"
for steps in "$FIRST_STEPS" "$STEPS"; do
  $G train --store data/mujoco-dart --run "$RUN" --preset cpu-small --steps "$steps" --batch-size $((24 / WINDOW)) \
    --window "$WINDOW" --lr 1e-3 --warmup 200 --checkpoint-every 500 --no-patch-jitter --device "$DEVICE" --warm-restart
done
cp "$RUN/learning_curve.png" results/gato-cpu-small-learning-curve.png

step "3. BC-IMP specialist on the same episodes"
have "$BC/model.safetensors" || $G train-baseline --store data/mujoco-dart --out "$BC" --steps "$BC_STEPS"

step "4. evaluations (evaluation seeds start at 0; training data used seeds from 1000000)"
evaluate "gato-mujoco-train$TAG" "$GATO" mujoco train "$TRAIN_EPISODES" --videos results/videos/gato
evaluate bc-imp-mujoco-train "$BC" mujoco train "$TRAIN_EPISODES"
evaluate "gato-mujoco-test$TAG" "$GATO" mujoco test "$MUJOCO_EPISODES" --videos results/videos/gato
evaluate bc-imp-mujoco-test "$BC" mujoco test "$MUJOCO_EPISODES"
evaluate "gato-pybullet-test$TAG" "$GATO" pybullet test "$PYBULLET_EPISODES"
evaluate bc-imp-pybullet-test "$BC" pybullet test "$PYBULLET_EPISODES"

step "5. skill-generalization table"
$G sim table --out results/skill-generalization.md \
  --column "Gato, MuJoCo=results/gato-mujoco-test$TAG.json" --column "BC-IMP, MuJoCo=results/bc-imp-mujoco-test.json" \
  --column "Gato, MuJoCo->PyBullet=results/gato-pybullet-test$TAG.json" \
  --column "BC-IMP, MuJoCo->PyBullet=results/bc-imp-pybullet-test.json"
$G sim table --out results/training-distribution.md \
  --column "Gato=results/gato-mujoco-train$TAG.json" --column "BC-IMP=results/bc-imp-mujoco-train.json"

step "6. few-shot fine-tuning on $FEWSHOT_TRIPLET (held out of pretraining)"
$G sim generate --out "data/mujoco-$FEWSHOT_TRIPLET" --engine mujoco --triplets "$FEWSHOT_TRIPLET" --episodes 120 \
  --seed 2000000 --noise 0.2
$G finetune-sweep --pretrained "$GATO" --store "data/mujoco-$FEWSHOT_TRIPLET" --triplet "$FEWSHOT_TRIPLET" \
  --out "results/fewshot$TAG" --runs "runs/fewshot$TAG" --counts "$FEWSHOT_COUNTS" --steps "$FEWSHOT_STEPS" --eval-episodes "$FEWSHOT_EVAL"
