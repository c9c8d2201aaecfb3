"""Specs (:mod:`coordscope.spec`): every way of naming one, what a spec must define, and every place the user's
code runs — model, batches, loss, optimizer and its step — turning an exception there into one line.

Spec files and modules are written into ``tmp_path`` under unique names and imported for real; models are real
torch modules.
"""

from __future__ import annotations

import sys
import textwrap
import uuid
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from coordscope.errors import CoordscopeError, SpecError
from coordscope.sample_models import SAMPLES
from coordscope.spec import (
    Spec,
    build_model,
    checked_loss,
    default_loss,
    first_batch,
    load_spec,
    make_optimizer,
    optimizer_step,
    rehearse,
)

SPEC_BODY = '''
"""A tiny two-layer MLP for the spec tests.

More words that are not the description.
"""
import torch
from torch import nn

DEFAULTS = {"widths": [8, 16], "steps": 2}


def model(width):
    return nn.Sequential(nn.Linear(4, width), nn.ReLU(), nn.Linear(width, 3))


def batches():
    g = torch.Generator().manual_seed(0)
    while True:
        yield torch.randn(5, 4, generator=g), torch.randint(0, 3, (5,), generator=g)
'''


@pytest.fixture(autouse=True)
def _restore_import_state(monkeypatch):
    """Loading a spec file puts its folder on sys.path and the module in sys.modules: undo both."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    before = set(sys.modules)
    yield
    for name in set(sys.modules) - before:
        if name.startswith(("coordscope_user_spec_", "cs_test_")):
            del sys.modules[name]


def unique(prefix: str = "cs_test_") -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


def tiny_spec(**changes) -> Spec:
    spec = Spec(model=lambda width: nn.Linear(4, width), batches=lambda: iter([(torch.ones(2, 4), torch.zeros(2))]),
                ref="tiny")
    return replace(spec, **changes)


# --- naming a spec -----------------------------------------------------------------------------------------


def test_load_spec_from_a_python_file(tmp_path):
    path = write(tmp_path / "myspec.py", SPEC_BODY)
    spec = load_spec(str(path))
    assert spec.ref == str(path)
    assert spec.defaults == {"widths": [8, 16], "steps": 2}
    assert spec.description == "A tiny two-layer MLP for the spec tests."
    assert spec.loss is None and spec.optimizer is None and spec.heldout is None
    model = build_model(spec, 12)
    assert model[0].out_features == 12 and model[2].in_features == 12
    x, y = first_batch(spec)
    assert x.shape == (5, 4) and y.shape == (5,)
    loss = checked_loss(spec, model, (x, y), 12, 0)
    assert loss.dim() == 0 and torch.isfinite(loss)


def test_a_spec_file_can_import_a_helper_beside_it(tmp_path):
    helper = unique()
    folder = tmp_path / "project"
    folder.mkdir()
    write(folder / f"{helper}.py", """
        from torch import nn

        def build(width):
            return nn.Linear(3, width, bias=False)
    """)
    path = write(folder / "spec.py", f"""
        import torch
        from {helper} import build

        def model(width):
            return build(width)

        def batches():
            yield torch.ones(2, 3)
    """)
    spec = load_spec(str(path))
    model = build_model(spec, 7)
    assert isinstance(model, nn.Linear) and model.weight.shape == (7, 3) and model.bias is None


def test_load_spec_from_a_module_and_module_attr(tmp_path, monkeypatch):
    name = unique()
    write(tmp_path / f"{name}.py", SPEC_BODY + textwrap.dedent('''
        from coordscope.spec import Spec

        AS_SPEC = Spec(model=model, batches=batches, defaults={"steps": 9})
        NAMED = Spec(model=model, batches=batches, ref="named-already")


        class AsClass:
            """A spec given as a class."""

            model = staticmethod(model)
            batches = staticmethod(batches)

            @staticmethod
            def loss(net, batch):
                return net(batch[0]).pow(2).mean()
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))

    module_spec = load_spec(name)
    assert module_spec.ref == name and module_spec.defaults == {"widths": [8, 16], "steps": 2}

    obj = load_spec(f"{name}:AS_SPEC")
    assert obj.ref == f"{name}:AS_SPEC" and obj.defaults == {"steps": 9}
    assert load_spec(f"{name}:NAMED").ref == "named-already"  # a spec that names itself keeps its name

    cls = load_spec(f"{name}:AsClass")
    assert cls.ref == f"{name}:AsClass" and cls.description == "A spec given as a class."
    model = build_model(cls, 6)
    batch = first_batch(cls)
    assert cls.loss is not None
    torch.testing.assert_close(cls.compute_loss(model, batch), model(batch[0]).pow(2).mean())

    with pytest.raises(SpecError, match=f"spec '{name}:NOPE': {name} has no attribute 'NOPE'"):
        load_spec(f"{name}:NOPE")


def test_a_file_path_with_an_attribute(tmp_path):
    path = write(tmp_path / "with_attr.py", SPEC_BODY + "\nfrom coordscope.spec import Spec\n"
                 "OTHER = Spec(model=lambda w: nn.Linear(2, w), batches=batches)\n")
    spec = load_spec(f"{path}:OTHER")
    assert spec.ref == f"{path}:OTHER"
    assert build_model(spec, 5).weight.shape == (5, 2)


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_every_sample_name_loads_under_its_short_name(name):
    spec = load_spec(name)
    assert isinstance(spec, Spec) and spec.ref == name
    assert callable(spec.model) and callable(spec.batches)


def test_a_sample_builds_the_same_model_as_its_target():
    spec = load_spec("mlp-mup")
    target = load_spec(SAMPLES["mlp-mup"].target)
    assert spec.model is target.model and spec.defaults == target.defaults
    torch.manual_seed(0)
    model = build_model(spec, 64)
    assert [p.shape for p in model.parameters()] == [
        (64, 32), (64,), (64, 64), (64,), (64, 64), (64,), (10, 64), (10,)]


def test_a_spec_object_is_returned_as_is():
    spec = tiny_spec()
    assert load_spec(spec) is spec


@pytest.mark.parametrize(("ref", "message"), [
    ("", "no spec given"),
    ("   ", "no spec given"),
    ("definitely_not_a_module_xyz", "is not a file, an importable module or a sample"),
    ("nowhere/missing_spec.py", "spec file 'nowhere/missing_spec.py' does not exist"),
    ("missing_spec.py:model", "spec file 'missing_spec.py' does not exist"),
])
def test_unresolvable_references_are_one_line_spec_errors(ref, message):
    with pytest.raises(SpecError, match=message) as info:
        load_spec(ref)
    assert "\n" not in str(info.value)


def test_a_module_that_fails_to_import_is_named(tmp_path, monkeypatch):
    name = unique()
    write(tmp_path / f"{name}.py", "import cs_test_no_such_dependency_at_all\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(SpecError, match=f"spec '{name}' failed to import: ModuleNotFoundError: .*"
                                        "cs_test_no_such_dependency_at_all"):
        load_spec(name)


def test_a_spec_file_that_raises_while_importing(tmp_path):
    path = write(tmp_path / "broken.py", "raise RuntimeError('no GPU here')\n")
    with pytest.raises(SpecError, match=r"broken\.py' failed to import: RuntimeError: no GPU here") as info:
        load_spec(str(path))
    assert "\n" not in str(info.value)
    assert not any(n.startswith("coordscope_user_spec_") and getattr(m, "__file__", None) == str(path)
                   for n, m in sys.modules.items())


@pytest.mark.parametrize(("body", "message"), [
    ("def batches():\n    yield 1\n", r"does not define model\(\) \(a spec needs model\(width\) and batches\(\)\)"),
    ("def model(w):\n    return None\n", r"does not define batches\(\)"),
    ("X = 1\n", r"does not define model\(\) and batches\(\)"),
    ("model = 3\nbatches = [1, 2]\n", r"does not define model\(\) and batches\(\)"),
])
def test_a_spec_without_model_or_batches(tmp_path, body, message):
    path = write(tmp_path / "incomplete.py", body)
    with pytest.raises(SpecError, match=message):
        load_spec(str(path))


@pytest.mark.parametrize(("defaults", "ok"), [("[8, 16]", False), ("'widths=8'", False), ("None", True),
                                               ("{}", True)])
def test_defaults_must_be_a_dict(tmp_path, defaults, ok):
    path = write(tmp_path / "defaults.py", SPEC_BODY.replace('DEFAULTS = {"widths": [8, 16], "steps": 2}',
                                                             f"DEFAULTS = {defaults}"))
    if ok:
        assert load_spec(str(path)).defaults == {}
    else:
        with pytest.raises(SpecError, match="DEFAULTS must be a dict, got (list|str)"):
            load_spec(str(path))


def test_a_namespace_without_a_model_names_the_ref():
    from coordscope.spec import _from_namespace

    with pytest.raises(SpecError, match="spec 'my-ns' does not define model"):
        _from_namespace(SimpleNamespace(batches=lambda: iter([])), "my-ns")


# --- running the user's code -------------------------------------------------------------------------------


def test_build_model_names_the_spec_and_the_width():
    def bad_model(width):
        if width > 10:
            raise ValueError(f"width {width} does not divide the head count")
        return nn.Linear(2, width)

    spec = tiny_spec(model=bad_model)
    assert isinstance(build_model(spec, 8), nn.Linear)
    with pytest.raises(SpecError, match=r"spec 'tiny': model\(12\) raised ValueError: width 12 does not divide") as info:
        build_model(spec, 12)
    assert isinstance(info.value.__cause__, ValueError) and "\n" not in str(info.value)

    with pytest.raises(SpecError, match=r"spec 'tiny': model\(8\) returned dict, not an nn.Module"):
        build_model(tiny_spec(model=lambda width: {"width": width}), 8)


def test_first_batch():
    spec = tiny_spec(batches=lambda: iter(["first", "second"]))
    assert first_batch(spec) == "first"
    with pytest.raises(SpecError, match=r"spec 'tiny': batches\(\) yielded nothing"):
        first_batch(tiny_spec(batches=lambda: iter([])))

    def exploding():
        raise FileNotFoundError("data/train.bin")
        yield  # a generator: the error comes on the first next()

    with pytest.raises(SpecError, match=r"spec 'tiny': batches\(\) raised FileNotFoundError: data/train.bin"):
        first_batch(tiny_spec(batches=exploding))
    with pytest.raises(SpecError, match=r"batches\(\) raised TypeError"):
        first_batch(tiny_spec(batches=lambda: 42))  # not iterable


# --- default_loss ------------------------------------------------------------------------------------------


def test_default_loss_is_cross_entropy_of_x_y_batches():
    torch.manual_seed(0)
    model = nn.Linear(4, 3)
    x, y = torch.randn(6, 4), torch.tensor([0, 1, 2, 0, 1, 2])
    expected = nn.functional.cross_entropy(model(x), y)
    torch.testing.assert_close(default_loss(model, (x, y)), expected)
    torch.testing.assert_close(default_loss(model, [x, y]), expected)


def test_default_loss_flattens_sequence_outputs():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Embedding(11, 8), nn.Linear(8, 11))
    x = torch.randint(0, 11, (2, 5))
    y = torch.randint(0, 11, (2, 5))
    logits = model(x)
    expected = nn.functional.cross_entropy(logits.reshape(10, 11), y.reshape(10))
    torch.testing.assert_close(default_loss(model, (x, y)), expected)


class ReturnsLoss(nn.Module):
    """Returns its own scalar loss (the target is ignored by the default loss)."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(x).pow(2).mean()


class HFOutput:
    def __init__(self, loss: torch.Tensor, logits: torch.Tensor) -> None:
        self.loss, self.logits = loss, logits


class HFStyle(nn.Module):
    """Hugging Face style: keyword inputs, an output object with ``.loss``."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 3)

    def forward(self, input_ids: torch.Tensor, labels: torch.Tensor | None = None) -> HFOutput:
        logits = self.lin(input_ids)
        loss = nn.functional.cross_entropy(logits, labels) * 10.0 if labels is not None else None
        return HFOutput(loss, logits)


def test_default_loss_uses_a_scalar_the_model_returns():
    torch.manual_seed(0)
    model = ReturnsLoss()
    x = torch.randn(3, 4)
    torch.testing.assert_close(default_loss(model, x), model(x))
    torch.testing.assert_close(default_loss(model, (x, torch.zeros(3, dtype=torch.long))), model(x))


def test_default_loss_uses_the_loss_attribute_of_an_output_object():
    torch.manual_seed(0)
    model = HFStyle()
    x, y = torch.randn(5, 4), torch.tensor([0, 1, 2, 1, 0])
    loss = default_loss(model, {"input_ids": x, "labels": y})
    # ×10 inside the model: the model's own loss was used, not a cross-entropy recomputed outside it
    torch.testing.assert_close(loss, nn.functional.cross_entropy(model.lin(x), y) * 10.0)

    class DictOut(nn.Module):
        def forward(self, x):
            return {"loss": x.sum() * 0 + 7.0, "logits": x}

    assert default_loss(DictOut(), torch.ones(2, 2)).item() == 7.0


@pytest.mark.parametrize("case", ["no-target", "no-loss-in-output", "vector-loss-attribute"])
def test_default_loss_without_a_target_or_a_loss_is_a_spec_error(case):
    torch.manual_seed(0)
    if case == "no-target":
        model, batch = nn.Linear(4, 3), torch.randn(2, 4)
    elif case == "no-loss-in-output":
        model, batch = HFStyle(), {"input_ids": torch.randn(2, 4)}  # labels absent: .loss is None
    else:
        model, batch = nn.Linear(4, 3), (torch.randn(2, 4),)  # a 1-tuple: no y
    with pytest.raises(SpecError, match=r"the default loss needs \(x, y\) batches .* define loss\(model, batch\)"):
        default_loss(model, batch)


# --- loss, optimizer and step from the user's code ---------------------------------------------------------


def test_checked_loss_turns_user_errors_into_one_line():
    model = nn.Linear(4, 2)
    batch = (torch.ones(2, 4), torch.zeros(2, dtype=torch.long))

    def failing(net, b):
        raise ZeroDivisionError("division by zero")

    with pytest.raises(SpecError, match=r"spec 'tiny': the loss raised at width 8, step 3: "
                                        "ZeroDivisionError: division by zero") as info:
        checked_loss(tiny_spec(loss=failing), model, batch, 8, 3)
    assert isinstance(info.value.__cause__, ZeroDivisionError) and "\n" not in str(info.value)

    with pytest.raises(SpecError, match="the loss must be a scalar tensor, got Tensor"):
        checked_loss(tiny_spec(loss=lambda net, b: net(b[0])), model, batch, 8, 0)
    with pytest.raises(SpecError, match="the loss must be a scalar tensor, got float"):
        checked_loss(tiny_spec(loss=lambda net, b: 1.5), model, batch, 8, 0)


def test_checked_loss_passes_coordscope_errors_through_unchanged():
    """The default loss's own SpecError is already one line: it is not wrapped as 'the loss raised'."""
    with pytest.raises(SpecError, match="the default loss needs") as info:
        checked_loss(tiny_spec(), nn.Linear(4, 2), torch.ones(2, 4), 8, 0)
    assert "the loss raised" not in str(info.value)


def test_make_optimizer_defaults_to_adam_over_trainable_parameters():
    model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2))
    model[0].weight.requires_grad_(False)
    optimizer = make_optimizer(tiny_spec(), model, 0.003, 8)
    assert isinstance(optimizer, torch.optim.Adam)
    params = [p for group in optimizer.param_groups for p in group["params"]]
    assert len(params) == 3 and all(p is not model[0].weight for p in params)
    assert optimizer.param_groups[0]["lr"] == 0.003


class ModalSGD(torch.optim.SGD):
    """An optimizer with a train/eval protocol, like ScheduleFree's."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.mode = "eval"

    def train(self) -> None:
        self.mode = "train"

    def eval(self) -> None:
        self.mode = "eval"


def test_make_optimizer_uses_the_specs_and_puts_it_in_train_mode():
    spec = tiny_spec(optimizer=lambda net, lr: ModalSGD(net.parameters(), lr=lr * 2))
    optimizer = make_optimizer(spec, nn.Linear(2, 2), 0.5, 8)
    assert isinstance(optimizer, ModalSGD) and optimizer.mode == "train"
    assert optimizer.param_groups[0]["lr"] == 1.0


def test_make_optimizer_turns_user_errors_into_one_line():
    def bad(net, lr):
        return torch.optim.SGD(net.parameters(), lr=lr, momentum=-1.0)

    with pytest.raises(SpecError, match=r"spec 'tiny': optimizer\(model, 0\.01\) raised at width 16: "
                                        "ValueError: Invalid momentum") as info:
        make_optimizer(tiny_spec(optimizer=bad), nn.Linear(2, 2), 0.01, 16)
    assert isinstance(info.value.__cause__, ValueError) and "\n" not in str(info.value)

    def already_explained(net, lr):
        raise SpecError("spec 'tiny': the optimizer needs lr > 0")

    with pytest.raises(SpecError, match="^spec 'tiny': the optimizer needs lr > 0$"):
        make_optimizer(tiny_spec(optimizer=already_explained), nn.Linear(2, 2), 0.01, 16)


class FailingStep(torch.optim.SGD):
    def step(self, closure=None):  # type: ignore[override]
        raise RuntimeError("CUDA error: an illegal memory access")


def test_optimizer_step_turns_user_errors_into_one_line():
    model = nn.Linear(2, 1)
    model(torch.ones(1, 2)).sum().backward()
    good = torch.optim.SGD(model.parameters(), lr=1.0)
    before = model.weight.detach().clone()
    optimizer_step(tiny_spec(), good, 8, 0)
    assert not torch.equal(before, model.weight)  # the step really ran

    with pytest.raises(SpecError, match=r"spec 'tiny': the optimizer's step\(\) raised at width 32, step 4: "
                                        "RuntimeError: CUDA error") as info:
        optimizer_step(tiny_spec(), FailingStep(model.parameters(), lr=1.0), 32, 4)
    assert isinstance(info.value.__cause__, RuntimeError) and "\n" not in str(info.value)


def test_rehearse_runs_one_step_and_names_the_optimizer(tmp_path):
    spec = load_spec(str(write(tmp_path / "rehearse.py", SPEC_BODY)))
    assert rehearse(spec, 8, 0.01, first_batch(spec)) == "Adam"
    failing = replace(spec, optimizer=lambda net, lr: FailingStep(net.parameters(), lr=lr))
    with pytest.raises(SpecError, match=r"the optimizer's step\(\) raised at width 8, step 0"):
        rehearse(failing, 8, 0.01, first_batch(spec))


def test_spec_errors_are_coordscope_errors():
    assert issubclass(SpecError, CoordscopeError) and issubclass(SpecError, ValueError)
