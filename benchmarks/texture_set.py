"""Write a small held-out set of grey texture photos for `invdn eval`: the regular textures where BM3D's block matching
beats the models (Set12's Barbara), from images that are in no training or test set of ours.

The images are scikit-image's sample photos (``skimage.data``, shipped with the package): brick, grass, gravel,
moon and coins, 8-bit grey, written as one-channel PNGs so that ``invdn eval`` reads them as grey files. The
cameraman is left out (it is Set12's image 01). Use it to choose between weights without reading a test set:

    python benchmarks/texture_set.py runs/texture
    invdn eval --dataset runs/texture --sigma 25 --clip8 --model invdn --weights invdn=FILE

BM3D's rows come with ``--bm3d`` (the default), oracle sigma, as on Set12.
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import numpy as np
import skimage.data
from PIL import Image

from invdn.io.atomic import write_atomic

NAMES = ("brick", "grass", "gravel", "moon", "coins")


def write_set(folder: Path) -> list[Path]:
    """Write the set's PNGs into `folder` (created if missing; existing files of the same names are replaced
    atomically, others left alone); returns their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in NAMES:
        pixels = np.asarray(getattr(skimage.data, name)())
        if pixels.dtype != np.uint8 or pixels.ndim != 2:
            raise ValueError(f"skimage.data.{name} is not an 8-bit grey image: {pixels.dtype} {pixels.shape}")
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="PNG")
        path = folder / f"{name}.png"
        write_atomic(path, buffer.getvalue(), overwrite=True)
        paths.append(path)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path, help="folder to write the PNGs into (outside the project's data)")
    args = parser.parse_args()
    for path in write_set(args.folder):
        print(path)


if __name__ == "__main__":
    main()
