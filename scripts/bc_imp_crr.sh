#!/usr/bin/env bash
# BC-IMP as the benchmark defines it (issue "Reproduce the two comparisons properly", item 1): the
# shipped behaviour-cloned specialist (the "BC" stage), its own rollouts with their rewards, then one
# CRR improvement step on the expert store (all episodes, failures too) plus those rollouts.
# BC and BC-IMP are evaluated on the same seeds as the Gato ablation. Resumable: finished steps are kept.
set -euo pipefail
cd "$(dirname "$0")/.."
G=.venv/bin/gato-robot
STORE=${STORE:-../data/mujoco-dart-g}   # sim generate --episodes 700 --seed 1000000 --noise 0.2 --gripper-noise 0.01
RUNS=${RUNS:-../runs/bc-imp-crr}
OUT=${OUT:-results/bc-imp-crr}
BC=${BC:-gato_robot/policies/bc-imp}
STEPS=${STEPS:-1250}
mkdir -p "$OUT" "$RUNS"
[ -d "$STORE" ] || $G sim generate --out "$STORE" --engine mujoco --triplets train --episodes 700 --seed 1000000 \
  --noise 0.2 --gripper-noise 0.01
$G sim rollouts --store "$RUNS/rollouts" --policy "$BC" --episodes 100 --seed 6500000
[ -s "$RUNS/bc-imp-crr/summary.json" ] || $G improve-baseline --bc "$BC" --store "$STORE" --store "$RUNS/rollouts" \
  --out "$RUNS/bc-imp-crr" --steps "$STEPS"
cp "$RUNS/bc-imp-crr/summary.json" "$OUT/crr-summary.json"
for arm in bc crr; do
  policy=$BC; [ $arm = crr ] && policy=$RUNS/bc-imp-crr
  [ -s "$OUT/$arm-train.json" ] || $G sim eval --policy "$policy" --triplets train --episodes 50 --seed 5000000 \
    --report "$OUT/$arm-train.json"
  [ -s "$OUT/$arm-test.json" ] || $G sim eval --policy "$policy" --triplets test --episodes 30 --seed 0 \
    --report "$OUT/$arm-test.json"
done
