"""coordscope inside other people's training loops, each built on :func:`coordscope.recording`:

- :mod:`coordscope.integrations.hf` — a ``transformers.TrainerCallback`` (``pip install 'coordscope[hf]'``);
- :mod:`coordscope.integrations.lightning` — a Lightning ``Callback`` (``pip install 'coordscope[lightning]'``).

Each is an optional extra: importing one without its library raises an ImportError that names the extra.
"""

from __future__ import annotations

import importlib
from types import ModuleType


def require(module: str, extra: str, library: str) -> ModuleType:
    """Import ``module``, or fail with an ImportError that says which extra installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(f"coordscope's {library} integration needs {library}: "
                          f"pip install 'coordscope[{extra}]'") from exc
