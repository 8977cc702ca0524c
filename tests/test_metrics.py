"""Metrics: PSNR and SSIM checked against hand computation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from invdn.eval.metrics import psnr, quantize8, ssim, to_float, to_uint8


def _image(seed: int = 0, shape: tuple[int, ...] = (16, 20, 3)) -> np.ndarray:
    return np.random.default_rng(seed).integers(20, 230, size=shape, dtype=np.uint8)


@pytest.mark.parametrize("offset", [1, 5, 17])
def test_psnr_constant_offset_uint8(offset: int) -> None:
    a = _image()
    b = a + np.uint8(offset)
    assert psnr(a, b) == pytest.approx(10 * math.log10(255**2 / offset**2), abs=1e-9)


def test_psnr_float_matches_uint8() -> None:
    a = _image(1)
    b = _image(2)
    assert psnr(to_float(a), to_float(b)) == pytest.approx(psnr(a, b), abs=1e-9)
    # mixed dtypes are compared in float [0, 1]
    assert psnr(a, to_float(b)) == pytest.approx(psnr(a, b), abs=1e-9)


def test_psnr_grey_and_identical() -> None:
    a = _image(3, (12, 12))
    assert psnr(a, a) == math.inf
    b = a.astype(np.int16)
    b[0, 0] += 12  # one pixel off by 12: mse = 144 / 144
    assert psnr(a, b.astype(np.uint8)) == pytest.approx(10 * math.log10(255**2 / 1.0), abs=1e-9)


def test_psnr_shape_mismatch() -> None:
    with pytest.raises(ValueError, match="shapes differ"):
        psnr(_image(), _image(shape=(16, 20)))


def test_ssim_properties() -> None:
    a = _image(4, (32, 32, 3))
    assert ssim(a, a) == pytest.approx(1.0)
    noisy = quantize8(to_float(a) + np.random.default_rng(5).normal(0, 0.1, a.shape))
    s = ssim(a, noisy)
    assert 0.0 < s < 0.95
    assert ssim(to_float(a), to_float(noisy)) == pytest.approx(s, abs=1e-9)
    grey = a[..., 0]
    assert ssim(grey, grey) == pytest.approx(1.0)


def test_quantize8_rounds_and_clips() -> None:
    x = np.array([[-0.2, 0.0, 0.4 / 255, 1.49 / 255, 1.51 / 255, 254.6 / 255, 1.0, 1.7]])
    assert quantize8(x).tolist() == [[0, 0, 0, 1, 2, 255, 255, 255]]
    assert quantize8(x).dtype == np.uint8
    u = _image()
    assert np.array_equal(to_uint8(to_float(u)), u)
