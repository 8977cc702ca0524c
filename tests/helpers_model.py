"""Small seeded models for tests: random non-trivial weights (a fresh InvDN is the identity + Haar)."""

from __future__ import annotations

import torch

from invdn.models.invdn import InvDN, InvDNConfig


def random_invdn(seed: int = 0, dtype: torch.dtype = torch.float64, std: float = 0.05, **cfg) -> InvDN:
    torch.manual_seed(seed)
    cfg.setdefault("blocks_per_level", 2)
    cfg.setdefault("hidden", 8)
    model = InvDN(InvDNConfig(**cfg)).to(dtype)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, std)
    return model
