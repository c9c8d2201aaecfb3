"""μTransfer verdicts on sweeps with known shapes: real Parquet stores written with a chosen loss landscape
loss(width, seed, log2 lr) = a(width) + c·(log2 lr − opt(width))² + noise, where opt(width) follows a
constant drift, a drift that dies out, a flat or an edge optimum — and the statistics under them."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from itertools import pairwise
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from click.testing import CliRunner

from coordscope import plots
from coordscope.cli import main
from coordscope.config import parse_config
from coordscope.errors import ConfigError
from coordscope.htmlreport import write_html_report
from coordscope.lrsweep import SCHEMA, shard_name
from coordscope.runmeta import JobRecord, RunMeta, write_meta
from coordscope.store import ShardWriter
from coordscope.transfer import (
    REACH_DOUBLINGS,
    VERDICTS,
    Z,
    analyse_sweep,
    fit_line,
    loss_at,
    refine_optimum,
    student_t_quantile,
    vertex_stderr,
)

WIDTHS = [64, 128, 256, 512, 1024, 2048]
GRID = [float(x) for x in range(-12, -1)]  # log2 lr −12..−2
SEEDS = [0, 1, 2]
Loss = Callable[[int, int, float], float]


def write_sweep(run_dir: Path, loss: Loss, widths: Sequence[int] = WIDTHS, seeds: Sequence[int] = SEEDS,
                grid: Sequence[float] = GRID, steps: int = 4) -> Path:
    """A complete sweep store: one shard per (width, lr, seed) with ``steps`` train rows and the held-out
    row ``loss(width, seed, log2 lr)`` (non-finite: the job diverged), and its meta.json."""
    run_dir.mkdir(parents=True)
    jobs = []
    for width in widths:
        for index, x in enumerate(grid):
            for seed in seeds:
                value, lr = float(loss(width, seed, x)), 2.0**x
                n = steps + 1
                table = pa.table({
                    "run": [run_dir.name] * n, "width": [width] * n, "seed": [seed] * n, "lr": [lr] * n,
                    "step": list(range(n)), "split": ["train"] * steps + ["heldout"],
                    "loss": [value + 0.3] * steps + [value], "diverged": [not math.isfinite(value)] * n,
                }, schema=SCHEMA)
                name = shard_name(width, index, seed)
                with ShardWriter(run_dir, run_dir.name, width, seed, name, schema=SCHEMA) as writer:
                    writer.write_table(table)
                    writer.commit()
                jobs.append(JobRecord(width, seed, name, lr))
    write_meta(run_dir, RunMeta(kind="lrsweep", run=run_dir.name, spec="synthetic", widths=tuple(widths),
                                seeds=tuple(seeds), steps=steps, jobs=tuple(jobs), status="complete",
                                lrs=tuple(2.0**x for x in grid)))
    return run_dir


def landscape(opt: Callable[[int], float], curvature: float = 0.05, noise: float = 0.002, rng_seed: int = 0,
              diverge_above: float | None = None) -> Loss:
    """A parabola in log2 lr around ``opt(width)``, lower for wider models, with independent noise per job;
    jobs ``diverge_above`` log2 units past the optimum diverge."""
    rng = np.random.default_rng(rng_seed)
    values: dict[tuple[int, int, float], float] = {}

    def loss(width: int, seed: int, x: float) -> float:
        if (width, seed, x) not in values:
            center = opt(width)
            value = 3.0 - 0.1 * math.log2(width / 64) + curvature * (x - center) ** 2 + noise * rng.standard_normal()
            values[(width, seed, x)] = math.inf if diverge_above is not None and x > center + diverge_above else value
        return values[(width, seed, x)]

    return loss


def doublings(width: int) -> int:
    return round(math.log2(width / 64))


def constant(width: int) -> float:
    return -5.0 - 1.0 * doublings(width)  # SP-like: −1 per doubling at every width


def decaying(width: int) -> float:
    return -5.0 - sum(0.9 * 0.5**j for j in range(doublings(width)))  # shifts −0.9, −0.45, −0.225, ...


def stable(width: int) -> float:
    return -7.0


# --- the four shapes of the issue ------------------------------------------------------------------------

@pytest.mark.parametrize("rng_seed", [0, 1, 2])
def test_constant_drift_does_not_transfer(tmp_path: Path, rng_seed: int) -> None:
    report = analyse_sweep(write_sweep(tmp_path / "s", landscape(constant, rng_seed=rng_seed)))
    assert report.verdict == "does not transfer" and report.stable_from is None and not report.ok
    assert report.trend.shape == "constant"
    assert report.shifts["shift"].to_list() == pytest.approx([-1.0] * 5, abs=0.1)
    assert set(report.shifts["status"]) == {"beyond"}
    assert "does not die out" in report.reason and report.hint
    assert report.headline.startswith("DOES NOT TRANSFER · ")
    # The lr of width 64 costs more and more loss as width grows.
    proxy = report.regret.filter(report.regret["source"] == "proxy").sort("width")["regret_rel"].to_list()
    assert proxy[0] < 0.01 and all(b > a for a, b in zip(proxy[1:], proxy[2:], strict=False)) and proxy[-1] > 0.1


@pytest.mark.parametrize("rng_seed", [0, 1, 2])
def test_drift_decaying_to_zero_transfers_from_the_width_where_it_settles(tmp_path: Path, rng_seed: int) -> None:
    report = analyse_sweep(write_sweep(tmp_path / "s", landscape(decaying, rng_seed=rng_seed)))
    assert report.verdict == "transfers from width" and report.stable_from == 256
    assert report.trend.shape == "converging" and report.trend.slope < 0
    assert report.shifts["shift"].to_list() == pytest.approx([-0.9, -0.45, -0.225, -0.1125, -0.05625], abs=0.06)
    assert report.label == "TRANSFERS FROM WIDTH 256" and report.headline.startswith("TRANSFERS FROM WIDTH 256 · ")
    assert "tune the learning rate at width 256" in report.hint
    assert report.ok  # N above the proxy (64) passes unless asked to fail
    # The lr of N transfers to every wider width at a smaller cost than the proxy's.
    regret = {(r["source"], r["width"]): r["regret_rel"] for r in report.regret.iter_rows(named=True)}
    for width in (512, 1024, 2048):
        assert regret[("stable_from", width)] < regret[("proxy", width)]
    # c·Δ² with Δ = 0.39 log2 lr between the optima of 256 and 2048, on a loss of 2.5: about 0.3 %.
    assert regret[("stable_from", 2048)] == pytest.approx(0.05 * (decaying(2048) - decaying(256)) ** 2 / 2.5,
                                                          abs=0.003)
    assert regret[("proxy", 2048)] > 0.04


def test_a_shift_that_shrinks_but_is_still_beyond_tolerance_is_inconclusive(tmp_path: Path) -> None:
    def slowing(width: int) -> float:
        return -4.0 - sum(1.2 * 0.6**j for j in range(doublings(width)))  # −1.2, −0.72, −0.43

    report = analyse_sweep(write_sweep(tmp_path / "s", landscape(slowing), widths=[64, 128, 256, 512]))
    assert report.verdict == "inconclusive" and report.trend.shape == "converging"
    assert "shrinks" in report.reason and "add wider widths" in report.hint
    assert math.log2(report.trend.reach_width) <= math.log2(512) + REACH_DOUBLINGS


def test_a_drift_that_shrinks_too_slowly_to_die_out_does_not_transfer(tmp_path: Path) -> None:
    """SP's shift approaches about −1 from larger values (−1.34, −1.27, −1.08 on the GPT sample): shrinking,
    but at that rate it would reach tolerance only many doublings past the widest width."""
    def sp_like(width: int) -> float:
        return -3.0 - sum(1.4 - 0.1 * j for j in range(doublings(width)))  # −1.4, −1.3, −1.2, −1.1

    report = analyse_sweep(write_sweep(tmp_path / "s", landscape(sp_like), widths=[64, 128, 256, 512, 1024]))
    assert report.verdict == "does not transfer" and report.trend.shape == "constant"
    assert report.trend.slope == pytest.approx(-0.1, abs=0.05)
    assert math.log2(report.trend.reach_width) > math.log2(1024) + REACH_DOUBLINGS
    assert "would reach ±0.25 only near width" in report.reason


def test_flat_optimum_is_inconclusive(tmp_path: Path) -> None:
    flat = landscape(stable, curvature=0.0005, noise=1e-5)  # 0.05 % loss over ±1 log2 lr: below resolution
    report = analyse_sweep(write_sweep(tmp_path / "s", flat))
    assert report.verdict == "inconclusive" and not report.ok and report.stable_from is None
    assert "too flat" in report.reason and "add seeds" in report.hint
    assert (report.optima["flat_se"] > 1.0).all()  # the optimum is placed only to a log2 unit or worse
    assert set(report.shifts["status"]) == {"unresolved"}
    sharp = analyse_sweep(write_sweep(tmp_path / "sharp", landscape(stable, curvature=0.05, noise=1e-5)))
    assert sharp.verdict == "transfers"  # the same optimum on a curved loss is placed


@pytest.mark.parametrize("edge_width, opt, side", [(2048, -1.5, "largest"), (64, -12.5, "smallest")])
def test_edge_optimum_is_inconclusive(tmp_path: Path, edge_width: int, opt: float, side: str) -> None:
    report = analyse_sweep(write_sweep(tmp_path / "s", landscape(lambda w: opt if w == edge_width else -7.0)))
    assert report.verdict == "inconclusive" and not report.ok
    assert f"width {edge_width}" in report.reason and "edge of the lr grid" in report.reason and side in report.reason
    assert report.hint == f"widen the lr grid toward {'larger' if side == 'largest' else 'smaller'} learning rates"
    assert any("edge" in w for w in report.warnings)


@pytest.mark.parametrize("rng_seed", [0, 1, 2])
def test_a_stable_optimum_transfers_from_the_smallest_width(tmp_path: Path, rng_seed: int) -> None:
    report = analyse_sweep(write_sweep(tmp_path / "s", landscape(stable, noise=0.01, rng_seed=rng_seed)))
    assert report.verdict == "transfers" and report.stable_from == 64 and report.ok
    assert report.trend.shape == "stable" and report.headline.startswith("TRANSFERS · ")
    assert report.regret["regret_rel"].max() < 0.005  # type: ignore[operator]


def test_an_optimum_next_to_a_diverged_job_is_inconclusive(tmp_path: Path) -> None:
    report = analyse_sweep(write_sweep(tmp_path / "s", landscape(stable, diverge_above=0.5)))
    assert report.verdict == "inconclusive" and "next to a diverged job" in report.reason
    assert report.optima["diverged"].to_list() == [5 * len(SEEDS)] * len(WIDTHS)  # lrs −6..−2, every seed


def test_a_missing_job_is_not_a_diverged_one(tmp_path: Path) -> None:
    run = write_sweep(tmp_path / "s", landscape(stable))
    (run / shard_name(256, GRID.index(-7.0), 1)).unlink()  # killed: no shard
    report = analyse_sweep(run)
    assert report.verdict == "transfers" and not report.complete and not report.ok
    assert report.optima.filter(report.optima["width"] == 256)["jobs"][0] == len(GRID) * len(SEEDS) - 1
    assert report.optima["diverged"].sum() == 0 and any("1 of" in w for w in report.warnings)
    assert report.headline.endswith("INCOMPLETE sweep (some jobs missing)")


def test_too_few_widths_are_inconclusive(tmp_path: Path) -> None:
    report = analyse_sweep(write_sweep(tmp_path / "s", landscape(stable), widths=[64, 128]))
    assert report.verdict == "inconclusive" and "only 2 width" in report.reason and "add widths" in report.hint
    assert report.shifts.height == 1


def test_one_seed_judges_by_the_optima_s_scatter(tmp_path: Path) -> None:
    """With one seed nothing measures the seeds' disagreement: three scattered widths cannot decide, while
    the same optima with three seeds agreeing can."""
    jitter = {64: -7.0, 128: -6.8, 256: -7.05}
    one = analyse_sweep(write_sweep(tmp_path / "one", landscape(jitter.__getitem__), widths=[64, 128, 256],
                                    seeds=[0]))
    assert one.verdict == "inconclusive" and "one seed" in one.reason
    assert any("one seed" in w for w in one.warnings)
    assert one.tails[0].k == pytest.approx(student_t_quantile(0.95, 1)) and not one.tails[0].measured
    three = analyse_sweep(write_sweep(tmp_path / "three", landscape(jitter.__getitem__), widths=[64, 128, 256]))
    assert three.verdict == "transfers" and three.tails[0].measured and three.tails[0].k == pytest.approx(Z)


def test_regret_of_a_transferred_lr_that_diverges(tmp_path: Path) -> None:
    report = analyse_sweep(write_sweep(tmp_path / "s", landscape(constant, diverge_above=1.5)))
    proxy = {r["width"]: r for r in report.to_dict()["regret"] if r["source"] == "proxy"}
    assert proxy[64]["regret_diverged"] is False and proxy[64]["regret"] is not None
    assert proxy[2048]["regret_diverged"] is True and proxy[2048]["regret"] is None
    assert "diverged" in report.render("text")


# --- proxy width, exit codes, config ------------------------------------------------------------------------

def test_proxy_width_and_fail_above_proxy(tmp_path: Path) -> None:
    run = write_sweep(tmp_path / "s", landscape(decaying))
    assert analyse_sweep(run).ok
    strict = analyse_sweep(run, fail_above_proxy=True)
    assert strict.verdict == "transfers from width" and strict.above_proxy and not strict.ok
    assert "proxy width 64 is below 256" in strict.headline
    at_n = analyse_sweep(run, proxy_width=256, fail_above_proxy=True)
    assert at_n.ok and not at_n.above_proxy
    assert set(at_n.regret["source"]) == {"proxy"} and set(at_n.regret["source_width"]) == {256}
    with pytest.raises(ConfigError, match="proxy width 100 is not one of the sweep's widths"):
        analyse_sweep(run, proxy_width=100)


def test_cli_judges_a_recorded_sweep_with_the_issue_s_exit_codes(tmp_path: Path) -> None:
    runner = CliRunner()
    runs = {name: write_sweep(tmp_path / name, landscape(shape))
            for name, shape in (("stable", stable), ("constant", constant), ("decaying", decaying))}
    runs["edge"] = write_sweep(tmp_path / "edge", landscape(lambda w: -1.5 if w == 2048 else -7.0))

    def code(*args: str) -> int:
        result = runner.invoke(main, ["sweep", *args])
        assert "Traceback" not in result.output, result.output
        return result.exit_code

    assert code(str(runs["stable"])) == 0
    assert code(str(runs["constant"])) == 1
    assert code(str(runs["edge"])) == 1
    assert code(str(runs["decaying"])) == 0
    assert code(str(runs["decaying"]), "--fail-above-proxy") == 1
    assert code(str(runs["decaying"]), "--fail-above-proxy", "--proxy-width", "256") == 0
    assert code(str(runs["decaying"]), "--proxy-width", "100") == 2
    assert code(str(runs["decaying"]), "--widths", "64,128") == 2
    result = runner.invoke(main, ["sweep", str(runs["decaying"]), "--format", "json"])
    data = json.loads(result.stdout)
    assert data["verdict"] == "transfers from width" and data["stable_from"] == 256 and data["ok"] is True
    assert {"ok", "verdict", "drift", "drift_stderr", "optima", "shifts", "trend", "regret", "reason", "hint",
            "headline", "proxy_width", "tails"} <= set(data)
    assert [row["width_lo"] for row in data["shifts"]] == WIDTHS[:-1]
    text = runner.invoke(main, ["sweep", str(runs["constant"])]).stdout
    assert "verdict: DOES NOT TRANSFER" in text and "hint:" in text and "shift of the optimum" in text
    assert "regret of the lr of the proxy width 64" in text


def test_proxy_settings_come_from_pyproject(tmp_path: Path) -> None:
    run = write_sweep(tmp_path / "s", landscape(decaying))
    config = parse_config({"sweep": {"proxy_width": 128, "fail_above_proxy": True}})
    report = analyse_sweep(run, config=config)
    assert report.proxy_width == 128 and report.fail_above_proxy and not report.ok
    assert analyse_sweep(run, fail_above_proxy=False, config=config).ok  # the argument wins
    with pytest.raises(ConfigError, match="proxy_width"):
        parse_config({"sweep": {"proxy_width": "64"}})
    with pytest.raises(ConfigError, match="fail_above_proxy"):
        parse_config({"sweep": {"fail_above_proxy": 1}})


def test_every_verdict_is_one_of_four_and_json_is_clean(tmp_path: Path) -> None:
    report = analyse_sweep(write_sweep(tmp_path / "s", landscape(constant, diverge_above=1.5)))
    assert report.verdict in VERDICTS
    text = json.dumps(report.to_dict(), allow_nan=False)  # no NaN or inf leaks into the JSON
    assert json.loads(text)["headline"] == report.headline


# --- the statistics --------------------------------------------------------------------------------------

def test_vertex_stderr_matches_the_closed_form_and_a_simulation() -> None:
    x = np.arange(-6.0, 1.0)
    c, sigma = 0.08, 0.004
    se, curvature = vertex_stderr(x, 2.0 + c * (x + 3.0) ** 2, sigma)
    assert curvature == pytest.approx(c)
    assert se == pytest.approx(math.sqrt(2) * sigma / (4 * c))  # vertex on a grid point, step 1
    rng = np.random.default_rng(0)
    clean = 2.0 + c * (x + 2.7) ** 2
    draws = [refine_optimum(x, clean + sigma * rng.standard_normal(len(x)))[0] for _ in range(4000)]
    predicted, _ = vertex_stderr(x, clean, sigma)
    assert float(np.std(draws)) == pytest.approx(predicted, rel=0.1)
    assert vertex_stderr(x, np.full_like(x, 2.0), sigma)[0] == math.inf or math.isnan(vertex_stderr(x, x, sigma)[0])
    assert math.isnan(vertex_stderr(x, x, sigma)[0])  # minimum at the grid's edge: not placed


def test_loss_at_reads_between_grid_points_without_dipping() -> None:
    x = np.arange(-8.0, -3.0)
    y = np.array([2.6, 2.33, 2.32, 2.45, 2.9])  # asymmetric: a parabola through the last three would dip
    assert loss_at(x, y, -6.0) == pytest.approx(2.32)
    between = [loss_at(x, y, v) for v in np.linspace(-7.0, -6.0, 21)]
    assert min(between) >= 2.32 - 1e-12 and max(between) <= 2.33 + 1e-12
    assert math.isnan(loss_at(x, y, -2.5)) and math.isnan(loss_at(x, y, -8.5))
    y_div = y.copy()
    y_div[-1] = math.inf
    assert loss_at(x, y_div, -4.5) == math.inf and math.isfinite(loss_at(x, y_div, -5.5))


def test_student_t_quantiles_and_the_line_fit() -> None:
    assert [round(student_t_quantile(0.95, d), 3) for d in (1, 2, 4, 10)] == [6.314, 2.92, 2.132, 1.812]
    exact = fit_line([6, 7, 8], [1.0, 1.5, 2.0], [0.1, 0.1, 0.1])
    assert exact.slope == pytest.approx(0.5) and exact.stderr == pytest.approx(0.1 / math.sqrt(2))
    assert exact.k == pytest.approx(Z)
    noisy = fit_line([6, 7, 8, 9], [1.0, 1.8, 1.9, 2.9], [0.01] * 4, measured=False)
    assert noisy.scatter > 1 and noisy.k == pytest.approx(student_t_quantile(0.95, 2))
    assert noisy.stderr == pytest.approx(fit_line([6, 7, 8, 9], [1.0, 1.8, 1.9, 2.9], [0.01] * 4).stderr * noisy.scatter)


def test_a_seed_s_offset_is_not_noise_in_the_optimum(tmp_path: Path) -> None:
    """Seeds whose whole curves sit higher or lower (a common offset) do not blur the optimum; seeds whose
    curves change shape do."""
    rng = np.random.default_rng(0)
    offsets = {s: 0.05 * rng.standard_normal() for s in SEEDS}
    base = landscape(stable, noise=0.0)
    shifted = analyse_sweep(write_sweep(tmp_path / "offset", lambda w, s, x: base(w, s, x) + offsets[s]))
    assert shifted.verdict == "transfers"
    assert (shifted.optima["loss_se"] < 0.01).all()  # only the resolution floor, not the 0.05 offsets


# --- pictures --------------------------------------------------------------------------------------------

def test_figures_show_the_shifts_overlaid_the_regret_and_n(tmp_path: Path) -> None:
    sp = analyse_sweep(write_sweep(tmp_path / "sp", landscape(constant)))
    mup = analyse_sweep(write_sweep(tmp_path / "mup", landscape(decaying)))
    figure = plots.shift_figure({"sp": sp.shifts, "mup": mup.shifts}, tolerance=0.25,
                                stable_from={"sp": sp.stable_from, "mup": mup.stable_from})
    assert [t.name for t in figure.data] == ["sp", "mup"]
    assert list(figure.data[0].x) == pytest.approx([math.sqrt(a * b) for a, b in pairwise(WIDTHS)])
    assert list(figure.data[1].error_y.array) == pytest.approx(mup.shifts["shift_ci"].to_list())
    assert figure.layout.xaxis.type == "log"
    assert any(a.text == "N = 256 (mup)" for a in figure.layout.annotations)
    assert figure.layout.shapes[0].y0 == -0.25 and figure.layout.shapes[0].y1 == 0.25  # the tolerance band

    regret = plots.regret_figure(mup.regret)
    assert {t.name for t in regret.data} == {"lr tuned at width 64 (proxy)", "lr tuned at width 256 (N)"}
    proxy = next(t for t in regret.data if t.meta["source"] == "proxy")
    assert list(proxy.y) == pytest.approx([100 * v for v in
                                           mup.regret.filter(mup.regret["source"] == "proxy")["regret_rel"]])

    from coordscope.transfer import job_losses, load_sweep
    curves = plots.sweep_curves(job_losses(load_sweep(tmp_path / "mup")))
    sweep = plots.lr_sweep_figure(curves, mup.optima, stable_from=256)
    faint = {t.meta["width"] for t in sweep.data if t.meta and t.meta.get("below_stable_from")}
    assert faint == {64, 128}
    assert any("N = 256" in a.text for a in sweep.layout.annotations)
    assert sweep.layout.shapes[-1].x0 == pytest.approx(2.0 ** mup.optima.filter(mup.optima["width"] == 256)
                                                       ["opt_log2_lr"][0])


def test_html_report_of_a_sweep_shows_verdict_shifts_and_regret(tmp_path: Path) -> None:
    run = write_sweep(tmp_path / "s", landscape(decaying))
    page = write_html_report(run, tmp_path / "r.html").read_text(encoding="utf-8")
    report = analyse_sweep(run)
    assert "TRANSFERS FROM WIDTH 256" in page and "Hint:" in page
    assert "<h2>Shift of the optimum per doubling of width</h2>" in page and "<h2>Transfer regret</h2>" in page
    assert "<h2>Optima</h2>" in page and page.count('class="plotly-graph-div"') == 3
    assert report.hint.split(";")[0] in page


def test_dashboard_overlays_the_shifts_of_every_sweep_and_marks_n(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from apppage import open_page  # the app is imported only by the tests that open it

    write_sweep(tmp_path / "mup", landscape(decaying))
    write_sweep(tmp_path / "sp", landscape(constant))
    at = open_page(monkeypatch, tmp_path, "mup", "lr_sweep")
    assert at.success[0].value.startswith("TRANSFERS FROM WIDTH 256 · ")
    assert any("tune the learning rate at width 256" in i.value for i in at.info)
    sweep_fig, shift_fig, regret_fig = (json.loads(c.proto.spec) for c in at.get("plotly_chart"))
    faint = {t["meta"]["width"] for t in sweep_fig["data"] if t.get("meta", {}).get("below_stable_from")}
    assert faint == {64, 128}
    assert [t["name"] for t in shift_fig["data"]] == ["mup", "sp"]  # the other sweep overlaid by default
    assert {a["text"] for a in shift_fig["layout"]["annotations"]} == {"N = 256 (mup)"}
    assert {t["name"] for t in regret_fig["data"]} == {"lr tuned at width 64 (proxy)", "lr tuned at width 256 (N)"}
    at.sidebar.multiselect(key="lr-overlay").set_value([]).run()
    assert [t["name"] for t in json.loads(at.get("plotly_chart")[1].proto.spec)["data"]] == ["mup"]
