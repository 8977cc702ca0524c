"""Noise models: statistics, determinism under a seed, spec parsing."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from invdn.noise import AWGN, CameraNoise, MixNoise, clip8, generator_for, make_noise, seed_from


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _flat(levels: list[float], size: int = 48) -> torch.Tensor:
    """A batch of flat grey images, one per level."""
    return torch.tensor(levels).view(-1, 1, 1, 1).expand(-1, 3, size, size).contiguous()


def _strips(levels: list[float], height: int = 24, width: int = 96) -> torch.Tensor:
    """One image of horizontal flat grey strips (so per-image random parameters are shared by all levels)."""
    rows = torch.tensor(levels).repeat_interleave(height)
    return rows.view(1, 1, -1, 1).expand(1, 3, -1, width).contiguous()


def _strip_noise(noisy: torch.Tensor, clean: torch.Tensor, n_levels: int, height: int) -> list[torch.Tensor]:
    """Noise of each strip, trimmed by 4 pixels at its edges (demosaic/blur borders)."""
    noise = (noisy - clean)[0]
    return [noise[:, k * height + 4 : (k + 1) * height - 4, 4:-4] for k in range(n_levels)]


def test_awgn_std_matches_sigma() -> None:
    clean = _flat([0.5, 0.5], 96)
    for sigma in (15, 25, 50):
        noise = make_noise(f"awgn:{sigma}")(clean, _gen(sigma)) - clean
        assert noise.std().item() * 255 == pytest.approx(sigma, rel=0.03)
        assert abs(noise.mean().item() * 255) < 0.5


def test_awgn_blind_draws_sigma_per_image() -> None:
    clean = _flat([0.5] * 32, 32)
    stds = ((make_noise("awgn:0-55")(clean, _gen()) - clean).std(dim=(1, 2, 3)) * 255).numpy()
    assert stds.min() >= 0 and stds.max() <= 55 * 1.1
    assert stds.max() - stds.min() > 20  # sigma really varies per image
    assert make_noise("awgn:0-55").sigma == (0.0, 55.0)


def test_poisson_gaussian_variance_linear_fixed_params() -> None:
    levels = [0.05, 0.2, 0.35, 0.5, 0.65, 0.8, 0.95]
    clean = _flat(levels, 96)
    noisy = make_noise("poisson-gaussian:a=0.01:b=1e-4")(clean, _gen(1))
    var = (noisy - clean).var(dim=(1, 2, 3)).numpy()
    slope, intercept = np.polyfit(levels, var, 1)
    assert slope == pytest.approx(0.01, rel=0.1)
    assert intercept == pytest.approx(1e-4, abs=1e-4)


def test_poisson_gaussian_random_params_linear_within_image() -> None:
    levels = [0.1, 0.3, 0.5, 0.7, 0.9]
    clean = _strips(levels, height=40, width=128)
    for seed in range(3):
        noisy = make_noise("poisson-gaussian")(clean, _gen(seed))
        var = np.array([n.var().item() for n in _strip_noise(noisy, clean, len(levels), 40)])
        slope, intercept = np.polyfit(levels, var, 1)
        fit = np.polyval([slope, intercept], levels)
        r2 = 1 - ((var - fit) ** 2).sum() / ((var - var.mean()) ** 2).sum()
        assert slope > 0
        assert r2 > 0.95


def test_camera_noise_is_signal_dependent() -> None:
    levels = [0.05, 0.4]
    clean = _strips(levels, height=48, width=96)
    model = make_noise("camera:shot=3e-3:read=1e-5")
    dark, mid = _strip_noise(model(clean, _gen(2)), clean, 2, 48)
    assert mid.var().item() > 2.0 * dark.var().item()
    # AWGN at the same average level is not signal-dependent
    dark_g, mid_g = _strip_noise(make_noise("awgn:10")(clean, _gen(2)), clean, 2, 48)
    assert mid_g.var().item() / dark_g.var().item() == pytest.approx(1.0, rel=0.15)


def _channel_corr(noise: torch.Tensor) -> float:
    """Mean off-diagonal correlation between the 3 channels of a (3, H, W) noise field."""
    c = torch.corrcoef(noise.flatten(1))
    return float((c.sum() - c.diagonal().sum()) / 6)


def test_camera_noise_is_channel_correlated() -> None:
    clean = _flat([0.3, 0.6], 64)
    awgn = make_noise("awgn:20")(clean, _gen(3)) - clean
    paper = make_noise("camera:shot=3e-3:read=1e-5")(clean, _gen(3)) - clean
    chroma = make_noise("camera:shot=3e-3:read=1e-5:chroma=2")(clean, _gen(3)) - clean
    for i in range(2):
        assert abs(_channel_corr(awgn[i, :, 4:-4, 4:-4])) < 0.05
        # bilinear demosaic + colour matrix: strongly correlated (negatively, through the CCM's off-diagonals)
        assert abs(_channel_corr(paper[i, :, 4:-4, 4:-4])) > 0.2
        # in-camera chroma noise reduction: positively correlated, as in real camera JPEGs
        assert _channel_corr(chroma[i, :, 8:-8, 8:-8]) > 0.3


def test_camera_zero_noise_returns_input() -> None:
    clean = 0.1 + 0.8 * torch.rand(2, 3, 20, 22, generator=_gen(4))
    noisy = make_noise("camera:shot=1e-12:read=1e-14")(clean, _gen(4))
    assert torch.allclose(noisy, clean, atol=2e-3)


def test_camera_jpeg_output_on_8bit_grid() -> None:
    clean = torch.rand(2, 3, 24, 24, generator=_gen(5))
    noisy = make_noise("camera:jpeg=1:jpeg_q=70-80")(clean, _gen(5))
    assert torch.allclose(noisy * 255, torch.round(noisy * 255), atol=1e-4)
    assert noisy.min() >= 0 and noisy.max() <= 1


@pytest.mark.parametrize(
    "spec",
    [
        "awgn:25",
        "awgn:0-55",
        "poisson-gaussian",
        "camera",
        "camera:chroma=1-3:jpeg=0.5",
        "mix:awgn:5=1,camera=1",
    ],
)
def test_same_seed_same_output_different_seed_differs(spec: str) -> None:
    clean = torch.rand(3, 3, 16, 18, generator=_gen(6))
    model = make_noise(spec)
    a = model(clean, _gen(7))
    b = make_noise(spec)(clean, _gen(7))
    c = model(clean, _gen(8))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert a.shape == clean.shape and a.dtype == torch.float32


def test_mix_picks_each_component_with_its_weight() -> None:
    model = make_noise("mix:awgn:5=0.8,awgn:50=0.2")
    assert isinstance(model, MixNoise) and len(model.components) == 2
    clean = _flat([0.5] * 200, 24)
    stds = (model(clean, _gen(9)) - clean).std(dim=(1, 2, 3)) * 255
    low = (stds < 10).sum().item()
    high = (stds > 40).sum().item()
    assert low + high == 200  # every image got exactly one of the components
    assert 0.1 < high / 200 < 0.3


def test_clip_and_clip8() -> None:
    clean = torch.rand(2, 3, 16, 16, generator=_gen(10))
    raw = make_noise("awgn:50")(clean, _gen(11))
    assert raw.min() < 0 or raw.max() > 1  # unclipped by default
    clipped = make_noise("awgn:50:clip")(clean, _gen(11))
    assert torch.equal(clipped, raw.clamp(0, 1))
    q = make_noise("awgn:50:clip8")(clean, _gen(11))
    assert torch.equal(q, clip8(raw))
    assert torch.allclose(q * 255, torch.round(q * 255), atol=1e-4)


def test_spec_round_trip_and_errors() -> None:
    for spec in [
        "awgn:25",
        "awgn:sigma=0-55:clip8",
        "poisson-gaussian:a=1e-3..1e-2",
        "camera:jpeg=0.3",
        "pg",
    ]:
        model = make_noise(spec)
        assert make_noise(model.spec).spec == model.spec
        assert model.describe() == model.spec
    assert isinstance(make_noise("camera"), CameraNoise)
    assert isinstance(make_noise("AWGN:25"), AWGN)
    for bad in [
        "",
        "gauss:25",
        "awgn",
        "awgn:abc",
        "awgn:50-10",
        "camera:iso=100",
        "mix:awgn:25",
        "camera:jpeg=2",
    ]:
        with pytest.raises(ValueError):
            make_noise(bad)


def test_seed_from_is_stable() -> None:
    assert seed_from("CBSD68", "101085.png", 25) == seed_from("CBSD68", "101085.png", 25)
    assert seed_from("CBSD68", "101085.png", 25) != seed_from("CBSD68", "101085.png", 15)
    g1 = generator_for("a", 1)
    g2 = generator_for("a", 1)
    assert torch.equal(torch.rand(4, generator=g1), torch.rand(4, generator=g2))
