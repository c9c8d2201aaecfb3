"""A Lightning ``Callback`` that records a coordinate-check job of the LightningModule it trains.

::

    from coordscope.integrations.lightning import CoordCheck

    trainer = L.Trainer(max_steps=100, callbacks=[CoordCheck(out="runs/mine", width=256, steps=10)])
    trainer.fit(module, loader)

Run once per width (and seed) into the same ``out``, then ``coordscope check runs/mine``. It is
:func:`coordscope.recording` opened at the first training batch on the LightningModule and the trainer's
optimizer, with ``rec.step()`` after every optimizer step (gradient accumulation included); every keyword
argument goes to it. The fixed batch is that first batch, and its loss is what ``training_step`` returns
for it (its ``self.log`` calls are silenced meanwhile), so ``act_grad`` is measured even though the
batches change. With manual optimization ``training_step`` steps the optimizer itself, so it is not called:
the fixed batch is then the inputs of the module's first forward call, measured without ``act_grad`` when
the batches change. A failed fit deletes this job's shard (``on_exception``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from coordscope.integrations import require

lightning = require("lightning.pytorch", "lightning", "Lightning")

import torch  # noqa: E402  (after the extra's check, by design)

from coordscope.errors import ConfigError  # noqa: E402
from coordscope.ownloop import Recording, recording  # noqa: E402


def training_step_loss(module: Any, batch: Any) -> torch.Tensor:
    """The loss ``module.training_step(batch, 0)`` returns (a tensor, or a dict's ``loss``), with the
    module's logging silenced so the extra pass leaves no trace in the logs."""
    module.log = module.log_dict = lambda *args, **kwargs: None
    try:
        out = module.training_step(batch, 0)
    finally:
        del module.log, module.log_dict
    loss = out.get("loss") if isinstance(out, Mapping) else out
    if not isinstance(loss, torch.Tensor):
        raise ConfigError(f"CoordCheck: training_step returned {type(out).__name__}, not a loss")
    return loss


class CoordCheck(lightning.Callback):  # type: ignore[name-defined]
    """Records the LightningModule at ``width`` (and ``seed``) into ``out``; see the module docstring."""

    def __init__(self, *, out: str | Path, width: int, seed: int = 0, **kwargs: Any) -> None:
        super().__init__()
        self.out, self.width, self.seed, self.kwargs = out, width, seed, kwargs
        self._context: Any = None
        self._global_step = 0
        self.recording: Recording | None = None

    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
        if self._context is not None or self.recording is not None:
            return
        if len(trainer.optimizers) != 1:
            raise ConfigError(f"CoordCheck records a module trained by one optimizer; this one has "
                              f"{len(trainer.optimizers)}")
        kwargs = dict(self.kwargs)
        if pl_module.automatic_optimization:
            kwargs.setdefault("batch", batch)
            kwargs.setdefault("loss", training_step_loss)
        self._global_step = trainer.global_step
        self._context = recording(pl_module, trainer.optimizers[0], out=self.out, width=self.width,
                                  seed=self.seed, **kwargs)
        self.recording = self._context.__enter__()

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self.recording is None or trainer.global_step == self._global_step:
            return  # accumulating gradients: the optimizer has not stepped
        self._global_step = trainer.global_step
        loss = outputs.get("loss") if isinstance(outputs, Mapping) else outputs
        self.recording.step(loss if isinstance(loss, torch.Tensor) else None)

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        context, self._context = self._context, None
        if context is not None:
            context.__exit__(None, None, None)

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        context, self._context = self._context, None
        if context is not None:
            try:
                context.__exit__(type(exception), exception, exception.__traceback__)
            except BaseException as raised:
                if raised is not exception:
                    raise
