"""The result of a check (:class:`Report`) and its renderings: a text table, the contract's JSON, JUnit XML
(one test case per judged layer, so CI systems show it natively) and Markdown (for a CI step summary).

Everything is rendered from the same two tables, so the formats never disagree: ``fits`` (one row per
name, site, probe and step) and ``layers`` (one row per name, site and probe: its worst step). Their
columns, for anyone building on them (the HTML report and the app do):

=====================  ==================================================================================
name, site, probe      what was measured (store columns); ``step`` in ``fits``, the worst step in ``layers``
role, module           the layer's μP role (input, hidden, output, vector, fixed, attn_logits, loss, …)
n, n_widths            points and distinct widths fitted (zero, negative and non-finite values are not)
n_skipped              zero or negative values skipped; ``n_nonfinite`` NaN/inf values
first_nonfinite_width  smallest width with a non-finite value at that step
slope, intercept       least squares of log2(value) on log2(width) over all seeds
stderr, r2             standard error of the slope (null below 3 points) and R²
expected               the slope μP expects (0, clipped into the expected range)
expected_lo/hi         the expected range (null: nothing expected, not judged)
judged, ignored        whether the fit counts for pass/fail; whether an override said to ignore it
tolerance              max(absolute tolerance, sigma × stderr)
excess                 distance outside range + tolerance (> 0: a violation)
verdict                flat | exploding | vanishing | diverged | undetermined (null: nothing expected)
severity               error | warning | info | ok
steps                  (``layers`` only) steps with an error or warning; ``first_step``/``first_width`` where
                       a diverged layer first went non-finite; ``layer_judged``: some step of the layer is judged
=====================  ==================================================================================
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from coordscope.analysis import DEFAULT_TOLERANCE, Finding, Tolerance
from coordscope.choices import FORMATS
from coordscope.config import Override
from coordscope.diagnose import Diagnosis
from coordscope.errors import ConfigError
from coordscope.hyperparams import Note
from coordscope.runmeta import RunMeta

_MARK = {"error": "FAIL", "warning": "WARN", "ok": "ok", "info": ""}
_MD_MARK = {"error": "❌", "warning": "⚠️", "ok": "✅", "info": ""}


@dataclass(frozen=True)
class Report:
    """The outcome of :func:`coordscope.check`.

    ``ok`` is false iff some finding has severity ``error``; ``complete`` says whether every planned job
    of the run was there. ``findings`` are the layers (name, site, probe) with an error or warning, each
    with a ``hint`` (see :mod:`coordscope.diagnose`); ``fits`` and ``layers`` are the tables described in
    this module's docstring; ``diagnoses`` the rules that fired; ``regime`` the label of the whole model.
    """

    ok: bool
    complete: bool
    run_dir: Path
    meta: RunMeta
    findings: list[Finding]
    fits: pl.DataFrame
    layers: pl.DataFrame
    diagnoses: list[Diagnosis]
    regime: str
    probe: str
    tolerance: Tolerance = DEFAULT_TOLERANCE
    overrides: tuple[Override, ...] = ()
    hyperparameters: pl.DataFrame | None = None
    optimizer_family: str | None = None
    notes: tuple[Note, ...] = ()
    temporary: bool = False  # recorded into a temporary directory that is gone now (no ``out`` was given)

    @property
    def errors(self) -> list[Finding]:
        """Findings that fail the check."""
        return [f for f in self.findings if f.severity == "error"]

    @property
    def judged(self) -> pl.DataFrame:
        """The layer rows that count (judged), plus any other row with an error or warning."""
        return self.layers.filter(pl.col("layer_judged") | pl.col("severity").is_in(["error", "warning"]))

    def to_dict(self) -> dict[str, Any]:
        """The check JSON of DESIGN.md: ``ok``, ``complete``, ``findings`` (contract keys plus extras), and
        ``run``, ``run_dir``, ``spec``, ``regime``, ``probe``, ``tolerance``, ``counts``, ``diagnoses``,
        ``layers`` (every judged layer's worst step) and ``per_step`` (the verdict of every judged layer at
        every step: an early rise that flattens later reads differently from steady growth)."""
        judged = self.judged
        return {
            "ok": self.ok,
            "complete": self.complete,
            "run": self.meta.run,
            "run_dir": None if self.temporary else str(self.run_dir),
            "spec": self.meta.spec,
            "regime": self.regime,
            "probe": self.probe,
            "tolerance": {"absolute": self.tolerance.absolute, "sigma": self.tolerance.sigma},
            "counts": {"judged": judged.filter(pl.col("layer_judged")).height, "errors": len(self.errors),
                       "warnings": sum(f.severity == "warning" for f in self.findings)},
            "findings": [f.to_dict() for f in self.findings],
            "diagnoses": [d.to_dict() for d in self.diagnoses],
            "layers": [_clean(row) for row in judged.select(
                "name", "site", "probe", "role", "step", "slope", "stderr", "r2", "expected", "expected_lo",
                "expected_hi", "tolerance", "verdict", "severity", pl.col("layer_judged").alias("judged"),
            ).to_dicts()],
            "hyperparameters": {
                "optimizer_family": self.optimizer_family,
                "notes": [n.to_dict() for n in self.notes],
                "slopes": [] if self.hyperparameters is None else [_clean(r) for r in self.hyperparameters.to_dicts()],
            },
            "per_step": [_clean(row) for row in self.fits.filter(pl.col("judged")).select(
                "name", "site", "probe", "step", "slope", "stderr", "expected_lo", "expected_hi", "verdict",
                "severity",
            ).sort("name", "site", "probe", "step").to_dicts()],
        }

    @property
    def headline(self) -> str:
        """The verdict in one line — what ``check``, the HTML report, the dashboard and the demo all show:
        PASS or FAIL, how many judged layer sites violate μP, the regime, and whether the run is complete."""
        judged = self.judged.filter(pl.col("layer_judged")).height
        unjudged = len({f.key for f in self.errors if f.verdict == "undetermined"})
        violating = len({f.key for f in self.errors}) - unjudged
        if self.ok:
            text = f"PASS: {judged} judged layer sites scale as μP predicts"
        elif violating:
            text = f"FAIL: {violating} of {judged} judged layer sites violate μP"
            text += f", {unjudged} could not be judged" if unjudged else ""
        else:
            text = f"FAIL: {unjudged} of {judged} judged layer sites could not be judged (see the hint)"
        text += f" · regime: {self.regime}"
        if not self.complete:
            text += " · INCOMPLETE run (some jobs missing)"
        return text

    def render(self, fmt: str = "text", *, failures_only: bool = False) -> str:
        """The report as ``text``, ``json``, ``junit`` or ``markdown``; ``failures_only`` keeps only the
        layers with an error or warning in the tables (the headline still counts every judged layer)."""
        renderers = {"text": render_text, "json": render_json, "junit": render_junit,
                     "markdown": render_markdown}
        if fmt not in renderers:
            raise ConfigError(f"unknown format {fmt!r} (choose from {', '.join(FORMATS)})")
        return renderers[fmt](self, failures_only)

    def __str__(self) -> str:
        return render_text(self)


def _clean(row: Mapping[str, Any]) -> dict[str, Any]:
    return {k: (None if isinstance(v, float) and v != v else v) for k, v in row.items()}


def _signed(value: float | None) -> str:
    if value is None or value != value:
        return "n/a"
    return f"{value if abs(value) >= 0.005 else 0.0:+.2f}"  # no "-0.00"


def _range(lo: float | None, hi: float | None) -> str:
    if lo is None or hi is None:
        return "-"
    return f"{lo:g}" if lo == hi else f"{lo:g}..{hi:g}"


def _slope_cell(row: Mapping[str, Any]) -> str:
    se = row.get("stderr")
    return _signed(row.get("slope")) + ("" if se is None or se != se else f" ± {se:.2f}")


def _context(report: Report) -> str:
    meta = report.meta
    parts = [f"run {meta.run}", f"spec {meta.spec}", f"widths {','.join(map(str, meta.widths))}",
             f"seeds {len(meta.seeds)}", f"steps 0..{meta.steps}", f"{meta.optimizer or '?'} lr {meta.lr}",
             f"probe {report.probe}"]
    if meta.depths:
        parts.insert(3, f"depths {','.join(map(str, meta.depths))}")
    for name, values in (meta.dims or {}).items():  # a dimension sweep: fitted against it, at one width
        parts.insert(3, f"{name} {','.join(map(str, values))}")
    return " · ".join(parts)


def _rows(report: Report, failures_only: bool = False) -> list[dict[str, Any]]:
    rows = report.judged
    if failures_only:
        rows = rows.filter(pl.col("severity").is_in(["error", "warning"]))
    return rows.to_dicts()


def _steps_cell(steps: Sequence[int] | None) -> str:
    """The steps with an error or warning, as ranges (``1-3,5``)."""
    runs: list[list[int]] = []
    for step in steps or ():
        if runs and step == runs[-1][-1] + 1:
            runs[-1].append(step)
        else:
            runs.append([step])
    return ",".join(str(r[0]) if len(r) == 1 else f"{r[0]}-{r[-1]}" for r in runs)


def _site_cell(row: Mapping[str, Any], probe: str) -> str:
    """The site, and the probe where it is not the run's chosen one (``param_update [rel_spectral]``: a
    weight's update relative to the weight, as a spectral norm)."""
    return row["site"] if row["probe"] == probe else f"{row['site']} [{row['probe']}]"


def render_text(report: Report, failures_only: bool = False) -> str:
    """A fixed-width table of every judged layer (worst step), then the diagnoses with their hints."""
    header = ("", "layer", "site", "role", "step", "slope ± se", "expected", "verdict", "failing steps")
    table = [header] + [
        (_MARK.get(r["severity"], ""), r["name"], _site_cell(r, report.probe), r["role"] or "", str(r["step"]),
         _slope_cell(r),
         _range(r["expected_lo"], r["expected_hi"]), r["verdict"] or "", _steps_cell(r.get("steps")))
        for r in _rows(report, failures_only)
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    lines = [f"coordscope check · {_context(report)}", report.headline, ""]
    lines += ["  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
              for row in table]
    if report.diagnoses:
        lines += ["", "diagnosis:"]
        for d in report.diagnoses:
            lines.append(f"  [{d.rule}] {d.title}: {', '.join(d.layers)}")
            lines.append(f"      fix: {d.hint}")
    if report.optimizer_family is not None:
        lines += ["", f"hyperparameters (the hidden updates measured {report.optimizer_family}):"]
        lines += [f"  {n.role} {n.key}: {n.message} ({', '.join(n.names)})" for n in report.notes] or [
            "  learning rates and ε scale as μP's rule for these updates asks"]
    tol = report.tolerance
    # A depth sweep: names '@ depth L' are width fits; a dimension sweep is fitted against that dimension.
    axis = "depth" if report.meta.depths else report.meta.axis() or "width"
    lines += ["", f"slope = d log2(size) / d log2({axis}) at the worst step; tolerance max({tol.absolute:g}, "
              f"{tol.sigma:g}·stderr); "
              + ("recorded in a temporary directory, now removed (pass --out DIR to keep the run)" if report.temporary
                 else f"run dir {report.run_dir}")]
    return "\n".join(lines) + "\n"


def render_json(report: Report, failures_only: bool = False) -> str:
    """:meth:`Report.to_dict` as indented JSON (``layers`` and ``per_step`` cut to failing layers with
    ``failures_only``)."""
    data = report.to_dict()
    if failures_only:
        failing = {(f.name, f.site, f.probe) for f in report.findings}
        for key in ("layers", "per_step"):
            data[key] = [r for r in data[key] if (r["name"], r["site"], r["probe"]) in failing]
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")


def _md_code(text: str) -> str:
    """A code span in a table cell: only the pipe needs escaping there (entities are not decoded)."""
    return "`" + text.replace("|", "\\|") + "`"


def _md_header(columns: Sequence[str]) -> list[str]:
    return ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]


def render_markdown(report: Report, failures_only: bool = False) -> str:
    """A heading with the verdict, the findings table (or a line saying there are none), the diagnoses
    and, folded, every judged layer — for ``$GITHUB_STEP_SUMMARY`` and pull-request comments."""
    mark = "✅" if report.ok else "❌"
    out = [f"### {mark} coordscope check: {_md_escape(report.headline)}", "", f"_{_md_escape(_context(report))}_", ""]
    columns = ["", "layer", "site", "role", "step", "slope ± se", "expected", "verdict"]
    if report.findings:
        out += _md_header([*columns, "cause"])
        for f in report.findings:
            cause = _md_code(f.rule) if f.rule else _md_escape(f.hint)
            out.append(f"| {_MD_MARK[f.severity]} | {_md_code(f.name)} | {f.site} | {f.role} | {f.step} | "
                       f"{_signed(f.slope)}{'' if f.stderr is None else f' ± {f.stderr:.2f}'} | "
                       f"{_range(*(f.expected_range or (None, None)))} | {f.verdict} | {cause} |")
    else:
        out.append("No findings: every judged layer is within tolerance.")
    if report.diagnoses:
        out += ["", "**Diagnosis**", ""]
        out += [f"- **{_md_escape(d.title)}** ({_md_code(d.rule)}): {', '.join(map(_md_code, d.layers))}. "
                f"{_md_escape(d.hint)}" for d in report.diagnoses]
    out += ["", "<details><summary>All judged layers</summary>", "", *_md_header(columns)]
    for r in _rows(report, failures_only):
        out.append(f"| {_MD_MARK.get(r['severity'], '')} | {_md_code(r['name'])} | {_site_cell(r, report.probe)} | "
                   f"{r['role']} | "
                   f"{r['step']} | {_slope_cell(r)} | {_range(r['expected_lo'], r['expected_hi'])} | "
                   f"{r['verdict'] or ''} |")
    out += ["", "</details>", ""]
    return "\n".join(out)


def render_junit(report: Report, failures_only: bool = False) -> str:
    """JUnit XML: one test suite for the run, one test case per judged layer (name · site [probe]); a
    violation is a ``<failure>`` whose message is the verdict and whose text is the hint; warnings go to
    ``<system-out>``."""
    by_key = {f.key: f for f in report.findings}
    suite_name = f"coordscope.{report.meta.run}"
    rows = _rows(report, failures_only)
    suite = ET.Element("testsuite", name=suite_name, tests=str(len(rows)),
                       failures=str(sum(r["severity"] == "error" for r in rows)), errors="0", skipped="0")
    for r in rows:
        case = ET.SubElement(suite, "testcase", classname=suite_name,
                             name=f"{r['name']} · {r['site']} [{r['probe']}]")
        finding = by_key.get((r["name"], r["site"], r["probe"]))
        summary = (f"{r['verdict']}: slope {_slope_cell(r)} at step {r['step']}, expected "
                   f"{_range(r['expected_lo'], r['expected_hi'])}")
        if finding is not None and finding.severity == "error":
            failure = ET.SubElement(case, "failure", message=summary, type=finding.verdict)
            failure.text = finding.hint
        elif finding is not None:
            ET.SubElement(case, "system-out").text = f"warning: {summary}. {finding.hint}"
    root = ET.Element("testsuites", name="coordscope", tests=suite.get("tests", "0"),
                      failures=suite.get("failures", "0"))
    root.append(suite)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def write(report: Report, fmt: str, output: str | Path | None, *, failures_only: bool = False) -> str:
    """Render ``report`` and write it to ``output`` when given; returns the rendered text."""
    text = report.render(fmt, failures_only=failures_only)
    if output is not None:
        try:
            Path(output).write_text(text, encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot write {str(output)!r}: {exc.strerror}") from None
    return text
