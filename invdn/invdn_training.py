"""InvDN's part of the shared trainer: one optimisation step (the `TrainTask` protocol of `invdn.trainer`)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from invdn.losses import backward_loss, forward_loss
from invdn.model import InvDN, InvDNConfig

GRAD_CLIP = 10.0


class InvDNTask:
    """Adam on InvDN's forward (LR image) + backward (reconstruction from a fresh z) losses."""

    def __init__(
        self,
        config: InvDNConfig | None = None,
        lr: float = 2e-4,
        grad_sync: Callable[[nn.Module], None] | None = None,
        device: str | torch.device = "cpu",
    ) -> None:
        model = InvDN(config or InvDNConfig()).to(device)
        self.modules: dict[str, nn.Module] = {"main": model}
        self.optimizers: dict[str, torch.optim.Optimizer] = {
            "main": torch.optim.Adam(model.parameters(), lr=lr, betas=(0.9, 0.999))
        }
        self.grad_sync = grad_sync

    def step(self, noisy: Tensor, clean: Tensor) -> dict[str, float]:
        model: InvDN = self.modules["main"]  # type: ignore[assignment]
        opt = self.optimizers["main"]
        opt.zero_grad(set_to_none=True)
        lr, _, size = model.encode(noisy)
        l_forw = forward_loss(lr, clean)
        recon = model.decode(lr, model.sample_latent(lr), size)
        l_back = backward_loss(recon.float(), clean)
        loss = l_forw + l_back
        loss.backward()
        if self.grad_sync is not None:
            self.grad_sync(model)
        grad_norm = nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP)
        opt.step()
        return {"loss": loss.item(), "forward": l_forw.item(), "backward": l_back.item(), "grad_norm": grad_norm.item()}
