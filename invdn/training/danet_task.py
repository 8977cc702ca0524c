"""DANet's training steps for the shared trainer: `l1` (R alone) and `dual` (the paper's dual adversarial
training of R, G and the critic).

The dual schedule follows the authors' code: the critic is updated on every batch and R and G on every
third batch (after that batch's critic update), which is the paper's three critic steps per R/G step.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from invdn.models.danet import CRITIC_PATCH, DANetConfig, Discriminator, UNetD, UNetG

MODES = ("l1", "dual")

ALPHA = 0.5  # weight of the G side of the critic; the R side gets 1 - ALPHA
TAU_R = 1000.0  # weight of R's L1 term against the clean image
TAU_G = 10.0  # weight of G's L1 term between blurred residuals
LAMBDA_GP = 10.0  # WGAN-GP gradient-penalty weight
CRITIC_STEPS = 3  # critic updates per R/G update
BLUR_SIZE = 5  # Gaussian kernel of G's residual-matching loss
CLIP_NORM = 10.0  # gradient-norm clipping applied to every network before its optimizer step


def gaussian_kernel(size: int, channels: int) -> Tensor:
    """A (channels, 1, size, size) normalised Gaussian for a depthwise convolution.

    Sigma follows OpenCV's rule for sigma <= 0, 0.3 * ((size - 1) / 2 - 1) + 0.8 (1.1 for size 5), which is
    what the published loss uses.
    """
    sigma = 0.3 * ((size - 1) * 0.5 - 1) + 0.8
    offsets = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    line = torch.exp(-(offsets**2) / (2 * sigma**2))
    line = line / line.sum()
    square = torch.outer(line, line).to(torch.float32)
    return square.expand(channels, 1, size, size).contiguous()


def gaussian_blur(x: Tensor, kernel: Tensor) -> Tensor:
    """Blur each channel of x (B, C, H, W) with kernel (C, 1, k, k), reflect-padded to keep the size."""
    half = kernel.shape[-1] // 2
    padded = F.pad(x, (half, half, half, half), mode="reflect")
    return F.conv2d(padded, kernel.to(dtype=x.dtype), groups=x.shape[1])


def gradient_penalty(critic: nn.Module, real: Tensor, fake: Tensor) -> Tensor:
    """WGAN-GP: mean of (||d critic / d input|| - 1)^2 at random points between real and fake pairs."""
    mix = torch.rand((real.shape[0], 1, 1, 1), device=real.device, dtype=real.dtype)
    between = (mix * real.detach() + (1 - mix) * fake.detach()).requires_grad_(True)
    scores = critic(between)
    (grads,) = torch.autograd.grad(scores.sum(), between, create_graph=True)
    norms = torch.sqrt(grads.float().flatten(1).pow(2).sum(dim=1) + 1e-12)
    return ((norms - 1) ** 2).mean()


def _value(tensor: Tensor) -> float:
    return float(tensor.detach())


class DANetTask:
    """DANet's networks, optimizers and one training iteration, for the shared trainer.

    modules["main"] is R (UNetD), the only network that ships; in dual mode "generator" (G) and "critic"
    are trained too. lr is R's and G's learning rate; the critic uses 2 * lr (the published 1e-4 / 2e-4).
    """

    def __init__(
        self,
        mode: str,
        lr: float = 1e-4,
        grad_sync: Callable[[nn.Module], None] | None = None,
        device: str | torch.device = "cpu",
        config: DANetConfig | None = None,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown DANet training mode {mode!r}; choose one of {', '.join(MODES)}")
        self.mode = mode
        self.device = torch.device(device)
        self.config = config if config is not None else DANetConfig()
        self.grad_sync = grad_sync
        self.iteration = 0  # batches seen; in dual mode R and G step when this is 2 mod 3
        denoiser = UNetD(self.config).to(self.device)
        self.modules: dict[str, nn.Module] = {"main": denoiser}
        self.optimizers: dict[str, torch.optim.Optimizer] = {"main": torch.optim.Adam(denoiser.parameters(), lr=lr)}
        if mode == "dual":
            generator = UNetG(self.config).to(self.device)
            critic = Discriminator(self.config).to(self.device)
            self.modules["generator"] = generator
            self.modules["critic"] = critic
            self.optimizers["generator"] = torch.optim.Adam(generator.parameters(), lr=lr, betas=(0.5, 0.9))
            self.optimizers["critic"] = torch.optim.Adam(critic.parameters(), lr=2 * lr, betas=(0.5, 0.9))
            self.blur_kernel = gaussian_kernel(BLUR_SIZE, self.config.in_channels).to(self.device)

    def state_dict(self) -> dict[str, Any]:
        """Schedule state to checkpoint besides the modules and optimizers."""
        return {"iteration": self.iteration}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what state_dict returned."""
        self.iteration = int(state["iteration"])

    def step(self, noisy: Tensor, clean: Tensor) -> dict[str, float]:
        """One training iteration on a (B, C, h, w) batch in [0, 1]; returns floats, "loss" = R's L1.

        In dual mode the critic steps every call and R and G every third call; the keys r_*/g_* appear
        only on calls where they stepped.
        """
        noisy, clean = self._check_batch(noisy, clean)
        if self.mode == "l1":
            stats = self._l1_step(noisy, clean)
        else:
            stats = self._dual_step(noisy, clean)
        self.iteration += 1
        return stats

    def _check_batch(self, noisy: Tensor, clean: Tensor) -> tuple[Tensor, Tensor]:
        channels = self.config.in_channels
        if noisy.shape != clean.shape or noisy.dim() != 4 or noisy.shape[1] != channels:
            raise ValueError(
                f"DANet training expects noisy and clean batches of the same (B, {channels}, h, w) shape, "
                f"got {tuple(noisy.shape)} and {tuple(clean.shape)}"
            )
        if self.mode == "dual" and tuple(noisy.shape[-2:]) != (CRITIC_PATCH, CRITIC_PATCH):
            raise ValueError(
                f"DANet dual training needs {CRITIC_PATCH}x{CRITIC_PATCH} patches (the discriminator's input "
                f"size), got {noisy.shape[-2]}x{noisy.shape[-1]}; set the patch size to {CRITIC_PATCH}"
            )
        return noisy.to(self.device), clean.to(self.device)

    def _finish(self, name: str, loss: Tensor) -> float:
        """Backward, sync, clip and step one network; returns its gradient norm before clipping."""
        module = self.modules[name]
        loss.backward()
        if self.grad_sync is not None:
            self.grad_sync(module)
        norm = torch.nn.utils.clip_grad_norm_(module.parameters(), CLIP_NORM)
        self.optimizers[name].step()
        return float(norm)

    def _l1_step(self, noisy: Tensor, clean: Tensor) -> dict[str, float]:
        denoiser = self.modules["main"]
        self.optimizers["main"].zero_grad(set_to_none=True)
        loss = F.l1_loss(denoiser(noisy), clean)
        norm = self._finish("main", loss)
        return {"loss": _value(loss), "grad_norm": norm}

    def _dual_step(self, noisy: Tensor, clean: Tensor) -> dict[str, float]:
        denoiser, generator, critic = (self.modules[k] for k in ("main", "generator", "critic"))
        stats = self._critic_step(denoiser, generator, critic, noisy, clean)
        if (self.iteration + 1) % CRITIC_STEPS == 0:
            critic.requires_grad_(False)  # R and G losses must not leave gradients in the critic
            try:
                stats.update(self._denoiser_step(denoiser, critic, noisy, clean))
                stats.update(self._generator_step(generator, critic, noisy, clean))
            finally:
                critic.requires_grad_(True)
        return stats

    def _critic_step(
        self, denoiser: nn.Module, generator: nn.Module, critic: nn.Module, noisy: Tensor, clean: Tensor
    ) -> dict[str, float]:
        with torch.no_grad():
            fake_noisy = generator(clean)
            fake_clean = denoiser(noisy)
        real = torch.cat([clean, noisy], dim=1)
        fake_g = torch.cat([clean, fake_noisy], dim=1)
        fake_r = torch.cat([fake_clean, noisy], dim=1)
        self.optimizers["critic"].zero_grad(set_to_none=True)
        real_score = critic(real).mean()
        gap_g = critic(fake_g).mean() - real_score
        gap_r = critic(fake_r).mean() - real_score
        penalty_g = LAMBDA_GP * gradient_penalty(critic, real, fake_g)
        penalty_r = LAMBDA_GP * gradient_penalty(critic, real, fake_r)
        loss = ALPHA * (gap_g + penalty_g) + (1 - ALPHA) * (gap_r + penalty_r)
        norm = self._finish("critic", loss)
        return {
            "loss": _value(F.l1_loss(fake_clean, clean)),
            "critic_loss": _value(loss),
            "critic_gap_r": _value(gap_r),
            "critic_gap_g": _value(gap_g),
            "critic_penalty": _value(ALPHA * penalty_g + (1 - ALPHA) * penalty_r),
            "critic_grad_norm": norm,
        }

    def _denoiser_step(self, denoiser: nn.Module, critic: nn.Module, noisy: Tensor, clean: Tensor) -> dict[str, float]:
        self.optimizers["main"].zero_grad(set_to_none=True)
        fake_clean = denoiser(noisy)
        l1 = F.l1_loss(fake_clean, clean)
        adversarial = -(1 - ALPHA) * critic(torch.cat([fake_clean, noisy], dim=1)).mean()
        loss = adversarial + TAU_R * l1
        norm = self._finish("main", loss)
        return {
            "r_loss": _value(loss),
            "r_adversarial": _value(adversarial),
            "r_l1": _value(l1),
            "r_grad_norm": norm,
        }

    def _generator_step(
        self, generator: nn.Module, critic: nn.Module, noisy: Tensor, clean: Tensor
    ) -> dict[str, float]:
        self.optimizers["generator"].zero_grad(set_to_none=True)
        fake_noisy = generator(clean)
        residual_match = F.l1_loss(
            gaussian_blur(fake_noisy - clean, self.blur_kernel),
            gaussian_blur(noisy - clean, self.blur_kernel),
        )
        adversarial = -ALPHA * critic(torch.cat([clean, fake_noisy], dim=1)).mean()
        loss = adversarial + TAU_G * residual_match
        norm = self._finish("generator", loss)
        return {
            "g_loss": _value(loss),
            "g_adversarial": _value(adversarial),
            "g_residual_l1": _value(residual_match),
            "g_grad_norm": norm,
        }
