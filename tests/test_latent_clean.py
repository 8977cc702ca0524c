"""InvDN-LC: the invertible part still inverts exactly, the cleaner handles any size and tiles without seams,
and a tiny training run lowers the loss."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from invdn.eval.metrics import psnr
from invdn.inference.engine import Denoiser
from invdn.models.latent_clean import InvDNLC, InvDNLCConfig, deepen
from invdn.training.latent_clean_task import InvDNLCTask

TINY = InvDNLCConfig(hidden=8, width=16, res_blocks=2)


def perturbed(config: InvDNLCConfig = TINY, seed: int = 0) -> InvDNLC:
    """A model whose couplings and cleaner are not the identity (their zero-initialised last layers get weights)."""
    torch.manual_seed(seed)
    model = InvDNLC(config)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("conv3.weight") or name.startswith("cleaner.tail"):
                p.copy_(0.02 * torch.randn_like(p))
    return model.eval()


def test_fresh_model_is_the_identity():
    model = InvDNLC(TINY).eval()
    x = torch.rand(2, 3, 20, 28, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(model.denoise(x), x, atol=1e-5, rtol=0)


def test_invertible_part_round_trips():
    model = perturbed()
    x = torch.rand(2, 3, 32, 24, generator=torch.Generator().manual_seed(1), dtype=torch.float32)
    with torch.no_grad():
        lr, z, size = model.encode(x)
        assert lr.shape == (2, 3, 8, 6) and z.shape == (2, 45, 8, 6)
        back = model.decode(lr, z, size)
    torch.testing.assert_close(back, x, atol=1e-5, rtol=0)
    # the cleaner changes the encoding, so the output is no longer the input
    assert (model.denoise(x) - x).abs().max() > 1e-3


@pytest.mark.parametrize("shape", [(1, 3, 1, 1), (1, 3, 7, 13), (2, 3, 33, 17), (1, 3, 5, 64)])
def test_any_size_keeps_its_shape(shape):
    model = perturbed()
    x = torch.rand(shape, generator=torch.Generator().manual_seed(2))
    for ensemble in (False, True):
        y = model.denoise(x, ensemble=ensemble)
        assert y.shape == x.shape and torch.isfinite(y).all()


def test_ensemble_of_a_flip_equivariant_input_matches():
    model = perturbed()
    x = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    flipped = model.denoise(x.flip(-1), ensemble=True).flip(-1)
    torch.testing.assert_close(flipped, model.denoise(x, ensemble=True), atol=1e-5, rtol=0)


def test_tiles_leave_no_seams():
    model = perturbed(InvDNLCConfig(hidden=8, width=16, res_blocks=6))
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:200, 0:232].astype(np.float32)
    clean = np.stack([0.5 + 0.3 * np.sin(xx / 9), 0.5 + 0.3 * np.cos(yy / 7), 0.5 + 0.2 * np.sin((xx + yy) / 11)], 2)
    noisy = np.clip(clean + rng.normal(0, 0.1, clean.shape), 0, 1).astype(np.float32)
    whole = Denoiser(model, device="cpu", tile=256)(noisy)
    tiled = Denoiser(model, device="cpu", tile=96)(noisy)  # 96-px tiles overlapping by the registry's 32
    assert whole.shape == tiled.shape == noisy.shape
    # seams would show as a large local difference along tile borders; the whole output agrees to ~50 dB
    assert psnr(tiled, whole) > 45
    assert np.abs(tiled - whole).max() < 0.02


def test_a_tiny_training_run_lowers_the_loss():
    torch.manual_seed(0)
    task = InvDNLCTask(TINY, lr=2e-3)
    g = torch.Generator().manual_seed(5)
    yy, xx = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    clean = torch.stack([0.5 + 0.3 * torch.sin(xx / 5), 0.5 + 0.3 * torch.cos(yy / 4), 0.5 + 0.1 * xx / 32])
    clean = clean.expand(4, 3, 32, 32).contiguous()
    noisy = clean + 0.1 * torch.randn(clean.shape, generator=g)
    losses = [task.step(noisy, clean)["loss"] for _ in range(40)]
    assert np.mean(losses[-5:]) < 0.9 * np.mean(losses[:5])
    model = task.modules["main"].eval()
    with torch.no_grad():
        error = (model.denoise(noisy) - clean).pow(2).mean()
    assert error < (noisy - clean).pow(2).mean()  # it already denoises a little


def test_latent_term_trains_the_cleaner_only(monkeypatch):
    """The latent term's gradient reaches the cleaner, never the invertible network (which defines its target)."""
    import invdn.training.latent_clean_task as training

    monkeypatch.setattr(training, "GRAD_CLIP", 1e30)  # clipping rescales every gradient by the total norm
    g = torch.Generator().manual_seed(6)
    clean = torch.rand(2, 3, 16, 16, generator=g)
    noisy = clean + 0.1 * torch.randn(clean.shape, generator=g)
    grads = {}
    for weight in (0.0, 1.0):
        torch.manual_seed(0)
        task = InvDNLCTask(TINY, latent_weight=weight)
        model = task.modules["main"]
        with torch.no_grad():  # non-identity couplings and cleaner, so every gradient is non-zero
            model.load_state_dict(perturbed().state_dict())
        task.optimizers["main"] = torch.optim.SGD(model.parameters(), lr=0.0)  # keep the weights, see the grads
        task.step(noisy, clean)
        grads[weight] = {n: p.grad.clone() for n, p in model.named_parameters()}
    for name, grad in grads[1.0].items():
        if name.startswith("inv."):
            torch.testing.assert_close(grad, grads[0.0][name])
    assert any(not torch.equal(grads[1.0][n], grads[0.0][n]) for n in grads[1.0] if n.startswith("cleaner."))


def test_deepen_adds_cleaner_blocks_that_start_as_the_identity():
    model = perturbed()
    deeper = deepen(model, 4)
    assert deeper.config.res_blocks == 4 and len(deeper.cleaner.body) == 4
    per_block = sum(p.numel() for p in deeper.cleaner.body[0].parameters())
    count = sum(p.numel() for p in model.parameters())
    assert sum(p.numel() for p in deeper.parameters()) == count + 2 * per_block
    x = torch.rand(2, 3, 24, 20, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(deeper.eval()(x), model(x), rtol=0, atol=1e-6)
        for block in deeper.cleaner.body[2:]:
            assert block.conv1.weight.abs().sum() > 0  # trainable from the first step: conv2 gets a gradient
            assert not block.conv2.weight.any() and not block.conv2.bias.any()
    assert deepen(model, 2).config.res_blocks == 2  # the same depth: a copy
    with pytest.raises(ValueError, match="adds blocks"):
        deepen(model, 1)
