"""``coordscope app``: the Streamlit dashboard over a directory of runs, on this machine only by default."""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn
from urllib.parse import quote

import click

from coordscope.cli.options import config_option
from coordscope.errors import ConfigError

LOCALHOST = "127.0.0.1"
DEFAULT_PORT = 8501


def streamlit_command(root: Path, *, port: int, host: str, config: Path | None = None,
                      open_runs: Sequence[str] = ()) -> list[str]:
    """The ``streamlit run`` command line of the dashboard over ``root`` (no browser is opened by Streamlit,
    no usage statistics are sent, no file watcher runs, no developer toolbar is shown). ``config``: the
    pyproject.toml whose ``[tool.coordscope]`` the dashboard judges with (default: the nearest one).
    ``open_runs``: the runs each page shows first (the first of its kind), when the URL names none."""
    found = importlib.util.find_spec("coordscope.app")  # locates the package without running anything
    if found is None or found.origin is None:
        raise ConfigError("the dashboard (coordscope.app) is not installed with this coordscope")
    script = Path(found.origin).resolve().parent / "main.py"
    return [sys.executable, "-m", "streamlit", "run", str(script),
            "--server.headless", "true", "--browser.gatherUsageStats", "false",
            "--server.fileWatcherType", "none", "--client.toolbarMode", "viewer",
            "--server.address", host, "--server.port", str(port),
            "--", "--root", str(root), *(["--config", str(config)] if config is not None else []),
            *(arg for name in open_runs for arg in ("--open", name))]


def serve(root: str | Path, *, port: int = DEFAULT_PORT, host: str = LOCALHOST,
          config: str | Path | None = None, open_runs: Sequence[str] = ()) -> NoReturn:
    """Become the dashboard over the runs under ``root``: this process is replaced by Streamlit (exec), so
    Ctrl-C, SIGTERM and a supervisor's kill reach the server itself and no orphan server is left behind.
    ``open_runs``: the runs (names under ``root``) the pages open on, the first of each kind."""
    path = Path(root)
    if not path.is_dir():
        raise ConfigError(f"runs directory {str(path)!r} does not exist (record a run first, or try coordscope demo)")
    if not 0 < port < 65536:
        raise ConfigError(f"--port {port}: not a TCP port (1-65535)")
    from coordscope.runmeta import META

    missing = [name for name in open_runs if not (path / name / META).is_file()]
    if missing:
        raise ConfigError(f"--open {missing[0]}: no run of that name under {str(path)!r}")
    query = f"/?run={quote(open_runs[0])}" if open_runs else ""
    click.echo(f"coordscope app: runs under {path.resolve()} on http://{host}:{port}{query}  (Ctrl-C stops it)")
    sys.stdout.flush()
    sys.stderr.flush()
    if config is not None and not Path(config).is_file():
        raise ConfigError(f"config file {str(config)!r} does not exist")
    command = streamlit_command(path.resolve(), port=port, host=host,
                                config=None if config is None else Path(config).resolve(), open_runs=open_runs)
    os.execv(command[0], command)


@click.command()
@click.argument("runs_dir", default="runs", type=click.Path(file_okay=False))
@click.option("--port", type=int, default=DEFAULT_PORT, show_default=True, help="TCP port to serve on.")
@click.option("--host", default=LOCALHOST, show_default=True,
              help="Address to bind; the default serves this machine only (0.0.0.0 exposes the runs to the network).")
@click.option("--open", "open_runs", multiple=True, metavar="RUN",
              help="A run under RUNS_DIR to show first (repeatable: the first of each kind, coord check or LR "
                   "sweep, is what its pages open on; default: the first by name).")
@config_option
def app(runs_dir: str, port: int, host: str, open_runs: tuple[str, ...], config_path: str | None) -> None:
    """Open the dashboard over the runs in RUNS_DIR (default ./runs): coord-check curves, slopes and
    verdicts, LR sweeps, and runs side by side. The app reads no run outside RUNS_DIR; its verdicts are
    those of `coordscope check` (the same [tool.coordscope] overrides and tolerance)."""
    serve(runs_dir, port=port, host=host, config=config_path, open_runs=open_runs)
