"""`gato-robot` commands: Compile a checkpoint: ONNX graphs, TensorRT engines."""

from __future__ import annotations

from pathlib import Path

import typer

from .common import _clear_errors, console

export_app = typer.Typer(help="Compile a checkpoint: ONNX graphs, TensorRT engines.", no_args_is_help=True)


@export_app.command("onnx")
def export_onnx_command(checkpoint: Path = typer.Argument(..., help="Checkpoint directory or shipped policy."),
                        out: Path = typer.Option(None, help="Output directory (default: CHECKPOINT/onnx)."),
                        verify: int = typer.Option(100,
                                                   help="Random observations to check against PyTorch (0: skip).")) -> None:
    """Export prefill + decode ONNX graphs (KV cache as explicit inputs/outputs) and verify them."""
    from ..runtime.export import OPSET, export_checkpoint
    from ..runtime.verify import verify_export

    from ..policies import resolve_policy

    with _clear_errors():
        checkpoint = Path(resolve_policy(str(checkpoint)))
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
def export_tensorrt_command(onnx_dir: Path = typer.Argument(..., exists=True,
                                                            help="Directory from `gato-robot export onnx`."),
                            out: Path = typer.Option(None,
                                                     help="Engine directory (default: ONNX_DIR/tensorrt-PRECISION)."),
                            precision: str = typer.Option("fp16", help="fp32, fp16, bf16, int8 or fp8 (Q/DQ ONNX)."),
                            force: bool = typer.Option(False,
                                                       help="Rebuild even when the cached engines are current.")) -> None:
    """Build TensorRT engines (needs an NVIDIA GPU and the tensorrt package); engines that match the
    graphs, precision, TensorRT version and GPU are reused."""
    from ..runtime.tensorrt_engine import ensure_engines

    try:
        engine_dir, reason = ensure_engines(onnx_dir, out, precision, force)
    except (RuntimeError, FileNotFoundError, ValueError) as error:
        console.print(f"[red]error:[/red] {error}")
        raise typer.Exit(2) from error
    console.print(f"built engines in {engine_dir} ({reason})" if reason else f"engines in {engine_dir} are current")
