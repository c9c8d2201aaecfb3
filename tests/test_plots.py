"""The figures shared by the app and the HTML report, drawn from real recorded runs: what each trace is,
which layers are highlighted, and the axes."""

from __future__ import annotations

import math

import polars as pl
import pytest

import coordscope
from coordscope import plots
from coordscope.checking import check_run


@pytest.fixture(scope="module")
def judged(mlp_runs: dict[str, str]) -> dict[str, tuple[pl.LazyFrame, pl.DataFrame]]:
    """(rows, fits) of the SP and μP MLP runs."""
    return {name: (coordscope.scan(mlp_runs[name]), check_run(mlp_runs[name]).fits) for name in ("mlp-sp", "mlp-mup")}


def _lines(figure) -> list:
    """The mean lines (the bands have no hover text and no legend entry)."""
    return [t for t in figure.data if t.meta is not None]


def test_seed_bands_is_the_geometric_mean_and_spread_over_seeds(judged) -> None:
    rows, _ = judged["mlp-sp"]
    bands = plots.seed_bands(rows, site="act", probe="rms")
    raw = rows.filter((pl.col("site") == "act") & (pl.col("name") == "hidden.0") & (pl.col("step") == 2)
                      & (pl.col("width") == 256)).collect()["value"].to_list()
    row = bands.filter((pl.col("name") == "hidden.0") & (pl.col("step") == 2) & (pl.col("width") == 256)).row(0, named=True)
    assert len(raw) == 3 and row["n_seeds"] == 3
    assert row["mean"] == pytest.approx(math.prod(raw) ** (1 / 3))
    assert (row["lo"], row["hi"]) == (min(raw), max(raw))
    assert set(bands["site"]) == {"act"} and set(bands["probe"]) == {"rms"}


def test_seed_bands_counts_non_finite_values_and_leaves_them_off_the_log_axis() -> None:
    rows = pl.DataFrame({"width": [64, 64, 64, 128], "seed": [0, 1, 2, 0], "step": [1] * 4, "name": ["h"] * 4,
                         "site": ["act"] * 4, "probe": ["rms"] * 4, "value": [2.0, math.nan, 8.0, 0.0]})
    bands = plots.seed_bands(rows, site="act", probe="rms")
    at64 = bands.filter(pl.col("width") == 64).row(0, named=True)
    assert at64["n_nonfinite"] == 1 and at64["mean"] == pytest.approx(4.0)
    assert bands.filter(pl.col("width") == 128)["mean"][0] is None  # 0 has no logarithm
    assert plots.drawable_steps(bands) == [1]


def test_pick_steps_keeps_first_and_last_and_spreads_the_rest() -> None:
    assert plots.pick_steps(range(4)) == [0, 1, 2, 3]
    picked = plots.pick_steps(range(101))
    assert len(picked) == plots.MAX_PANELS and picked[0] == 0 and picked[-1] == 100
    assert picked == sorted(set(picked))


def test_sp_coord_check_highlights_exactly_the_failing_layers(judged) -> None:
    rows, fits = judged["mlp-sp"]
    bands = plots.seed_bands(rows, site="act_delta", probe="rms")
    figure = plots.coord_check_figure(bands, fits)
    failing = plots.violations(fits, "act_delta", "rms")
    assert failing, "the SP MLP must violate μP at act_delta"
    drawn = {(t.meta["layer"], t.meta["step"]) for t in _lines(figure) if t.meta["violating"]}
    assert drawn == failing
    for trace in _lines(figure):
        flagged = trace.name.startswith(plots.WARN)
        assert flagged == any(name == trace.meta["layer"] for name, _ in failing)
        assert (trace.line.width > 3) == trace.meta["violating"]
    # act_delta is 0 at step 0: no panel for it; one panel per remaining step
    assert [a.text for a in figure.layout.annotations] == [f"step {s}" for s in range(1, 6)]
    axes = [figure.layout[k] for k in figure.layout if k.startswith(("xaxis", "yaxis"))]
    assert axes and all(axis.type == "log" for axis in axes)
    assert list(figure.layout.xaxis.tickvals) == [64, 128, 256, 512]


def test_mup_coord_check_has_no_highlighted_layer(judged) -> None:
    rows, fits = judged["mlp-mup"]
    figure = plots.coord_check_figure(plots.seed_bands(rows, site="act_delta", probe="rms"), fits)
    lines = _lines(figure)
    assert {t.meta["layer"] for t in lines} == {"input", "hidden.0", "hidden.1", "readout", "<output>"}
    assert not any(t.meta["violating"] or t.name.startswith(plots.WARN) for t in lines)
    # one legend entry per layer, however many panels, plus the two guides
    legend = [t.name for t in figure.data if t.showlegend is not False]
    assert sorted(n for n in legend if not n.startswith(("μP expects", "for scale"))) == sorted({t.name for t in lines})
    assert {"μP expects: flat (slope 0)", "for scale: ∝ width (slope +1)"} <= set(legend)
    flat = [t for t in figure.data if t.name == "μP expects: flat (slope 0)"]
    assert flat and all(len(set(t.y)) == 1 for t in flat)  # one flat guide per panel
    assert all(figure.layout[k].matches == "y" for k in figure.layout if k.startswith("yaxis") and k != "yaxis")


def test_flagged_layers_get_distinct_colours_and_every_layer_its_marker(judged) -> None:
    rows, fits = judged["mlp-sp"]
    lines = _lines(plots.coord_check_figure(plots.seed_bands(rows, site="act_delta", probe="rms"), fits))
    flagged = {t.meta["layer"]: t.line.color for t in lines if t.name.startswith(plots.WARN)}
    assert len(flagged) >= 3 and len(set(flagged.values())) == len(flagged)
    symbols = {t.meta["layer"]: t.marker.symbol for t in lines}
    assert len(set(symbols.values())) == len(symbols)


def test_coord_check_draws_only_the_chosen_steps(judged) -> None:
    rows, fits = judged["mlp-sp"]
    figure = plots.coord_check_figure(plots.seed_bands(rows, site="act", probe="rms"), fits, steps=[0, 5])
    assert [a.text for a in figure.layout.annotations] == ["step 0", "step 5"]
    assert {t.meta["step"] for t in _lines(figure)} == {0, 5}


def test_slope_heatmap_colours_each_cell_by_its_verdict(judged) -> None:
    _, fits = judged["mlp-sp"]
    shown = fits.filter(pl.col("site").is_in(["act", "act_delta"]))
    figure = plots.slope_heatmap(shown, order=["input", "hidden.0", "hidden.1", "readout", "<output>"])
    heatmap = figure.data[0]
    assert heatmap.type == "heatmap"
    assert list(heatmap.y[:2]) == ["input · act", "input · act_delta"]  # model order, first at the top
    codes = list(plots.VERDICT_COLOURS)
    for r in shown.iter_rows(named=True):
        i, j = list(heatmap.y).index(f"{r['name']} · {r['site']}"), list(heatmap.x).index(str(r["step"]))
        assert codes[heatmap.z[i][j]] == (r["verdict"] or "not judged")
        assert heatmap.text[i][j] == plots._signed(r["slope"])
    assert "exploding" in {codes[z] for row in heatmap.z for z in row if z is not None}


def test_lr_sweep_figure_marks_optima_diverged_jobs_and_the_drift() -> None:
    scores = pl.DataFrame({
        "width": [64] * 6 + [128] * 6, "seed": [0, 1] * 6,
        "lr": [2.0**-8] * 2 + [2.0**-6] * 2 + [2.0**-4] * 2 + [2.0**-8] * 2 + [2.0**-6] * 2 + [2.0**-4] * 2,
        "loss": [3.0, 3.2, 2.0, 2.2, 2.5, 2.7, 2.9, 3.0, 1.9, 2.0, math.inf, 2.6],
    })
    curves = plots.sweep_curves(scores)
    assert curves.filter((pl.col("width") == 128) & (pl.col("lr") == 2.0**-4))["loss"][0] == math.inf
    optima = pl.DataFrame({"width": [64, 128], "opt_log2_lr": [-6.1, -6.0], "best_loss": [2.1, 1.95]})
    figure = plots.lr_sweep_figure(curves, optima, drift=0.1)
    names = [t.name for t in figure.data]
    assert names == ["width 64", "width 128", "width 128 diverged", "optimum"]
    assert list(figure.data[1].x) == [2.0**-8, 2.0**-6]  # the diverged point is not on the curve
    assert figure.data[3].x == pytest.approx([2.0**-6.1, 2.0**-6.0])
    assert figure.layout.xaxis.type == "log" and "2^-6" in figure.layout.xaxis.ticktext
    assert len(figure.layout.shapes) == 2 and "+0.10" in figure.layout.annotations[0].text


def test_compare_figure_overlays_any_number_of_runs_naming_run_and_layer(judged) -> None:
    (rows_a, fits_a), (rows_b, fits_b) = judged["mlp-sp"], judged["mlp-mup"]
    bands_a = plots.seed_bands(rows_a, site="act_delta", probe="rms")
    bands_b = plots.seed_bands(rows_b, site="act_delta", probe="rms")
    figure = plots.compare_figure([("before", bands_a, fits_a), ("after", bands_b, fits_b), ("again", bands_b, None)],
                                  steps=[1, 3])
    legend = [t.name for t in figure.data if t.showlegend is not False]
    assert "after · hidden.0" in legend and "again · readout" in legend and f"before · {plots.WARN} hidden.0" in legend
    assert len(legend) == 3 * 5  # one entry per run and layer, however many panels
    lines = _lines(figure)
    assert {t.meta["run"] for t in lines} == {"before", "after", "again"}
    assert len({t.line.color for t in lines}) == 3
    assert any(t.meta["violating"] for t in lines if t.meta["run"] == "before")
    assert not any(t.meta["violating"] for t in lines if t.meta["run"] != "before")
    assert {t.meta["step"] for t in lines} == {1, 3}
    hidden = {t.marker.symbol for t in lines if t.meta["layer"] == "hidden.0"}
    assert len(hidden) == 1  # a layer keeps its marker from run to run
    assert figure.layout.yaxis.type == "log" and figure.layout.xaxis2.type == "log"
