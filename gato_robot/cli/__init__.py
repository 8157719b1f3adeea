"""`gato-robot`: one command line for data, training, evaluation, export, calibration and benchmarks.

Each area's commands live in a module of their own; this one assembles them.
"""

from __future__ import annotations

import typer

from . import bench, calibrate, data, export, model, robot, sim, train
from .common import invocation

app = typer.Typer(help="gato_robot: a Gato-style generalist policy for RGB stacking.", no_args_is_help=True)


@app.callback()
def options(debug: bool = typer.Option(False, "--debug", help="Show the traceback of user errors (a missing or "
                                       "damaged file, a bad argument) instead of one line.")) -> None:
    invocation.debug = debug


app.add_typer(bench.bench_app, name="bench")
app.add_typer(model.model_app, name="model")
app.add_typer(model.tokenizer_app, name="tokenizer")
app.add_typer(sim.sim_app, name="sim")
app.add_typer(data.data_app, name="data")
app.add_typer(calibrate.calibrate_app, name="calibrate")
app.add_typer(export.export_app, name="export")
for module in (model, robot, train):
    for name, function in module.commands:
        app.command(name)(function)


def main() -> None:
    app()
