"""Noise models: statistics, determinism under a seed, spec parsing."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from invdn.training.noise import (
    AWGN,
    USERS_FILES_NOISE,
    CameraNoise,
    GreyNoise,
    MixNoise,
    clip8,
    generator_for,
    luminance,
    make_noise,
    seed_from,
)


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


def test_camera_soft_is_the_cross_filter_of_the_signal() -> None:
    # without noise, soft=A leaves the clean image filtered by [[0, A, 0], [A, 1 - 4A, A], [0, A, 0]]
    clean = 0.1 + 0.8 * torch.rand(2, 3, 20, 22, generator=_gen(6))
    noisy = make_noise("camera:shot=1e-12:read=1e-14:soft=0.15")(clean, _gen(6))
    kernel = torch.tensor([[0.0, 0.15, 0.0], [0.15, 0.4, 0.15], [0.0, 0.15, 0.0]]).expand(3, 1, 3, 3)
    padded = torch.nn.functional.pad(clean, (1, 1, 1, 1), mode="reflect")
    expected = torch.nn.functional.conv2d(padded, kernel, groups=3)
    assert torch.allclose(noisy, expected, atol=2e-3)
    assert not torch.allclose(noisy, clean, atol=2e-2)


def test_camera_soft_zero_keeps_the_random_stream() -> None:
    clean = torch.rand(2, 3, 24, 24, generator=_gen(7))
    plain = make_noise("camera:chroma=0-3:jpeg=0.5")(clean, _gen(7))
    assert torch.equal(make_noise("camera:chroma=0-3:soft=0:jpeg=0.5")(clean, _gen(7)), plain)
    soft = make_noise("camera:chroma=0-3:soft=0.05-0.2:jpeg=0.5")(clean, _gen(7))

    # softer images: less high-frequency energy than the same draw without softening
    def high(x: torch.Tensor) -> float:
        return float((x[..., 1:, :] - x[..., :-1, :]).pow(2).mean())

    assert high(soft) < high(plain)


def test_soften_one_pixel_wide_images() -> None:
    from invdn.training.camera import soften

    column = torch.rand(1, 3, 7, 1, generator=_gen(8))
    out = soften(column, torch.tensor([0.1]))
    assert out.shape == column.shape and torch.isfinite(out).all()
    assert torch.equal(soften(column, torch.tensor([0.0])), column)


def test_camera_soft_range_is_checked() -> None:
    with pytest.raises(ValueError, match="soft"):
        make_noise("camera:soft=0.3")


def test_edge_map_is_zero_on_flat_areas_and_near_one_on_edges() -> None:
    from invdn.training.camera import edge_map

    step = torch.zeros(1, 3, 24, 24)
    step[..., 12:] = 0.5
    weights = edge_map(step)
    assert weights.shape == (1, 1, 24, 24)
    assert float(weights.min()) >= 0.0 and float(weights.max()) <= 1.0
    assert float(weights[..., :, 11:13].min()) > 0.99  # either side of the step
    assert float(weights[..., :, :6].max()) < 1e-3 and float(weights[..., :, 18:].max()) < 1e-3
    assert float(edge_map(torch.full((2, 1, 9, 1), 0.3)).max()) == 0.0  # one pixel wide, grey: flat


def test_camera_flat_scales_the_noise_by_the_edge_map() -> None:
    # the same draw with and without flat=F: the noise is multiplied by F + (1 - F) * edge_map(clean), exactly
    from invdn.training.camera import edge_map

    clean = torch.zeros(2, 3, 32, 32)
    clean[..., 16:] = 0.6
    clean += 0.2
    plain = make_noise("camera:shot=1e-3:read=1e-5")(clean, _gen(9)) - clean
    flat = make_noise("camera:shot=1e-3:read=1e-5:flat=0.3")(clean, _gen(9)) - clean
    assert torch.allclose(flat, plain * (0.3 + 0.7 * edge_map(clean)), atol=1e-6)
    # flat areas keep 0.3 of their noise (0.09 of its variance), the edge keeps nearly all of it
    assert float(flat[..., :, :8].std() / plain[..., :, :8].std()) == pytest.approx(0.3, abs=1e-3)
    assert float(flat[..., :, 15:17].std() / plain[..., :, 15:17].std()) > 0.99


# sha256 (first 16 hex digits) of torch's CPU generator state after one call of "camera:chroma=0-3:jpeg=0.5" on
# the image below, measured with the code of commit 3e0b0f0, before the flat option existed:
# options left at their defaults must draw nothing, so that older specs keep their random streams.
CAMERA_STREAM_STATE = "aac605bbf7b2524f"


@pytest.mark.parametrize("spec", ["camera:chroma=0-3:jpeg=0.5", "camera:chroma=0-3:soft=0:flat=1:jpeg=0.5"])
def test_camera_default_options_draw_nothing(spec: str) -> None:
    import hashlib

    clean = torch.rand(2, 3, 24, 24, generator=_gen(10))
    generator = _gen(10)
    make_noise(spec)(clean, generator)
    assert hashlib.sha256(generator.get_state().numpy().tobytes()).hexdigest()[:16] == CAMERA_STREAM_STATE
    # and a flat that is asked for does draw
    drawn = _gen(10)
    make_noise("camera:chroma=0-3:flat=0.5:jpeg=0.5")(clean, drawn)
    assert hashlib.sha256(drawn.get_state().numpy().tobytes()).hexdigest()[:16] != CAMERA_STREAM_STATE


def test_camera_flat_one_is_the_default() -> None:
    clean = torch.rand(2, 3, 24, 24, generator=_gen(10))
    plain = make_noise("camera:chroma=0-3:jpeg=0.5")(clean, _gen(10))
    assert torch.equal(make_noise("camera:chroma=0-3:flat=1:jpeg=0.5")(clean, _gen(10)), plain)
    spec = make_noise("camera:chroma=0-3:flat=0.4-1:jpeg=0.5").spec
    assert "flat=0.4-1" in spec and make_noise(spec).spec == spec


@pytest.mark.parametrize("bad", ["0", "0-0.5", "0.5-1.2"])
def test_camera_flat_range_is_checked(bad: str) -> None:
    with pytest.raises(ValueError, match="flat"):
        make_noise(f"camera:flat={bad}")


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
        "camera:chroma=0-3:soft=0-0.2:jpeg=0.5:jpeg_q=60-95:clip8",
        "mix:awgn:5=1,camera=1",
        "awgn:0-55:grey:clip8",
        "camera:jpeg=1:grey",
        "corr",
        "corr:sigma=10:grey:clip8",
        USERS_FILES_NOISE,
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
        "awgn:0-55:grey:clip8",
        "camera:chroma=1-3:grey",
        "corr",
        "corr:sigma=2-20:r=1-2:rho=0.5:clip8",
        USERS_FILES_NOISE,
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
        "corr:r=0",
        "corr:rho=0-1.5",
        "corr:sigma=-1",
        "corr:size=3",
    ]:
        with pytest.raises(ValueError):
            make_noise(bad)


def test_seed_from_is_stable() -> None:
    assert seed_from("CBSD68", "101085.png", 25) == seed_from("CBSD68", "101085.png", 25)
    assert seed_from("CBSD68", "101085.png", 25) != seed_from("CBSD68", "101085.png", 15)
    g1 = generator_for("a", 1)
    g2 = generator_for("a", 1)
    assert torch.equal(torch.rand(4, generator=g1), torch.rand(4, generator=g2))


def _identical_channels(x: torch.Tensor) -> torch.Tensor:
    """Per image of a (B, 3, H, W) batch: True where all three channels are bit-identical."""
    return ((x[:, 0] == x[:, 1]) & (x[:, 1] == x[:, 2])).flatten(1).all(dim=1)


@pytest.mark.parametrize("spec", ["awgn:25:grey", "awgn:0-55:grey:clip8", "poisson-gaussian:grey", "camera:grey:clip8"])
def test_grey_noise_is_identical_across_channels(spec: str) -> None:
    clean = torch.rand(4, 3, 20, 22, generator=_gen(20))  # colour input: the grey modifier makes it grey
    noisy, target = make_noise(spec).pair(clean, _gen(21))
    assert noisy.shape == clean.shape and target.shape == clean.shape
    assert bool(_identical_channels(noisy).all())
    assert bool(_identical_channels(target).all())
    noise = noisy - target
    assert float(noise.abs().mean()) > 1e-3  # there is noise, and ...
    assert not torch.equal(noise[0], noise[1])  # ... it is a different field in each image
    # the noisy output of pair() is what calling the model gives
    assert torch.equal(noisy, make_noise(spec)(clean, _gen(21)))


def test_grey_awgn_level_and_one_channel_input() -> None:
    clean = _flat([0.5] * 4, 64)
    noisy, target = make_noise("awgn:25:grey").pair(clean, _gen(22))
    assert torch.allclose(target, torch.full_like(target, 128 / 255))  # 0.5 as a grey 8-bit file stores it
    assert (noisy - target).std().item() * 255 == pytest.approx(25, rel=0.05)
    grey_in = clean[:, :1]
    noisy1, target1 = make_noise("awgn:25:grey").pair(grey_in, _gen(22))
    assert noisy1.shape == grey_in.shape
    # the replicated 3-channel photo carries exactly the noise of the one-channel photo
    assert torch.equal(noisy1, noisy[:, :1]) and torch.equal(target1, target[:, :1])


def test_grey_target_matches_pil_luminance() -> None:
    from PIL import Image

    rgb = torch.randint(0, 256, (1, 3, 24, 24), generator=_gen(23)).float() / 255
    arr = (rgb[0] * 255).round().byte().permute(1, 2, 0).numpy()
    pil = torch.from_numpy(np.asarray(Image.fromarray(arr, "RGB").convert("L"), dtype=np.float32)) / 255
    ours = GreyNoise.grey_clean(rgb)[0, 0]
    assert (ours - pil).abs().max().item() <= 1 / 255 + 1e-6  # PIL's fixed-point rounding may differ by one level
    assert (ours == pil).float().mean().item() > 0.95
    assert torch.equal(luminance(rgb[:, :1]), rgb[:, :1])


def test_colour_components_keep_the_clean_target() -> None:
    clean = torch.rand(3, 3, 12, 12, generator=_gen(24))
    for spec in ("awgn:25:clip8", "camera:jpeg=1", "poisson-gaussian"):
        noisy, target = make_noise(spec).pair(clean, _gen(25))
        assert torch.equal(target, clean)
        assert not bool(_identical_channels(noisy).any())


@pytest.mark.parametrize("spec", [c.rsplit("=", 1)[0] for c in USERS_FILES_NOISE[4:].split(",")] + [USERS_FILES_NOISE])
def test_users_files_components_land_on_the_8bit_grid(spec: str) -> None:
    clean = torch.rand(6, 3, 16, 16, generator=_gen(26))
    noisy, target = make_noise(spec).pair(clean, _gen(27))
    assert noisy.min() >= 0 and noisy.max() <= 1
    assert torch.equal(noisy * 255, torch.round(noisy * 255))
    assert torch.equal(noisy, clip8(noisy))


def test_users_files_mix_has_every_component_clip8_and_grey() -> None:
    model = make_noise(USERS_FILES_NOISE)
    assert isinstance(model, MixNoise)
    assert all(c.finish == "clip8" for c in model.components)
    kinds = [type(c.inner if isinstance(c, GreyNoise) else c).__name__ for c in model.components]
    assert sorted(kinds) == ["AWGN", "AWGN", "CameraNoise", "PoissonGaussian"]
    grey = [c for c in model.components if isinstance(c, GreyNoise)]
    assert len(grey) == 1 and isinstance(grey[0].inner, AWGN) and grey[0].inner.sigma == (0.0, 55.0)
    camera = next(c for c in model.components if isinstance(c, CameraNoise))
    assert camera.jpeg > 0


def test_users_files_mix_proportions() -> None:
    model = make_noise(USERS_FILES_NOISE)
    assert isinstance(model, MixNoise)
    weights = torch.tensor(model.weights) / sum(model.weights)
    n = 20000
    counts = torch.bincount(model.pick(n, _gen(28), torch.empty(0)), minlength=len(weights)).float()
    tolerance = 4 * torch.sqrt(weights * (1 - weights) / n)  # 4 binomial standard deviations
    assert bool(((counts / n - weights).abs() < tolerance).all()), (counts / n, weights)
    # on real outputs: exactly the grey pick gives channel-identical images (colour inputs)
    grey_k = next(k for k, c in enumerate(model.components) if isinstance(c, GreyNoise))
    m = 300
    clean = 0.2 + 0.6 * torch.rand(m, 3, 8, 8, generator=_gen(29))
    picked = model.pick(m, _gen(30), clean)
    identical = _identical_channels(model(clean, _gen(30)))
    assert torch.equal(identical, picked == grey_k)
    share = identical.float().mean().item()
    sd = math.sqrt(weights[grey_k].item() * (1 - weights[grey_k].item()) / m)
    assert abs(share - weights[grey_k].item()) < 4 * sd


def test_grey_spec_errors() -> None:
    assert make_noise("awgn:25:gray:clip8").spec == "awgn:25:grey:clip8"
    with pytest.raises(ValueError):
        GreyNoise(inner=AWGN(sigma=(25.0, 25.0), finish="clip8"))
    with pytest.raises(ValueError):
        GreyNoise(inner=make_noise("mix:awgn:5=1,awgn:9=1"))


def test_noisy_patches_use_grey_targets(tmp_path) -> None:
    from PIL import Image

    from invdn.training.data import ImageFolder, NoisyPatches

    rng = np.random.default_rng(31)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (20, 20, 3), dtype=np.uint8), "RGB").save(tmp_path / f"{i}.png")
    folder = ImageFolder(tmp_path, patch_size=16, seed=1)
    grey = NoisyPatches(folder, "awgn:0-55:grey:clip8")
    colour = NoisyPatches(folder, "awgn:0-55:clip8")
    for i in range(len(folder)):
        noisy, target = grey[i]
        assert bool(_identical_channels(noisy[None]).all()) and bool(_identical_channels(target[None]).all())
        assert torch.equal(target, GreyNoise.grey_clean(folder[i][None])[0].expand(3, -1, -1))
        noisy_c, target_c = colour[i]
        assert torch.equal(target_c, folder[i])
        assert not bool(_identical_channels(noisy_c[None]).any())
    a, b = grey[1], grey[1]
    assert torch.equal(a[0], b[0])  # seeded per (seed, epoch, index)


def _lag1(noise: torch.Tensor) -> float:
    """Correlation of horizontally neighbouring pixels of a (C, H, W) noise field."""
    a, b = noise[:, :, :-1].flatten(), noise[:, :, 1:].flatten()
    return float(torch.corrcoef(torch.stack([a, b]))[0, 1])


def test_correlated_noise_has_its_std_and_correlations() -> None:
    clean = _flat([0.5, 0.5], 192)
    for r, rho in ((0.5, 0.0), (2.0, 0.6)):
        noise = make_noise(f"corr:sigma=20:r={r}:rho={rho}")(clean, _gen(30)) - clean
        assert noise.std().item() * 255 == pytest.approx(20, rel=0.05)  # the level does not depend on the blur
        assert abs(noise.mean().item() * 255) < 1.0
        for i in range(2):
            assert _channel_corr(noise[i]) == pytest.approx(rho, abs=0.06)
    wide = make_noise("corr:sigma=20:r=2:rho=0")(clean, _gen(31)) - clean
    narrow = make_noise("corr:sigma=20:r=0.5:rho=0")(clean, _gen(31)) - clean
    awgn = make_noise("awgn:20")(clean, _gen(31)) - clean
    assert abs(_lag1(awgn[0])) < 0.03
    assert 0.15 < _lag1(narrow[0]) < 0.5 < 0.85 < _lag1(wide[0])  # neighbours share more of a wider blur
    # no border effect: the corner pixels carry the same level as the middle
    assert wide[:, :, :8, :8].std().item() * 255 == pytest.approx(20, rel=0.35)
