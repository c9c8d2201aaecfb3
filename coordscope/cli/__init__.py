"""The ``coordscope`` command line: one click group, one module per command.

Every :class:`coordscope.errors.CoordscopeError` (bad input the user can fix — an exception raised by the
user's own model, loss or optimizer included) becomes one line on stderr and exit code 2, never a
traceback; ``coordscope --traceback COMMAND`` prints the whole chain instead, to debug the user's code.
Exit code 1 is reserved for "μP violations found" (``check``, ``sweep``).

Starting is cheap: this module and the command modules import neither torch nor streamlit at the top,
so ``--help``, ``--version`` and ``samples`` answer at once; each command imports what it runs.
"""

from __future__ import annotations

import sys
import traceback
from typing import Any

import click

from coordscope.errors import CoordscopeError
from coordscope.heap import keep_freed_memory


class _Group(click.Group):
    """A click group whose every error is one line on stderr: exit 2 for bad input (a CoordscopeError or
    a usage error), 130 for Ctrl-C. Commands exit 1 themselves when they find μP violations."""

    def main(self, args: Any = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        try:
            code = super().main(args=args, prog_name=prog_name or "coordscope", complete_var=complete_var,
                                standalone_mode=False, **extra)
        except CoordscopeError as exc:
            if _SHOW_TRACEBACK[0]:
                traceback.print_exception(exc)
            click.echo(f"coordscope: error: {exc}", err=True)
            sys.exit(2)
        except click.UsageError as exc:
            command = " ".join(["coordscope", *(exc.ctx.command_path.split()[1:] if exc.ctx else [])])
            click.echo(f"coordscope: error: {exc.format_message()} (see {command} --help)", err=True)
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            click.echo(f"coordscope: error: {exc.format_message()}", err=True)
            sys.exit(exc.exit_code)
        except (KeyboardInterrupt, click.exceptions.Abort):
            click.echo("coordscope: interrupted", err=True)
            sys.exit(130)
        sys.exit(code if isinstance(code, int) else 0)


_SHOW_TRACEBACK = [False]


def _show_traceback(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    _SHOW_TRACEBACK[0] = value


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="coordscope")
@click.option("--traceback", is_flag=True, expose_value=False, callback=_show_traceback,
              help="On bad input, also print the full traceback (e.g. of an exception raised by your model, "
                   "loss or optimizer).")
def main() -> None:
    """coordscope: coordinate checks for μP.

    Record how every activation, gradient and update of a PyTorch model scales with width, judge the
    slopes, and show them. Exit codes: 0 all good, 1 μP violations found, 2 bad input.

    With glibc, a coordscope process (and its workers) keeps the memory it frees until it exits, so that
    job after job trains without page faults on fresh memory (README, Performance).
    """
    keep_freed_memory()  # this process is ours: train job after job without fresh-page faults (heap.py)


from coordscope.cli.app import app  # noqa: E402
from coordscope.cli.check import check  # noqa: E402
from coordscope.cli.demo import demo  # noqa: E402
from coordscope.cli.report import report  # noqa: E402
from coordscope.cli.run import run  # noqa: E402
from coordscope.cli.samples import samples  # noqa: E402
from coordscope.cli.sweep import sweep  # noqa: E402

main.add_command(app)
main.add_command(check)
main.add_command(demo)
main.add_command(report)
main.add_command(run)
main.add_command(samples)
main.add_command(sweep)
