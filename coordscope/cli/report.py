"""``coordscope report``: a run as one self-contained HTML file (and optionally PNG figures)."""

from __future__ import annotations

import click

from coordscope.cli.options import config_option


@click.command()
@click.argument("run_dir", type=click.Path())
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="HTML file to write.")
@click.option("--png", "png_dir", type=click.Path(file_okay=False),
              help="Also write every figure as a PNG into this directory (needs kaleido and Chromium).")
@click.option("--probe", help="Recorded probe to judge (default rms).")
@config_option
def report(run_dir: str, out: str, png_dir: str | None, probe: str | None, config_path: str | None) -> None:
    """Write the report of RUN_DIR (a coord check or an LR sweep) to --out: the verdict, the figures and the
    verdict table in one HTML file that opens offline. The verdict is the one `coordscope check` gives (the same
    [tool.coordscope] overrides and tolerance)."""
    from coordscope.htmlreport import write_html_report

    path = write_html_report(run_dir, out, png_dir, probe=probe, config=config_path)
    click.echo(f"wrote {path}" + (f" and PNG figures in {png_dir}" if png_dir else ""))
