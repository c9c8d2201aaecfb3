"""``coordscope run``: record a coordinate check into a run directory."""

from __future__ import annotations

from typing import Any

import click

from coordscope.cli.options import config_option, run_kwargs, run_options


@click.command()
@click.argument("spec")
@config_option
@run_options
def run(spec: str, config_path: str | None, **params: Any) -> None:
    """Record a coordinate check of SPEC: a .py file, a module, module:attr or a sample name
    (see `coordscope samples`).

    Each (width, seed) job trains the model for --steps steps on the spec's first batch and streams the
    size of every activation, gradient and update into a Parquet shard under --out. Unset flags come from
    [tool.coordscope] in the nearest pyproject.toml, then from the spec's DEFAULTS.
    """
    from coordscope.coordcheck import run as record

    run_dir = record(spec, config=config_path, **run_kwargs(params))
    click.echo(f"recorded {run_dir}  (check it: coordscope check {run_dir})")
