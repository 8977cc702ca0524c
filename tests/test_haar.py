import math

import torch

from invdn.models.haar import HaarDownsampling, haar_forward, haar_inverse, haar_log_det, haar_matrix


def test_low_band_is_the_2x2_mean_and_channels_are_band_major():
    x = torch.rand(2, 3, 6, 8, dtype=torch.float64)
    y = haar_forward(x)
    assert y.shape == (2, 12, 3, 4)
    mean = torch.nn.functional.avg_pool2d(x, 2)
    torch.testing.assert_close(y[:, :3], mean)


def test_inverse_is_exact():
    x = torch.rand(2, 5, 8, 6, dtype=torch.float64)
    torch.testing.assert_close(haar_inverse(haar_forward(x)), x, atol=1e-14, rtol=0)


def test_log_det_matches_the_matrix_and_the_jacobian():
    assert math.isclose(torch.linalg.slogdet(haar_matrix().double())[1].item(), math.log(1 / 16), rel_tol=1e-12)
    x = torch.rand(1, 2, 4, 4, dtype=torch.float64)
    jac = torch.autograd.functional.jacobian(lambda t: haar_forward(t).flatten(), x).reshape(32, 32)
    assert math.isclose(torch.linalg.slogdet(jac)[1].item(), haar_log_det(2, 4, 4), rel_tol=1e-10)


def test_module_log_det_flips_sign_in_reverse():
    step = HaarDownsampling(3)
    x = torch.rand(2, 3, 4, 4, dtype=torch.float64)
    y, ld = step(x)
    x2, ld_rev = step(y, rev=True)
    torch.testing.assert_close(x2, x)
    torch.testing.assert_close(ld_rev, -ld)
    assert step.trainable_parameters() == []


def test_odd_size_is_rejected_clearly():
    try:
        haar_forward(torch.rand(1, 3, 5, 4))
    except ValueError as exc:
        assert "even" in str(exc)
    else:
        raise AssertionError("odd height was accepted")
