"""One recorded training job — a μP MLP with μP Adam, coordscope.recording around a plain loop — in a single
process or, under ``torchrun --nproc_per_node N``, with DDP or FSDP2 (``fully_shard``) on the gloo backend.

Every mode trains on the same global batch: a single process takes all of it, rank r of N its r-th block of
rows. tests/test_distributed.py runs this script and compares the stores.

    python tests/distributed_job.py --mode single --out DIR
    torchrun --nproc_per_node 2 tests/distributed_job.py --mode fsdp --out DIR
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import coordscope
from coordscope import distributed
from coordscope.sample_models import mlp

BATCH = 16


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mode", choices=["single", "ddp", "fsdp"], required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--sample", type=int, default=1024)
    parser.add_argument("--changing", action="store_true", help="a new batch every step (extra passes)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rank, world = 0, 1
    if args.mode != "single":
        import torch.distributed as dist

        dist.init_process_group("gloo")
        rank, world = dist.get_rank(), dist.get_world_size()
    calls = {"collectives": 0}
    for method in ("all_gather", "all_gather_objects", "broadcast_object"):
        original = getattr(distributed.World, method)

        def counted(self, *a, _original=original, **k):  # type: ignore[no-untyped-def]
            calls["collectives"] += 1
            return _original(self, *a, **k)

        setattr(distributed.World, method, counted)

    torch.manual_seed(0)
    model: nn.Module = mlp.build(args.width, "mup")
    generator = torch.Generator().manual_seed(1)
    batches = [(torch.randn(BATCH, mlp.D_IN, generator=generator),
                torch.randint(0, mlp.CLASSES, (BATCH,), generator=generator)) for _ in range(args.steps + 1)]
    share = BATCH // world
    batches = [(x[rank * share:(rank + 1) * share], y[rank * share:(rank + 1) * share]) for x, y in batches]
    inner = model
    if args.mode == "ddp":
        from torch.nn.parallel import DistributedDataParallel

        model = DistributedDataParallel(model)
    elif args.mode == "fsdp":
        from torch.distributed.fsdp import fully_shard

        for module in list(model.modules()):
            if isinstance(module, nn.Linear):
                fully_shard(module)
        fully_shard(model)
    assert isinstance(inner, mlp.MLP)
    optimizer = torch.optim.Adam(mlp.param_groups(inner, "mup", "adam", 0.01), lr=0.01)
    batch = batches[0] if args.changing else None
    loss_fn = (lambda m, b: F.cross_entropy(m(b[0]), b[1])) if args.changing else None
    with coordscope.recording(model, optimizer, out=args.out, width=args.width, steps=args.steps, sample=args.sample,
                              batch=batch, loss=loss_fn, progress=False) as rec:
        for step in range(args.steps + 1):
            x, y = batches[step if args.changing else 0]
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            rec.step(loss)
    Path(args.out, f"calls-rank{rank}.json").write_text(json.dumps(calls))
    if args.mode != "single":
        import torch.distributed as dist

        dist.barrier()  # rank 0 still writes the store: tear gloo down together (a lone exit aborted once)
        dist.destroy_process_group()
        # Everything is written. Skip the interpreter's finalisation: FSDP2's gloo work objects can outlive
        # destroy_process_group and abort the process when they are freed without the interpreter
        # (SIGABRT, "terminate called without an active exception"; pytorch/pytorch#179291). Seen in
        # 2 of about 8 CI runs under load, never when run alone.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


if __name__ == "__main__":
    main()
