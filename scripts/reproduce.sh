#!/usr/bin/env bash
# Reproduce the shipped policies and the two robotics results of Gato (Reed et al. 2022, Sec. 5.2)
# in our simulations, from nothing:
#   (a) Gato vs the BC-IMP specialist on the training distribution and the held-out test triplets,
#       MuJoCo, plus cross-engine (trained in MuJoCo, evaluated in PyBullet);
#   (b) few-shot fine-tuning curves on two held-out triplets, pretrained vs from scratch;
#   (c) one Gato over two data sources: trained on MuJoCo and PyBullet expert episodes, evaluated in both.
# The recipe is the ablation's winner (results/ablation-2026-12-05.md, results/ablation-history.md, "Round 13"):
# conv_stem_global encoder, HL-Gauss ordinal loss, action dimensions predicted from the observation
# alone (query action inputs), standardized proprioception, random shift, no joint velocities,
# gripper token first; 120k samples; BC-IMP the same 120k samples (and 240k, the same wall time). Evaluations decode as shipped
# (motion by the physical expectation of the bins, gripper by argmax).
# Every step is resumable: data generation skips committed episodes, training resumes from its
# checkpoint, finished evaluations and sweep rows are kept. Run it again after an interruption.
# Data and run directories live outside the work tree (DATA, RUNS). Never run two of these steps at
# once on 2 cores: they share the cores and each slows the other several-fold.
#
#   bash scripts/reproduce.sh                      # the shipped configuration (~6 h on 2 cores; the few-shot sweeps ~1.5 h, step 7 (two engines) ~1.3 h, BC-IMP at 240k ~0.5 h of it)
#   STEPS=20000 DEVICE=cuda bash scripts/reproduce.sh   # the same recipe, longer, on a GPU
set -euo pipefail
cd "$(dirname "$0")/.."
G=.venv/bin/gato-robot
DATA=${DATA:-../data}
RUNS=${RUNS:-../runs/reproduce}
STORE=$DATA/mujoco-dart-g
HELDOUT=$DATA/heldout
STEPS=${STEPS:-5000}                     # Gato steps of 24 one-timestep windows: 120k samples
BC_STEPS=${BC_STEPS:-3750}               # BC-IMP steps of 32 timesteps: the same 120k samples
DAGGER=${DAGGER:-0}                      # 1: one DAgger round on top (200 episodes driven by the policy,
                                         # labelled by the expert), then STEPS more samples on the union;
                                         # measured 25/50 -> 1/50 (results/ablation-history.md round 6), so off for the shipped policy
DEVICE=${DEVICE:-cpu}
TRAIN_EPISODES=${TRAIN_EPISODES:-100}    # training-distribution evaluation, seeds from TRAIN_SEED
TRAIN_SEED=${TRAIN_SEED:-8000000}        # no training, DAgger or ablation run used these
TEST_EPISODES=${TEST_EPISODES:-30}       # per held-out test triplet, seeds from 0
PYBULLET_EPISODES=${PYBULLET_EPISODES:-20}  # per test triplet (TinyRenderer: ~9 s per episode on 2 cores)
PYBULLET_DATA=${PYBULLET_DATA:-256}      # PyBullet expert episodes for the two-engine Gato (~6 s each on 2 cores)
TWO_ENGINE=${TWO_ENGINE:-results/two-engine}  # its reports
FEWSHOT_TRIPLETS=${FEWSHOT_TRIPLETS:-"test-4-flat test-1-slanted"}  # the two held-out triplets Gato stacks least
FEWSHOT_COUNTS=${FEWSHOT_COUNTS:-0,10,25,50,100}
FEWSHOT_BASE_STEPS=${FEWSHOT_BASE_STEPS:-200}       # steps rule: 200 + 10 x N optimizer steps of 24 timesteps,
FEWSHOT_STEPS_PER_EPISODE=${FEWSHOT_STEPS_PER_EPISODE:-10}  # both arms (sim/fewshot.py StepsRule)
FEWSHOT_EVAL=${FEWSHOT_EVAL:-30}
RECIPE="--image-encoder conv_stem_global --action-loss hl_gauss --action-inputs query --standardize-proprio \
  --random-shift 4 --no-joint-velocities --gripper-first"
RESULTS=${RESULTS:-results/shipped}     # reports of the shipped policies (earlier ones: results/*.json)
BC=$RUNS/bc-imp
mkdir -p "$RESULTS" "$RUNS"

step() { printf '\n== %s\n' "$*"; }
have() { [ -s "$1" ]; }
evaluate() {  # evaluate NAME POLICY ENGINE TRIPLETS EPISODES [extra args]; the shipped decoding is the default
  local name=$1 policy=$2 engine=$3 triplets=$4 episodes=$5; shift 5
  have "$RESULTS/$name.json" || $G sim eval --engine "$engine" --policy "$policy" --triplets "$triplets" \
    --episodes "$episodes" --report "$RESULTS/$name.json" "$@" | tee "$RESULTS/$name.txt"
}

step "1. expert data: 700 MuJoCo episodes on training triplets (DART noise 0.2, gripper flips; seeds from 1000000)"
$G sim generate --out "$STORE" --engine mujoco --triplets train --episodes 700 --seed 1000000 --noise 0.2 \
  --gripper-noise 0.01
$G sim generate --out "$HELDOUT" --engine mujoco --triplets train --episodes 24 --seed 7000000 --noise 0.2 \
  --gripper-noise 0.01

step "2. Gato (cpu-small) behaviour cloning, 120k samples"
# shellcheck disable=SC2086
$G train --store "$STORE" --run "$RUNS/gato" --preset cpu-small --steps "$STEPS" --batch-size 24 --window 1 \
  --lr 1e-3 --warmup 200 --checkpoint-every 500 --no-patch-jitter --heldout-store "$HELDOUT" --device "$DEVICE" $RECIPE
GATO=$RUNS/gato/checkpoint
if [ "$DAGGER" = 1 ]; then
  step "2b. one DAgger round: the policy drives as deployed, the expert labels every state (seeds from 6000000)"
  $G sim dagger --store "$STORE-dagger1" --policy "$GATO" --episodes 200 --seed 6000000
  mkdir -p "$STORE-merged1"
  ln -sf "$(realpath "$STORE")"/episode-*.h5 "$(realpath "$STORE-dagger1")"/episode-*.h5 "$STORE-merged1/"
  # shellcheck disable=SC2086
  $G train --store "$STORE-merged1" --run "$RUNS/gato-dagger1" --init-from "$GATO" --preset cpu-small \
    --steps "$STEPS" --batch-size 24 --window 1 --lr 5e-4 --warmup 100 --checkpoint-every 500 --no-patch-jitter \
    --heldout-store "$HELDOUT" --device "$DEVICE" $RECIPE
  GATO=$RUNS/gato-dagger1/checkpoint
fi

step "3. BC-IMP specialist on the same expert episodes, 120k samples"
have "$BC/model.safetensors" || $G train-baseline --store "$STORE" --out "$BC" --steps "$BC_STEPS" --batch-size 32 \
  --random-shift 4
step "3b. BC-IMP for twice the samples: the wall time of one Gato run on 2 cores (shipped as bc-imp-240k)"
have "$BC-240k/model.safetensors" || $G train-baseline --store "$STORE" --out "$BC-240k" --steps $((BC_STEPS * 2)) \
  --batch-size 32 --random-shift 4

step "4. evaluations (test triplets from seed 0, training distribution from seed $TRAIN_SEED)"
evaluate gato-mujoco-train "$GATO" mujoco train "$TRAIN_EPISODES" --seed "$TRAIN_SEED"
evaluate bc-imp-mujoco-train "$BC" mujoco train "$TRAIN_EPISODES" --seed "$TRAIN_SEED"
evaluate gato-mujoco-test "$GATO" mujoco test "$TEST_EPISODES" --videos "$RESULTS/videos"
evaluate bc-imp-mujoco-test "$BC" mujoco test "$TEST_EPISODES"
evaluate bc-imp-240k-mujoco-train "$BC-240k" mujoco train "$TRAIN_EPISODES" --seed "$TRAIN_SEED"
evaluate bc-imp-240k-mujoco-test "$BC-240k" mujoco test "$TEST_EPISODES"
evaluate gato-pybullet-test "$GATO" pybullet test "$PYBULLET_EPISODES"
evaluate bc-imp-pybullet-test "$BC" pybullet test "$PYBULLET_EPISODES"

step "5. comparison tables"
$G sim table --out "$RESULTS/skill-generalization.md" \
  --column "Gato, MuJoCo=$RESULTS/gato-mujoco-test.json" --column "BC-IMP, MuJoCo=$RESULTS/bc-imp-mujoco-test.json" \
  --column "Gato, MuJoCo->PyBullet=$RESULTS/gato-pybullet-test.json" \
  --column "BC-IMP, MuJoCo->PyBullet=$RESULTS/bc-imp-pybullet-test.json" \
  --column "BC-IMP 240k, MuJoCo=$RESULTS/bc-imp-240k-mujoco-test.json"
$G sim table --out "$RESULTS/training-distribution.md" \
  --column "Gato=$RESULTS/gato-mujoco-train.json" --column "BC-IMP=$RESULTS/bc-imp-mujoco-train.json" \
  --column "BC-IMP 240k (equal wall time)=$RESULTS/bc-imp-240k-mujoco-train.json"

step "6. few-shot fine-tuning on held-out triplets ($FEWSHOT_TRIPLETS), pretrained vs scratch"
seed=2000000
for triplet in $FEWSHOT_TRIPLETS; do  # demonstrations from seeds no evaluation uses (evaluation: 0+)
  $G sim generate --out "$DATA/mujoco-$triplet" --engine mujoco --triplets "$triplet" --episodes 130 \
    --seed "$seed" --noise 0.2 --gripper-noise 0.01
  $G finetune-sweep --pretrained "$GATO" --store "$DATA/mujoco-$triplet" --triplet "$triplet" \
    --out "$RESULTS/fewshot/$triplet" --runs "$RUNS/fewshot/$triplet" --counts "$FEWSHOT_COUNTS" \
    --base-steps "$FEWSHOT_BASE_STEPS" --steps-per-episode "$FEWSHOT_STEPS_PER_EPISODE" --eval-episodes "$FEWSHOT_EVAL"
  seed=$((seed + 100000))
done

step "7. both engines: PyBullet expert data (seeds from 1100000), a Gato on MuJoCo + PyBullet, evaluated in both"
$G sim generate --out "$DATA/pybullet-dart-g" --engine pybullet --triplets train --episodes "$PYBULLET_DATA" \
  --seed 1100000 --noise 0.2 --gripper-noise 0.01
mkdir -p "$DATA/two-engine" "$TWO_ENGINE"
ln -sf "$(realpath "$STORE")"/episode-*.h5 "$(realpath "$DATA/pybullet-dart-g")"/episode-*.h5 "$DATA/two-engine/"
# shellcheck disable=SC2086
$G train --store "$DATA/two-engine" --run "$RUNS/gato-two-engine" --preset cpu-small --steps "$STEPS" --batch-size 24 \
  --window 1 --lr 1e-3 --warmup 200 --checkpoint-every 500 --no-patch-jitter --heldout-store "$HELDOUT" \
  --device "$DEVICE" $RECIPE
RESULTS=$TWO_ENGINE evaluate gato-two-engine-mujoco-test "$RUNS/gato-two-engine/checkpoint" mujoco test "$TEST_EPISODES"
RESULTS=$TWO_ENGINE evaluate gato-two-engine-pybullet-test "$RUNS/gato-two-engine/checkpoint" pybullet test \
  "$PYBULLET_EPISODES"
$G sim table --out "$TWO_ENGINE/two-engine.md" \
  --column "MuJoCo-only Gato, MuJoCo=$RESULTS/gato-mujoco-test.json" \
  --column "MuJoCo-only Gato, PyBullet=$RESULTS/gato-pybullet-test.json" \
  --column "two-engine Gato, MuJoCo=$TWO_ENGINE/gato-two-engine-mujoco-test.json" \
  --column "two-engine Gato, PyBullet=$TWO_ENGINE/gato-two-engine-pybullet-test.json"
