"""coordscope.recording: a user's own loop, no spec — the same store as `coordscope run`, judged the same way."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import polars as pl
import pytest
import torch
import torch.nn.functional as F
from tiny import Tiny, mse, tiny_batches
from torch import nn

import coordscope
from coordscope.cli import main as cli
from coordscope.errors import ConfigError, StoreError
from coordscope.runmeta import read_meta
from coordscope.sample_models import mlp
from coordscope.sharedrun import pending
from coordscope.store import shard_paths

WIDTHS = [64, 128, 256, 512]


def mlp_job(out: Path, width: int, *, plain_adam: bool = False, steps: int = 4, seed: int = 0,
            plan: list[int] | None = WIDTHS, **kwargs) -> None:
    """The user's loop: a μP MLP trained with μP Adam (or plain Adam) on one batch, recorded."""
    torch.manual_seed(seed)
    model = mlp.build(width, "mup")
    groups = model.parameters() if plain_adam else mlp.param_groups(model, "mup", "adam", 0.01)
    optimizer = torch.optim.Adam(groups, lr=0.01)
    x, y = next(mlp.batches())
    with coordscope.recording(model, optimizer, out=out, width=width, seed=seed, widths=plan, **kwargs) as rec:
        for _ in range(steps + 1):
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            rec.step(loss)


def check_exit(run_dir: Path) -> int:
    try:
        cli(["check", str(run_dir)])
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def test_own_loop_mup_mlp_passes_and_the_same_mlp_with_plain_adam_fails(tmp_path, capsys):
    for width in WIDTHS:
        mlp_job(tmp_path / "mup", width)
        mlp_job(tmp_path / "adam", width, plain_adam=True)
    assert check_exit(tmp_path / "mup") == 0
    assert "PASS" in capsys.readouterr().out
    assert check_exit(tmp_path / "adam") == 1
    text = capsys.readouterr().out
    assert "FAIL" in text and "hidden" in text
    report = coordscope.check(tmp_path / "adam")
    assert {f.name for f in report.findings if f.severity == "error"} >= {"hidden.0", "hidden.1"}
    meta = read_meta(tmp_path / "mup")
    assert meta.status == "complete" and meta.widths == tuple(WIDTHS) and meta.optimizer == "Adam"
    assert meta.layers["hidden.0.weight"].role == "hidden" and meta.layers["readout"].role == "output"




TINY = coordscope.Spec(model=Tiny, batches=tiny_batches, loss=mse,
                       optimizer=lambda m, lr: torch.optim.SGD(m.parameters(), lr=lr), ref="tiny")


def _rows(run_dir: Path) -> dict[tuple, tuple[float, str]]:
    frame = coordscope.load(run_dir)
    return {(r["width"], r["seed"], r["step"], r["name"], r["site"], r["probe"]): (r["value"], r["role"])
            for r in frame.iter_rows(named=True)}


def test_own_loop_records_what_coordscope_run_records(tmp_path):
    """The spec's loop written by hand gives the same rows, values and roles as `coordscope run`."""
    ran = coordscope.run(TINY, widths=[4, 8], steps=3, seeds=[0, 1], lr=0.1, probes="rms", out=tmp_path / "run",
                         progress=False)  # the own loop's default probes
    for width in (4, 8):
        for seed in (0, 1):
            torch.manual_seed(seed)
            model = Tiny(width)
            batch = next(tiny_batches())
            optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
            with coordscope.recording(model, optimizer, out=tmp_path / "own", width=width, seed=seed,
                                      widths=[4, 8], seeds=2, progress=False) as rec:
                for _ in range(4):
                    loss = mse(model, batch)
                    optimizer.zero_grad()
                    loss.backward()
                    optimizer.step()
                    rec.step(loss)
    want, got = _rows(ran), _rows(tmp_path / "own")
    assert set(got) == set(want)
    for key, (value, role) in want.items():
        assert got[key][0] == pytest.approx(value, rel=1e-6, abs=1e-9), key
        assert got[key][1] == role, key
    assert read_meta(tmp_path / "own").layers == read_meta(ran).layers


class Noisy(nn.Module):
    """Dropout and BatchNorm: an extra pass must leave both as it found them."""

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        self.a = nn.Linear(3, width)
        self.norm = nn.BatchNorm1d(width)
        self.drop = nn.Dropout(0.3)
        self.b = nn.Linear(width, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(self.drop(torch.relu(self.norm(self.a(x)))))


def _train(record: Path | None, steps: int = 4, **kwargs) -> nn.Module:
    torch.manual_seed(0)
    model = Noisy()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    data = [(torch.randn(8, 3), torch.randn(8, 2)) for _ in range(steps)]

    def loop(rec=None) -> None:
        for x, y in data:
            loss = F.mse_loss(model(x), y)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            if rec is not None:
                rec.step(loss)

    if record is None:
        loop()
    else:
        with coordscope.recording(model, optimizer, out=record, width=16, progress=False, **kwargs) as rec:
            loop(rec)
    return model


def test_recording_changing_batches_leaves_training_exactly_as_it_was(tmp_path):
    plain = _train(None)
    recorded = _train(tmp_path / "r", batch=(torch.randn(8, 3), torch.randn(8, 2)), loss=lambda m, b: F.mse_loss(m(b[0]), b[1]))
    for (name, a), b in zip(plain.state_dict().items(), recorded.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    frame = coordscope.load(tmp_path / "r")
    assert sorted(frame.filter(name="a", site="act_grad")["step"].to_list()) == [0, 1, 2, 3]
    assert sorted(frame.filter(site="loss")["step"].to_list()) == [0, 1, 2, 3]


def test_forward_sites_of_changing_batches_are_those_of_the_fixed_batch(tmp_path):
    """With a new batch every step, act and act_delta are measured on the first batch with the step-t weights."""
    torch.manual_seed(0)
    model = Tiny(8)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    data = [(torch.randn(5, 3), torch.randn(5, 2)) for _ in range(4)]
    expected: list[tuple[float, float]] = []
    with coordscope.recording(model, optimizer, out=tmp_path / "r", width=8, progress=False) as rec:
        first = None
        for x, y in data:
            with torch.no_grad():
                a = model.a(data[0][0])
                first = a if first is None else first
                expected.append((float(a.pow(2).mean().sqrt()), float((a - first).pow(2).mean().sqrt())))
            F.mse_loss(model(x), y).backward()
            optimizer.step()
            optimizer.zero_grad()
            rec.step()
    frame = coordscope.load(tmp_path / "r").sort("step")
    assert frame.filter(name="a", site="act")["value"].to_list() == pytest.approx([e[0] for e in expected], rel=1e-5)
    assert frame.filter(name="a", site="act_delta")["value"].to_list() == pytest.approx([e[1] for e in expected], rel=1e-5, abs=1e-8)
    # no loss known for the fixed batch after step 0 (a plain model, no loss=): no act_grad there
    assert frame.filter(name="a", site="act_grad")["step"].to_list() == [0]


def test_a_plan_says_which_jobs_are_missing_until_every_one_has_finished(tmp_path, capsys):
    out = tmp_path / "r"
    for width in (64, 128):
        mlp_job(out, width, plan=[64, 128, 256], steps=2)
    err = capsys.readouterr().err
    assert "width 256 seed 0" in err and "1 planned job(s) missing" in err
    assert pending(out) == [(256, 0)]
    assert read_meta(out).status == "running"
    with pytest.raises(StoreError, match=r"incomplete .*width 256 seed 0\): record them with coordscope.recording"):
        coordscope.check(out)
    mlp_job(out, 256, plan=[64, 128, 256], steps=2)
    assert pending(out) == [] and read_meta(out).status == "complete"
    assert coordscope.check(out).complete


def test_without_a_plan_a_run_is_judged_on_the_jobs_it_has(tmp_path):
    out = tmp_path / "r"
    mlp_job(out, 64, plan=None, steps=2)
    meta = read_meta(out)
    assert meta.status == "complete" and meta.widths == (64,)
    assert meta.layers["<output>"].role == "output"
    assert "hidden.0.weight" not in meta.layers  # one width: the scaling of a weight is not known yet
    with pytest.raises(StoreError, match="a slope needs at least two widths"):
        coordscope.check(out)
    mlp_job(out, 256, plan=None, steps=2)
    meta = read_meta(out)
    assert meta.widths == (64, 256) and meta.layers["hidden.0.weight"].role == "hidden"
    roles = coordscope.load(out).select("width", "name", "role").unique()
    assert roles.filter(name="hidden.0").get_column("role").to_list() == ["hidden", "hidden"]  # both shards restamped
    assert coordscope.check(out).ok


def test_separate_processes_record_one_run_at_the_same_time(tmp_path):
    script = tmp_path / "job.py"
    script.write_text(textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from pathlib import Path
        from test_recording import mlp_job
        mlp_job(Path(sys.argv[1]), int(sys.argv[2]), steps=2, progress=False)
    """))
    out = tmp_path / "shared"
    procs = [subprocess.Popen([sys.executable, str(script), str(out), str(w)], stderr=subprocess.PIPE, text=True)
             for w in WIDTHS]
    for proc in procs:
        assert proc.wait(timeout=300) == 0, proc.stderr.read() if proc.stderr else ""
    meta = read_meta(out)
    assert meta.status == "complete" and len(shard_paths(out)) == 4
    assert not list(out.glob(".*"))  # no lock, no temporary file left
    frame = coordscope.load(out)
    assert frame.select("name", "role").unique().group_by("name").len()["len"].max() == 1  # one role per name
    assert coordscope.check(out).ok


def test_bad_input_is_refused_in_one_line(tmp_path):
    model, optimizer = Tiny(4), torch.optim.SGD(Tiny(4).parameters(), lr=0.1)
    cases = [
        (dict(width=0), "width must be a positive integer"),
        (dict(width=4, widths=[8, 16]), "width 4 is not one of the planned widths"),
        (dict(width=4, widths=[4]), "at least two widths"),
        (dict(width=4, seeds=2), "seeds= declares a plan together with widths="),
        (dict(width=4, loss=mse), "loss= needs batch="),
        (dict(width=4, probes="nope"), "unknown probe 'nope'"),
        (dict(width=4, steps=-1), "steps must be a non-negative integer"),
    ]
    for kwargs, message in cases:
        with pytest.raises(coordscope.CoordscopeError, match=message), \
                coordscope.recording(model, optimizer, out=tmp_path / "bad", **kwargs):
            pass
    with pytest.raises(ConfigError, match="optimizer must be a torch.optim.Optimizer"), \
            coordscope.recording(model, object(), out=tmp_path / "x", width=4):
        pass
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigError, match="is a file"), coordscope.recording(model, optimizer, out=tmp_path / "file", width=4):
        pass
    ran = coordscope.run(TINY, widths=[4, 8], steps=1, seeds=1, out=tmp_path / "spec", progress=False)
    with pytest.raises(ConfigError, match="made by `coordscope run`"), coordscope.recording(model, optimizer, out=ran, width=4):
        pass
    mlp_job(tmp_path / "r", 64, steps=1)
    with pytest.raises(ConfigError, match="already recorded"):
        mlp_job(tmp_path / "r", 64, steps=1)
    mlp_job(tmp_path / "r", 64, steps=1, overwrite=True)
    with pytest.raises(ConfigError, match="records probes rms; this job asks for rms,l1"):
        mlp_job(tmp_path / "r", 128, steps=1, probes="rms,l1")
    with pytest.raises(ConfigError, match="was started with widths 64,128,256,512"):
        mlp_job(tmp_path / "r", 128, steps=1, plan=[128, 256])
    with pytest.raises(ConfigError, match="no step was recorded"), \
            coordscope.recording(model, optimizer, out=tmp_path / "empty", width=4):
        pass
    assert not shard_paths(tmp_path / "empty")


def _hooks(model: nn.Module, optimizer: torch.optim.Optimizer) -> int:
    modules = sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())
    return modules + len(optimizer._optimizer_step_pre_hooks) + len(optimizer._optimizer_step_post_hooks)


def test_an_exception_in_the_loop_leaves_no_shard_and_no_hook(tmp_path):
    model = Tiny(4)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    batch = next(tiny_batches())
    with pytest.raises(RuntimeError, match="boom"), \
            coordscope.recording(model, optimizer, out=tmp_path / "r", width=4, widths=[4, 8]) as rec:
        mse(model, batch).backward()
        optimizer.step()
        rec.step()
        raise RuntimeError("boom")
    assert _hooks(model, optimizer) == 0
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == ["meta.json"]
    meta = read_meta(tmp_path / "r")
    assert meta.status == "incomplete" and "RuntimeError: boom" in (meta.error or "")
    from coordscope.record import active_recorder

    assert active_recorder() is None


def test_steps_stops_recording_and_commits_while_the_loop_goes_on(tmp_path):
    model = Tiny(4)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    batch = next(tiny_batches())
    with coordscope.recording(model, optimizer, out=tmp_path / "r", width=4, steps=2, progress=False) as rec:
        for i in range(6):
            mse(model, batch).backward()
            optimizer.step()
            optimizer.zero_grad()
            rec.step()
            if i == 2:
                assert rec.done and _hooks(model, optimizer) == 0
                assert len(shard_paths(tmp_path / "r")) == 1  # committed at once
    frame = coordscope.load(tmp_path / "r")
    assert sorted(frame["step"].unique().to_list()) == [0, 1, 2]
    assert read_meta(tmp_path / "r").steps == 2


def test_gradient_accumulation_clipping_and_a_second_step_without_rec_step(tmp_path):
    torch.manual_seed(0)
    model = Tiny(4)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = next(tiny_batches())
    with coordscope.recording(model, optimizer, out=tmp_path / "r", width=4, progress=False) as rec:
        for _ in range(2):
            for half in (slice(0, 2), slice(2, 5)):
                F.mse_loss(model(x[half]), y[half]).backward()
            nn.utils.clip_grad_norm_(model.parameters(), 0.05)
            grad = float(model.a.weight.grad.pow(2).mean().sqrt())
            optimizer.step()
            optimizer.zero_grad()
            rec.step()
        F.mse_loss(model(x), y).backward()
        optimizer.step()
        with pytest.raises(ConfigError, match="stepped twice since the last rec.step"):
            optimizer.step()
        rec.step()
    rows = coordscope.load(tmp_path / "r").filter(name="a.weight", site="param_grad").sort("step")
    assert rows["value"][1] == pytest.approx(grad, rel=1e-5)  # what the optimizer used: accumulated, clipped


def test_closure_optimizers_and_schedule_free_are_measured(tmp_path):
    import schedulefree

    for name, make in (("lbfgs", lambda p: torch.optim.LBFGS(p, lr=0.1, max_iter=2)),
                       ("sf", lambda p: schedulefree.AdamWScheduleFree(p, lr=0.01))):
        torch.manual_seed(0)
        model = Tiny(4)
        optimizer = make(model.parameters())
        x, y = next(tiny_batches())
        with coordscope.recording(model, optimizer, out=tmp_path / name, width=4, progress=False) as rec:
            for _ in range(3):
                def closure(optimizer=optimizer, model=model, x=x, y=y):  # type: ignore[no-untyped-def]
                    optimizer.zero_grad()
                    loss = F.mse_loss(model(x), y)
                    loss.backward()
                    return loss

                if name == "lbfgs":
                    optimizer.step(closure)
                else:
                    closure()
                    optimizer.step()  # ScheduleFree refuses this unless train() was called: recording calls it
                rec.step()
        frame = coordscope.load(tmp_path / name)
        sites = set(frame.filter(step=2)["site"])
        assert {"act", "act_delta", "act_grad", "param", "param_grad", "param_update"} <= sites, name
        assert frame["value"].is_finite().all()


def test_updates_of_big_tensors_are_estimated_on_a_subset_within_its_error(tmp_path):
    """The subset estimate of rms(W_{t+1} − W_t) against the exact value, and `exact=True` exact."""
    def job(out: Path, **kwargs) -> pl.DataFrame:
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(16, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 4))
        optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
        x, y = torch.randn(32, 16), torch.randint(0, 4, (32,))
        with coordscope.recording(model, optimizer, out=out, width=256, progress=False, **kwargs) as rec:
            for _ in range(3):
                F.cross_entropy(model(x), y).backward()
                optimizer.step()
                optimizer.zero_grad()
                rec.step()
        return coordscope.load(out).filter(site="param_update").sort("name", "step")

    exact, sampled = job(tmp_path / "exact", exact=True), job(tmp_path / "sampled", sample=2048)
    assert exact["name"].to_list() == sampled["name"].to_list()
    error = (sampled["value"] / exact["value"] - 1).abs()
    big = sampled["name"] == "2.weight"  # 65536 entries: every row, 16 of its 256 entries each
    assert error.filter(~big).max() < 1e-6  # the others are kept whole (0.weight: every row holds 16 entries)
    assert 0 < error.filter(big).max() < 0.1  # rms of 4096 entries of an SGD update: a few percent at most


def test_the_recorder_keeps_no_copy_of_the_parameters(tmp_path):
    from coordscope.loop import LoopRecorder
    from coordscope.probe_select import resolve_probes

    model = nn.Sequential(nn.Linear(8, 1024), nn.ReLU(), nn.Linear(1024, 1024), nn.ReLU(), nn.Linear(1024, 2))
    optimizer = torch.optim.Adam(model.parameters())
    x = torch.randn(4, 8)
    with LoopRecorder(model, optimizer, probes=resolve_probes("rms"), width=1024) as recorder:
        model(x).sum().backward()
        optimizer.step()
        kept = recorder.parameters.kept_entries()
        recorder.step()
    total = sum(p.numel() for p in model.parameters())
    assert kept < 0.1 * total  # 2^16 of the 1M-entry matrix, and the small tensors whole


def test_recording_is_exported_and_documented():
    assert coordscope.recording.__module__ == "coordscope.ownloop"
    assert "rec.step()" in (coordscope.recording.__doc__ or "")
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    assert "## Recording in your own loop" in readme and "docs/own-loop.md" in readme
    assert (Path(__file__).parents[1] / "docs" / "own-loop.md").is_file()


def test_jobs_of_one_run_measure_differences_alike(tmp_path):
    """A job asking for exact differences cannot join a run recorded on the fixed subset, nor the reverse."""
    mlp_job(tmp_path / "run", 64)
    with pytest.raises(ConfigError, match="exact=False"):
        mlp_job(tmp_path / "run", 128, exact=True)
    assert coordscope.read_meta(tmp_path / "run").exact is False


def test_an_embeddings_row_sparse_gradient_and_update_are_measured_on_every_row(tmp_path):
    """Only the rows of the batch's tokens get a gradient: a subset of rows would catch them by chance."""
    def job(out: Path, **kwargs) -> pl.DataFrame:
        torch.manual_seed(0)
        model = nn.Sequential(nn.Embedding(400, 256), nn.Linear(256, 400))
        optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
        tokens = torch.randint(0, 400, (48,), generator=torch.Generator().manual_seed(1))
        with coordscope.recording(model, optimizer, out=out, width=256, progress=False, **kwargs) as rec:
            for _ in range(3):
                F.cross_entropy(model(tokens), tokens).backward()
                optimizer.step()
                optimizer.zero_grad()
                rec.step()
        return coordscope.load(out).filter(pl.col("name") == "0.weight", pl.col("site") != "param").sort("site", "step")

    exact, sampled = job(tmp_path / "exact", exact=True), job(tmp_path / "sampled")  # the default subset
    assert set(exact["site"]) == {"param_grad", "param_update"}
    error = (sampled["value"] / exact["value"] - 1).abs()
    assert error.max() < 0.03, error.to_list()  # every touched row is read; only its columns are a subset
