"""benchmarks/texture_set.py: the held-out grey texture set, written as one-channel PNGs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import skimage.data
from helpers import load_script
from PIL import Image


def test_writes_each_sample_photo_as_an_identical_one_channel_png(tmp_path: Path) -> None:
    script = load_script("benchmarks/texture_set.py", "texture_set")
    (tmp_path / "keep.txt").write_text("mine")
    paths = script.write_set(tmp_path)
    assert [p.name for p in paths] == [f"{n}.png" for n in script.NAMES]
    assert "camera" not in script.NAMES  # Set12's image 01
    for name, path in zip(script.NAMES, paths, strict=True):
        with Image.open(path) as im:
            assert im.mode == "L"
            np.testing.assert_array_equal(np.asarray(im), getattr(skimage.data, name)())
    assert (tmp_path / "keep.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["keep.txt", *(p.name for p in paths)])
