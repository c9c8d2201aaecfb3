"""The sample models, reachable by short name (``coordscope samples`` lists them).

Each entry points at a :class:`coordscope.Spec` inside this package. Samples come in parametrizations
(``sp``, ``mup``, ``ntk``) and as named planted μP bugs, so that coordscope's verdicts can be held
against cases whose right answer is known. ``expect`` says what a correct checker must conclude.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Sample:
    """A registered sample: where its spec lives, one line about it, and the verdict it should get."""

    target: str
    description: str
    expect: str  # "pass" (μP-correct) or "fail" (a checker must flag it)
    culprit: str = ""  # for planted bugs: a substring of the layer name the findings must name
    bug: str = ""  # for planted bugs: the diagnosis rule id that must fire


SAMPLES: dict[str, Sample] = {
    "mlp-mup": Sample("coordscope.sample_models.mlp:MUP", "MLP, μP, Adam (TP5 Table 3)", "pass"),
    "mlp-mup-sgd": Sample("coordscope.sample_models.mlp:MUP_SGD", "MLP, μP, SGD (TP5 Table 3)", "pass"),
    "mlp-sp": Sample("coordscope.sample_models.mlp:SP", "MLP, standard parametrization, Adam", "fail", "readout"),
    "mlp-ntk": Sample("coordscope.sample_models.mlp:NTK", "MLP, NTK parametrization, SGD (lazy)", "fail", "hidden"),
}
