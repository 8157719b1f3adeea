"""Markdown table of the recipe ablation (scripts/ablation.sh): one row per arm with its recipe,
samples seen, training wall time and samples/s, and closed-loop success (95% Wilson interval) for
each decoding (companded / physical: the expectation of the motion bins in mu-law or in physical
space, `sim eval --expectation`)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

RECIPES = {
    "paper": "patch ResNet v2 | one-hot CE over vocabulary (text + actions) | raw, with joint velocities | none",
    "all": "conv stem | HL-Gauss over 1024 bins (actions) | standardized, with joint velocities | random shift 4 px",
    "all-gf": "conv stem | HL-Gauss, gripper token decoded first | standardized, with joint velocities "
              "| random shift 4 px",
    "all-novel": "conv stem | HL-Gauss | standardized, no joint velocities | random shift 4 px",
    "all-novel-gf": "conv stem | HL-Gauss, gripper token decoded first | standardized, no joint velocities "
                    "| random shift 4 px",
    "all-novel-gf-noshift": "conv stem | HL-Gauss, gripper token decoded first | standardized, no joint velocities "
                            "| none (all-novel-gf without the random shift)",
    "all-novel-gf-fourier": "conv stem + Fourier value embedding of the mu-law bins | HL-Gauss, gripper token decoded "
                            "first | standardized, no joint velocities | random shift 4 px",
    "all-novel-gf-global": "conv stem + one whole-image code per camera (flatten + linear, BC-IMP's head) | HL-Gauss, "
                           "gripper token decoded first | standardized, no joint velocities | random shift 4 px",
    "all-novel-gf-240k": "as all-novel-gf, then 120k more samples from its weights (new cosine cycle, lr 5e-4): "
                         "240k in all; the columns count the second 120k",
    "all-novel-dagger1": "as all-novel | as all-novel | as all-novel | random shift 4 px; then 1 DAgger round "
                         "(120 relabelled episodes): samples beyond all-novel's 120k",
    "all-novel-gf-dagger1": "as all-novel-gf; then 1 DAgger round (200 episodes driven by all-novel-gf, motion by "
                            "physical expectation, labelled by the expert) and 120k more samples on the union from its "
                            "weights (lr 5e-4): the columns count the second 120k",
    "all-novel-gf-fourier-dagger1": "as all-novel-gf-fourier; then 1 DAgger round (200 episodes driven by it, motion "
                                    "by physical expectation, labelled by the expert) and 120k more samples on the "
                                    "union from its weights (lr 5e-4): the columns count the second 120k",
    "all-novel-gf-global-dagger1": "as all-novel-gf-global; then 1 DAgger round (200 episodes driven by it as "
                                   "deployed, companded expectation + argmax gripper, 97 of them stacked; labelled by "
                                   "the expert) and 120k more samples on the union from its weights (lr 5e-4): the "
                                   "columns count the second 120k",
    "all-novel-gf-global-dagger-state1": "as all-novel-gf-global; then 1 DAgger round labelled from the state "
                                         "(`ScriptedExpert.label`; 96 episodes driven by it, 51 stacked) and 48k more "
                                         "samples on the union (lr 5e-4): the columns count the 48k",
    "all-novel-gf-global-value": "as all-novel-gf-global, continuous tokens embedded by an MLP of their value "
                                 "(`--continuous-embedding value_mlp`, no table row) | as all-novel-gf-global | as "
                                 "all-novel-gf-global | random shift 4 px",
    "all-novel-gf-global-dropout": "as all-novel-gf-global, with attention and MLP dropout 0.1 | as "
                                   "all-novel-gf-global | as all-novel-gf-global | random shift 4 px",
    "all-novel-gf-whole": "conv stem, every image token the whole-image code alone (`conv_stem_whole`: BC-IMP's "
                          "visual pathway) | as all-novel-gf-global | as all-novel-gf-global | random shift 4 px",
    "all-novel-gf-global-mse10": "as all-novel-gf-global | HL-Gauss + 10 x the squared error of the bins' "
                                 "physical expectation (`--expectation-mse-weight 10`: BC-IMP's MSE through the same "
                                 "bins) | as all-novel-gf-global | random shift 4 px",
    "all-gf-global": "as all-novel-gf-global | as all-novel-gf-global | standardized, with the 7 joint velocities "
                     "(as BC-IMP sees them) | random shift 4 px",
    "all-novel-gf-global-pnoise": "as all-novel-gf-global | as all-novel-gf-global | standardized, no joint "
                                  "velocities, Gaussian noise 0.1 std (`--proprio-noise 0.1`) | random shift 4 px",
    "bc-imp": "BC-IMP specialist (conv + MLP) | tanh, MSE | log-scaled, with joint velocities | random shift 4 px",
    "bc-imp-bins": "BC-IMP's | Gato's 1024 mu-law action bins per dimension, HL-Gauss, decoded as Gato "
                   "(`--action-head hl_gauss`) | as bc-imp | random shift 4 px",
    "bc-imp-novel": "BC-IMP's | tanh, MSE | log-scaled, no joint velocities (Gato's set, `--no-joint-velocities`) "
                    "| random shift 4 px",
    "bc-imp-std": "BC-IMP's | tanh, MSE | standardized per dimension, with joint velocities (Gato's statistics, "
                  "`--standardize-proprio`) | random shift 4 px",
    "all-novel-gf-global-raw": "as all-novel-gf-global | as all-novel-gf-global | mu-law of SI units, not "
                               "standardized (Gato's tokenizer as published), no joint velocities | random shift 4 px",
    "bc-imp-bins-novel": "BC-IMP's | as bc-imp-bins | as bc-imp-novel | random shift 4 px",
    "all-novel-gf-global-noplanar": "as all-novel-gf-global | as all-novel-gf-global | standardized gripper width, "
                                    "TCP height and orientation only: no joint angles, no TCP x, y "
                                    "(`--no-planar-position`), no joint velocities | random shift 4 px",
    "bc-imp-noplanar": "BC-IMP's | tanh, MSE | log-scaled, no joint angles, no TCP x, y (`--no-planar-position`) "
                       "| random shift 4 px",
    "all-novel-gf-global-query": "as all-novel-gf-global | HL-Gauss, every action position embeds one learned query, "
                                 "not its bin: each dimension predicted from the observation alone "
                                 "(`--action-inputs query`) | as all-novel-gf-global | random shift 4 px",
    "all-novel-gf-global-query-seed1": "as all-novel-gf-global-query, training seed 1 (initialization and batches)",
    "all-novel-gf-global-query-seed1-ema": "as all-novel-gf-global-query-seed1 (the same trained weights at every "
                                           "step), deploying their exponential moving average, decay 0.999 per step "
                                           "(`--ema-decay 0.999`)",
    "all-novel-gf-global-untied": "as all-novel-gf-global | HL-Gauss through an action head of its own, not the "
                                  "embedding rows of the bins (`--action-head untied`), gripper first | as "
                                  "all-novel-gf-global | random shift 4 px",
    "all-novel-gf-global-query-wide": "as all-novel-gf-global-query, trained on the wide-grid store (`sim generate "
                                      "--triplets train-wide`: object sizes 2.25-7.25 cm, bevels, holes, slants to "
                                      "0.55-0.65, spanning the test objects; same seeds, noise and filter)",
    "bc-imp-wide": "as bc-imp, trained on the wide-grid store (as all-novel-gf-global-query-wide)",
    "all-novel-gf-global-query-240k": "as all-novel-gf-global-query, twice the samples (10000 steps) under one "
                                      "cosine schedule",
    "bc-imp-240k": "as bc-imp, twice the samples (7500 steps of 32): about the wall time of one 120k-sample Gato run",
    "all-novel-gf-global-query-seed2": "as all-novel-gf-global-query, training seed 2 (initialization and batches)",
    "all-novel-gf-global-query-value": "as all-novel-gf-global-query, proprioception tokens embedded by an MLP of "
                                       "their value, no table row (`--continuous-embedding value_mlp`)",
    "all-novel-gf-whole-query": "as all-novel-gf-global-query, every image token the whole-image code alone "
                                "(`--image-encoder conv_stem_whole`: BC-IMP's visual pathway)",
    "all-novel-gf-global-query-wd1": "as all-novel-gf-global-query, AdamW weight decay 1.0 on every matrix, the "
                                     "embedding table included (0.1 in every other arm; `--weight-decay 1.0`)",
    "bc-imp-seed1": "as bc-imp, training seed 1 (initialization and batches)",
    "bc-imp-seed2": "as bc-imp, training seed 2 (initialization and batches)",
    "all-novel-gf-global-query-raw": "as all-novel-gf-global-query, proprioception mu-law coded in SI units, not "
                                     "standardized (`--no-standardize-proprio`, as BC-IMP reads it)",
    "all-novel-gf-global-query-dropout": "as all-novel-gf-global-query, attention and MLP dropout 0.1 (`--dropout 0.1`)",
    "all-novel-gf-global-query-untied": "as all-novel-gf-global-query, action logits from a head of their own, not "
                                        "through the proprioception's embedding rows (`--action-head untied`)",
    "all-novel-gf-global-query-tiny": "as all-novel-gf-global-query, the tiny preset: 2 layers, 2 heads, width 64, "
                                      "feed-forward 256 (`--preset tiny`)",
    "all-novel-gf-global-query-base": "as all-novel-gf-global-query, the cpu-base preset: 6 layers, 8 heads, width 256, "
                                      "feed-forward 1024 (`--preset cpu-base`, 14.1M parameters)",
    "all-novel-gf-global-query-kp": "as all-novel-gf-global-query, each camera's code with its 32 spatial-softmax "
                                    "keypoints added (`--image-encoder conv_stem_keypoints`, Levine et al. 2016)",
    "all-novel-gf-global-query-kp-seed1": "as all-novel-gf-global-query-kp, training seed 1",
    "all-novel-gf-global-query-grasp": "as all-novel-gf-global-query, the grasp flag as one more token "
                                       "(`--grasp-sensor`: commanded closed and the fingers held apart)",
    "all-novel-gf-global-query-grasp-seed1": "as all-novel-gf-global-query-grasp, training seed 1",
    "all-novel-gf-global-query-grasp-kf": "as all-novel-gf-global-query-grasp, each grasp's and release's gripper "
                                          "target weighing 20 in the loss (`--gripper-keyframe-weight 20`)",
    "all-novel-gf-global-query-grasp-kf-drop": "as all-novel-gf-global-query-grasp-kf, half the training windows with "
                                               "their grasp-flag tokens all padding (`--grasp-dropout 0.5`)",
    "all-novel-gf-global-query-grasp-kf50": "as all-novel-gf-global-query-grasp-kf, grasps and releases weighing 50 "
                                            "(`--gripper-keyframe-weight 50`)",
    "all-novel-gf-global-query-grasp-rkf50": "as all-novel-gf-global-query-grasp-kf50, releases alone weighing 50 "
                                              "(grasps weigh 1)",
    "all-novel-gf-global-query-grasp-rkf100": "as all-novel-gf-global-query-grasp-rkf50, releases weighing 100 "
                                              "(`--gripper-keyframe-weight 100`)",
    "all-novel-gf-global-query-grasp-kf50-lead2": "as all-novel-gf-global-query-grasp-kf50, the open targets of the two "
                                                  "timesteps before each grasp weighing 50 too (`--grasp-lead 2`)",
    "all-novel-gf-global-query-grasp-kf50-seed1": "as all-novel-gf-global-query-grasp-kf50, training seed 1",
    "all-novel-gf-global-query-grasp-kf50-seed2": "as all-novel-gf-global-query-grasp-kf50, training seed 2",
    "bc-imp-grasp": "as bc-imp, also reading the grasp flag (`--grasp-sensor`), as the grasp-sensing Gato arms",
    "bc-imp-grasp-kf50-lead2": "as bc-imp-grasp-kf50, the open targets of the two timesteps before each grasp "
                               "weighing 50 too (`--grasp-lead 2`), as all-novel-gf-global-query-grasp-kf50-lead2",
    "bc-imp-grasp-kf50": "as bc-imp-grasp, grasps and releases weighing 50 (`--gripper-keyframe-weight 50`), as "
                         "all-novel-gf-global-query-grasp-kf50",
    "bc-imp-grasp-kf50-seed1": "as bc-imp-grasp-kf50, training seed 1",
    "bc-imp-grasp-kf50-seed2": "as bc-imp-grasp-kf50, training seed 2",
    "all-novel-gf-global-query-kf": "as all-novel-gf-global-query, each grasp's and release's gripper target "
                                    "weighing 20 (`--gripper-keyframe-weight 20`), no grasp flag",
    "all-novel-gf-global-query-s8": "as all-novel-gf-global-query, HL-Gauss targets of standard deviation 8 bins "
                                    "(2 in every other arm; `--hl-gauss-sigma 8`)",
    "all-novel-gf-global-query-w2": "as all-novel-gf-global-query, trained on 2-timestep windows (12 per step, the "
                                    "same 24 timesteps; `--window 2 --batch-size 12`): the previous timestep's image "
                                    "and proprioception tokens in context",
    "all-novel-gf-global-query-lr3e4": "as all-novel-gf-global-query, peak learning rate 3e-4 (BC-IMP's; 1e-3 in "
                                       "every other Gato arm), cosine to a tenth (`--lr 3e-4`)",
    "all-novel-gf-global-query-untied-seed1": "as all-novel-gf-global-query-untied, training seed 1 (initialization "
                                              "and batches)",
    "all-novel-gf-global-query-untied-seed2": "as all-novel-gf-global-query-untied, training seed 2",
    "all-novel-gf-global-query-b48": "as all-novel-gf-global-query, batches of 48 windows for 2500 steps (24 for 5000 "
                                     "elsewhere): the same samples, half the optimizer steps (`--batch-size 48`)",
    "all-novel-gf-global-query-untied-b48": "as all-novel-gf-global-query-untied, batches of 48 windows for 2500 "
                                            "steps: the same samples, half the optimizer steps (`--batch-size 48`)",
    "all-novel-gf-global-query-x2": "as all-novel-gf-global-query, trained on twice the episodes (the store and the "
                                    "same command's next 700 seeds, 1000700+), the same 120k samples",
    "all-novel-gf-global-query-x2-seed1": "as all-novel-gf-global-query-x2, training seed 1",
    "all-novel-gf-global-query-x2-seed2": "as all-novel-gf-global-query-x2, training seed 2",
    "all-novel-gf-global-query-x2-240k": "as all-novel-gf-global-query-x2, twice the samples (10000 steps) under one "
                                         "cosine schedule",
    "all-novel-gf-global-query-x2-more": "all-novel-gf-global-query-x2, then 120k more samples on the same store "
                                         "from its weights (a second cosine cycle, peak lr 5e-4): 240k in all, about "
                                         "one pass over the 1089 episodes; the columns count the second 120k",
    "all-novel-gf-global-query-pdrop": "as all-novel-gf-global-query | as all-novel-gf-global-query | as "
                                       "all-novel-gf-global-query, every proprioception token of a quarter of the "
                                       "windows replaced by padding (`--proprio-dropout 0.25`) | random shift 4 px",
    "all-novel-gf-global-query-pdrop-seed1": "as all-novel-gf-global-query-pdrop, training seed 1",
    "all-novel-gf-global-query-60k": "as all-novel-gf-global-query, half the samples (2500 steps) under one cosine "
                                     "schedule",
    "all-novel-gf-global-query-more48k": "the shipped weights (gato-cpu-small, all-novel-gf-global-query seed 0), "
                                         "then 48k more samples on the same demonstrations (2000 steps, a new cosine "
                                         "cycle, peak lr 3e-4): the control of -dagger; the columns count the 48k",
    "all-novel-gf-global-query-dagger": "as all-novel-gf-global-query-more48k, on the demonstrations and one DAgger "
                                        "round: the shipped policy drove 150 training-distribution episodes (seeds "
                                        "6200000+), the scripted expert labelled every visited state",
    "all-novel-gf-global-query-dagger-fixed": "as all-novel-gf-global-query-dagger (the same visited states), labelled "
                                              "by the fixed state-based labeller (red held across a narrow extent or "
                                              "with the fingers flipped open stays held)",
    "all-novel-gf-global-query-more96k": "all-novel-gf-global-query-more48k, then 48k more samples the same way: the "
                                         "control of -dagger2; the columns count the second 48k",
    "all-novel-gf-global-query-dagger2": "all-novel-gf-global-query-dagger-fixed, then a second DAgger round: it drove 150 "
                                         "episodes (seeds 6300000+), then 48k more samples on the demonstrations and "
                                         "both rounds; the columns count the second 48k",
    "bc-imp-x2": "as bc-imp, trained on twice the episodes (as all-novel-gf-global-query-x2), the same 120k samples",
    "bc-imp-x2-seed1": "as bc-imp-x2, training seed 1",
    "all-gf-global-query": "as all-novel-gf-global-query, with the 7 joint velocities in the proprioception, as "
                           "BC-IMP sees them (round 11 measured them only with autoregressive action inputs)",
    "all-gf-global-query-seed1": "as all-gf-global-query, training seed 1",
    "all-gf-global-query-smooth": "as all-gf-global-query, every proprioception value embedded by an MLP of "
                                  "[c, sin pi c, cos pi c], c its bin's companded value, no table row "
                                  "(`--continuous-embedding value_mlp --fourier-frequencies 1`)",
    "all-novel-gf-global-query-smooth": "as all-novel-gf-global-query, every proprioception value embedded by an "
                                        "MLP of [c, sin pi c, cos pi c] (`--continuous-embedding value_mlp "
                                        "--fourier-frequencies 1`; round 17's value MLP had 8 frequencies)",
    "all-novel-gf-global-query-smooth-seed1": "as all-novel-gf-global-query-smooth, training seed 1",
    "all-gf-global-query-vnoise": "as all-gf-global-query, the joint velocities blurred at training time only by "
                                  "Gaussian noise of one standard deviation each (`--velocity-noise 1.0`)",
    "bc-imp-vnoise": "as bc-imp, the joint velocities blurred at training time only by Gaussian noise of one "
                     "standard deviation each (`train-baseline --velocity-noise 1.0`), as all-gf-global-query-vnoise",
    "all-gf-global-query-vdrop": "as all-gf-global-query, half the training windows with their joint-velocity "
                                 "tokens all padding (`--velocity-dropout 0.5`; past-motion dropout, ChauffeurNet)",
}


def cell(report: Path, note_decoding: bool = False) -> str:
    if not report.is_file():
        return "not run"
    data = json.loads(report.read_text())
    rows = data["per_triplet"].values()
    wins, count = sum(r["successes"] for r in rows), sum(r["episodes"] for r in rows)
    low, high = data["overall"]["ci95"]
    decoding = f", {data['expectation']}" if note_decoding and data.get("expectation") == "physical" else ""
    return f"{100 * wins / count:.0f}% [{100 * low:.0f}, {100 * high:.0f}] ({wins}/{count}{decoding})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=Path, required=True)
    parser.add_argument("--reports", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    lines = ["| arm | encoder \\| action loss \\| proprio \\| augmentation | samples | train wall time | samples/s "
             "| success, sampled T=1 | success, companded expectation (motion) + sampled gripper "
             "| success, companded expectation (motion) + argmax gripper "
             "| success, physical expectation (motion) + argmax gripper "
             "| held-out test triplets, argmax gripper, motion by the expectation that stacked more on the "
             "training-distribution seeds (companded unless noted) "
             "| success, deterministic as deployed (BC-IMP arms: tanh, or bins decoded as Gato) |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for arm, recipe in RECIPES.items():
        summary_path = args.runs / arm / "summary.json"
        if not summary_path.is_file():
            continue
        summary = json.loads(summary_path.read_text())
        recipe = recipe.replace(" | ", " \\| ")  # a literal | inside a Markdown cell
        lines.append(f"| {arm} | {recipe} | {summary['samples'] / 1e3:.0f}k | {summary['wall_time_s'] / 60:.0f} min "
                     f"| {summary['samples_per_s']:.0f} | {cell(args.reports / f'{arm}-sampled.json')} "
                     f"| {cell(args.reports / f'{arm}-expectation.json')} "
                     f"| {cell(args.reports / f'{arm}-expectation-greedy.json')} "
                     f"| {cell(args.reports / f'{arm}-physical-greedy.json')} "
                     f"| {cell(args.reports / f'{arm}-test.json', note_decoding=not arm.startswith('bc-imp'))} "
                     f"| {cell(args.reports / f'{arm}-train.json')} |")
    shipped = args.reports / "shipped-sampled.json"
    if shipped.is_file():  # the previous session's policy: another store (479 episodes), 3.2x the samples
        lines.append("| gato-cpu-small (shipped, previous recipe) | patch ResNet v2 \\| one-hot CE over vocabulary "
                     "\\| raw, with joint velocities \\| none; 479-episode store without gripper flips | 384k "
                     f"| 100 min | 64 | {cell(shipped)} | not run | not run | not run | not run | not run |")
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
