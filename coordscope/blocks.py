"""Matching layers across depths by what they are, from the model's structure alone.

A model at depth 4 has ``blocks.3.mlp`` and the model at depth 16 has ``blocks.15.mlp``: to fit a size against
depth, coordscope must know that both are "the MLP of the last block". Nothing here reads a sample's names:

- the *residual blocks* are the modules with children that are items of an ``nn.ModuleList`` or
  ``nn.Sequential`` (their name ends in an integer index); a depth sweep records their outputs too — the
  residual stream after each block (:func:`repeated_blocks`);
- the *depth container* is the outermost indexed prefix (``blocks``, ``transformer.h``, ``layers``) whose
  number of items changes with depth (:func:`depth_container`); indexed prefixes whose count does not change
  (an MLP's ``hidden.0``, a block's ``mlp.0``) are ordinary names;
- a name inside the container, ``<container>.<i>.<rest>`` at a depth with ``n`` blocks, is block ``i`` of ``n``
  and is matched by relative position: ``first`` (i = 0), ``mid`` (after half the blocks: i = ⌈n/2⌉ − 1) and
  ``last`` (i = n − 1) — :func:`position_keys`. Other blocks are not matched. Every other name (the
  embedding, the final norm, the readout, ``<output>``, ``<loss>``) matches itself.

This module needs only torch's ``nn`` (recording processes import it); the fits are :mod:`coordscope.depth`'s.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from torch import nn

POSITIONS: tuple[str, ...] = ("first", "mid", "last")
_SEGMENT = re.compile(r"^(\d+)(?:[#\[].*)?$")


def repeated_blocks(model: nn.Module) -> list[str]:
    """Names of the modules with children that are items of an ``nn.ModuleList``/``nn.Sequential``."""
    containers = {name for name, m in model.named_modules() if isinstance(m, (nn.ModuleList, nn.Sequential))}
    out = []
    for name, module in model.named_modules():
        parent, _, last = name.rpartition(".")
        if last.isdigit() and (parent in containers or (not parent and isinstance(model, nn.Sequential))) \
                and next(module.children(), None) is not None:
            out.append(name)
    return out


def _indexed(name: str) -> list[tuple[str, int, str]]:
    """Every (prefix, index, rest) split of ``name`` at an integer segment (``a.3.b`` → ``("a", 3, ".b")``,
    ``a.3#1`` → ``("a", 3, "#1")``)."""
    parts = name.split(".")
    out = []
    for k, part in enumerate(parts):
        match = _SEGMENT.match(part)
        if match and k > 0:
            suffix = part[len(match.group(1)):]
            rest = ".".join(parts[k + 1:])
            out.append((".".join(parts[:k]), int(match.group(1)), suffix + ("." + rest if rest else "")))
    return out


def block_counts(names_by_depth: Mapping[int, Iterable[str]]) -> dict[str, dict[int, int]]:
    """For every indexed prefix: depth → number of items (largest index + 1) seen at that depth."""
    counts: dict[str, dict[int, int]] = {}
    for depth, names in names_by_depth.items():
        for name in names:
            for prefix, index, _ in _indexed(name):
                per_depth = counts.setdefault(prefix, {})
                per_depth[depth] = max(per_depth.get(depth, 0), index + 1)
    return counts


def depth_container(names_by_depth: Mapping[int, Iterable[str]]) -> tuple[str, dict[int, int]] | None:
    """The outermost indexed prefix whose item count grows with depth, and its count at every depth; None when
    no indexed prefix changes with depth (nothing can be matched by position)."""
    depths = sorted(names_by_depth)
    candidates = []
    for prefix, per_depth in block_counts(names_by_depth).items():
        values = [per_depth.get(d, 0) for d in depths]
        if len(set(values)) > 1 and all(b >= a for a, b in zip(values, values[1:], strict=False)):
            candidates.append((prefix.count("."), len(prefix), prefix))
    if not candidates:
        return None
    prefix = min(candidates)[2]
    return prefix, {d: block_counts(names_by_depth)[prefix].get(d, 0) for d in depths}


def position_indices(count: int) -> dict[str, int]:
    """The block index of each relative position among ``count`` blocks."""
    return {"first": 0, "mid": max((count + 1) // 2 - 1, 0), "last": count - 1}


def position_keys(name: str, container: str | None, count: int) -> list[tuple[str, str]]:
    """The matched keys of ``name`` at a depth whose container holds ``count`` blocks, each with its position:
    ``[(name, "")]`` outside the container, ``[("blocks.{last}.mlp", "last"), …]`` for a matched block (a
    block can be at several positions: with two blocks ``mid`` is ``first``), ``[]`` for the others."""
    if container is None or not name.startswith(container + "."):
        return [(name, "")]
    for prefix, index, rest in _indexed(name):
        if prefix == container:
            return [(f"{container}.{{{pos}}}{rest}", pos)
                    for pos, i in position_indices(count).items() if i == index]
    return [(name, "")]


def is_stream(key: str, container: str | None) -> bool:
    """Whether a matched key is a block's own output — the residual stream after that block."""
    return container is not None and any(key == f"{container}.{{{pos}}}" for pos in POSITIONS)
