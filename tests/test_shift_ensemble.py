"""benchmarks/shift_ensemble.py: cycle spinning maps every shifted and flipped estimate back onto the image."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import load_script
from PIL import Image
from torch import nn


@pytest.fixture(scope="module")
def se():
    return load_script("benchmarks/shift_ensemble.py", "shift_ensemble")


class GridDependent(nn.Module):
    """Replaces each 4x4 block (from the top-left corner) by its mean: depends on where the grid falls."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        pooled = nn.functional.avg_pool2d(x[..., : h - h % 4, : w - w % 4], 4)
        out = x.clone()
        out[..., : h - h % 4, : w - w % 4] = nn.functional.interpolate(pooled, scale_factor=4, mode="nearest")
        return out


def test_every_variant_of_an_equivariant_model_is_the_model(se) -> None:
    x = torch.rand(1, 3, 13, 18, generator=torch.Generator().manual_seed(0))
    for shifts, flips in se.VARIANTS.values():
        torch.testing.assert_close(se.shifted_average(nn.Identity(), x, shifts, flips), x)
        torch.testing.assert_close(se.shifted_average(lambda t: 2 * t, x, shifts, flips), 2 * x)


def test_shifts_average_the_grid_phases(se) -> None:
    x = torch.rand(1, 1, 16, 16, generator=torch.Generator().manual_seed(1))
    model = GridDependent()
    one = se.shifted_average(model, x, ((0, 0),), 1)
    torch.testing.assert_close(one, model(x))
    shifted = se.shifted_average(model, x, ((1, 1),), 1)  # blocks offset by one pixel: a different estimate
    assert not torch.allclose(shifted, one)
    # away from the padded border, the (1, 1) estimate is the block mean of the grid that starts at pixel 3
    want = nn.functional.avg_pool2d(x[..., 3:15, 3:15], 4)
    torch.testing.assert_close(shifted[..., 3:15:4, 3:15:4], want)


def test_cli_reports_each_variant_on_grey_files(se, tmp_path: Path, capsys) -> None:
    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray(rng.integers(0, 256, (24, 20), dtype=np.uint8)).save(tmp_path / f"{i}.png")
    report = se.main(["--dataset", str(tmp_path), "--sigma", "25", "--threads", "1", "--json"])
    printed = json.loads(capsys.readouterr().out)
    assert printed["variants"].keys() == se.VARIANTS.keys() and printed["cpu_capability"]
    assert [v["passes"] for v in report["variants"].values()] == [1, 4, 8, 32]
    assert report["grey"]  # one-channel files: evaluated as grey, as `invdn eval` does
    for v in report["variants"].values():
        assert set(v["images"]) == {"0", "1"} and v["psnr"] == pytest.approx(np.mean(list(v["images"].values())))
