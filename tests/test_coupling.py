import pytest
import torch

from invdn.models.coupling import AffineCoupling
from invdn.models.subnets import DenseSubnet, ResNetSubnet, subnet_constructor


def make_block(kind: str = "resnet", seed: int = 0) -> AffineCoupling:
    torch.manual_seed(seed)
    block = AffineCoupling(12, 3, subnet_constructor(kind, 8), clamp=1.0).double()
    with torch.no_grad():
        for p in block.parameters():
            p.normal_(0, 0.1)
    return block


@pytest.mark.parametrize("kind", ["resnet", "dense"])
def test_inverse_recovers_input(kind):
    block = make_block(kind)
    x = torch.randn(2, 12, 5, 7, dtype=torch.float64)
    y, _ = block(x)
    x2, _ = block(y, rev=True)
    assert (x2 - x).abs().max() < 1e-12
    assert (y - x).abs().max() > 1e-3  # the block is not the identity


def test_log_det_is_sum_of_s_and_matches_jacobian():
    block = make_block()
    x = torch.randn(1, 12, 2, 2, dtype=torch.float64)
    _, ld = block(x)
    jac = torch.autograd.functional.jacobian(lambda t: block(t)[0].flatten(), x).reshape(48, 48)
    torch.testing.assert_close(ld[0], torch.linalg.slogdet(jac)[1], atol=1e-9, rtol=1e-9)
    y, _ = block(x)
    _, ld_rev = block(y, rev=True)
    torch.testing.assert_close(ld_rev, -ld)


def test_finite_difference_jacobian_agrees():
    block = make_block(seed=3)
    x = torch.randn(1, 12, 2, 2, dtype=torch.float64)
    eps = 1e-6
    flat = x.flatten()
    cols = []
    for i in range(flat.numel()):
        d = torch.zeros_like(flat)
        d[i] = eps
        up = block((flat + d).reshape(x.shape))[0].flatten()
        down = block((flat - d).reshape(x.shape))[0].flatten()
        cols.append((up - down) / (2 * eps))
    jac = torch.stack(cols, dim=1)
    assert abs(torch.linalg.slogdet(jac)[1] - block(x)[1][0]) < 1e-6


def test_scale_is_clamped():
    block = make_block()
    with torch.no_grad():
        for p in block.H.parameters():
            p.mul_(1000)
    s = block.log_scale(torch.randn(2, 3, 4, 4, dtype=torch.float64))
    assert s.abs().max() <= block.clamp


@pytest.mark.parametrize("rev", [False, True])
def test_fused_rebuild_and_backward_matches_autograd(rev):
    block = make_block(seed=1)
    x = torch.randn(2, 12, 4, 4, dtype=torch.float64, requires_grad=True)
    y, _ = block(x, rev=rev)
    grad_y = torch.randn_like(y)
    expected = torch.autograd.grad(y, [x, *block.parameters()], grad_y)
    x_rebuilt, grad_x, param_grads = block.rebuild_and_backward(y.detach(), grad_y, rev=rev)
    torch.testing.assert_close(x_rebuilt, x.detach(), atol=1e-12, rtol=0)
    torch.testing.assert_close(grad_x, expected[0])
    for got, want in zip(param_grads, expected[1:], strict=True):
        torch.testing.assert_close(got, want)


def test_subnet_shapes_and_identity_start():
    for cls in (ResNetSubnet, DenseSubnet):
        net = cls(9, 3)
        out = net(torch.randn(1, 9, 5, 5))
        assert out.shape == (1, 3, 5, 5)
        assert out.abs().max() == 0  # last conv starts at zero: a fresh coupling is the identity
    with pytest.raises(ValueError, match="unknown subnet"):
        subnet_constructor("transformer", 8)
