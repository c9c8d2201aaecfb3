"""A Hugging Face ``transformers.Trainer`` callback that records a coordinate-check job of the model it trains.

::

    from coordscope.integrations.hf import CoordCheckCallback

    trainer = Trainer(model=model, args=args, train_dataset=data,
                      callbacks=[CoordCheckCallback(out="runs/gpt2", width=config.n_embd, steps=10)])
    trainer.train()

Run once per width (and seed) into the same ``out``, then ``coordscope check runs/gpt2``. It is
:func:`coordscope.recording` opened when training begins on the trainer's model and optimizer, with
``rec.step()`` after every optimizer step; every keyword argument goes to it. The fixed batch is the
inputs of the model's first forward call; a Trainer's batches change, so later steps measure it in an extra
pass, whose ``act_grad`` comes from the model's own loss (a Trainer's batches carry labels). Give
``steps=``: the job is committed right after step ``steps`` and the rest of training runs unrecorded.
A run the trainer leaves with an exception keeps no shard of this job (:meth:`CoordCheckCallback.close`).
Under torchrun every rank's Trainer gets the callback; rank 0 writes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from coordscope.integrations import require

transformers = require("transformers", "hf", "Hugging Face transformers")

from coordscope.errors import ConfigError  # noqa: E402  (after the extra's check, by design)
from coordscope.ownloop import Recording, recording  # noqa: E402


class CoordCheckCallback(transformers.TrainerCallback):  # type: ignore[name-defined]
    """Records the trained model at ``width`` (and ``seed``) into ``out``; see the module docstring."""

    def __init__(self, *, out: str | Path, width: int, seed: int = 0, **kwargs: Any) -> None:
        self.out, self.width, self.seed, self.kwargs = out, width, seed, kwargs
        self._context: Any = None
        self.recording: Recording | None = None

    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, optimizer: Any = None,
                       **kwargs: Any) -> None:
        if model is None or optimizer is None:
            raise ConfigError("CoordCheckCallback: the Trainer passed no model or optimizer to on_train_begin")
        self.close()
        self._context = recording(model, optimizer, out=self.out, width=self.width, seed=self.seed, **self.kwargs)
        self.recording = self._context.__enter__()

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.recording is not None:
            self.recording.step()

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        context, self._context = self._context, None
        if context is not None:
            context.__exit__(None, None, None)

    def close(self, exc: BaseException | None = None) -> None:
        """Leave the recording: with ``exc``, as after a failure (this job's shard is deleted); call it in an
        ``except`` around ``trainer.train()`` — a Trainer tells its callbacks nothing when training raises."""
        context, self._context = self._context, None
        if context is not None:
            if exc is None:
                context.__exit__(None, None, None)
            else:
                try:
                    context.__exit__(type(exc), exc, exc.__traceback__)
                except BaseException as raised:
                    if raised is not exc:
                        raise
