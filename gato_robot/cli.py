"""`gato-robot`: one command line for data, training, evaluation, export, calibration and benchmarks."""

from __future__ import annotations

import sys
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(help="gato_robot: a Gato-style generalist policy for RGB stacking.", no_args_is_help=True)
bench_app = typer.Typer(help="Benchmarks that print figures (latency, throughput).", no_args_is_help=True)
model_app = typer.Typer(help="Model presets and checkpoints.", no_args_is_help=True)
tokenizer_app = typer.Typer(help="Tokenizer assets and layout.", no_args_is_help=True)
app.add_typer(bench_app, name="bench")
app.add_typer(model_app, name="model")
app.add_typer(tokenizer_app, name="tokenizer")
sim_app = typer.Typer(help="RGB-stacking simulation: data generation and headless evaluation.", no_args_is_help=True)
app.add_typer(sim_app, name="sim")
calibrate_app = typer.Typer(help="Camera calibration: intrinsics, hand-eye, rendered ground truth.", no_args_is_help=True)
app.add_typer(calibrate_app, name="calibrate")
export_app = typer.Typer(help="Compile a checkpoint: ONNX graphs, TensorRT engines.", no_args_is_help=True)
app.add_typer(export_app, name="export")
# Tables stay on one line when output goes to a file or CI log (rich would wrap at 80 columns).
console = Console(width=None if sys.stdout.isatty() else 140)


@contextmanager
def _clear_errors():
    """Turn expected user errors (missing files, bad input) into one red line and exit code 2."""
    try:
        yield
    except (FileNotFoundError, ValueError, KeyError) as error:
        console.print(f"[red]error:[/red] {error}")
        raise typer.Exit(2) from error


@model_app.command("presets")
def model_presets() -> None:
    """List the model presets (the paper's sizes and the CPU ones) with parameter counts."""
    import torch

    from .model.config import PRESETS
    from .model.policy import GatoPolicy

    table = Table(title="Gato presets (layers / heads / width / FF, context in tokens)")
    for column in ("preset", "layers", "heads", "width", "FF", "context", "parameters"):
        table.add_column(column, justify="right" if column != "preset" else "left")
    for name, config in PRESETS.items():
        with torch.device("meta"):  # count parameters without allocating them
            count = GatoPolicy(config).num_parameters()
        table.add_row(name, str(config.n_layer), str(config.n_head), str(config.n_embd), str(config.d_ff),
                      str(config.context_tokens), f"{count / 1e6:.1f}M")
    console.print(table)


@model_app.command("init")
def model_init(out: Path = typer.Option(..., help="Checkpoint directory to write."),
               preset: str = typer.Option("cpu-small", help="Preset name (see `gato-robot model presets`)."),
               seed: int = typer.Option(0, help="Weight initialization seed.")) -> None:
    """Write a randomly initialized checkpoint (safetensors + config.json)."""
    import torch

    from .model.checkpoint import save_checkpoint
    from .model.config import preset as get_preset
    from .model.policy import GatoPolicy

    torch.manual_seed(seed)
    policy = GatoPolicy(get_preset(preset))
    save_checkpoint(policy, out, metadata={"preset": preset, "seed": seed, "trained": "false"})
    console.print(f"wrote {out} ({policy.num_parameters() / 1e6:.1f}M parameters, preset {preset}, random weights)")


@tokenizer_app.command("build-text")
def tokenizer_build_text(output: Path = typer.Option(None, help="Where to write the SentencePiece model."),
                         vocab_size: int = typer.Option(256, help="Target vocabulary size.")) -> None:
    """Rebuild the shipped SentencePiece instruction model (deterministic)."""
    from .tokenizer.build_text_model import build
    from .tokenizer.text import DEFAULT_TEXT_MODEL

    console.print(f"wrote {build(output or DEFAULT_TEXT_MODEL, vocab_size)}")


@tokenizer_app.command("layout")
def tokenizer_layout(preset: str = typer.Option("cpu-small", help="Preset whose timestep layout to show.")) -> None:
    """Show one timestep's token layout: ranges of text, image, proprio, separator and action tokens."""
    from .model.config import preset as get_preset

    spec = get_preset(preset).timestep
    table = Table(title=f"timestep layout ({spec.timestep_tokens} tokens)")
    for column in ("tokens", "what", "ids", "loss"):
        table.add_column(column)
    start = 0
    rows = [(spec.text_tokens, "text (instruction, PAD-filled)", "[0, 32000) / 33025", "yes"),
            *[(spec.patches_per_image, f"image patches: {name}", "embedded from pixels", "no") for name in spec.camera_names],
            (spec.proprio_dim, "proprioception (mu-law)", "[32000, 33024)", "no"),
            (1, "separator", "33024", "no"),
            (spec.action_dim, "actions (mu-law)", "[32000, 33024)", "yes")]
    for count, what, ids, loss in rows:
        table.add_row(f"{start}..{start + count - 1}", what, ids, loss)
        start += count
    console.print(table)


@bench_app.command("policy")
def bench_policy_command(preset: str = typer.Option("cpu-small", help="Model preset."),
                         steps: int = typer.Option(50, help="Measured actions (after filling the context)."),
                         threads: int = typer.Option(0, help="Torch threads (0: torch's default)."),
                         seed: int = 0) -> None:
    """Per-action latency (median, p99) of act(), KV-cached vs uncached, side by side."""
    from .bench.policy_latency import bench_policy

    report = bench_policy(preset, steps=steps, seed=seed, threads=threads or None)
    table = Table(title=f"act() latency, preset {report.preset} ({report.parameters / 1e6:.1f}M params, "
                        f"{report.context_timesteps} timesteps of context, {report.threads} threads)")
    for column in ("path", "median ms", "p99 ms", "max ms", "actions"):
        table.add_column(column, justify="right")
    for name, stats in (("KV-cached", report.cached), ("uncached", report.uncached)):
        table.add_row(name, f"{stats.median_ms:.2f}", f"{stats.p99_ms:.2f}", f"{stats.max_ms:.2f}", str(stats.count))
    console.print(table)
    console.print(f"speed-up of the cache (median): {report.uncached.median_ms / report.cached.median_ms:.1f}x")


@bench_app.command("runtime")
def bench_runtime_command(
        backend: list[str] = typer.Option(None, help="Backend(s) to compare; default: every one installed here."),
        preset: str = typer.Option("cpu-small", help="Preset for a random-weight policy when no checkpoint is given."),
        checkpoint: Path = typer.Option(None, help="Checkpoint directory to benchmark."),
        steps: int = typer.Option(1000, help="Control steps per backend."),
        device: str = typer.Option("cpu", help="Device of the torch backend."),
        threads: int = typer.Option(0, help="ONNX Runtime intra-op threads (0: all cores)."),
        seed: int = 0) -> None:
    """End-to-end step latency (frames in -> action out) per backend, with stage shares and 20 Hz misses."""
    from .bench.runtime_latency import bench_runtime

    with _clear_errors():
        results, roofline = bench_runtime(backend, preset, checkpoint, steps, device=device, threads=threads,
                                          seed=seed)
    source = str(checkpoint) if checkpoint else f"{preset} (random weights)"
    table = Table(title=f"end-to-end control step, {source}, {steps} steps per backend")
    for column in ("backend", "median ms", "p99 ms", "max ms", "miss 20 Hz", "tokenize", "prefill", "decode",
                   "detokenize"):
        table.add_column(column, justify="right")
    for r in results:
        table.add_row(r.backend, f"{r.total.median_ms:.2f}", f"{r.total.p99_ms:.2f}", f"{r.total.max_ms:.2f}",
                      f"{100 * r.deadline_miss_fraction:.2f}%",
                      *(f"{100 * r.stage_share[s]:.0f}%" for s in ("tokenize", "prefill", "decode", "detokenize")))
    console.print(table)
    console.print(f"roofline: {roofline['weight_bytes_per_action'] / 1e6:.1f} MB of weights per action / "
                  f"{roofline['memory_bandwidth_bytes_per_s'] / 1e9:.1f} GB/s measured = "
                  f"{roofline['floor_ms']:.3f} ms floor per action")
    if len(results) > 1:
        agree = all(np.array_equal(results[0].actions, r.actions) for r in results[1:])
        console.print(f"backends chose identical actions on every step: {agree}")


@export_app.command("onnx")
def export_onnx_command(checkpoint: Path = typer.Argument(..., help="Checkpoint directory."),
                        out: Path = typer.Option(None, help="Output directory (default: CHECKPOINT/onnx)."),
                        verify: int = typer.Option(100, help="Random observations to check against PyTorch (0: skip).")) -> None:
    """Export prefill + decode ONNX graphs (KV cache as explicit inputs/outputs) and verify them."""
    from .runtime.export import OPSET, export_checkpoint
    from .runtime.verify import verify_export

    with _clear_errors():
        out = out or checkpoint / "onnx"
        exported = export_checkpoint(checkpoint, out)
        console.print(f"wrote {exported.prefill} and {exported.decode} (opset {OPSET})")
        if verify:
            report = verify_export(checkpoint, out, observations=verify)
            console.print(f"verified on {report.observations} observations: action tokens identical on "
                          f"{report.matching_actions}/{report.observations}, max |logit diff| "
                          f"{report.max_logit_diff:.2e}")
            if report.matching_actions != report.observations:
                raise typer.Exit(1)


@export_app.command("tensorrt")
def export_tensorrt_command(onnx_dir: Path = typer.Argument(..., help="Directory from `gato-robot export onnx`."),
                            out: Path = typer.Option(None, help="Engine directory (default: ONNX_DIR)."),
                            precision: str = typer.Option("fp16", help="fp32, fp16, bf16, int8 or fp8 (Q/DQ ONNX).")) -> None:
    """Build TensorRT engines (needs an NVIDIA GPU and the tensorrt package)."""
    from .runtime.tensorrt_engine import build_engines

    try:
        engines = build_engines(onnx_dir, out, precision)
    except (RuntimeError, FileNotFoundError, ValueError) as error:
        console.print(f"[red]error:[/red] {error}")
        raise typer.Exit(2) from error
    console.print("wrote " + ", ".join(map(str, engines)))


@sim_app.command("eval")
def sim_eval(engine: str = typer.Option("mujoco", help="mujoco or pybullet."),
             policy: str = typer.Option("expert", help="'expert' or a checkpoint directory (or ONNX export with --backend)."),
             triplets: str = typer.Option("test", help="test (the 5 held-out triplets), train, or one triplet name."),
             episodes: int = typer.Option(50, help="Episodes per triplet."),
             workers: int = typer.Option(2, help="Parallel processes."),
             backend: str = typer.Option("torch", help="Policy backend: torch, onnxruntime, tensorrt."),
             seed: int = typer.Option(0, help="First episode seed (seeds are consecutive)."),
             report: Path = typer.Option(None, help="Write the JSON report here."),
             videos: Path = typer.Option(None, help="Write one episode video per triplet here (both cameras)."),
             expert_noise: float = typer.Option(0.0, help="Action noise of the scripted expert (fraction of bounds).")) -> None:
    """Success rate per triplet with 95% confidence intervals, headless."""
    from sim.evaluate import evaluate, write_report

    with _clear_errors():
        result = evaluate(engine, policy, triplets, episodes, workers, seed, backend, videos, 1, expert_noise)
    table = Table(title=f"{engine}: {policy} on {triplets} triplets, {episodes} episodes each (rev {result['git_revision']})")
    for column in ("triplet", "success", "95% CI", "episodes", "mean steps"):
        table.add_column(column, justify="right" if column != "triplet" else "left")
    for name, row in result["per_triplet"].items():
        low, high = row["ci95"]
        table.add_row(name, f"{100 * row['success_rate']:.1f}%", f"[{100 * low:.1f}, {100 * high:.1f}]",
                      str(row["episodes"]), f"{row['mean_steps']:.0f}")
    low, high = result["overall"]["ci95"]
    table.add_row("overall", f"{100 * result['overall']['success_rate']:.1f}%", f"[{100 * low:.1f}, {100 * high:.1f}]",
                  str(sum(r["episodes"] for r in result["per_triplet"].values())), "")
    console.print(table)
    if report:
        console.print(f"report: {write_report(result, report)}")
    for row in result["per_triplet"].values():
        for video in row.get("videos", []):
            console.print(f"video: {video}")


@sim_app.command("closed-loop")
def sim_closed_loop(model: Path = typer.Option(..., help="Checkpoint (torch) or export directory."),
                    backend: str = typer.Option("torch", help="torch, onnxruntime or tensorrt."),
                    engine: str = typer.Option("mujoco", help="mujoco or pybullet."),
                    triplet: str = typer.Option("test-1-slanted", help="Triplet name, or 'train'."),
                    calibration: Path = typer.Option(None, help="Directory of <camera>.camera_info/extrinsics YAML."),
                    seed: int = 0) -> None:
    """Drive a simulator with the real-arm ControlLoop (joint commands, safety, watchdog): the check
    to run before a policy touches the arm."""
    import numpy as np

    from .actions import CartesianActionMapper
    from .control import ControlLoop
    from .runtime.factory import load_runner
    from sim.closed_loop import run_closed_loop
    from sim.rollout import make_env
    from sim.scene import DEFAULT_SCENE, scene_with_calibrated_cameras

    with _clear_errors():
        scene = scene_with_calibrated_cameras(calibration) if calibration else DEFAULT_SCENE
        env = make_env(engine, triplet, scene=scene)
        loop = ControlLoop(load_runner(backend, model), CartesianActionMapper(scene.arm, scene.action_path))
        trace = run_closed_loop(env, loop, scene.episode_steps, seed)
        env.close()
    totals = np.array([r.stage_seconds["total"] for r in trace.results]) * 1e3
    console.print(f"{engine} {triplet}: {len(trace.results)} ticks, {loop.stats.active_ticks} active, "
                  f"{loop.stats.held_ticks} held, success {trace.success}; tick median {np.median(totals):.1f} ms, "
                  f"p99 {np.percentile(totals, 99):.1f} ms, {loop.stats.deadline_misses} deadline misses")


@sim_app.command("generate")
def sim_generate(out: Path = typer.Option(..., help="Episode store directory (created or appended to)."),
                 engine: str = typer.Option("mujoco", help="mujoco or pybullet."),
                 triplets: str = typer.Option("train", help="train, test or one triplet name."),
                 episodes: int = typer.Option(100, help="Episodes (per triplet for 'test')."),
                 workers: int = typer.Option(2, help="Parallel processes."),
                 seed: int = typer.Option(0, help="First episode seed."),
                 noise: float = typer.Option(0.1, help="Expert action noise (fraction of each bound).")) -> None:
    """Scripted-expert episodes (cameras + proprioception + actions) into an episode store."""
    from sim.evaluate import generate

    with _clear_errors():
        summary = generate(out, engine, triplets, episodes, workers, seed, noise)
    console.print(f"wrote {summary['episodes']} episodes ({summary['successes']} successful) to {summary['store']}")


@bench_app.command("sim")
def bench_sim_command(engine: list[str] = typer.Option(None, help="Engines (default: mujoco and pybullet)."),
                      steps: int = typer.Option(200, help="Steps per measurement.")) -> None:
    """Env steps/s per engine, cameras on and off, vs the raw engine's physics + render rate."""
    from sim.bench import bench_sim

    rates = bench_sim(engine or ["mujoco", "pybullet"], steps)
    table = Table(title=f"simulation rate, {steps} steps each (control period 0.05 s)")
    for column in ("engine", "cameras", "env steps/s", "raw engine steps/s", "wrapper overhead"):
        table.add_column(column, justify="right")
    for r in rates:
        table.add_row(r.engine, "on" if r.cameras else "off", f"{r.env_steps_per_s:.0f}", f"{r.raw_steps_per_s:.0f}",
                      f"{100 * r.overhead:+.1f}%")
    console.print(table)


def _load_images(directory: Path) -> dict:
    import cv2

    paths = sorted(p for p in directory.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    if not paths:
        raise FileNotFoundError(f"no .png/.jpg images in {directory}")
    return {p.stem: cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in paths}


@calibrate_app.command("render-board")
def calibrate_render_board(out: Path = typer.Option(..., help="Directory for images, robot poses and ground truth."),
                           camera: str = typer.Option("front_left", help="Scene camera whose pose to use."),
                           views: int = typer.Option(20, help="Views with the whole board visible."),
                           partial: int = typer.Option(0, help="Extra views with the board partly out of view."),
                           noise: float = typer.Option(2.0, help="Pixel noise standard deviation (0-255 scale)."),
                           blur: float = typer.Option(0.7, help="Gaussian blur sigma (pixels)."),
                           width: int = 640, height: int = 480, seed: int = 0) -> None:
    """Render a checkerboard held by the gripper, seen by a scene camera (exact ground truth)."""
    import cv2

    from calibration.board import Checkerboard
    from calibration.files import CameraInfo, Extrinsics, write_camera_info, write_extrinsics
    from calibration.poses import write_poses
    from calibration.render import PinholeCamera, look_at
    from calibration.synthetic import capture
    from sim.scene import DEFAULT_SCENE

    spec = next((c for c in DEFAULT_SCENE.cameras if c.name == camera), None)
    if spec is None:
        console.print(f"[red]error:[/red] unknown camera {camera!r}; scene cameras: {[c.name for c in DEFAULT_SCENE.cameras]}")
        raise typer.Exit(2)
    pinhole = PinholeCamera(width, height, spec.fovy_deg)
    base_from_camera = look_at(spec.position, spec.target, spec.up)
    result = capture(base_from_camera, pinhole, Checkerboard(), views, seed, noise, blur, partial)
    (out / "images").mkdir(parents=True, exist_ok=True)
    for name, image in result.images.items():
        cv2.imwrite(str(out / "images" / f"{name}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    write_poses(result.robot_poses, out / "robot_poses.yaml")
    write_camera_info(CameraInfo(camera, width, height, pinhole.matrix(), np.zeros(5)), out / "truth.camera_info.yaml")
    write_extrinsics(Extrinsics(camera, "base", base_from_camera), out / "truth.extrinsics.yaml")
    console.print(f"wrote {len(result.images)} images, robot_poses.yaml and ground truth to {out}")


@calibrate_app.command("intrinsics")
def calibrate_intrinsics_command(images: Path = typer.Option(..., help="Directory of board images."),
                                 out: Path = typer.Option(..., help="camera_info YAML to write."),
                                 board: str = typer.Option("9x6", help="Inner corners, COLUMNSxROWS."),
                                 square: float = typer.Option(0.02, help="Square size (metres)."),
                                 camera_name: str = typer.Option("camera", help="camera_name in the YAML."),
                                 plot: Path = typer.Option(None, help="PNG of per-view reprojection errors."),
                                 min_views: int = typer.Option(8, help="Fewest usable views accepted.")) -> None:
    """Intrinsics from checkerboard images, with outlier rejection; writes ROS camera_info YAML."""
    from calibration.board import Checkerboard
    from calibration.errors import CalibrationError
    from calibration.files import CameraInfo, write_camera_info
    from calibration.intrinsics import calibrate_intrinsics, plot_errors

    try:
        target = Checkerboard.parse(board, square)
        result = calibrate_intrinsics(_load_images(images), target, min_views=min_views)
    except (CalibrationError, FileNotFoundError, ValueError) as error:
        console.print(f"[red]error:[/red] {error}")
        raise typer.Exit(2) from error
    width, height = result.image_size
    write_camera_info(CameraInfo(camera_name, width, height, result.camera_matrix, result.distortion), out)
    k = result.camera_matrix
    console.print(f"fx {k[0, 0]:.2f} fy {k[1, 1]:.2f} cx {k[0, 2]:.2f} cy {k[1, 2]:.2f} px; RMS {result.rms_px:.3f} px "
                  f"over {len(result.per_view_rms_px)} views -> {out}")
    for name, reason in result.rejected.items():
        console.print(f"rejected {name}: {reason}")
    if plot:
        plot_errors(result, plot)
        console.print(f"plot: {plot}")


@calibrate_app.command("handeye")
def calibrate_handeye_command(images: Path = typer.Option(..., help="Directory of board images."),
                              poses: Path = typer.Option(..., help="YAML of base <- tcp poses, one per image name."),
                              intrinsics: Path = typer.Option(..., help="camera_info YAML of this camera."),
                              out: Path = typer.Option(..., help="Extrinsics YAML to write."),
                              mode: str = typer.Option("eye-to-hand", help="eye-to-hand (fixed camera) or eye-in-hand."),
                              board: str = typer.Option("9x6", help="Inner corners, COLUMNSxROWS."),
                              square: float = typer.Option(0.02, help="Square size (metres)."),
                              method: str = typer.Option("park", help="tsai, park, horaud, andreff, daniilidis.")) -> None:
    """Camera pose from robot poses + board detections (cv2.calibrateHandEye); writes extrinsics YAML."""
    import cv2

    from calibration.board import Checkerboard
    from calibration.detect import detect_corners
    from calibration.errors import CalibrationError
    from calibration.files import Extrinsics, read_camera_info, write_extrinsics
    from calibration.handeye import calibrate_hand_eye
    from calibration.poses import read_poses

    try:
        target = Checkerboard.parse(board, square)
        info, robot, pictures = read_camera_info(intrinsics), read_poses(poses), _load_images(images)
        robot_poses, board_poses = [], []
        for name, image in pictures.items():
            corners = detect_corners(image, target)
            if corners is None or name not in robot:
                console.print(f"skipped {name}: {'board not found' if corners is None else 'no robot pose'}")
                continue
            ok, rvec, tvec = cv2.solvePnP(target.object_points(), corners, info.camera_matrix, info.distortion)
            pose = np.eye(4)
            pose[:3, :3], pose[:3, 3] = cv2.Rodrigues(rvec)[0], tvec.reshape(3)
            robot_poses.append(robot[name])
            board_poses.append(pose)
        result = calibrate_hand_eye(robot_poses, board_poses, mode, method)
    except (CalibrationError, FileNotFoundError, ValueError) as error:
        console.print(f"[red]error:[/red] {error}")
        raise typer.Exit(2) from error
    parent = "base" if mode == "eye-to-hand" else "tcp"
    write_extrinsics(Extrinsics(info.camera_name, parent, result.transform), out)
    console.print(f"{parent} <- camera: translation {np.round(result.transform[:3, 3], 4).tolist()} m; consistency "
                  f"{1000 * result.translation_spread_m:.2f} mm / {result.rotation_spread_deg:.2f} deg over "
                  f"{len(robot_poses)} views -> {out}")


@app.command("replay")
def replay_command(bag: Path = typer.Argument(..., help="rosbag2 directory (sqlite3 or MCAP)."),
                   model: Path = typer.Option(..., help="Checkpoint (torch) or export directory (onnxruntime, tensorrt)."),
                   out: Path = typer.Option(Path("replay_commands.npz"), help="Where to write the commands (.npz)."),
                   backend: str = typer.Option("torch", help="torch, onnxruntime or tensorrt."),
                   joint_states_topic: str = typer.Option("/joint_states", help="sensor_msgs/JointState topic."),
                   rate_hz: float = typer.Option(20.0, help="Control rate of the replayed loop.")) -> None:
    """Run the control loop over a recorded bag and write the joint commands it would have sent."""
    from .actions import ActionPathConfig, CartesianActionMapper
    from .control import ControlConfig, ControlLoop
    from .replay import ReplayTopics, replay_bag
    from .runtime.factory import load_runner

    with _clear_errors():
        runner = load_runner(backend, model)
        loop = ControlLoop(runner, CartesianActionMapper(config=ActionPathConfig(control_period_s=1 / rate_hz)),
                           ControlConfig(rate_hz))
        topics = ReplayTopics.default(loop.tokenizer.spec.camera_names)
        topics = ReplayTopics(topics.cameras, joint_states_topic)
        result = replay_bag(bag, loop, topics)
    result.save(out)
    active = sum(state == "active" for state in result.states)
    console.print(f"{len(result.states)} ticks ({active} active, {len(result.states) - active} held) -> {out}")
    for reason in sorted(set(result.reasons) - {"ok"}):
        console.print(f"held: {reason} ({result.reasons.count(reason)} ticks)")


@app.command("train")
def train_command(store: Path = typer.Option(..., help="Episode store (from `gato-robot sim generate`)."),
                  run: Path = typer.Option(..., help="Run directory: checkpoint, learning curve; resumes if present."),
                  preset: str = typer.Option("cpu-small", help="Model preset."),
                  steps: int = typer.Option(2000, help="Total optimizer steps."),
                  batch_size: int = typer.Option(8, help="Windows per batch."),
                  window: int = typer.Option(3, help="Timesteps per training window."),
                  lr: float = typer.Option(1e-3, help="Peak learning rate."),
                  warmup: int = typer.Option(100, help="Warm-up steps."),
                  checkpoint_every: int = typer.Option(200, help="Checkpoint period (steps)."),
                  stop_at: int = typer.Option(None, help="End this session after this step (resume later)."),
                  init_from: Path = typer.Option(None, help="Start from this checkpoint (fine-tuning)."),
                  device: str = typer.Option("cpu", help="cpu or cuda."),
                  seed: int = 0) -> None:
    """Behaviour cloning of the Gato policy; exact resume after a kill; learning-curve PNG."""
    from .train.trainer import TrainConfig, train

    config = TrainConfig(preset=preset, steps=steps, batch_size=batch_size, window_timesteps=window, learning_rate=lr,
                         min_learning_rate=lr / 10, warmup_steps=warmup, checkpoint_every=checkpoint_every, seed=seed,
                         device=device)
    with _clear_errors():
        summary = train(store, run, config, init_from=init_from, stop_at=stop_at)
    console.print(f"step {summary['steps']}: loss {summary['final_loss']:.4f}, {summary['tokens_per_s']:.0f} tokens/s; "
                  f"checkpoint {summary['checkpoint']}, curve {run / 'learning_curve.png'}")


@bench_app.command("data")
def bench_data_command(store: Path = typer.Option(..., help="Episode store."),
                       preset: str = typer.Option("cpu-small", help="Model preset for the training-step side."),
                       batch_size: int = 8, window: int = 3, steps: int = 10) -> None:
    """Tokens/s of the data pipeline alone vs of full training steps: loading must outpace training."""
    import time

    import torch

    from .data.dataset import EpisodeWindows
    from .data.episodes import EpisodeStore
    from .model.config import preset as get_preset
    from .model.policy import GatoPolicy, batch_to_torch

    config = get_preset(preset)
    with _clear_errors():
        windows = EpisodeWindows(EpisodeStore(store), config.timestep, window)
    start = time.perf_counter()
    batches = [windows.batch(0, step, batch_size) for step in range(steps)]
    data_s = time.perf_counter() - start
    tokens = sum(b["token_ids"].size for b in batches)
    policy = GatoPolicy(config)
    optimizer = torch.optim.AdamW(policy.parameters(), lr=1e-4)
    start = time.perf_counter()
    for arrays in batches:
        loss = policy.loss(batch_to_torch(arrays))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model_s = time.perf_counter() - start
    console.print(f"data pipeline: {tokens / data_s:.0f} tokens/s; training step (model only): {tokens / model_s:.0f} "
                  f"tokens/s; ratio {model_s / data_s:.1f}x (>1: a prefetching thread keeps the trainer fed)")


@app.command("demo")
def demo(checkpoint: Path = typer.Option(None, help="Checkpoint directory; default: a random cpu-small policy."),
         steps: int = typer.Option(20, help="Control ticks to run."),
         seed: int = 0) -> None:
    """Tokenize synthetic camera frames + proprioception and run the policy for a few ticks."""
    from .demo import run_demo

    with _clear_errors():
        run_demo(checkpoint, steps, seed, console)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
