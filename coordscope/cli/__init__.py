"""The ``coordscope`` command line: one click group, one module per command.

Every :class:`coordscope.errors.CoordscopeError` (bad input the user can fix) becomes one line on stderr
and exit code 2, never a traceback. Exit code 1 is reserved for "μP violations found" (``check``, ``sweep``).
"""

from __future__ import annotations

import sys
from typing import Any

import click

from coordscope.errors import CoordscopeError


class _Group(click.Group):
    """A click group that reports user errors in one line with exit code 2."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except CoordscopeError as exc:
            click.echo(f"coordscope: error: {exc}", err=True)
            sys.exit(2)
        except KeyboardInterrupt:
            click.echo("coordscope: interrupted", err=True)
            sys.exit(130)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="coordscope")
def main() -> None:
    """coordscope: coordinate checks for μP.

    Record how every activation, gradient and update of a PyTorch model scales with width, judge the
    slopes, and show them. Exit codes: 0 all good, 1 μP violations found, 2 bad input.
    """


from coordscope.cli.run import run  # noqa: E402
from coordscope.cli.samples import samples  # noqa: E402

main.add_command(run)
main.add_command(samples)
