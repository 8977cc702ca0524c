import pytest
import torch
from helpers import random_invdn

from invdn.models.reversible import chain_drift


def training_grads(model, x, memory_saving: bool):
    model.config.memory_saving = memory_saving
    model.zero_grad()
    x = x.clone().requires_grad_(True)
    lr, z, size = model.encode(x)
    z_new = torch.randn(z.shape, generator=torch.Generator().manual_seed(1), dtype=x.dtype)
    out = model.decode(lr, z_new, size)
    loss = (out - 0.5).abs().mean() + (lr**2).sum() + (z**2).mean()
    loss.backward()
    return [x.grad] + [p.grad.clone() for p in model.parameters()]


@pytest.mark.parametrize(("dtype", "tol"), [(torch.float32, 1e-4), (torch.float64, 1e-9)])
def test_memory_saving_gradients_equal_plain_autograd(dtype, tol):
    model = random_invdn(dtype=dtype, blocks_per_level=8, hidden=8, std=0.02)
    x = torch.rand(2, 3, 16, 20, dtype=dtype)
    plain = training_grads(model, x, memory_saving=False)
    saving = training_grads(model, x, memory_saving=True)
    for a, b in zip(plain, saving, strict=True):
        assert (a - b).norm() / a.norm().clamp_min(1e-30) <= tol


def test_memory_saving_keeps_only_the_chain_output():
    def saved_bytes(blocks: int, memory_saving: bool) -> int:
        model = random_invdn(dtype=torch.float32, blocks_per_level=blocks, hidden=8)
        model.config.memory_saving = memory_saving
        total = 0

        def pack(t):
            nonlocal total
            total += t.numel() * t.element_size()
            return t

        x = torch.rand(1, 3, 16, 16, requires_grad=True)
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            lr, z, size = model.encode(x)
            model.decode(lr, torch.randn_like(z), size).sum()
        return total

    assert saved_bytes(8, True) == saved_bytes(2, True)
    assert saved_bytes(8, False) > 8 * saved_bytes(8, True)


def test_drift_is_small():
    model = random_invdn(dtype=torch.float32, blocks_per_level=8, hidden=8, std=0.02)
    assert chain_drift(list(model.blocks), torch.rand(1, 3, 16, 16)) < 1e-5
