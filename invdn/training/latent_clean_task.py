"""InvDN-LC's part of the shared trainer: one optimisation step (the `TrainTask` protocol of `invdn.training.trainer`).

Loss, in float32 whatever autocast is active, summed over (C, H, W) and averaged over the batch:

    Charbonnier(decode(cleaner(encode(noisy))), clean)                 reconstruction: trains everything
    + latent_weight * Charbonnier(cleaner(encode(noisy)), sg(encode(clean)))   optional latent term: cleaner only

`latent_weight` defaults to 0: the design A/B (benchmarks/design_ab.py, benchmarks/RESULTS.md) measured the latent
term as a handicap. With it (weight 1), the invertible network, trained by the reconstruction, inflated its encoding
(after 20 CPU-minutes the LR image's spread was 13x and the latent's 30x a fresh network's), so the latent term
grew, took over the cleaner's gradient and training loss rose; PSNR fell back after 10 CPU-minutes. Reconstruction
alone reached a higher PSNR at 5 CPU-minutes than the latent variant ever did. When the term is on, its gradient
reaches the cleaner's parameters but not the invertible network: that network defines both sides of the term, and
letting it chase its own target diverged at once (gradient norms ~1e4 within 50 steps on a fixed batch).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from invdn.models.latent_clean import InvDNLC, InvDNLCConfig
from invdn.training.losses import charbonnier

GRAD_CLIP = 10.0


class InvDNLCTask:
    """Adam on InvDN-LC's reconstruction loss (+ the optional latent-matching term)."""

    def __init__(
        self,
        config: InvDNLCConfig | None = None,
        lr: float = 2e-4,
        grad_sync: Callable[[nn.Module], None] | None = None,
        device: str | torch.device = "cpu",
        latent_weight: float = 0.0,
    ) -> None:
        model = InvDNLC(config or InvDNLCConfig()).to(device)
        self.latent_weight = latent_weight
        self.modules: dict[str, nn.Module] = {"main": model}
        self.optimizers: dict[str, torch.optim.Optimizer] = {
            "main": torch.optim.Adam(model.parameters(), lr=lr, betas=(0.9, 0.999))
        }
        self.grad_sync = grad_sync

    def losses(self, noisy: Tensor, clean: Tensor) -> tuple[Tensor, Tensor]:
        """(reconstruction loss, latent loss) of one batch (sizes a multiple of the model's); the latent loss is
        a zero, not computed, when its weight is 0."""
        model: InvDNLC = self.modules["main"]  # type: ignore[assignment]
        lr, z, size = model.encode(noisy)
        lr_c, z_c = model.clean_encoding(lr, z)
        recon = model.decode(lr_c, z_c, size)
        with torch.autocast(clean.device.type, enabled=False):
            rec = charbonnier(recon.float(), clean.float())
        if not self.latent_weight:  # the default: no clean-image encoding to compute
            return rec, torch.zeros_like(rec)
        with torch.no_grad():
            target_lr, target_z, _ = model.encode(clean)
        with torch.autocast(clean.device.type, enabled=False):
            latent = charbonnier(torch.cat([lr_c, z_c], 1).float(), torch.cat([target_lr, target_z], 1).float())
        return rec, latent

    def step(self, noisy: Tensor, clean: Tensor) -> dict[str, float]:
        model: InvDNLC = self.modules["main"]  # type: ignore[assignment]
        opt = self.optimizers["main"]
        opt.zero_grad(set_to_none=True)
        rec, latent = self.losses(noisy, clean)
        loss = rec + self.latent_weight * latent
        if self.latent_weight:
            (self.latent_weight * latent).backward(inputs=list(model.cleaner.parameters()), retain_graph=True)
        rec.backward()
        if self.grad_sync is not None:
            self.grad_sync(model)
        grad_norm = nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP)
        opt.step()
        return {
            "loss": loss.item(),
            "reconstruction": rec.item(),
            "latent": latent.item(),
            "grad_norm": grad_norm.item(),
        }
