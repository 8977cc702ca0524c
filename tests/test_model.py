import pytest
import torch
from helpers import random_invdn

from invdn.models.flops import count_parameters
from invdn.models.geometry import dihedral, pad_to_multiple
from invdn.models.invdn import InvDN, InvDNConfig


def test_paper_configuration_has_exactly_2640960_parameters():
    assert count_parameters(InvDN(InvDNConfig())) == 2_640_960


def test_encode_shapes():
    model = random_invdn(blocks_per_level=1)
    lr, z, size = model.encode(torch.rand(2, 3, 64, 48, dtype=torch.float64))
    assert lr.shape == (2, 3, 16, 12) and z.shape == (2, 45, 16, 12) and size == (64, 48)


@pytest.mark.parametrize(("dtype", "tol"), [(torch.float32, 1e-4), (torch.float64, 1e-10)])
def test_round_trip(dtype, tol):
    model = random_invdn(dtype=dtype, blocks_per_level=8, hidden=16)
    x = torch.rand(1, 3, 64, 64, dtype=dtype)
    with torch.no_grad():
        x2 = model.decode(*model.encode(x))
    assert (x2 - x).abs().max().item() <= tol


def test_odd_sizes_come_back_at_their_own_size():
    model = random_invdn()
    x = torch.rand(1, 3, 37, 53, dtype=torch.float64)
    with torch.no_grad():
        x2 = model.decode(*model.encode(x))
        out = model.denoise(x)
    assert x2.shape == x.shape and out.shape == x.shape
    assert (x2 - x).abs().max() < 1e-10
    tiny = torch.rand(1, 3, 2, 3, dtype=torch.float64)  # too small to reflect: replicate padding
    assert model.denoise(tiny).shape == tiny.shape


def test_log_det_equals_slogdet_of_the_jacobian():
    model = random_invdn(blocks_per_level=1, hidden=4)
    x = torch.rand(1, 3, 4, 4, dtype=torch.float64)
    (enc, log_det) = model.encode(x, with_logdet=True)

    def flat(t):
        lr, z, _ = model.encode(t)
        return torch.cat([lr, z], 1).flatten()

    jac = torch.autograd.functional.jacobian(flat, x).reshape(48, 48)
    torch.testing.assert_close(log_det[0], torch.linalg.slogdet(jac)[1], atol=1e-8, rtol=1e-8)


def test_denoise_is_seeded_and_averages_draws():
    model = random_invdn()
    x = torch.rand(1, 3, 16, 16, dtype=torch.float64)
    a = model.denoise(x, generator=torch.Generator().manual_seed(5))
    b = model.denoise(x, generator=torch.Generator().manual_seed(5))
    c = model.denoise(x, generator=torch.Generator().manual_seed(6))
    torch.testing.assert_close(a, b)
    assert (a - c).abs().max() > 0
    many = model.denoise(x, samples=4, ensemble=True, generator=torch.Generator().manual_seed(5))
    assert many.shape == x.shape
    with pytest.raises(ValueError):
        model.denoise(x, samples=0)


def test_fresh_model_is_the_haar_transform():
    model = InvDN(InvDNConfig(blocks_per_level=1))
    x = torch.rand(1, 3, 8, 8)
    lr, _, _ = model.encode(x)
    torch.testing.assert_close(lr, torch.nn.functional.avg_pool2d(x, 4))


def test_dihedral_inverse_and_padding():
    x = torch.rand(1, 3, 5, 7)
    for k in range(8):
        torch.testing.assert_close(dihedral(dihedral(x, k), k, inverse=True), x)
    assert len({tuple(dihedral(x, k).flatten()[:6].tolist()) for k in range(8)}) == 8
    assert pad_to_multiple(x, 4).shape[-2:] == (8, 8)
