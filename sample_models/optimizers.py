"""The μP MLP (:mod:`coordscope.sample_models.mlp`) trained with the optimizers of today's practice: Muon,
ScheduleFree and Lion, each set up right and set up the way people get it wrong.

================================  =========================================================================
``muon``                          Muon on the hidden matrices with torch's default update scale
                                  √max(1, fan_out/fan_in) and a constant learning rate: ‖ΔW‖₂ is flat in
                                  width, as the spectral condition asks (Yang, Simon & Bernstein 2023; Muon,
                                  Jordan et al.); Adam with μP's rules on the rest
``muon_match_rms``                the same with ``adjust_lr_fn="match_rms_adamw"`` (Moonlight/Kimi's
                                  0.2·√max(fan_in, fan_out)) at a constant learning rate: hidden updates
                                  grow like √width — μP needs lr ∝ width^-½ there
``schedulefree``                  ``schedulefree.AdamWScheduleFree`` with μP's Adam groups (hidden lr / m)
``schedulefree_one_lr``           one learning rate for every parameter: hidden updates grow with width
``lion``                          Lion (Chen et al. 2023, "Symbolic Discovery of Optimization Algorithms"):
                                  every entry of an update is ±lr, a sign-type optimizer, so μP's Adam rule
                                  applies — hidden lr ∝ 1/width, the rest constant
``lion_one_lr``                   one learning rate for every parameter: hidden updates grow with width
================================  =========================================================================

ScheduleFree optimizers refuse to step before ``optimizer.train()``; coordscope calls it (and measures the
train-mode weights, where gradients are taken). ``schedulefree`` is an optional dependency: without it the
ScheduleFree samples fail to build their optimizer with a one-line error naming the package.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from coordscope.sample_models import mlp
from coordscope.spec import Spec


class Together(torch.optim.Optimizer):
    """Several optimizers stepped as one, each over its own parameters (Muon for the hidden matrices,
    Adam for the rest, as Muon is used in practice)."""

    def __init__(self, *optimizers: torch.optim.Optimizer) -> None:
        self.optimizers = optimizers
        super().__init__([p for o in optimizers for g in o.param_groups for p in g["params"]], {})
        self.param_groups = [g for o in optimizers for g in o.param_groups]

    def zero_grad(self, set_to_none: bool = True) -> None:
        for optimizer in self.optimizers:
            optimizer.zero_grad(set_to_none=set_to_none)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> None:  # type: ignore[override]
        for optimizer in self.optimizers:
            optimizer.step()


def _split(model: nn.Module) -> tuple[list[nn.Parameter], list[dict[str, Any]]]:
    """The hidden matrices (both dimensions grow with width), and μP Adam groups for everything else."""
    assert isinstance(model, mlp.MLP)
    hidden = [p for name, p in model.named_parameters() if name.startswith("hidden") and p.dim() == 2]
    rest = [{"params": [p]} for name, p in model.named_parameters() if not (name.startswith("hidden") and p.dim() == 2)]
    return hidden, rest


def _muon(adjust_lr_fn: str) -> Callable[[nn.Module, float], torch.optim.Optimizer]:
    def make(model: nn.Module, lr: float) -> torch.optim.Optimizer:
        hidden, rest = _split(model)
        return Together(torch.optim.Muon(hidden, lr=lr, adjust_lr_fn=adjust_lr_fn),
                        torch.optim.Adam(rest, lr=lr * ADAM_OVER_MUON))
    return make


def _schedulefree(mup_groups: bool) -> Callable[[nn.Module, float], torch.optim.Optimizer]:
    def make(model: nn.Module, lr: float) -> torch.optim.Optimizer:
        try:
            import schedulefree
        except ImportError:
            raise ImportError("the ScheduleFree samples need the schedulefree package: "
                              "pip install 'coordscope[schedulefree]'") from None
        assert isinstance(model, mlp.MLP)
        groups: Iterable[dict[str, Any]] = (mlp.param_groups(model, "mup", "adam", lr) if mup_groups
                                            else [{"params": list(model.parameters())}])
        return schedulefree.AdamWScheduleFree(groups, lr=lr, warmup_steps=0)
    return make


class Lion(torch.optim.Optimizer):
    """Lion: the update is sign(β₁·m + (1−β₁)·g), then m ← β₂·m + (1−β₂)·g; decoupled weight decay. torch
    has none, and the reference implementation is these few lines (Chen et al. 2023, Algorithm 2)."""

    def __init__(self, params: Iterable[Any], lr: float = 1e-4, betas: tuple[float, float] = (0.9, 0.99),
                 weight_decay: float = 0.0) -> None:
        super().__init__(params, {"lr": lr, "betas": betas, "weight_decay": weight_decay})

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> None:  # type: ignore[override]
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                momentum = self.state[p].setdefault("momentum", torch.zeros_like(p))
                p.mul_(1 - group["lr"] * group["weight_decay"])
                p.add_(torch.sign(momentum.mul(beta1).add_(p.grad, alpha=1 - beta1)), alpha=-group["lr"])
                momentum.mul_(beta2).add_(p.grad, alpha=1 - beta2)


def _lion(mup_groups: bool) -> Callable[[nn.Module, float], torch.optim.Optimizer]:
    def make(model: nn.Module, lr: float) -> torch.optim.Optimizer:
        assert isinstance(model, mlp.MLP)
        groups: Iterable[dict[str, Any]] = (mlp.param_groups(model, "mup", "adam", lr) if mup_groups
                                            else [{"params": list(model.parameters())}])
        return Lion(groups, lr=lr)
    return make


ADAM_OVER_MUON = 0.1  # the Adam part's lr relative to Muon's: a Muon lr of 0.1 puts Adam at 0.01


def make_spec(name: str, optimizer: Callable[[nn.Module, float], torch.optim.Optimizer], lr: float,
              description: str) -> Spec:
    """The μP MLP trained with ``optimizer`` at base learning rate ``lr``."""
    return Spec(model=lambda width: mlp.build(width, "mup"), batches=mlp.batches, optimizer=optimizer, ref=name,
                defaults={"widths": [64, 128, 256, 512], "steps": 5, "seeds": 3, "lr": lr}, description=description)


MUON = make_spec("mlp-muon", _muon("original"), 0.1, "MLP, μP, Muon (torch's default scale) + Adam")
MUON_MATCH_RMS = make_spec("mlp-muon-match-rms", _muon("match_rms_adamw"), 0.1,
                           "MLP, Muon with match_rms_adamw scaling at a constant lr")
SCHEDULEFREE = make_spec("mlp-schedulefree", _schedulefree(True), 0.01, "MLP, μP, AdamWScheduleFree, μP groups")
SCHEDULEFREE_ONE_LR = make_spec("mlp-schedulefree-one-lr", _schedulefree(False), 0.01,
                                "MLP, AdamWScheduleFree, one learning rate for all")
LION = make_spec("mlp-lion", _lion(True), 0.001, "MLP, μP, Lion with μP's Adam groups")
LION_ONE_LR = make_spec("mlp-lion-one-lr", _lion(False), 0.001, "MLP, Lion, one learning rate for all")
