"""A real Hugging Face model, built from a config in code (nothing downloaded): GPT-2 with
``attn_implementation="eager"`` (matmul + softmax) and ``"sdpa"``. The attention logits are recorded either
way — under eager at the softmax over the key axis, under sdpa inside the SDPA call — and scale alike; the
model (standard parametrization, GPT-2's constant init) fails the check."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import polars as pl
import pytest

import coordscope
from coordscope.cli import main as cli

pytest.importorskip("transformers")

SPEC = textwrap.dedent('''
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    def model(width: int):
        config = GPT2Config(vocab_size=64, n_positions=16, n_embd=width, n_layer=2, n_head=2,
                            bos_token_id=0, eos_token_id=0, attn_implementation="{impl}")
        return GPT2LMHeadModel(config)

    def batches():
        g = torch.Generator().manual_seed(0)
        while True:
            ids = torch.randint(0, 64, (4, 16), generator=g)
            yield {{"input_ids": ids, "labels": ids}}
''')
WIDTHS = "32,64,128"
SEQ = 16


def check(tmp_path: Path, impl: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, dict, Path]:
    spec = tmp_path / f"gpt2_{impl}.py"
    spec.write_text(SPEC.format(impl=impl))
    out = tmp_path / impl
    try:
        cli(["check", str(spec), "--widths", WIDTHS, "--steps", "3", "--seeds", "1", "--out", str(out),
             "--format", "json"])
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    return code, json.loads(capsys.readouterr().out), out


def test_hugging_face_gpt2_attention_logits_are_recorded_with_eager_and_sdpa_alike(tmp_path, capsys):
    runs = {}
    for impl in ("eager", "sdpa"):
        code, report, out = check(tmp_path, impl, capsys)
        assert code == 1 and report["ok"] is False, impl  # SP: GPT-2's init and one Adam lr for all
        judged = {(layer["name"], layer["site"]) for layer in report["layers"]}
        assert ("transformer.h.0.attn.attn_logits", "act") in judged, impl
        runs[impl] = coordscope.load(out).filter(pl.col("name").str.ends_with("attn_logits"), site="act")
    eager, sdpa = (runs[i].sort("width", "step", "name") for i in ("eager", "sdpa"))
    assert eager.height == sdpa.height > 0
    assert set(eager["role"]) == {"attn_logits"}
    # Eager's masked entries count as zeros, SDPA's are left out: the same logits, a constant factor apart
    # (the causal fraction (T+1)/2T of the entries), so every slope is the same.
    ratio = (eager["value"] / sdpa["value"]) ** 2
    assert ratio.to_list() == pytest.approx([(SEQ + 1) / (2 * SEQ)] * eager.height, rel=1e-3)
