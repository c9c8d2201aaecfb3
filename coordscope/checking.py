"""The one judgement: ``coordscope.check`` (this module is ``coordscope.checking``) judges a run directory
— or records a spec first, then judges it — into a :class:`Report`.

Every surface judges through :func:`check_run` — ``coordscope check``, the HTML report, the dashboard, the
demo, :func:`coordscope.check` and ``assert_mup`` — and each loads ``[tool.coordscope]`` (overrides,
tolerance, sigma, probe) the same way, from the nearest pyproject.toml unless told which, so the same run
gets the same verdict everywhere. This is the glue between the store, :mod:`coordscope.analysis`,
:mod:`coordscope.diagnose` and :mod:`coordscope.report`; it also refuses what cannot be judged (a missing
or incomplete run, a run with a single width, overrides naming sites or probes the run does not have) with
one-line errors, before any fitting.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import polars as pl

from coordscope.analysis import DEFAULT_TOLERANCE, RELATIVE, SPECTRAL, Finding, Tolerance, analyse, relative_updates
from coordscope.config import Config, ConfigSource, Override, load_config, parse_overrides
from coordscope.diagnose import Diagnosis, diagnose, gradient_levels, optimizer_family, regime
from coordscope.errors import ConfigError, SpecError, StoreError
from coordscope.hyperparams import learning_rates, lint, slopes
from coordscope.outputs import LOSS, OUTPUT
from coordscope.report import Report
from coordscope.runmeta import RECORDING, RunMeta, read_meta
from coordscope.spec import Spec
from coordscope.store import along_axis, is_complete, missing_jobs, scan, shard_paths

Target = str | os.PathLike[str] | Spec


def _looks_like_path(target: str) -> bool:
    return os.sep in target or "/" in target or target.startswith(".")


def _record(target: Target, config: Config, run_kwargs: Mapping[str, Any]) -> Path:
    """Record a coord check of the spec ``target`` (settings: arguments, then ``[tool.coordscope]``) into
    ``run_kwargs["out"]``."""
    from coordscope.coordcheck import run  # recording needs torch; judging a stored run does not
    from coordscope.spec import load_spec

    try:
        spec = load_spec(target if isinstance(target, Spec) else str(target))
    except SpecError as exc:
        if not isinstance(target, Spec) and "is not a file, an importable module or a sample" in str(exc):
            raise SpecError(f"{target!r} is neither a run directory nor a spec (a .py file, a module, "
                            "module:attr or a sample name; see `coordscope samples`)") from None
        raise
    return run(spec, config=config, **run_kwargs)


def _widths_present(run_dir: Path, meta: RunMeta) -> list[int]:
    """The values of the run's axis that have a shard: widths, or the swept dimension's values."""
    missing = set(missing_jobs(run_dir, meta))
    axis = meta.axis()
    return sorted({job.width if axis is None else dict(job.dims)[axis] for job in meta.jobs if job not in missing})


def _structural_overrides(meta: RunMeta) -> tuple[Override, ...]:
    """What the recorded structure changes in the expectations.

    Attention logits with a dimension that grows (more heads, fixed d_head) do not shrink at init: their
    t = 0 is judged like later steps. An output-role module whose output the model rescales afterwards
    (:attr:`coordscope.roles.Layer.rescaled`) is not the output μP constrains: it is shown, not judged.
    """
    heads = [Override(name, "act", expected=(-0.5, 0.0)) for name, layer in meta.layers.items()
             if layer.role == "attn_logits" and any(layer.scaling_dims)]
    still = [Override(name, "act", expected=(0.0, 0.0)) for name, layer in meta.layers.items()
             if layer.role == "attn_logits" and not any(layer.scaling_dims) and _nothing_grows(meta, name)]
    raw = [Override(name, site, ignore=True) for name, layer in meta.layers.items() if layer.rescaled
           for site in ("act", "act_delta")]
    return tuple(heads + still + raw)


def _nothing_grows(meta: RunMeta, logits: str) -> bool:
    """Whether nothing recorded inside the module that computed ``logits`` (``attn.attn_logits#1`` → ``attn``:
    its parameters and its submodules' outputs) grows: then neither does its head size, and its attention
    logits are flat at every step, not the width^-½ of 1/d attention at init (a sweep of the FFN size leaves
    attention as it is)."""
    owner = logits.split("#")[0].rpartition(".")[0]
    inside = [layer for name, layer in meta.layers.items()
              if name.startswith(f"{owner}." if owner else "") and layer.role != "attn_logits"
              and name not in (OUTPUT, LOSS)]
    return bool(inside) and not any(any(layer.scaling_dims) for layer in inside)


def along_dimension(findings: list[Finding], diagnoses: list[Diagnosis], axis: str
                    ) -> tuple[list[Finding], list[Diagnosis]]:
    """Hints of a dimension sweep: the rules speak of width, which here is ``axis`` (the width stays fixed).
    A matrix that sums over ``axis`` is output-like in it (μP's readout rules), one that grows into it is
    input-like, and the rules' fixes apply with ``axis`` as the width."""
    note = (f" — this run sweeps {axis} at a fixed width: read “width” as {axis} (a matrix summing over {axis} "
            f"is its readout, one growing into {axis} its input layer)")
    return ([replace(f, hint=f.hint + note) if f.hint else f for f in findings],
            [replace(d, hint=d.hint + note) for d in diagnoses])


BLOWUP = 10.0  # a loss that grows ten-fold during the check has blown up, finite or not


def loss_blowup(rows: pl.LazyFrame) -> Finding | None:
    """A ``diverged`` finding on ``<loss>`` when, at some width, the loss (geometric mean over seeds) grew
    by :data:`BLOWUP` or more from step 0 — training blew up even where every value stayed finite
    (2.3 → 2e13 at a huge learning rate). A non-finite loss is a ``diverged`` fit already."""
    loss = (rows.filter((pl.col("site") == "loss") & pl.col("value").is_finite() & (pl.col("value") > 0))
            .group_by("width", "step").agg(pl.col("value").log(2).mean().alias("log2"))
            .sort("width", "step").collect())
    if loss.is_empty():
        return None
    growth = (loss.group_by("width").agg(
        first=pl.col("log2").first(), peak=pl.col("log2").max(), step=pl.col("step").sort_by("log2").last())
        .with_columns(ratio=pl.lit(2.0).pow(pl.col("peak") - pl.col("first"))).sort("ratio", descending=True))
    worst = growth.row(0, named=True)
    if worst["ratio"] < BLOWUP:
        return None
    return Finding(name=LOSS, site="loss", probe="value", step=int(worst["step"]), slope=None, stderr=None,
                   expected=None, verdict="diverged", severity="error", role="loss", judged=True,
                   first_step=int(worst["step"]), first_width=int(worst["width"]),
                   hint=f"the loss grew ×{worst['ratio']:.3g} (from {2 ** worst['first']:.3g} to "
                        f"{2 ** worst['peak']:.3g}) at width {worst['width']} by step {worst['step']}")


def _model_order(run_dir: Path) -> list[str]:
    """Names in the order the recorder met them (the first shard's rows), for a table that reads like
    the model; meta.json's layers are sorted alphabetically."""
    first = shard_paths(run_dir)[:1]
    if not first:
        return []
    names = pl.scan_parquet(first[0], glob=False).select("name").unique(maintain_order=True).collect()
    return names.get_column("name").to_list()


def _choose_probe(probe: str | None, recorded: list[str]) -> str:
    if probe is None:
        return "rms" if "rms" in recorded or not recorded else recorded[0]
    if recorded and probe not in recorded:
        raise ConfigError(f"probe {probe!r} was not recorded in this run (recorded: {', '.join(recorded)})")
    return probe


def judgement(config: ConfigSource = None, *, overrides: Iterable[Override | str] = (),
              tolerance: float | None = None, sigma: float | None = None,
              probe: str | None = None) -> tuple[tuple[Override, ...], Tolerance, str | None]:
    """The judging settings every surface uses: ``[tool.coordscope]`` of ``config`` (None: the nearest
    pyproject.toml) with the arguments on top — overrides (the file's first, then these), tolerance and
    probe."""
    cfg = config if isinstance(config, Config) else load_config(config)
    judging = Tolerance(
        absolute=next(v for v in (tolerance, cfg.tolerance, DEFAULT_TOLERANCE.absolute) if v is not None),
        sigma=next(v for v in (sigma, cfg.sigma, DEFAULT_TOLERANCE.sigma) if v is not None),
    )
    return cfg.overrides + parse_overrides(overrides), judging, probe if probe is not None else cfg.probe


def check_run(run_dir: str | os.PathLike[str], *, config: ConfigSource = None,
              overrides: Iterable[Override | str] = (), allow_incomplete: bool = False, probe: str | None = None,
              tolerance: float | None = None, sigma: float | None = None) -> Report:
    """Judge the recorded run in ``run_dir`` (see :func:`check`; the same settings, no recording)."""
    all_overrides, judging, wanted_probe = judgement(config, overrides=overrides, tolerance=tolerance, sigma=sigma,
                                                     probe=probe)
    run_dir = Path(run_dir)
    meta = read_meta(run_dir)
    if meta.kind != "coordcheck":
        raise StoreError(f"{run_dir} is a {meta.kind!r} run, not a coordinate check")
    complete = is_complete(run_dir, meta)
    if not complete and not allow_incomplete:
        missing = missing_jobs(run_dir, meta)
        named = ", ".join(f"{j.size()} seed {j.seed}" for j in missing[:6]) + (" …" if len(missing) > 6 else "")
        finish = ("record them with coordscope.recording(..., width=W, seed=S)" if RECORDING in meta.extra
                  else "finish it with `coordscope run ... --resume`")
        raise StoreError(f"run {str(run_dir)!r} is incomplete (status {meta.status!r}, {len(missing)} of "
                         f"{len(meta.jobs)} jobs missing: {named}): {finish}, or pass --allow-incomplete")
    if meta.depths:  # a depth sweep: judged against depth (and width at each depth) by coordscope.depth
        from coordscope.depth import check_depth_run

        return check_depth_run(run_dir, meta, scan(run_dir), probe=_choose_probe(wanted_probe, list(meta.probes)),
                               complete=complete, overrides=_structural_overrides(meta) + all_overrides,
                               tolerance=judging)
    # A dimension sweep is judged as a width check along that dimension (store.along_axis).
    widths = _widths_present(run_dir, meta)
    axis = meta.axis() or "width"
    if len(widths) < 2:
        raise StoreError(f"run {str(run_dir)!r} has {f'only {axis} ' + str(widths[0]) if widths else f'no {axis}'} "
                         "recorded: a slope needs at least two "
                         + ("widths" if axis == "width" else f"values of {axis}"))
    recorded = list(meta.probes)
    chosen = _choose_probe(wanted_probe, recorded)
    for override in all_overrides:
        if override.probe is not None and recorded and override.probe.removeprefix(RELATIVE) not in recorded:
            raise ConfigError(f"override {override.describe()}: probe {override.probe!r} was not recorded in "
                              f"this run (recorded: {', '.join(recorded)})")
    # The chosen probe's rows, the spectral norms of weights and updates when the run recorded them
    # (judged alongside whatever probe judges the activations), and each update relative to its weight.
    rows = along_axis(scan(run_dir), meta).filter((pl.col("probe") == chosen)
                                | ((pl.col("probe") == SPECTRAL) & pl.col("site").is_in(["param", "param_update"])))
    rows = pl.concat([rows, relative_updates(rows, tuple(dict.fromkeys((chosen, SPECTRAL))))], how="vertical")
    hyperparameters = slopes(meta.hyperparameters, meta.layers)
    center = sum(math.log2(w) for w in widths) / len(widths)  # where analysis levels its fits
    rates = learning_rates(hyperparameters, widths[0], center)
    analysis = analyse(rows, overrides=_structural_overrides(meta) + all_overrides, tolerance=judging,
                       order=_model_order(run_dir), widths=widths,
                       family=lambda fits: optimizer_family(fits, rates))
    if analysis.fits.is_empty():
        raise StoreError(f"run {str(run_dir)!r} has no values for probe {chosen!r}")
    blowup = loss_blowup(along_axis(scan(run_dir), meta))
    if blowup is not None and not any(f.site == "loss" for f in analysis.findings):  # not already non-finite
        analysis = replace(analysis, findings=[blowup, *analysis.findings])
    measured = analysis.family
    findings, diagnoses = diagnose(analysis.findings, analysis.fits, measured,
                                   {name: slope for name, (_, slope) in rates.items()})
    if meta.axis() is not None:
        findings, diagnoses = along_dimension(findings, diagnoses, str(meta.axis()))
    return Report(
        ok=not any(f.severity == "error" for f in findings), complete=complete, run_dir=run_dir, meta=meta,
        findings=findings, fits=analysis.fits, layers=analysis.layers, diagnoses=diagnoses,
        regime=regime(findings), probe=chosen, tolerance=judging, overrides=all_overrides,
        hyperparameters=hyperparameters, optimizer_family=measured,
        notes=tuple(lint(hyperparameters, measured, gradient_levels(analysis.fits))),
    )


def check(
    target: Target,
    *,
    overrides: Iterable[Override | str] = (),
    allow_incomplete: bool = False,
    probe: str | None = None,
    tolerance: float | None = None,
    sigma: float | None = None,
    config: ConfigSource = None,
    **run_kwargs: Any,
) -> Report:
    """Judge whether a model scales as μP predicts, and say why not.

    ``target``: a run directory, or a spec (a :class:`Spec`, ``.py`` file, module, ``module:attr`` or
    sample name), which is first recorded with :func:`coordscope.run` — ``run_kwargs`` (widths, steps,
    seeds, lr, out, …) go there — into ``out``, or into a temporary directory removed once judged. ``overrides``:
    :class:`Override` objects or CLI strings (``'readout*:act_delta:expected=0..1,tol=0.4'``), applied
    after those of the config. ``probe``: which recorded probe to judge (default ``rms``).
    ``tolerance``/``sigma``: see :class:`coordscope.analysis.Tolerance`. ``config``: a :class:`Config`, a
    pyproject.toml path, or None for the nearest pyproject.toml's ``[tool.coordscope]``; arguments win
    over it. Bad input raises a :class:`coordscope.errors.CoordscopeError` with a one-line message.
    """
    cfg = config if isinstance(config, Config) else load_config(config)
    if not isinstance(target, Spec) and Path(target).is_dir():
        flags = sorted(k for k, v in run_kwargs.items() if v not in (None, False) and k != "progress")
        if flags:
            raise ConfigError(f"{', '.join(flags)} only apply when TARGET is a spec; {str(target)!r} is a run "
                              "directory")
        run_dir = Path(target)
    elif isinstance(target, str) and _looks_like_path(target) and not target.partition(":")[0].endswith(".py"):
        raise StoreError(f"run directory {target!r} does not exist")
    else:
        # Recorded only to be judged: without ``out`` the run goes to a temporary directory that is removed
        # afterwards, whatever happens (the Report keeps every number it needs in memory).
        temporary = Path(tempfile.mkdtemp(prefix="coordscope-check-")) if run_kwargs.get("out") is None else None
        try:
            run_dir = _record(target, cfg, {**run_kwargs, "out": temporary or run_kwargs["out"]})
            report = check_run(run_dir, config=cfg, overrides=overrides, allow_incomplete=allow_incomplete,
                               probe=probe, tolerance=tolerance, sigma=sigma)
        finally:
            if temporary is not None:
                shutil.rmtree(temporary, ignore_errors=True)
        return replace(report, temporary=temporary is not None)
    return check_run(run_dir, config=cfg, overrides=overrides, allow_incomplete=allow_incomplete, probe=probe,
                     tolerance=tolerance, sigma=sigma)
