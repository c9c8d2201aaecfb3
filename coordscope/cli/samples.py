"""``coordscope samples``: the sample models and planted bugs, by short name."""

from __future__ import annotations

import click


@click.command()
def samples() -> None:
    """List the sample specs (use a name wherever a SPEC is expected) and the verdict each should get."""
    from coordscope.sample_models import SAMPLES

    width = max(len(n) for n in SAMPLES)
    for name, sample in SAMPLES.items():
        verdict = "passes" if sample.expect == "pass" else f"fails ({sample.bug or 'not μP'})"
        verdict = verdict if sample.axis == "width" else f"{sample.axis} sweep: {verdict}"
        click.echo(f"{name:<{width}}  {sample.description}  [{verdict}]")
