"""benchmarks/second_pass.py: one pass against a second pass over the model's own 8-bit output."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers import load_script
from PIL import Image


class Halve:
    """A stub 'denoiser' that moves every pixel halfway to mid-grey."""

    def __call__(self, pixels: np.ndarray, seed: int = 0) -> np.ndarray:
        return 0.5 * pixels + 0.25


def test_passes_scores_the_second_pass_on_the_first_ones_8bit_output() -> None:
    script = load_script("benchmarks/second_pass.py", "second_pass")
    clean = np.full((8, 8, 3), 128, dtype=np.uint8)
    noisy = np.full((8, 8, 3), 0.0, dtype=np.float32)
    p_noisy, once, twice = script.passes(Halve(), noisy, clean)
    # 0 -> 0.25 (64) -> 0.375 (96): each pass moves closer to the clean 128
    assert p_noisy < once < twice
    assert once == pytest.approx(10 * np.log10(255**2 / 64**2), abs=1e-6)
    assert twice == pytest.approx(10 * np.log10(255**2 / 32**2), abs=1e-6)


def test_cli_on_real_pairs(tmp_path: Path, capsys) -> None:
    script = load_script("benchmarks/second_pass.py", "second_pass")
    rng = np.random.default_rng(0)
    for sub in ("noisy", "clean"):
        (tmp_path / sub).mkdir()
    clean = rng.integers(60, 200, (40, 44, 3), dtype=np.uint8)
    noisy = np.clip(clean + rng.normal(0, 12, clean.shape), 0, 255).round().astype(np.uint8)
    Image.fromarray(clean).save(tmp_path / "clean" / "a.png")
    Image.fromarray(noisy).save(tmp_path / "noisy" / "a.png")
    assert script.main(["--pairs", str(tmp_path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["images"] == 1 and out["per_image"][0][0] == "a"
    assert out["psnr_noisy"] == pytest.approx(out["per_image"][0][1], abs=1e-3)
    with pytest.raises(SystemExit):
        script.main([])  # neither --pairs nor --dataset
