"""Effective hyperparameters: the learning rate, weight decay and ε actually in effect for every parameter at
every width, how they scale with width, and what μP's rules say they should do.

A coordinate check shows *that* a layer misbehaves; the optimizer's parameter groups often say *why* (the
hidden learning rate not divided by width, ε not scaled). They are read from the optimizer the spec builds
at each width (:func:`collect`), fitted against width like any other quantity (:func:`slopes`), and linted
(:func:`lint`) against the rule of the optimizer family the run *measured*
(:func:`coordscope.diagnose.optimizer_family`), never its class name. Rules (TP5
Table 3 and App. B.3; the spectral condition for Muon):

==================  ===================  =================  ======================
family              hidden lr            input, output lr   hidden ε (Adam-like)
==================  ===================  =================  ======================
Adam-like           ∝ 1/width            constant           ∝ 1/width (or smaller)
SGD-like            constant             ∝ width            —
orthogonalised      constant             —                  —
==================  ===================  =================  ======================
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import polars as pl

from coordscope.diagnose import ADAM_LIKE, ORTHOGONALISED, SGD_LIKE
from coordscope.groups import KEYS as KEYS
from coordscope.groups import Hyperparameters as Hyperparameters
from coordscope.groups import collect as collect
from coordscope.groups import widths_table as widths_table
from coordscope.roles import Layer

TOLERANCE = 0.25  # slack on a hyperparameter's slope before the lint speaks
EPS_REACH = 0.01  # Adam's ε matters once it is more than 1 % of the gradient's rms

# Per family: role → the slope of the learning rate μP asks for (a role left out has no rule).
LR_RULES: dict[str, dict[str, float]] = {
    ADAM_LIKE: {"hidden": -1.0, "input": 0.0, "output": 0.0},
    SGD_LIKE: {"hidden": 0.0, "input": 1.0, "output": 1.0},
    ORTHOGONALISED: {"hidden": 0.0},
}



def slopes(hyperparameters: Mapping[str, Mapping[str, Mapping[str, float]]],
           layers: Mapping[str, Layer]) -> pl.DataFrame:
    """Per parameter and key: the least-squares slope of log2(value) on log2(width), with the value at the
    smallest width. Zeros (no weight decay) have no slope. Columns: name, role, key, value, slope."""
    rows = [{"name": name, "key": key, "width": int(width), "value": value}
            for width, params in hyperparameters.items() for name, values in params.items()
            for key, value in values.items()]
    schema = {"name": pl.String, "role": pl.String, "key": pl.String, "value": pl.Float64, "slope": pl.Float64}
    if not rows:
        return pl.DataFrame(schema=schema)
    frame = pl.DataFrame(rows)
    x = pl.col("width").cast(pl.Float64).log(2)
    y = pl.col("value").log(2)
    usable = frame.filter(pl.col("value") > 0)
    fitted = (usable.with_columns(x=x, y=y).group_by("name", "key").agg(
        value=pl.col("value").sort_by("width").first(),
        slope=pl.cov("x", "y") / pl.col("x").var(),
    ))
    roles = pl.DataFrame({"name": list(layers), "role": [layer.role for layer in layers.values()]},
                         schema={"name": pl.String, "role": pl.String})
    return fitted.join(roles, on="name", how="left").select(*schema).sort("name", "key")


@dataclass(frozen=True)
class Note:
    """A hyperparameter that does not scale as μP's rule for the measured optimizer family asks."""

    role: str
    key: str
    names: tuple[str, ...]
    slope: float
    expected: float
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "names": list(self.names)}


def learning_rates(table: pl.DataFrame, smallest: int, center: float) -> dict[str, tuple[float, float]]:
    """Each parameter's log2 learning rate at log2 width ``center`` and its slope in width, from
    :func:`slopes` (whose ``value`` is at the ``smallest`` width)."""
    rows = table.filter((pl.col("key") == "lr") & pl.col("slope").is_not_null() & (pl.col("value") > 0))
    return {name: (math.log2(value) + slope * (center - math.log2(smallest)), slope)
            for name, value, slope in rows.select("name", "value", "slope").iter_rows()}


def lint(table: pl.DataFrame, measured: str | None, gradients: Mapping[str, float] | None = None) -> list[Note]:
    """The learning-rate and ε rules of the module docstring, per role, against the measured family (no
    family measured: no rule applies, nothing is said). ``gradients``: each hidden matrix's log2 gradient
    rms at the centre width; ε is only worth a word where it is within :data:`EPS_REACH` of it, since a
    far smaller ε changes no update at these widths."""
    if measured is None:
        return []
    notes: list[Note] = []
    for role, expected in LR_RULES[measured].items():
        notes += _check(table, role, "lr", expected, f"with {measured} updates μP scales the {role} learning "
                        f"rate like width^{expected:+g}" + (
                            " (an orthogonalised update rescaled to Adam's RMS, such as Muon's match_rms_adamw, "
                            "needs width^-0.5 instead)" if measured == ADAM_LIKE and role == "hidden" else ""))
    if measured == ADAM_LIKE:
        level = pl.col("name").replace_strict(dict(gradients or {}), default=None, return_dtype=pl.Float64)
        eps = table.filter((pl.col("key") == "eps") & (pl.col("role") == "hidden"))
        too_large = eps.filter((pl.col("slope") > -1.0 + TOLERANCE)
                               & (pl.col("value").log(2) > level + math.log2(EPS_REACH)))
        if not too_large.is_empty():
            notes.append(Note("hidden", "eps", tuple(too_large["name"].to_list()),
                              float(too_large["slope"].median()), -1.0,  # type: ignore[arg-type]
                              "Adam's ε on hidden matrices should shrink like 1/width (or be negligible), or "
                              "it swamps the shrinking second moments of wide models (TP5 App. B.3)"))
    return notes


def _check(table: pl.DataFrame, role: str, key: str, expected: float, message: str) -> list[Note]:
    rows = table.filter((pl.col("key") == key) & (pl.col("role") == role) & pl.col("slope").is_not_null())
    if rows.is_empty():
        return []
    median = float(rows["slope"].median())  # type: ignore[arg-type]
    if math.isfinite(median) and abs(median - expected) <= TOLERANCE:
        return []
    off = rows.filter((pl.col("slope") - expected).abs() > TOLERANCE)
    return [Note(role, key, tuple(off["name"].to_list()), median, expected,
                 f"{message}; here it goes like width^{median:+.2f}")]
