"""benchmarks/real_pairs.py: statistics of a real pair's difference beside a level-matched synthetic twin."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import load_script
from PIL import Image
from scipy.ndimage import gaussian_filter

from invdn.training.camera import soften
from invdn.training.noise import USERS_FILES_NOISE, make_noise


@pytest.fixture(scope="module")
def script():
    return load_script("benchmarks/real_pairs.py", "real_pairs")


def _scene(rng: np.random.Generator, size: int = 96, texture: float = 0.0) -> np.ndarray:
    """An (H, W, 3) picture on the 0-255 scale: smooth shading, an edge and fine texture of this amplitude (a
    least-squares filter fit needs texture: on smooth content the neighbours are nearly collinear)."""
    base = gaussian_filter(rng.uniform(40, 210, (size, size, 3)), (3, 3, 0))
    base += rng.uniform(-texture, texture, base.shape)
    base[size // 3 :, : size // 2] += 30.0
    return np.clip(base, 0, 255)


def test_white_noise_has_no_structure(script) -> None:
    rng = np.random.default_rng(0)
    clean = _scene(rng, texture=25)
    stats = script.difference_stats(clean, clean + rng.normal(0, 8, clean.shape))
    assert stats["sd"] == pytest.approx(8, rel=0.05)
    for key in ("lag1", "lag2", "chan", "arm"):
        assert abs(stats[key]) < 0.05, key
    assert stats["edge"] == pytest.approx(1.0, abs=0.15)
    assert stats["centre"] == pytest.approx(1.0, abs=0.05)


def test_softness_recovers_the_cross_filter(script) -> None:
    rng = np.random.default_rng(1)
    clean = rng.uniform(0, 255, (64, 64, 3))
    soft = soften(torch.from_numpy(clean.transpose(2, 0, 1))[None], torch.tensor([0.12]))[0].numpy()
    centre, arm = script.softness(clean, soft.transpose(1, 2, 0) + rng.normal(0, 2, clean.shape))
    assert centre == pytest.approx(1 - 4 * 0.12, abs=0.02)
    assert arm == pytest.approx(0.12, abs=0.01)


def test_picture_dependent_difference_shows_at_edges(script) -> None:
    rng = np.random.default_rng(2)
    clean = _scene(rng)
    shifted = np.roll(clean, 1, axis=1)  # a one-pixel misregistration: the difference sits on the edges
    stats = script.difference_stats(clean, shifted + rng.normal(0, 2, clean.shape))
    assert stats["edge"] > 3
    # a shift is a linear filter of the reference: taking out the fitted 5x5 filter leaves only the noise
    assert stats["edge_fit"] == pytest.approx(1.0, abs=0.3)


def test_filter_residual_removes_a_linear_filter(script) -> None:
    rng = np.random.default_rng(5)
    clean = _scene(rng, 48, texture=20)
    blurred = gaussian_filter(clean, (0.7, 0.7, 0)) + 3.0
    residual = script.filter_residual(clean, blurred, 2)
    assert residual.shape == (44, 44, 3)
    assert np.abs(residual[4:-4, 4:-4]).max() < 0.5


def test_matched_twin_has_the_asked_level(script) -> None:
    rng = np.random.default_rng(3)
    clean = _scene(rng, 64) / 255.0
    twin = make_noise("camera:chroma=2:clip8")
    for sd in (3.0, 9.0):
        out = script.matched_twin(clean, sd, twin, seed=0)
        assert out.shape == clean.shape
        assert float((out - clean).std()) * 255 == pytest.approx(sd, rel=0.05)
        assert np.allclose(out * 255, np.round(out * 255), atol=1e-3)  # 8-bit, as files are


def test_cli_with_a_model(tmp_path: Path, script, capsys) -> None:
    rng = np.random.default_rng(4)
    for sub in ("noisy", "clean"):
        (tmp_path / sub).mkdir()
    clean = _scene(rng, 48)
    noisy = np.clip(clean + rng.normal(0, 6, clean.shape), 0, 255)
    Image.fromarray(clean.round().astype(np.uint8)).save(tmp_path / "clean" / "a.png")
    Image.fromarray(noisy.round().astype(np.uint8)).save(tmp_path / "noisy" / "a.png")
    assert script.main(["--pairs", str(tmp_path), "--model", "invdn", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["images"] == 1 and out["per_image"][0]["name"] == "a"
    for kind in ("real", "twin"):
        assert set(out["mean"][kind]) == {*script.STATS, "gain", "blur_gain"}
        assert out["mean"][kind]["gain"] > 0  # the shipped model denoises both
    assert out["mean"]["twin"]["sd"] == pytest.approx(out["mean"]["real"]["sd"], rel=0.1)
    assert script.main(["--pairs", str(tmp_path), "--save-diff", str(tmp_path / "diff")]) == 0
    assert "| real |" in capsys.readouterr().out
    with Image.open(tmp_path / "diff" / "a.png") as diff:
        assert diff.mode == "L" and diff.size == (48, 48)
        assert abs(np.asarray(diff, dtype=np.float64).mean() - 128) < 3  # zero-mean noise around mid-grey
    with pytest.raises(SystemExit):
        script.main(["--pairs", str(tmp_path), "--twin", "awgn:5"])
    with pytest.raises(SystemExit):
        script.main(["--pairs", str(tmp_path), "--twin", "camera:shot=1e-3"])  # the level is matched, not given


def test_default_twin_is_the_training_mixs_camera(script) -> None:
    assert script.TWIN.startswith("camera:") and f"{script.TWIN}=" in USERS_FILES_NOISE
