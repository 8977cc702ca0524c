"""invdn.inference.engine: tiles that blend without seams, determinism under a seed, devices and precisions."""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from skimage import data
from torch import nn

import invdn.inference.engine as inference
from invdn.eval.metrics import psnr
from invdn.inference.engine import (
    DEFAULT_OVERLAP,
    Denoiser,
    InferenceSetupError,
    balanced_tile,
    check_precision,
    model_min_tile,
    resolve_device,
    tile_positions,
    tile_seed,
    tile_windows,
)
from invdn.models import registry
from invdn.models.danet import DANetConfig, UNetD
from invdn.models.invdn import InvDN, InvDNConfig
from invdn.models.weights import load


class BlurStub(nn.Module):
    """A smooth 'denoiser' with a wide receptive field and zero padding, so tile borders would show."""

    model_type = "blur-stub"
    pretrained = False

    def __init__(self, repeats: int = 8) -> None:
        super().__init__()
        taps = torch.exp(-(torch.arange(-2, 3, dtype=torch.float32) ** 2) / 2)
        kernel = taps[:, None] * taps[None, :]
        self.register_buffer("kernel", (kernel / kernel.sum()).expand(3, 1, 5, 5).clone())
        self.repeats = repeats
        self.seen: list[tuple[int, ...]] = []

    def denoise(self, x: torch.Tensor, **kwargs: object) -> torch.Tensor:
        self.seen.append(tuple(x.shape))
        for _ in range(self.repeats):
            x = F.conv2d(x, self.kernel, padding=2, groups=3)
        return x


@pytest.fixture(scope="module")
def noisy_and_clean() -> tuple[np.ndarray, np.ndarray]:
    clean = data.astronaut().astype(np.float32) / 255  # 512 x 512 RGB
    noise = np.random.default_rng(0).normal(0, 25 / 255, clean.shape).astype(np.float32)
    return np.clip(clean + noise, 0, 1), clean


@pytest.fixture(autouse=True)
def _few_threads() -> None:
    torch.set_num_threads(1)


@pytest.mark.parametrize(("length", "tile", "overlap"), [(512, 128, 32), (500, 96, 16), (100, 100, 8), (60, 128, 32)])
def test_tiles_cover_the_image_with_the_overlap(length: int, tile: int, overlap: int) -> None:
    positions = tile_positions(length, tile, overlap)
    size = min(tile, length)
    assert positions[0] == 0 and positions[-1] + size == length
    for before, after in zip(positions, positions[1:], strict=False):
        assert before + size - after >= overlap
    total = np.zeros(length)
    for start, window in zip(positions, tile_windows(positions, size), strict=True):
        assert window.min() > 0
        total[start : start + size] += window
    np.testing.assert_allclose(total, 1.0, atol=1e-5)  # raised-cosine ramps form a partition of unity


def test_tiled_matches_untiled_within_005_db(noisy_and_clean: tuple[np.ndarray, np.ndarray]) -> None:
    noisy, clean = noisy_and_clean
    model = BlurStub()
    whole = Denoiser(model, device="cpu", tile=1024)(noisy)
    tiled = Denoiser(model, device="cpu", tile=128, overlap=32)(noisy)
    assert abs(psnr(tiled, clean) - psnr(whole, clean)) < 0.05
    assert psnr(tiled, whole) > 50
    # the check can fail: without overlap the tile borders cost far more than 0.05 dB
    seams = Denoiser(model, device="cpu", tile=128, overlap=0)(noisy)
    assert psnr(whole, clean) - psnr(seams, clean) > 0.05


def test_tiled_matches_untiled_with_danet(noisy_and_clean: tuple[np.ndarray, np.ndarray]) -> None:
    noisy, clean = noisy_and_clean
    torch.manual_seed(0)
    model = UNetD()  # the published size (random init): a deep U-Net with a wide receptive field
    whole = Denoiser(model, device="cpu", tile=512)(noisy)
    tiled = Denoiser(model, device="cpu", tile=192, overlap=32)(noisy)
    assert abs(psnr(tiled, clean) - psnr(whole, clean)) < 0.05


@pytest.mark.parametrize(
    "name", ["invdn", "danet-r", pytest.param("invdn-paper", marks=pytest.mark.slow)]
)
def test_tiled_matches_untiled_with_shipped_weights(name: str, noisy_and_clean: tuple[np.ndarray, np.ndarray]) -> None:
    model = load(name)
    if not model.pretrained:
        pytest.skip(f"no trained {name} weights shipped")
    noisy, clean = noisy_and_clean
    whole = Denoiser(model, device="cpu", tile=512)(noisy, seed=0)
    assert psnr(whole, clean) > psnr(noisy, clean) + 3  # it does denoise
    if registry.spec_of(model).max_tile is None:
        # 192-pixel tiles (or the model's smallest automatic ones), overlapping by the model's own default, agree
        # with the whole image
        tiled = Denoiser(model, device="cpu", tile=max(192, model_min_tile(model)))(noisy, seed=0)
        assert abs(psnr(tiled, clean) - psnr(whole, clean)) < 0.05
    else:
        # weights that do better on tiles near their training patches: the registry's measured claim holds here
        tiled = Denoiser(model, device="cpu")(noisy, seed=0)
        assert psnr(tiled, clean) - psnr(whole, clean) > 0.1


def test_overlap_and_smallest_auto_tile_come_from_the_model() -> None:
    invdn, danet = InvDN(InvDNConfig(blocks_per_level=1, hidden=8)), UNetD(DANetConfig(wf=4))
    assert Denoiser(invdn, device="cpu").overlap == registry.get("invdn-paper").tile_overlap == 16
    assert Denoiser(danet, device="cpu").overlap == registry.get("danet-r").tile_overlap == 16
    assert Denoiser(BlurStub(), device="cpu").overlap == DEFAULT_OVERLAP
    assert Denoiser(invdn, device="cpu", overlap=0).overlap == 0  # an explicit overlap wins
    with pytest.raises(ValueError, match="overlap 32"):
        Denoiser(danet, device="cpu", tile=64, overlap=32)


def test_the_largest_automatic_tile_comes_from_the_model(monkeypatch: pytest.MonkeyPatch) -> None:
    danet = UNetD(DANetConfig(wf=4))
    spec = registry.spec_of(danet)
    capped = dataclasses.replace(spec, min_tile=128, max_tile=192)
    monkeypatch.setattr(registry, "spec_of", lambda model: capped if model is danet else None)
    assert Denoiser(danet, device="cpu").auto_tile_size() == 192  # memory would allow far more
    assert Denoiser(danet, device="cpu", tile=512).tile_size() == 512  # an explicit tile wins
    monkeypatch.setattr(registry, "spec_of", lambda model: dataclasses.replace(capped, max_tile=None))
    assert Denoiser(danet, device="cpu").auto_tile_size() > 192
    monkeypatch.setattr(registry, "spec_of", lambda model: dataclasses.replace(capped, max_tile=64))
    assert Denoiser(danet, device="cpu").auto_tile_size() == 128  # never below the smallest


def test_a_tile_off_the_models_multiple_is_rounded_down_to_it() -> None:
    assert balanced_tile(1000, 100, 32, 16) == 96  # DANet-R pads to 16: no tile padded
    assert balanced_tile(1000, 10, 0, 16) == 10  # smaller than the multiple: kept
    assert balanced_tile(4000, 864, 32, 8) == 832


def test_tiles_go_to_the_model_one_at_a_time() -> None:
    model = BlurStub(repeats=1)
    pixels = np.random.default_rng(1).random((300, 200, 3), dtype=np.float32)
    out = Denoiser(model, device="cpu", tile=96, overlap=16)(pixels)
    assert out.shape == pixels.shape and out.dtype == np.float32
    assert len(model.seen) == len(tile_positions(300, 96, 16)) * len(tile_positions(200, 96, 16))
    assert len(set(model.seen)) == 1  # one tile shape (balanced so overlaps stay near `overlap`)
    _, _, th, tw = model.seen[0]
    assert th <= 96 and tw <= 96 and (th, tw) == (balanced_tile(300, 96, 16, 1), balanced_tile(200, 96, 16, 1))


def test_grey_runs_through_the_colour_model_and_is_averaged() -> None:
    class ChannelMix(nn.Module):
        model_type = "mix"

        def denoise(self, x: torch.Tensor, **kwargs: object) -> torch.Tensor:
            return x * torch.tensor([0.2, 0.5, 0.8]).view(1, 3, 1, 1)

    grey = np.random.default_rng(2).random((40, 50, 1), dtype=np.float32)
    out = Denoiser(ChannelMix(), device="cpu")(grey)
    assert out.shape == (40, 50, 1)
    np.testing.assert_allclose(out, grey * 0.5, atol=1e-6)


def test_same_seed_same_output_with_invdn() -> None:
    torch.manual_seed(0)
    model = InvDN(InvDNConfig(blocks_per_level=1, hidden=8))
    pixels = np.random.default_rng(3).random((90, 110, 3), dtype=np.float32)
    denoiser = Denoiser(model, device="cpu", tile=64, overlap=16)
    first = denoiser(pixels, samples=2, seed=7)
    assert first.shape == pixels.shape and 0 <= first.min() and first.max() <= 1
    np.testing.assert_array_equal(denoiser(pixels, samples=2, seed=7), first)
    torch.manual_seed(123)  # the global RNG plays no part
    np.testing.assert_array_equal(Denoiser(model, device="cpu", tile=64, overlap=16)(pixels, samples=2, seed=7), first)
    assert not np.array_equal(denoiser(pixels, samples=2, seed=8), first)


def test_tile_seeds_depend_on_position_not_order() -> None:
    seeds = {tile_seed(0, top, left) for top in range(0, 1000, 100) for left in range(0, 1000, 100)}
    assert len(seeds) == 100
    assert tile_seed(5, 100, 200) == tile_seed(5, 100, 200) != tile_seed(6, 100, 200)


def test_danet_gets_the_ensemble_option() -> None:
    torch.manual_seed(0)
    model = UNetD(DANetConfig(wf=4, depth=2))
    pixels = np.random.default_rng(4).random((32, 40, 3), dtype=np.float32)
    plain = Denoiser(model, device="cpu")(pixels)
    ensembled = Denoiser(model, device="cpu")(pixels, ensemble=True)
    assert plain.shape == ensembled.shape and not np.array_equal(plain, ensembled)


def test_rejects_bad_shapes_and_tiles() -> None:
    denoiser = Denoiser(BlurStub(), device="cpu")
    with pytest.raises(ValueError, match="pixels"):
        denoiser(np.zeros((8, 8, 4), np.float32))
    with pytest.raises(ValueError, match="tile"):
        Denoiser(BlurStub(), device="cpu", tile=40, overlap=32)


def test_auto_tile_size_is_bounded() -> None:
    side = Denoiser(BlurStub(), device="cpu").auto_tile_size()
    assert 96 <= side <= inference.MAX_AUTO_TILE["cpu"] and side % 32 == 0


def test_devices_resolve_or_name_the_cause(monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type in ("cpu", "cuda", "mps")
    with pytest.raises(InferenceSetupError, match="unknown device"):
        resolve_device("tpu")
    monkeypatch.setattr(torch.backends.cuda, "is_built", lambda: False)
    with pytest.raises(InferenceSetupError, match="built without CUDA"):
        resolve_device("cuda")
    monkeypatch.setattr(torch.backends.cuda, "is_built", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(InferenceSetupError, match="no CUDA device is usable"):
        resolve_device("cuda")
    monkeypatch.setattr(torch.backends.mps, "is_built", lambda: False)
    with pytest.raises(InferenceSetupError, match="without MPS"):
        resolve_device("mps")


def test_precision_checked_on_the_device(monkeypatch: pytest.MonkeyPatch) -> None:
    cpu = torch.device("cpu")
    assert check_precision(cpu, "fp32") == torch.float32
    with pytest.raises(InferenceSetupError, match="unknown precision"):
        check_precision(cpu, "int8")

    def no_low_precision(*args: object, **kwargs: object) -> torch.Tensor:
        raise RuntimeError("\"slow_conv2d_cpu\" not implemented for 'BFloat16'")

    monkeypatch.setattr(torch.nn.functional, "conv2d", no_low_precision)
    with pytest.raises(InferenceSetupError, match="bf16 not supported on this CPU"):
        check_precision(cpu, "bf16")


def test_bf16_on_cpu_close_to_fp32() -> None:
    try:
        check_precision(torch.device("cpu"), "bf16")
    except InferenceSetupError as exc:
        pytest.skip(str(exc))
    pixels = np.random.default_rng(5).random((64, 64, 3), dtype=np.float32)
    exact = Denoiser(BlurStub(), device="cpu")(pixels)
    low = Denoiser(BlurStub(), device="cpu", precision="bf16")(pixels)
    assert np.abs(exact - low).max() < 0.02


needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@needs_cuda
def test_cuda_matches_cpu_and_runs_low_precision() -> None:
    torch.manual_seed(0)
    model = UNetD(DANetConfig(wf=8, depth=3))
    pixels = np.random.default_rng(6).random((200, 300, 3), dtype=np.float32)
    on_cpu = Denoiser(copy.deepcopy(model), device="cpu", tile=128)(pixels)
    on_gpu = Denoiser(copy.deepcopy(model), device="cuda", tile=128)(pixels)
    assert np.abs(on_cpu - on_gpu).max() < 5e-3  # TF32 convolutions differ slightly
    for precision in ("fp16", "bf16"):
        low = Denoiser(copy.deepcopy(model), device="cuda", precision=precision, tile=128)(pixels)
        assert low.dtype == np.float32 and np.abs(low - on_cpu).max() < 0.05, precision


@needs_cuda
def test_cuda_invdn_seeded_and_tiles_only_on_the_gpu() -> None:
    torch.manual_seed(0)
    model = InvDN(InvDNConfig(blocks_per_level=2, hidden=16))
    pixels = np.random.default_rng(7).random((1200, 1000, 3), dtype=np.float32)
    denoiser = Denoiser(model, device="cuda", tile=256, overlap=32)
    torch.cuda.reset_peak_memory_stats()
    first = denoiser(pixels, samples=2, seed=3)
    peak = torch.cuda.max_memory_allocated()
    np.testing.assert_array_equal(denoiser(pixels, samples=2, seed=3), first)
    assert peak < pixels.nbytes  # the whole image never sat on the GPU
