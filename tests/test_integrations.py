"""The trainer integrations with the real libraries on tiny models: a Hugging Face Trainer and a Lightning
Trainer each record a store that `coordscope check` judges; without the library, the ImportError names the
extra."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import coordscope
from coordscope.runmeta import read_meta
from coordscope.sample_models import mlp


def hf_job(out: Path, width: int, work: Path) -> None:
    from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainingArguments

    from coordscope.integrations.hf import CoordCheckCallback

    torch.manual_seed(0)
    config = GPT2Config(n_embd=width, n_layer=1, n_head=2, vocab_size=64, n_positions=16, resid_pdrop=0.0,
                        embd_pdrop=0.0, attn_pdrop=0.0)
    model = GPT2LMHeadModel(config)
    generator = torch.Generator().manual_seed(1)
    tokens = torch.randint(0, 64, (32, 16), generator=generator)
    data = [{"input_ids": t, "labels": t} for t in tokens]
    args = TrainingArguments(output_dir=str(work), max_steps=5, per_device_train_batch_size=4, learning_rate=1e-3,
                             report_to=[], save_strategy="no", logging_strategy="no", use_cpu=True,
                             disable_tqdm=True, seed=0, dataloader_num_workers=0)
    callback = CoordCheckCallback(out=out, width=width, steps=3, widths=[32, 64], progress=False)
    Trainer(model=model, args=args, train_dataset=data, callbacks=[callback]).train()


def test_a_hugging_face_trainer_run_gives_a_checkable_store(tmp_path):
    out = tmp_path / "gpt2"
    for width in (32, 64):
        hf_job(out, width, tmp_path / f"hf-{width}")
    meta = read_meta(out)
    assert meta.status == "complete" and meta.optimizer == "AdamW"
    report = coordscope.check(out)
    assert report.complete and not report.fits.is_empty()
    frame = coordscope.load(out)
    assert sorted(frame["step"].unique().to_list()) == [0, 1, 2, 3]
    # the Trainer's batches change: later steps are measured on the first batch in an extra pass, whose
    # act_grad and loss come from the model's own loss (the batch carries labels)
    assert sorted(frame.filter(site="act_grad", name="<output>", width=64)["step"].to_list()) == [0, 1, 2, 3]
    assert sorted(frame.filter(site="loss", width=64)["step"].to_list()) == [0, 1, 2, 3]
    assert "transformer.h.0.attn.attn_logits" in set(frame.filter(role="attn_logits")["name"])
    assert meta.layers["transformer.h.0.mlp.c_fc.weight"].role == "hidden"


class LitMLP:
    """A LightningModule around the μP MLP sample, made lazily so that this file imports without Lightning."""

    @staticmethod
    def make(width: int, plain_adam: bool = False):  # type: ignore[no-untyped-def]
        import lightning.pytorch as L

        class Module(L.LightningModule):
            def __init__(self) -> None:
                super().__init__()
                self.model = mlp.build(width, "mup")

            def training_step(self, batch, batch_idx):  # type: ignore[no-untyped-def]
                x, y = batch
                loss = F.cross_entropy(self.model(x), y)
                self.log("train_loss", loss)
                return loss

            def configure_optimizers(self):  # type: ignore[no-untyped-def]
                groups = self.model.parameters() if plain_adam else mlp.param_groups(self.model, "mup", "adam", 0.01)
                return torch.optim.Adam(groups, lr=0.01)

        return Module()


def lightning_job(out: Path, width: int, work: Path, plain_adam: bool = False) -> None:
    import lightning.pytorch as L
    from torch.utils.data import DataLoader, TensorDataset

    from coordscope.integrations.lightning import CoordCheck

    torch.manual_seed(0)
    module = LitMLP.make(width, plain_adam)
    generator = torch.Generator().manual_seed(1)
    data = TensorDataset(torch.randn(256, mlp.D_IN, generator=generator),
                         torch.randint(0, mlp.CLASSES, (256,), generator=generator))
    trainer = L.Trainer(max_steps=5, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, default_root_dir=str(work),
                        callbacks=[CoordCheck(out=out, width=width, steps=4, progress=False)])
    trainer.fit(module, DataLoader(data, batch_size=64, shuffle=True))


def test_a_lightning_run_gives_a_checkable_store_that_judges_mup_and_plain_adam(tmp_path):
    for width in (64, 128, 256, 512):
        lightning_job(tmp_path / "mup", width, tmp_path / "work")
        lightning_job(tmp_path / "adam", width, tmp_path / "work", plain_adam=True)
    frame = coordscope.load(tmp_path / "mup")
    assert sorted(frame["step"].unique().to_list()) == [0, 1, 2, 3, 4]
    # training_step calls self.model(x): the fixed batch's forward is that call, its loss training_step's
    assert {"model.hidden.0", "<output>"} <= set(frame.filter(site="act_grad", step=3)["name"])
    assert coordscope.check(tmp_path / "mup").ok
    assert not coordscope.check(tmp_path / "adam").ok


@pytest.mark.parametrize(("module", "extra"), [("coordscope.integrations.hf", "hf"),
                                               ("coordscope.integrations.lightning", "lightning")])
def test_without_the_library_the_import_error_names_the_extra(module: str, extra: str) -> None:
    blocked = {"hf": ["transformers"], "lightning": ["lightning", "lightning.pytorch"]}[extra]
    code = (f"import sys\nfor name in {blocked!r}:\n    sys.modules[name] = None\n"
            f"try:\n    import {module}\nexcept ImportError as exc:\n    print(exc)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert f"pip install 'coordscope[{extra}]'" in done.stdout, done.stderr[-2000:]
