"""Datasets: reproducible patches, grey handling, noisy pairs, paired folders, whole images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from invdn.training.data import FullImageFolder, ImageFolder, NoisyPatches, PairedFolder, list_images, read_image


def _write(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    root = tmp_path / "imgs"
    _write(root / "b.png", rng.integers(0, 256, (40, 50, 3), dtype=np.uint8))
    _write(root / "a.jpg", rng.integers(0, 256, (36, 36, 3), dtype=np.uint8))
    _write(root / "sub" / "c.png", rng.integers(0, 256, (30, 44), dtype=np.uint8))  # grey
    _write(root / "sub" / "d.tif", rng.integers(0, 256, (20, 24, 3), dtype=np.uint8))  # smaller than a patch
    (root / "notes.txt").write_text("not an image")
    return root


def test_list_images_recursive_sorted(folder: Path) -> None:
    names = [p.relative_to(folder).as_posix() for p in list_images(folder)]
    assert names == ["a.jpg", "b.png", "sub/c.png", "sub/d.tif"]
    with pytest.raises(FileNotFoundError):
        list_images(folder / "missing")


def test_grey_to_rgb_and_keep_grey(folder: Path) -> None:
    rgb = read_image(folder / "sub" / "c.png")
    assert rgb.shape == (30, 44, 3)
    assert np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2])
    grey = read_image(folder / "sub" / "c.png", grey=True)
    assert grey.shape == (30, 44, 1)
    assert np.array_equal(grey[..., 0], rgb[..., 0])
    assert read_image(folder / "b.png", grey=True).shape == (40, 50, 1)


def test_patches_shapes_and_reproducible(folder: Path) -> None:
    ds = ImageFolder(folder, patch_size=24, patches_per_image=3, seed=5)
    assert len(ds) == 12
    items = [ds[i] for i in range(len(ds))]
    assert all(x.shape == (3, 24, 24) and x.dtype == torch.float32 for x in items)
    assert all(0.0 <= x.min() and x.max() <= 1.0 for x in items)
    again = ImageFolder(folder, patch_size=24, patches_per_image=3, seed=5)
    assert all(torch.equal(a, again[i]) for i, a in enumerate(items))
    # items of the same image differ (different crops/rotations) and a new epoch changes the draws
    assert not torch.equal(items[3], items[4])
    again.set_epoch(1)
    assert sum(torch.equal(a, again[i]) for i, a in enumerate(items)) < 4
    other_seed = ImageFolder(folder, patch_size=24, patches_per_image=3, seed=6)
    assert sum(torch.equal(a, other_seed[i]) for i, a in enumerate(items)) < 4


def test_patch_is_a_crop_of_the_image_up_to_dihedral(folder: Path) -> None:
    ds = ImageFolder(folder, patch_size=16, seed=1)
    full = ds.image(1)  # b.png
    patch = ds[1]
    windows = full.unfold(1, 16, 1).unfold(2, 16, 1)  # (3, H', W', 16, 16): every 16x16 crop
    found = False
    for flipped in (patch, torch.flip(patch, dims=(-1,))):
        for rot in range(4):
            q = torch.rot90(flipped, rot, dims=(-2, -1))
            found = found or bool((windows == q[:, None, None]).all(dim=(0, 3, 4)).any())
    assert found
    assert not bool((windows == torch.rand(3, 16, 16)[:, None, None]).all(dim=(0, 3, 4)).any())


def test_workers_do_not_change_items(folder: Path) -> None:
    ds = ImageFolder(folder, patch_size=16, patches_per_image=2, seed=3)
    direct = torch.stack([ds[i] for i in range(len(ds))])
    loaded = torch.cat(list(DataLoader(ds, batch_size=3, num_workers=2)))
    assert torch.equal(direct, loaded)


def test_noisy_patches_pairs(folder: Path) -> None:
    ds = NoisyPatches(ImageFolder(folder, patch_size=20, seed=2), "awgn:25")
    noisy, clean = ds[1]
    assert noisy.shape == clean.shape == (3, 20, 20)
    assert torch.equal(clean, ds.clean[1])
    assert (noisy - clean).std().item() * 255 == pytest.approx(25, rel=0.2)
    noisy2, _ = NoisyPatches(ImageFolder(folder, patch_size=20, seed=2), "awgn:25")[1]
    assert torch.equal(noisy, noisy2)
    ds.set_epoch(1)
    assert not torch.equal(ds[1][0], noisy)
    grey = NoisyPatches(ImageFolder(folder, patch_size=20, grey=True), "awgn:15")
    assert grey[0][0].shape == (1, 20, 20)


def _paired(tmp_path: Path, clean_names: list[str], noisy_names: list[str]) -> Path:
    rng = np.random.default_rng(1)
    root = tmp_path / "pairs"
    for n in clean_names:
        _write(root / "clean" / n, rng.integers(0, 256, (16, 18, 3), dtype=np.uint8))
    for n in noisy_names:
        _write(root / "noisy" / n, rng.integers(0, 256, (16, 18, 3), dtype=np.uint8))
    return root


def test_paired_folder_matches_names(tmp_path: Path) -> None:
    root = _paired(tmp_path, ["x.png", "y.png"], ["x.png", "y.png"])
    ds = PairedFolder(root)
    assert [ds[i]["name"] for i in range(len(ds))] == ["x", "y"]
    item = ds[0]
    assert item["noisy"].shape == item["clean"].shape == (3, 16, 18)
    assert not torch.equal(item["noisy"], item["clean"])
    crop = PairedFolder(root, patch_size=8, augment=True)[1]
    assert crop["noisy"].shape == (3, 8, 8)


def test_paired_folder_name_mismatch_is_a_clear_error(tmp_path: Path) -> None:
    root = _paired(tmp_path, ["x.png", "y.png"], ["x.png", "z.png"])
    with pytest.raises(ValueError, match=r"only in noisy/ \(1\): z(.|\n)*only in clean/ \(1\): y"):
        PairedFolder(root)
    with pytest.raises(FileNotFoundError, match="noisy"):
        PairedFolder(tmp_path / "nowhere")


def test_full_image_folder_deterministic_noise(folder: Path) -> None:
    ds = FullImageFolder(folder, noise="awgn:25", limit=2)
    assert len(ds) == 2 and ds.seed_key == "imgs"
    item = ds[1]
    assert item["name"] == "b" and item["clean"].shape == (3, 40, 50)
    again = FullImageFolder(folder, noise="awgn:25", limit=2)[1]
    assert torch.equal(item["noisy"], again["noisy"])
    other_sigma = FullImageFolder(folder, noise="awgn:15", limit=2)[1]
    # noise is seeded per (dataset, name, spec): sigma 15 is not the sigma 25 draw rescaled
    z25 = (item["noisy"] - item["clean"]) / 25
    z15 = (other_sigma["noisy"] - item["clean"]) / 15
    assert not torch.allclose(z25, z15, atol=1e-3)
    assert "noisy" not in FullImageFolder(folder)[0]


def test_several_folders_concatenate(folder: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    _write(other / "e.png", np.zeros((30, 30, 3), dtype=np.uint8))
    ds = ImageFolder([folder, other], patch_size=8, augment=False)
    assert len(ds) == 5 and ds.files[-1].name == "e.png"
    assert ds[4].abs().sum() == 0
    with pytest.raises(ValueError):
        ImageFolder([])


@pytest.fixture()
def ramp(tmp_path: Path) -> Path:
    """One 160x256 image whose value is its column index: a patch's horizontal slope is its scale's inverse."""
    row = np.arange(256, dtype=np.uint8)
    _write(tmp_path / "ramp" / "r.png", np.repeat(np.repeat(row[None, :, None], 160, axis=0), 3, axis=2))
    return tmp_path / "ramp"


def _slope(patch: torch.Tensor) -> float:
    """Mean step between horizontal neighbours, in 8-bit levels, away from the borders."""
    return float((patch[:, 4:-4, 5:-4] - patch[:, 4:-4, 4:-5]).mean() * 255)


def test_scales_shrink_the_picture(ramp: Path) -> None:
    plain = ImageFolder(ramp, patch_size=32, patches_per_image=4, augment=False)
    assert all(_slope(plain[i]) == pytest.approx(1.0, abs=0.01) for i in range(4))
    half = ImageFolder(ramp, patch_size=32, patches_per_image=4, augment=False, scales=(0.5,))
    for i in range(4):
        assert half[i].shape == (3, 32, 32)
        assert _slope(half[i]) == pytest.approx(2.0, abs=0.05)  # a 64-pixel crop shrunk to 32
    mixed = ImageFolder(ramp, patch_size=32, patches_per_image=24, augment=False, scales=(1.0, 0.5), seed=3)
    slopes = {round(_slope(mixed[i])) for i in range(24)}
    assert slopes == {1, 2}  # both scales drawn
    # reproducible, as every item is
    again = ImageFolder(ramp, patch_size=32, patches_per_image=24, augment=False, scales=(1.0, 0.5), seed=3)
    assert all(torch.equal(mixed[i], again[i]) for i in range(24))


def test_scales_on_images_smaller_than_the_crop(folder: Path) -> None:
    ds = ImageFolder(folder, patch_size=24, scales=(0.6,), seed=2)
    assert all(ds[i].shape == (3, 24, 24) for i in range(len(ds)))  # d.tif is 20x24: cropped, shrunk, padded


def test_scales_are_checked(folder: Path) -> None:
    for bad in ((), (0.0,), (1.5,)):
        with pytest.raises(ValueError, match="scales"):
            ImageFolder(folder, scales=bad)
