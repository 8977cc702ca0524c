"""The contract every invertible block in invdn follows (after FrEIA's `InvertibleModule`).

A block maps x -> y and back, exactly:

    y, log_det = block(x)              # log_det: (B,) = log|det dy/dx| per sample
    x2, log_det_rev = block(y, rev=True)
    x2 == x up to float rounding, and log_det_rev == -log_det

For memory-saving training (see `invdn.models.reversible`), a block also rebuilds its input from its output and
back-propagates through itself in one go:

    x, grad_x, param_grads = block.rebuild_and_backward(y, grad_y, rev=False)

`rev` names the direction the block *ran* in when it produced `y`. The default implementation inverts, then
recomputes the block with gradients enabled; blocks can override it with a cheaper fused version.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class InvertibleModule(nn.Module):
    """Base class: `forward(x, rev=False) -> (y, log_det)` plus `rebuild_and_backward`."""

    def forward(self, x: Tensor, rev: bool = False) -> tuple[Tensor, Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def rebuild_and_backward(
        self, y: Tensor, grad_y: Tensor, rev: bool = False
    ) -> tuple[Tensor, Tensor, list[Tensor | None]]:
        """Given this block's output `y` (run in direction `rev`) and dL/dy, return (x, dL/dx, dL/dparams).

        The parameter gradients are in the order of `trainable_parameters()`.
        """
        with torch.no_grad():
            x, _ = self(y, rev=not rev)
        x = x.detach().requires_grad_(True)
        params = self.trainable_parameters()
        with torch.enable_grad():
            out, _ = self(x, rev=rev)
            grads = torch.autograd.grad(out, [x, *params], grad_y, allow_unused=True)
        return x.detach(), grads[0], list(grads[1:])
