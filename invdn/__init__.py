"""invdn: image denoising with invertible networks (InvDN-LC and the paper InvDN), compared against DANet.

`invdn.load("invdn")` (InvDN-LC, the default), `invdn.load("invdn-paper")` and `invdn.load("danet-r")` give
ready-to-use models (see `invdn.models.weights`, and `invdn.models.registry` for the list).
"""

from __future__ import annotations

from typing import Any

__all__ = ["load", "save"]


def __getattr__(name: str) -> Any:  # lazy, so `invdn --help` does not import torch
    if name in __all__:
        from invdn.models import weights

        return getattr(weights, name)
    raise AttributeError(f"module 'invdn' has no attribute {name!r}")
