"""`gato-robot` commands: Model presets, checkpoints, tokenizer assets and the demo."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from .common import _clear_errors, console

model_app = typer.Typer(help="Model presets and checkpoints.", no_args_is_help=True)
tokenizer_app = typer.Typer(help="Tokenizer assets and layout.", no_args_is_help=True)


@model_app.command("presets")
def model_presets() -> None:
    """List the model presets (the paper's sizes and the CPU ones) with parameter counts."""
    import torch

    from ..model.config import PRESETS
    from ..model.policy import GatoPolicy

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

    from ..model.checkpoint import save_checkpoint
    from ..model.config import preset as get_preset
    from ..model.policy import GatoPolicy

    torch.manual_seed(seed)
    policy = GatoPolicy(get_preset(preset))
    save_checkpoint(policy, out, metadata={"preset": preset, "seed": seed, "trained": "false"})
    console.print(f"wrote {out} ({policy.num_parameters() / 1e6:.1f}M parameters, preset {preset}, random weights)")


@model_app.command("ship")
def model_ship(checkpoint: Path = typer.Argument(..., exists=True, help="Trained checkpoint directory."),
               name: str = typer.Option(..., help="Name of the shipped policy (gato_robot/policies/NAME)."),
               card: Path = typer.Option(..., exists=True, help="Model card (Markdown): data, command, results."),
               dtype: str = typer.Option("float16", help="Stored weight dtype: float16, bfloat16 or float32.")) -> None:
    """Ship a checkpoint inside the package (safetensors, smaller dtype) so commands accept its name."""
    from ..deploy.policy import load_policy
    from ..policies import ship

    with _clear_errors():
        if dtype not in ("float16", "bfloat16", "float32"):
            raise ValueError(f"unsupported dtype {dtype!r}; use float16, bfloat16 or float32")
        load_policy(checkpoint)  # Gato or BC-IMP, by the kind its config declares
        target = ship(checkpoint, name, card.read_text(), dtype)
        load_policy(target)  # it loads back (weights cast to float32)
    console.print(f"shipped {checkpoint} as {name}: {target}")


@model_app.command("history-probe")
def model_history_probe(checkpoint: Path = typer.Argument(..., help="Checkpoint directory or shipped policy name."),
                        store: Path = typer.Option(..., exists=True,
                                                   help="Episode store to measure on (held-out seeds ideally)."),
                        window: int = typer.Option(None, min=1,
                                                   help="Timesteps per window; default the policy's context."),
                        episodes: int = typer.Option(40, min=1, help="Use the last N committed episodes of the store."),
                        batches: int = typer.Option(12, help="Batches of 8 windows.")) -> None:
    """Action-token loss per window position: does the policy read the images or copy its history?"""
    from ..data.dataset import EpisodeWindows
    from ..data.episodes import EpisodeStore
    from ..model.checkpoint import load_checkpoint
    from ..policies import resolve_policy
    from ..train.diagnostics import action_loss_by_window_position

    with _clear_errors():
        policy = load_checkpoint(Path(resolve_policy(str(checkpoint))))
        episode_store = EpisodeStore(store)
        windows = EpisodeWindows(episode_store, policy.config.timestep, window or policy.config.timesteps_in_context,
                                 episodes=episode_store.episodes()[-episodes:], patch_position_jitter=False)
        rows = action_loss_by_window_position(policy, windows, batches)
    table = Table(title=f"{checkpoint}: action tokens by window position ({windows.window} timesteps)")
    for column in ("position", "cross-entropy (nats)", "|bin error|", "targets"):
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(str(row.position), f"{row.cross_entropy:.3f}", f"{row.bin_error:.1f}", str(row.targets))
    console.print(table)


@model_app.command("grasp-probe")
def model_grasp_probe(checkpoint: Path = typer.Argument(..., help="Checkpoint directory or shipped policy name."),
                      store: Path = typer.Option(..., exists=True,
                                                 help="Episode store to measure on (held-out seeds ideally)."),
                      episodes: int = typer.Option(40, min=1,
                                                   help="Use the last N committed episodes of the store.")) -> None:
    """P(gripper closes) where the expert grasps: with the expert's motion tokens before the gripper
    token (as trained) and with the policy's own (as deployed)."""
    from ..data.episodes import EpisodeStore
    from ..model.checkpoint import load_checkpoint
    from ..policies import resolve_policy
    from ..train.diagnostics import grasp_decision

    with _clear_errors():
        policy = load_checkpoint(Path(resolve_policy(str(checkpoint))))
        result = grasp_decision(policy, EpisodeStore(store).episodes()[-episodes:])
    console.print(f"{checkpoint}: {result.states} grasp states; P(close) {result.close_probability_teacher:.3f} "
                  f"after the expert's motion tokens, {result.close_probability_own:.3f} after its own "
                  f"(would close at {result.closes_own:.0%} of them)")


@tokenizer_app.command("build-text")
def tokenizer_build_text(output: Path = typer.Option(None, help="Where to write the SentencePiece model."),
                         vocab_size: int = typer.Option(256, help="Target vocabulary size.")) -> None:
    """Rebuild the shipped SentencePiece instruction model (deterministic)."""
    from ..tokenizer.build_text_model import build
    from ..tokenizer.text import DEFAULT_TEXT_MODEL

    console.print(f"wrote {build(output or DEFAULT_TEXT_MODEL, vocab_size)}")


@tokenizer_app.command("layout")
def tokenizer_layout(preset: str = typer.Option("cpu-small", help="Preset whose timestep layout to show.")) -> None:
    """Show one timestep's token layout: ranges of text, image, proprio, separator and action tokens."""
    from ..model.config import preset as get_preset

    spec = get_preset(preset).timestep
    table = Table(title=f"timestep layout ({spec.timestep_tokens} tokens)")
    for column in ("tokens", "what", "ids", "loss"):
        table.add_column(column)
    start = 0
    rows = [(spec.text_tokens, "text (instruction, PAD-filled)", "[0, 32000) / 33025", "yes"),
            *[(spec.patches_per_image, f"image patches: {name}", "embedded from pixels", "no") for name in spec.camera_names],
            (spec.proprio_tokens, "proprioception (mu-law)", "[32000, 33024)", "no"),
            (1, "separator", "33024", "no"),
            (spec.action_dim, "actions (mu-law)", "[32000, 33024)", "yes")]
    for count, what, ids, loss in rows:
        table.add_row(f"{start}..{start + count - 1}", what, ids, loss)
        start += count
    console.print(table)


def demo(checkpoint: Path = typer.Option(None, help="Checkpoint directory; default: a random cpu-small policy."),
         steps: int = typer.Option(20, min=1, help="Control ticks to run."),
         seed: int = 0) -> None:
    """Tokenize synthetic camera frames + proprioception and run the policy for a few ticks."""
    from ..demo import run_demo

    with _clear_errors():
        run_demo(checkpoint, steps, seed, console)


# Top-level commands, registered on the main app by gato_robot.cli.
commands = [("demo", demo)]
