"""genlab: generative image models on PyTorch Lightning.

The Python API (genlab.api): `genlab.load(ckpt)`, `genlab.evaluate(ckpt, ...)`, `genlab.train(experiment, ...)`.
"""

import importlib
from typing import Any

__version__ = "0.1.0"
__all__ = ["Model", "__version__", "evaluate", "load", "train"]


def __getattr__(name: str) -> Any:
    # The API is imported on first use, so that `import genlab` (and `genlab --help`) does not load torch.
    if name in ("Model", "evaluate", "load", "train"):
        return getattr(importlib.import_module("genlab.api"), name)
    raise AttributeError(f"module 'genlab' has no attribute {name!r}")
