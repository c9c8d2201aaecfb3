"""``coordscope app``: the Streamlit dashboard over a directory of runs, on this machine only by default."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from typing import NoReturn

import click

from coordscope.cli.options import config_option
from coordscope.errors import ConfigError

LOCALHOST = "127.0.0.1"
DEFAULT_PORT = 8501


def streamlit_command(root: Path, *, port: int, host: str, config: Path | None = None) -> list[str]:
    """The ``streamlit run`` command line of the dashboard over ``root`` (no browser is opened by Streamlit,
    no usage statistics are sent, no file watcher runs, no developer toolbar is shown). ``config``: the
    pyproject.toml whose ``[tool.coordscope]`` the dashboard judges with (default: the nearest one)."""
    found = importlib.util.find_spec("coordscope.app")  # locates the package without running anything
    if found is None or found.origin is None:
        raise ConfigError("the dashboard (coordscope.app) is not installed with this coordscope")
    script = Path(found.origin).resolve().parent / "main.py"
    return [sys.executable, "-m", "streamlit", "run", str(script),
            "--server.headless", "true", "--browser.gatherUsageStats", "false",
            "--server.fileWatcherType", "none", "--client.toolbarMode", "viewer",
            "--server.address", host, "--server.port", str(port),
            "--", "--root", str(root), *(["--config", str(config)] if config is not None else [])]


def serve(root: str | Path, *, port: int = DEFAULT_PORT, host: str = LOCALHOST,
          config: str | Path | None = None) -> NoReturn:
    """Become the dashboard over the runs under ``root``: this process is replaced by Streamlit (exec), so
    Ctrl-C, SIGTERM and a supervisor's kill reach the server itself and no orphan server is left behind."""
    path = Path(root)
    if not path.is_dir():
        raise ConfigError(f"runs directory {str(path)!r} does not exist (record a run first, or try coordscope demo)")
    if not 0 < port < 65536:
        raise ConfigError(f"--port {port}: not a TCP port (1-65535)")
    click.echo(f"coordscope app: runs under {path.resolve()} on http://{host}:{port}  (Ctrl-C stops it)")
    sys.stdout.flush()
    sys.stderr.flush()
    if config is not None and not Path(config).is_file():
        raise ConfigError(f"config file {str(config)!r} does not exist")
    command = streamlit_command(path.resolve(), port=port, host=host,
                                config=None if config is None else Path(config).resolve())
    os.execv(command[0], command)


@click.command()
@click.argument("runs_dir", default="runs", type=click.Path(file_okay=False))
@click.option("--port", type=int, default=DEFAULT_PORT, show_default=True, help="TCP port to serve on.")
@click.option("--host", default=LOCALHOST, show_default=True,
              help="Address to bind; the default serves this machine only (0.0.0.0 exposes the runs to the network).")
@config_option
def app(runs_dir: str, port: int, host: str, config_path: str | None) -> None:
    """Open the dashboard over the runs in RUNS_DIR (default ./runs): coord-check curves, slopes and
    verdicts, LR sweeps, and runs side by side. The app reads no run outside RUNS_DIR; its verdicts are
    those of `coordscope check` (the same [tool.coordscope] overrides and tolerance)."""
    serve(runs_dir, port=port, host=host, config=config_path)
