"""InvDN's part of the shared trainer: one optimisation step (the `TrainTask` protocol of `invdn.training.trainer`)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from invdn.models.invdn import InvDN, InvDNConfig
from invdn.training.losses import backward_loss, forward_loss

GRAD_CLIP = 10.0


def float32_losses(
    lr: Tensor, recon: Tensor, clean: Tensor, sobel_weight: float = 0.1, ssim_weight: float = 1.0
) -> tuple[Tensor, Tensor]:
    """(forward loss, backward loss) in float32 whatever autocast is active (see `InvDNTask.losses`)."""
    with torch.autocast(clean.device.type, enabled=False):
        clean = clean.float()
        back = backward_loss(recon.float(), clean, sobel_weight=sobel_weight, ssim_weight=ssim_weight)
        return forward_loss(lr.float(), clean), back


class InvDNTask:
    """Adam on InvDN's forward (LR image) + backward (reconstruction from a fresh z) losses."""

    def __init__(
        self,
        config: InvDNConfig | None = None,
        lr: float = 2e-4,
        grad_sync: Callable[[nn.Module], None] | None = None,
        device: str | torch.device = "cpu",
        sobel_weight: float = 0.1,
        ssim_weight: float = 1.0,
    ) -> None:
        """`sobel_weight`, `ssim_weight`: weights of the backward loss's Sobel and SSIM terms
        (`invdn.training.losses`)."""
        model = InvDN(config or InvDNConfig()).to(device)
        self.sobel_weight, self.ssim_weight = sobel_weight, ssim_weight
        self.modules: dict[str, nn.Module] = {"main": model}
        self.optimizers: dict[str, torch.optim.Optimizer] = {
            "main": torch.optim.Adam(model.parameters(), lr=lr, betas=(0.9, 0.999))
        }
        self.grad_sync = grad_sync

    def losses(self, noisy: Tensor, clean: Tensor) -> tuple[Tensor, Tensor]:
        """(forward loss, backward loss) of one batch; the network runs under the caller's autocast, if any.

        The losses themselves are always computed in float32: under bf16 autocast the SSIM term's convolutions would
        run in bf16, where its variances (E[x^2] - E[x]^2) cancel catastrophically; that alone turned the gradient
        of a trained InvDN to cosine 0.89 against float32 (`invdn bench speed` measures it).
        """
        model: InvDN = self.modules["main"]  # type: ignore[assignment]
        lr, _, size = model.encode(noisy)
        recon = model.decode(lr, model.sample_latent(lr), size)
        return float32_losses(lr, recon, clean, self.sobel_weight, self.ssim_weight)

    def step(self, noisy: Tensor, clean: Tensor) -> dict[str, float]:
        model: InvDN = self.modules["main"]  # type: ignore[assignment]
        opt = self.optimizers["main"]
        opt.zero_grad(set_to_none=True)
        l_forw, l_back = self.losses(noisy, clean)
        loss = l_forw + l_back
        loss.backward()
        if self.grad_sync is not None:
            self.grad_sync(model)
        grad_norm = nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP)
        opt.step()
        return {"loss": loss.item(), "forward": l_forw.item(), "backward": l_back.item(), "grad_norm": grad_norm.item()}
