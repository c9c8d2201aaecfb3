"""The recorder's values, against statistics computed directly with autograd on the same model."""

from __future__ import annotations

import math

import polars as pl
import pyarrow.parquet as pq
import pytest
import torch
from tiny import Tiny, mse, tiny_batches
from torch import nn

import coordscope
from coordscope import Spec
from coordscope.errors import ProbeError, SpecError
from coordscope.job import Job, record_job
from coordscope.layers import infer_layers
from coordscope.runmeta import read_meta
from coordscope.store import SITES, shard_paths

LR = 0.1


def sgd(model: nn.Module, lr: float) -> torch.optim.Optimizer:
    return torch.optim.SGD(model.parameters(), lr=lr)


TINY = Spec(model=Tiny, batches=tiny_batches, loss=mse, optimizer=sgd, ref="tiny")


def rms(x: torch.Tensor) -> float:
    return float(x.detach().double().pow(2).mean().sqrt())


def expected_rows(width: int, seed: int, steps: int) -> dict[tuple[str, str, int], float]:
    """Every rms statistic of the tiny network, computed directly (no hooks, plain autograd)."""
    torch.manual_seed(seed)
    model = Tiny(width)
    x, y = next(tiny_batches())
    out: dict[tuple[str, str, int], float] = {}
    first: dict[str, torch.Tensor] = {}
    for t in range(steps + 1):
        a = model.a(x)
        h = torch.tanh(a)
        o = model.b(h)
        for tensor in (a, h, o):
            tensor.retain_grad()
        loss = nn.functional.mse_loss(o, y)
        model.zero_grad()
        loss.backward()
        acts = {"a": a, "act": h, "b": o, "<output>": o}
        for name, tensor in acts.items():
            first.setdefault(name, tensor.detach().clone())
            out[name, "act", t] = rms(tensor)
            out[name, "act_delta", t] = rms(tensor.detach() - first[name])
            out[name, "act_grad", t] = rms(tensor.grad)
        out["<loss>", "loss", t] = rms(loss)
        with torch.no_grad():
            for name, p in model.named_parameters():
                out[name, "param", t] = rms(p)
                out[name, "param_grad", t] = rms(p.grad)
                new = p - LR * p.grad
                out[name, "param_update", t] = rms(new - p)
                p.copy_(new)
    return out


def test_recorded_values_match_direct_autograd(tmp_path):
    run_dir = coordscope.run(TINY, widths=[4, 8], steps=3, seeds=[0, 1], lr=LR, out=tmp_path / "r",
                             progress=False)
    frame = coordscope.load(run_dir)
    for width in (4, 8):
        for seed in (0, 1):
            want = expected_rows(width, seed, 3)
            got = frame.filter(width=width, seed=seed, probe="rms")
            got_map = {(r["name"], r["site"], r["step"]): r["value"] for r in got.iter_rows(named=True)}
            assert set(got_map) == set(want)
            for key, value in want.items():
                assert got_map[key] == pytest.approx(value, rel=1e-5, abs=1e-7), key


def test_act_delta_is_zero_at_init_and_roles_are_inferred(tmp_path):
    run_dir = coordscope.run(TINY, widths=[4, 8], steps=2, seeds=1, lr=LR, out=tmp_path / "r",
                             progress=False)
    frame = coordscope.load(run_dir)
    assert frame.filter(site="act_delta", step=0)["value"].to_list() == [0.0] * 4 * 2
    roles = dict(frame.select("name", "role").unique().iter_rows())
    assert roles == {"a": "input", "act": "hidden", "b": "output", "<output>": "output", "<loss>": "loss",
                     "a.weight": "input", "a.bias": "vector", "b.weight": "output", "b.bias": "fixed"}


def test_mlp_run_covers_every_width_seed_step_and_site(tmp_path):
    run_dir = coordscope.run("mlp-mup", widths=[64, 128, 256, 512], steps=5, seeds=3, out=tmp_path / "run",
                             progress=False)
    meta = read_meta(run_dir)
    assert meta.status == "complete" and meta.kind == "coordcheck"
    assert len(shard_paths(run_dir)) == 12
    table = pq.ParquetDataset([str(p) for p in shard_paths(run_dir)]).read()
    assert table.column_names[:8] == ["run", "width", "seed", "step", "name", "site", "probe", "value"]
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    combos = frame.group_by("width", "seed", "step").agg(pl.col("site").unique().sort())
    assert combos.height == 4 * 3 * 6
    assert all(sorted(sites) == sorted(SITES) for sites in combos["site"])
    # every parameter and every leaf module appears at every (width, seed, step)
    counts = frame.filter(probe="rms").group_by("width", "seed", "step").len()["len"].unique().to_list()
    assert len(counts) == 1
    assert frame["value"].is_finite().all()


class TupleOut(nn.Module):
    """A leaf module returning a tuple and a dict, as attention and HF blocks do."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(width, 3) / 3**0.5)

    def forward(self, x: torch.Tensor):
        h = x @ self.weight.t()
        return h, {"twice": 2 * h}


class WithTuples(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.block = TupleOut(width)
        self.head = nn.Linear(width, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, extra = self.block(x)
        return self.head(h + extra["twice"])


def test_tensors_inside_tuples_and_dicts_are_recorded(tmp_path):
    spec = Spec(model=WithTuples, batches=tiny_batches, loss=mse, ref="tuples")
    frame = coordscope.load(coordscope.run(spec, widths=[4, 8], steps=1, seeds=1, out=tmp_path / "r",
                                           progress=False))
    names = set(frame.filter(site="act")["name"])
    assert {"block[0]", "block[1][twice]", "head", "<output>"} <= names
    assert frame.filter(site="act", name="block[1][twice]", probe="rms")["value"].to_list() == pytest.approx(
        [2 * v for v in frame.filter(site="act", name="block[0]", probe="rms")["value"].to_list()])


def _hooks(model: nn.Module) -> int:
    """Module hooks plus the gradient-ready hooks of parameters."""
    modules = sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())
    return modules + sum(len(p._post_accumulate_grad_hooks or {}) for p in model.parameters())


def test_no_hook_is_left_after_a_run_or_after_the_loss_raises(tmp_path):
    built: list[nn.Module] = []

    def model(width: int) -> nn.Module:
        built.append(Tiny(width))
        return built[-1]

    def loss(net: nn.Module, batch) -> torch.Tensor:
        value = mse(net, batch)
        if getattr(net, "steps_seen", 0) == 2 and net.a.out_features == 8:
            raise RuntimeError("boom")
        net.steps_seen = getattr(net, "steps_seen", 0) + 1
        return value

    ok = Spec(model=model, batches=tiny_batches, loss=mse, ref="ok")
    coordscope.run(ok, widths=[4, 8], steps=2, seeds=1, out=tmp_path / "ok", progress=False)
    assert built and all(_hooks(m) == 0 for m in built)

    built.clear()
    bad = Spec(model=model, batches=tiny_batches, loss=loss, ref="bad")
    with pytest.raises(SpecError, match=r"loss raised at width 8, step 2: RuntimeError: boom"):
        coordscope.run(bad, widths=[4, 8], steps=4, seeds=1, out=tmp_path / "bad", progress=False)
    assert built and all(_hooks(m) == 0 for m in built)
    from coordscope.record import active_recorder

    assert active_recorder() is None
    assert read_meta(tmp_path / "bad").status == "incomplete"
    files = sorted(p.name for p in (tmp_path / "bad").iterdir())
    assert files == ["meta.json", "shard-w4-s0.parquet"]  # the failed job left no file, not even a temp one


class WithIdleParameters(Tiny):
    """Tiny plus a trained layer the forward never uses and a frozen one it does."""

    def __init__(self, width: int) -> None:
        super().__init__(width)
        self.unused = nn.Linear(width, width)
        self.frozen = nn.Parameter(torch.ones(2), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) * self.frozen


def test_parameters_without_a_gradient_still_get_their_param_rows(tmp_path):
    spec = Spec(model=WithIdleParameters, batches=tiny_batches, loss=mse, optimizer=sgd, ref="idle")
    frame = coordscope.load(coordscope.run(spec, widths=[4, 8], steps=2, seeds=1, lr=LR, out=tmp_path / "r",
                                           progress=False))
    for name in ("unused.weight", "frozen", "a.weight"):
        assert sorted(frame.filter(name=name, site="param", probe="rms", width=8)["step"]) == [0, 1, 2], name
    assert frame.filter(name="unused.weight", site="param_grad").is_empty()
    assert frame.filter(name="frozen", site="param_grad").is_empty()
    assert frame.filter(name="unused.weight", site="param_update")["value"].to_list() == [0.0] * 12  # rms, spectral
    assert frame.filter(name="frozen", site="param_update").is_empty()  # not trained: not tracked
    assert frame.filter(name="frozen", site="param")["value"].to_list() == pytest.approx([1.0] * 6, rel=1e-6)


def test_a_probe_returning_a_view_of_its_input_survives_buffer_reuse(tmp_path):
    """Updates and act deltas share one scratch buffer; a probe's 0-d view into it must be kept apart."""
    probe_file = tmp_path / "first.py"
    probe_file.write_text("def first(x, ctx):\n    return x.reshape(-1)[0]\n")
    run_dir = coordscope.run(TINY, widths=[4, 8], steps=3, seeds=1, lr=LR, out=tmp_path / "r", progress=False,
                             probes=f"{probe_file}:first")
    frame = coordscope.load(run_dir).filter(width=8)
    for name in ("a.weight", "a.bias", "b.weight", "b.bias"):
        params = frame.filter(name=name, site="param").sort("step")["value"].to_list()
        updates = frame.filter(name=name, site="param_update").sort("step")["value"].to_list()
        assert updates[:3] == pytest.approx([b - a for a, b in zip(params[:-1], params[1:], strict=True)], abs=1e-6), name
    acts = frame.filter(name="a", site="act").sort("step")["value"].to_list()
    deltas = frame.filter(name="a", site="act_delta").sort("step")["value"].to_list()
    assert deltas == pytest.approx([v - acts[0] for v in acts], abs=1e-6)


def test_probes_by_name_and_from_a_users_file(tmp_path):
    probe_file = tmp_path / "myprobes.py"
    probe_file.write_text("def second_moment(x, ctx):\n    return x.pow(2).mean()\n")
    run_dir = coordscope.run(TINY, widths=[4, 8], steps=1, seeds=1, out=tmp_path / "r", progress=False,
                             probes=f"rms,l1,absmax,{probe_file}:second_moment")
    frame = coordscope.load(run_dir)
    assert set(frame["probe"]) == {"rms", "l1", "absmax", "second_moment"}
    wide = frame.pivot(on="probe", index=["width", "seed", "step", "name", "site"], values="value")
    assert wide["second_moment"].to_list() == pytest.approx([v * v for v in wide["rms"].to_list()], rel=1e-5)
    assert (wide["absmax"] >= wide["rms"] - 1e-7).all() and (wide["rms"] >= wide["l1"] - 1e-7).all()


def test_a_probe_that_returns_a_vector_is_refused(tmp_path):
    probe_file = tmp_path / "bad.py"
    probe_file.write_text("def per_row(x, ctx):\n    return x.abs().reshape(x.shape[0], -1).mean(1) if x.dim() else x\n")
    with pytest.raises(ProbeError, match="must return a 0-d tensor"):
        coordscope.run(TINY, widths=[4, 8], steps=1, seeds=1, out=tmp_path / "r", progress=False,
                       probes=f"{probe_file}:per_row")
    with pytest.raises(ProbeError, match="unknown probe 'nope'"):
        coordscope.run(TINY, widths=[4, 8], steps=1, seeds=1, out=tmp_path / "r2", progress=False, probes="nope")


class Attention(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.qkv = nn.Linear(width, 3 * width)
        self.heads = 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        y = nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True, scale=1.0 / q.shape[-1])
        return coordscope.tap("mixed", y.transpose(1, 2).reshape(b, t, c))


class AttnNet(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.embed = nn.Linear(3, width)
        self.attn = Attention(width)
        self.head = nn.Linear(width, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.attn(self.embed(x)))


def seq_batches():
    while True:
        yield torch.randn(2, 6, 3), torch.randn(2, 6, 2)


def test_attention_logits_and_user_taps_are_recorded_without_editing_the_model(tmp_path):
    spec = Spec(model=AttnNet, batches=seq_batches, loss=mse, ref="attn")
    run_dir = coordscope.run(spec, widths=[8, 16], steps=1, seeds=1, out=tmp_path / "r", progress=False)
    frame = coordscope.load(run_dir)
    logits = frame.filter(name="attn.attn_logits", site="act", step=0, width=8, probe="rms")
    assert logits["role"].to_list() == ["attn_logits"]
    # recompute the step-0 logits by hand
    torch.manual_seed(0)
    net = AttnNet(8)
    x, _ = next(seq_batches())
    h = net.embed(x)
    q, k, _ = net.attn.qkv(h).view(2, 6, 3, 2, 4).permute(2, 0, 3, 1, 4)
    scores = (q @ k.transpose(-2, -1)) / 4
    causal = torch.ones(6, 6, dtype=torch.bool).tril()
    assert logits["value"][0] == pytest.approx(rms(scores[..., causal]), rel=1e-5)
    assert {"attn.mixed"} <= set(frame.filter(site="act_grad")["name"])
    assert read_meta(run_dir).layers["attn.attn_logits"].role == "attn_logits"
    # outside a run, tap() is the identity and records nothing
    y = torch.randn(3)
    assert coordscope.tap("x", y) is y


def _transfers(depth: int, tmp_path) -> int:
    """Device→host transfers made during steps 1..4 of a job of an MLP with ``depth`` hidden layers."""
    from torch.overrides import TorchFunctionMode

    host = {"item", "tolist", "numpy", "cpu", "__bool__", "__float__", "__int__", "__index__"}
    state = {"counting": False, "n": 0}  # counting starts when step 0 ends: building the model is not counted

    class Count(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            name = getattr(func, "__name__", "")
            kwargs = kwargs or {}
            to_host = name == "to" and "cpu" in [str(a) for a in (*args[1:], *kwargs.values())]
            if state["counting"] and (name in host or to_host):
                state["n"] += 1
            return func(*args, **kwargs)

    def model(width: int) -> nn.Module:
        return nn.Sequential(nn.Linear(3, width), *[nn.Linear(width, width) for _ in range(depth)],
                             nn.Linear(width, 2))

    spec = Spec(model=model, batches=tiny_batches, loss=mse, optimizer=sgd, ref=f"deep{depth}")
    layers = infer_layers(spec, (4, 8))
    (tmp_path / str(depth)).mkdir()
    job = Job(spec, 8, 0, 4, 0.01, ("rms", "l1"), str(tmp_path / str(depth)), "r", layers)
    with Count():
        record_job(job, on_step=lambda: state.update(counting=True))
    return state["n"]


def test_statistics_reach_the_host_once_per_step_not_once_per_tensor(tmp_path):
    shallow, deep = _transfers(1, tmp_path), _transfers(12, tmp_path)
    assert shallow == deep  # 12 more layers, hundreds more statistics, no more transfers
    assert 1 <= shallow <= 2 * 4  # steps 1..4: one transfer each (a move and its numpy view)


def test_non_finite_values_are_recorded_not_dropped(tmp_path):
    def boom(model: nn.Module, lr: float) -> torch.optim.Optimizer:
        return torch.optim.SGD(model.parameters(), lr=1e30)

    spec = Spec(model=Tiny, batches=tiny_batches, loss=mse, optimizer=boom, ref="boom")
    frame = coordscope.load(coordscope.run(spec, widths=[4, 8], steps=4, seeds=1, out=tmp_path / "r",
                                           progress=False))
    assert frame.filter(site="loss").height == 2 * 5  # every step of both widths is there
    assert not frame["value"].is_finite().all()
    assert math.isfinite(frame.filter(site="loss", step=0)["value"][0])


def test_a_module_output_overwritten_in_place_is_recorded_before_and_after(tmp_path):
    """``nn.ReLU(inplace=True)`` returns the ``Linear`` output it overwrote: the same tensor object, changed.
    The Linear's rows are its output before the ReLU, the ReLU's after it (the version counter tells the two
    apart), as autograd computes them on a model without the in-place op."""
    import copy

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(inplace=True), nn.Linear(32, 4))
    reference = copy.deepcopy(model)
    x = torch.randn(16, 8)
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    with coordscope.recording(model, optimizer, out=tmp_path / "r", width=32, progress=False) as rec:
        for _ in range(2):
            loss = model(x).pow(2).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            rec.step(loss)
    frame = coordscope.load(tmp_path / "r").filter(probe="rms", step=1)
    got = {(r["name"], r["site"]): r["value"] for r in frame.iter_rows(named=True)}

    first = {}
    ref_optimizer = torch.optim.SGD(reference.parameters(), lr=LR)
    for step in range(2):
        pre = reference[0](x)
        post = torch.relu(pre)
        for tensor in (pre, post):
            tensor.retain_grad()
        loss = reference[2](post).pow(2).mean()
        ref_optimizer.zero_grad()
        loss.backward()
        for name, tensor in (("0", pre), ("1", post)):
            first.setdefault(name, tensor.detach().clone())
            if step == 1:
                assert got[name, "act"] == pytest.approx(rms(tensor), rel=1e-5), name
                assert got[name, "act_delta"] == pytest.approx(rms(tensor.detach() - first[name]), rel=1e-4), name
                assert got[name, "act_grad"] == pytest.approx(rms(tensor.grad), rel=1e-5), name
        ref_optimizer.step()
    assert got["0", "act"] > 1.2 * got["1", "act"]  # the ReLU halves the entries: the two rows differ
