"""``coordscope report``: one self-contained HTML file of a run — the app's figures and the verdict table —
that opens offline (plotly.js is inlined once, nothing is fetched), to attach to a pull request or an
e-mail. Optionally the figures as PNG files, rendered by kaleido in a local Chromium.

A coord-check run gets its verdict, the coord-check figures of ``act_delta`` (TP5's definition) and ``act``
(what the ``mup`` package plots), the slope heatmap, the findings with hints and every judged layer; an LR
sweep gets its transfer verdict, the loss curves and the optima.
"""

from __future__ import annotations

import html
import os
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import plotly.graph_objects as go
import polars as pl

from coordscope import plots
from coordscope.config import ConfigSource
from coordscope.errors import ConfigError
from coordscope.runmeta import RunMeta, read_meta
from coordscope.store import along_axis, scan

if TYPE_CHECKING:  # the module imports torch, which the coord-check report does not need
    from coordscope.transfer import SweepReport

CHROMIUM = "/usr/bin/chromium"  # Debian's; BROWSER_PATH overrides it
FIGURE_SITES = ("act_delta", "act")
PNG_SCALE = 2

_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto; max-width: 1280px;
       color: #222; padding: 0 1rem; }
h1 { margin-bottom: .2rem; } .meta { color: #666; margin-top: 0; }
.banner { padding: .7rem 1rem; border-radius: .4rem; font-weight: 600; margin: 1rem 0; }
.pass { background: #e6f4ea; color: #1e6b34; } .fail { background: #fdecea; color: #9b1c1c; }
.warn { background: #fff6e0; color: #7a5200; }
table { border-collapse: collapse; font-size: .9rem; margin: .5rem 0 1.5rem; }
th, td { border-bottom: 1px solid #ddd; padding: .3rem .6rem; text-align: left; vertical-align: top; }
th { background: #f5f5f5; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.error td { background: #fdecea; } tr.warning td { background: #fff6e0; }
code { font-size: .85rem; }
"""


def _esc(value: object) -> str:
    return html.escape("" if value is None else str(value))


def _number(value: object, fmt: str = "+.2f") -> str:
    if not isinstance(value, (int, float)) or value != value:
        return "n/a"
    return format(value, fmt)


def _table(header: Sequence[str], rows: Sequence[Sequence[object]], classes: Sequence[str] = (),
           numeric: Sequence[int] = ()) -> str:
    """An HTML table; ``classes`` gives each row a class (its severity), ``numeric`` right-aligns columns."""
    head = "".join(f"<th>{_esc(h)}</th>" for h in header)
    body = []
    for index, row in enumerate(rows):
        cells = "".join(f'<td class="num">{_esc(c)}</td>' if i in numeric else f"<td>{_esc(c)}</td>"
                        for i, c in enumerate(row))
        cls = classes[index] if index < len(classes) else ""
        body.append(f'<tr class="{_esc(cls)}">{cells}</tr>')
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _meta_table(meta: RunMeta) -> str:
    keys = ("spec", "kind", "widths", "depths", "seeds", "steps", "lr", "lrs", "optimizer", "probes", "device", "dtype",
            "status", "created")
    data = meta.to_json()
    rows = [(k, ", ".join(map(str, v)) if isinstance(v, list) else v) for k in keys if (v := data.get(k)) is not None]
    rows += [(f"version {k}", v) for k, v in meta.versions.items()]
    return _table(("setting", "value"), rows)


Body = tuple[list[str], list[go.Figure], list[str]]  # HTML before the figures, the figures, HTML after them


def _coordcheck_body(run_dir: Path, probe: str | None, config: ConfigSource) -> Body:
    from coordscope.checking import check_run

    report = check_run(run_dir, config=config, allow_incomplete=True, probe=probe)
    order = report.layers.get_column("name").unique(maintain_order=True).to_list()
    parts = [f'<div class="banner {"pass" if report.ok else "fail"}">{_esc(report.headline)}</div>']
    if not report.complete:
        parts.append('<div class="banner warn">Incomplete run: some planned jobs have no shard; judged on what is '
                     "there.</div>")
    figures: list[go.Figure] = []
    rows = along_axis(scan(run_dir), report.meta)  # a dimension sweep: against that dimension
    if report.meta.depths:  # a depth sweep: curves against depth, layers matched across depths
        from coordscope.depth import depth_axis_rows

        rows = depth_axis_rows(rows)
    sites = [s for s in FIGURE_SITES if s in set(report.fits.get_column("site").to_list())]
    for site in sites:
        bands = plots.seed_bands(rows, site=site, probe=report.probe)
        figures.append(plots.coord_check_figure(bands, report.fits, order=order,
                                                title=f"coord check · {report.probe}({site})"))
    judged_sites = report.fits.filter(pl.col("judged")).get_column("site").unique().to_list()
    figures.append(plots.slope_heatmap(report.fits.filter(pl.col("site").is_in(judged_sites)), order=order,
                                       title="slope of log2(size) per doubling of width, by verdict"))
    axis = "depth" if report.meta.depths else report.meta.axis()
    if axis is not None:
        figures = [plots.label_axis(f, axis) for f in figures]
    findings = _table(
        ("", "layer", "site", "step", "slope", "± se", "expected", "verdict", "hint"),
        [(plots.WARN if f.severity == "error" else "", f.name, f.site, f.step, _number(f.slope),
          _number(f.stderr, ".2f"), _number(f.expected, "g"), f.verdict, f.hint) for f in report.findings],
        classes=[f.severity for f in report.findings], numeric=(3, 4, 5, 6),
    ) if report.findings else "<p>No findings: every judged layer is within tolerance.</p>"
    diagnoses = "".join(f"<li><b>{_esc(d.title)}</b> (<code>{_esc(d.rule)}</code>): {_esc(', '.join(d.layers))}. "
                        f"Fix: {_esc(d.hint)}</li>" for d in report.diagnoses)
    verdicts = report.judged.to_dicts()
    table = _table(
        ("layer", "site", "role", "worst step", "slope", "± se", "expected", "verdict", "severity"),
        [(r["name"], r["site"], r["role"], r["step"], _number(r["slope"]), _number(r["stderr"], ".2f"),
          "-" if r["expected_lo"] is None else f"{r['expected_lo']:g}..{r['expected_hi']:g}", r["verdict"],
          r["severity"]) for r in verdicts],
        classes=[r["severity"] for r in verdicts], numeric=(3, 4, 5),
    )
    after = ["<h2>Findings</h2>", findings]
    if diagnoses:
        after += ["<h2>Diagnosis</h2>", f"<ul>{diagnoses}</ul>"]
    if report.optimizer_family is not None:
        notes = "".join(f"<li><b>{_esc(n.role)} {_esc(n.key)}</b>: {_esc(n.message)} "
                        f"({_esc(', '.join(n.names))})</li>" for n in report.notes)
        notes = notes or "<li>learning rates and ε scale as μP's rule for these updates asks</li>"
        after += [f"<h2>Hyperparameters</h2><p>The hidden updates measured <b>{_esc(report.optimizer_family)}</b> "
                  "(from how their size follows the gradient and the learning rate, never from the optimizer's "
                  f"name).</p><ul>{notes}</ul>"]
    after += [f"<h2>Verdicts (probe {_esc(report.probe)})</h2>", table]
    return parts, figures, after


def _sweep_body(run_dir: Path) -> Body:
    """Every judgement of the sweep (one for a width sweep; across depth per width, and across width per
    depth, for a depth sweep), one after the other."""
    from coordscope.transfer import analyse_sweeps

    parts: list[str] = []
    figures: list[go.Figure] = []
    after: list[str] = []
    for sweep in analyse_sweeps(run_dir):
        p, f, a = _judgement_body(run_dir, sweep)
        parts, figures, after = parts + p, figures + f, after + a
    return parts, figures, after


def _judgement_body(run_dir: Path, sweep: SweepReport) -> Body:
    from coordscope.transfer import report_losses

    def _percent(value: object, fmt: str) -> str:
        """A fraction as a percentage; inf (a transferred lr next to a diverged job) as "diverged"."""
        if value == float("inf"):
            return "diverged"
        return _number(100 * value, fmt) + " %" if isinstance(value, float) and value == value else "n/a"

    a, where = sweep.axis, _esc(sweep.where)
    suffix = "" if a == "width" and sweep.at is None else f" across {a}{sweep.where}"  # a width sweep's as ever
    banner = "pass" if sweep.ok else "warn" if sweep.verdict == "inconclusive" else "fail"
    parts = [f'<div class="banner {banner}">{_esc(sweep.headline)}</div>']
    if sweep.hint:
        parts.append(f"<p><b>Hint:</b> {_esc(sweep.hint)}</p>")
    parts += [f'<div class="banner warn">{_esc(w)}</div>' for w in sweep.warnings]
    curves = plots.sweep_curves(report_losses(run_dir, sweep))
    figures = [
        plots.lr_sweep_figure(curves, sweep.optima, stable_from=sweep.stable_from, axis=a,
                              title=f"{sweep.metric} loss{suffix}"),
        plots.shift_figure({sweep.run: sweep.shifts}, tolerance=sweep.tolerance, axis=a,
                           stable_from={sweep.run: sweep.stable_from},
                           title=f"shift of the optimal lr per doubling of {a}{sweep.where}"),
    ]
    if not sweep.regret.is_empty():
        figures.append(plots.regret_figure(sweep.regret, title=f"transfer regret{suffix}", axis=a))
    optima = _table((a, "optimal log2 lr", "± se", "seed spread", "best loss", "diverged jobs", "jobs",
                     "inside grid"),
                    [(r["width"], _number(r["opt_log2_lr"]), _number(r["opt_se"], ".2f"), _number(r["spread"], ".2f"),
                      _number(r["best_loss"], ".4f"), r["diverged"], r["jobs"], r["bracketed"])
                     for r in sweep.optima.iter_rows(named=True)], numeric=(0, 1, 2, 3, 4, 5, 6))
    shifts = _table((f"{a}s", "shift per doubling", "± 90 %", "status"),
                    [(f"{r['width_lo']} → {r['width_hi']}", _number(r["shift"]), _number(r["shift_ci"], ".2f"),
                      r["status"]) for r in sweep.shifts.iter_rows(named=True)],
                    classes=["" if r == "within" else "warning" if r == "unresolved" else "error"
                             for r in sweep.shifts["status"]], numeric=(1, 2))
    trend = sweep.trend
    after = [f"<h2>Optima{_esc(suffix)}</h2>", optima, f"<h2>Shift of the optimum per doubling of {a}{where}</h2>",
             shifts,
             f"<p>Trend: <b>{_esc(trend.shape)}</b> (|shift| changes {_number(trend.slope)} ± "
             f"{_number(trend.stderr, '.2f')} per doubling); stable from: "
             f"<b>{_esc(sweep.stable_from if sweep.stable_from is not None else 'no ' + a)}</b>; tolerance "
             f"±{sweep.tolerance:g} log2 lr per doubling.</p>"]
    if not sweep.regret.is_empty():
        after += [f"<h2>Transfer regret{_esc(suffix)}</h2>", _table(
            (f"lr tuned at {a}", a, "log2 lr", "loss there", "best loss", "regret", "± se"),
            [(f"{r['source_width']} ({'proxy' if r['source'] == 'proxy' else 'N'})", r["width"],
              _number(r["log2_lr"]), _number(r["loss"], ".4f"), _number(r["best_loss"], ".4f"),
              _percent(r["regret_rel"], "+.2f"), _percent(r["regret_rel_se"], ".2f"))
             for r in sweep.regret.iter_rows(named=True)],
            numeric=(1, 2, 3, 4, 5, 6))]
    return parts, figures, after


def _figure_html(figures: Sequence[go.Figure]) -> str:
    """Each figure as a div; plotly.js is inlined with the first only (one copy, no network)."""
    return "".join(
        fig.to_html(full_html=False, include_plotlyjs=(i == 0), config={"displaylogo": False, "responsive": True})
        for i, fig in enumerate(figures)
    )


def png_names(figures: Sequence[go.Figure], stem: str) -> list[str]:
    """A file name per figure that says what it shows: ``<stem>-<its title as a slug>.png`` (``report-coord-
    check-rms-act_delta.png``), numbered only where two titles would collide."""
    names: list[str] = []
    for index, fig in enumerate(figures):
        title = str(fig.layout.title.text or f"figure {index + 1}")
        slug = re.sub(r"[^A-Za-z0-9_.]+", "-", title).strip("-").lower() or f"figure-{index + 1}"
        name = f"{stem}-{slug}.png"
        names.append(name if name not in names else f"{stem}-{slug}-{index + 1}.png")
    return names


def write_pngs(figures: Sequence[go.Figure], png_dir: str | os.PathLike[str], stem: str) -> list[Path]:
    """Render ``figures`` to ``png_dir`` (names from :func:`png_names`) with kaleido in a local Chromium
    (``BROWSER_PATH``, else Debian's ``/usr/bin/chromium``), fully offline: plotly.js from the plotly
    package, MathJax off."""
    try:
        import kaleido
    except ImportError:
        raise ConfigError("--png needs kaleido: pip install 'coordscope[png]'") from None
    browser = os.environ.get("BROWSER_PATH", CHROMIUM)
    if not Path(browser).is_file():
        raise ConfigError(f"--png needs Chromium at {browser} (apt-get install chromium, or set BROWSER_PATH)")
    directory = Path(png_dir)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create PNG directory {str(directory)!r}: {exc.strerror}") from None
    paths = [directory / name for name in png_names(figures, stem)]
    specs = [{"fig": fig.to_dict(), "path": path,
              "opts": {"format": "png", "width": 1200, "height": int(fig.layout.height or 500), "scale": PNG_SCALE}}
             for fig, path in zip(figures, paths, strict=True)]
    kaleido.write_fig_from_object_sync(specs, kopts={"mathjax": False, "path": browser})
    return paths


def write_html_report(run_dir: str | os.PathLike[str], out: str | os.PathLike[str],
                      png_dir: str | os.PathLike[str] | None = None, *, probe: str | None = None,
                      config: ConfigSource = None) -> Path:
    """Write the HTML report of the run (coord check or LR sweep) in ``run_dir`` to ``out``; with
    ``png_dir``, also each figure as a PNG there. ``probe``: which recorded probe to judge (default rms);
    ``config``: where ``[tool.coordscope]`` comes from (None: the nearest pyproject.toml), as for ``check``.
    Returns ``out``. Bad input (no run, unwritable output) raises a CoordscopeError."""
    run_dir = Path(run_dir)
    meta = read_meta(run_dir)
    name = meta.run
    if meta.kind == "lrsweep":
        before, figures, after = _sweep_body(run_dir)
        title = f"coordscope LR sweep · {name}"
    else:
        before, figures, after = _coordcheck_body(run_dir, probe, config)
        title = f"coordscope check · {name}"
    body = "\n".join([*before, _figure_html(figures), *after])
    page = (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{_esc(title)}</title>'
            f"<style>{_STYLE}</style></head><body><h1>{_esc(title)}</h1>"
            f'<p class="meta">spec <code>{_esc(meta.spec)}</code> · written '
            f"{time.strftime('%Y-%m-%d %H:%M')} from <code>{_esc(run_dir)}</code></p>{body}"
            f"<h2>Run</h2>{_meta_table(meta)}</body></html>\n")
    target = Path(out)
    try:
        target.write_text(page, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot write {str(target)!r}: {exc.strerror}") from None
    if png_dir is not None:
        write_pngs(figures, png_dir, target.stem)
    return target
