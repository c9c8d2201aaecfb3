"""``coordscope check``: judge a run (or record a spec, then judge it); exit 0 pass, 1 violations, 2 bad input."""

from __future__ import annotations

import sys
from typing import Any

import click

from coordscope.choices import FORMATS
from coordscope.cli.options import config_option, run_kwargs, run_options


@click.command()
@click.argument("target")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="text", show_default=True,
              help="text: a table; json: the check JSON; junit: JUnit XML, one test case per judged layer; "
                   "markdown: for a CI step summary.")
@click.option("--output", "-o", type=click.Path(dir_okay=False, writable=True),
              help="Write the report to this file instead of stdout.")
@click.option("--failures-only", is_flag=True,
              help="List only the layers that fail or warn (the headline still counts every judged layer).")
@click.option("--allow-incomplete", is_flag=True, help="Judge a run with missing jobs instead of refusing it.")
@click.option("--override", "overrides", multiple=True, metavar="PATTERN:SITE:KEY=VALUE,...",
              help="Change how matching fits are judged (repeatable; after [tool.coordscope] overrides). "
                   "PATTERN globs names (* and ?), SITE is a site or *; keys: expected=SLOPE or LOW..HIGH, "
                   "tol=X, probe=NAME, ignore. E.g. 'readout*:act_delta:expected=0..1,tol=0.4'.")
@click.option("--probe", "judge_probe", help="Which recorded probe to judge (default rms).")
@click.option("--tolerance", type=float, help="Absolute slope tolerance (default 0.25).")
@click.option("--sigma", type=float, help="Standard errors of slack when larger than --tolerance (default 3).")
@config_option
@run_options
def check(target: str, fmt: str, output: str | None, failures_only: bool, allow_incomplete: bool,
          overrides: tuple[str, ...], judge_probe: str | None, tolerance: float | None, sigma: float | None,
          config_path: str | None, **params: Any) -> None:
    """Judge whether TARGET scales as μP predicts: a run directory, or a spec (a .py file, module,
    module:attr or sample name), which is recorded first with the same flags as `coordscope run`.

    Slopes of log2(size) against log2(width) are fitted per layer, site and step; judged layers outside
    their expected range name a likely cause and fix. Exit codes: 0 all good, 1 μP violations, 2 bad input.
    """
    from coordscope.checking import check as run_check
    from coordscope.report import write

    report = run_check(target, overrides=overrides, allow_incomplete=allow_incomplete, probe=judge_probe,
                       tolerance=tolerance, sigma=sigma, config=config_path, **run_kwargs(params))
    text = write(report, fmt, output, failures_only=failures_only)
    if output is None:
        click.echo(text, nl=False)
    else:
        click.echo(f"coordscope: wrote {output}: {'PASS' if report.ok else 'FAIL'} ({report.regime})", err=True)
    sys.exit(0 if report.ok else 1)
