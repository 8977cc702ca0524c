"""Image datasets from folders: training patches, (noisy, clean) pairs, whole images, real-noise pairs.

Images (every format `invdn.io.formats` reads, by extension; found recursively, sorted by relative path) are
decoded by `invdn.io.decode` and load as RGB; grey images are replicated to 3 channels unless ``grey=True``,
which converts everything to one channel. Decoded images are
cached in memory (training sets are small). Every random choice (crop, flip/rotation, noise) comes from a
generator seeded by ``seed_from(seed, epoch, index)``, so results do not depend on DataLoader workers or on
iteration order; ``set_epoch(e)`` changes the draws for a new epoch.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import Dataset

from invdn.io.decode import decode_uint8
from invdn.io.errors import ImageError
from invdn.io.formats import READ_EXTENSIONS, is_image_path
from invdn.models.geometry import dihedral
from invdn.training.noise import NoiseModel, make_noise, seed_from

__all__ = [
    "list_images",
    "read_image",
    "to_tensor",
    "ImageFolder",
    "NoisyPatches",
    "PairedFolder",
    "FullImageFolder",
]


def list_images(root: str | Path) -> list[Path]:
    """All image files under ``root`` (recursive), sorted by path relative to ``root``."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder not found: {root}")
    files = [p for p in root.rglob("*") if p.is_file() and is_image_path(p)]
    files.sort(key=lambda p: p.relative_to(root).as_posix())
    if not files:
        raise FileNotFoundError(f"no images ({', '.join(sorted(READ_EXTENSIONS))}) under {root}")
    return files


def read_image(path: str | Path, grey: bool = False) -> np.ndarray:
    """Decode an image to an HxWxC uint8 array: C = 3 (grey replicated), or C = 1 when ``grey``.

    The io decoder's `decode_uint8`: EXIF orientation is applied, alpha dropped, 16-bit images are reduced to 8
    bits by rounding, colour becomes grey as Pillow's "L" conversion does. A file that cannot be read raises
    OSError naming it.
    """
    try:
        return decode_uint8(path, grey=grey)
    except (OSError, ImageError) as exc:
        raise OSError(f"cannot read image {path}: {exc}") from exc


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """HxWxC uint8 array -> (C, H, W) float32 tensor in [0, 1]."""
    return torch.from_numpy(np.array(image.transpose(2, 0, 1), dtype=np.float32)).div_(255.0)


def _crop_params(h: int, w: int, size: int, g: torch.Generator) -> tuple[int, int]:
    top = int(torch.randint(0, max(h - size, 0) + 1, (1,), generator=g))
    left = int(torch.randint(0, max(w - size, 0) + 1, (1,), generator=g))
    return top, left


def check_scales(scales: Iterable[float]) -> tuple[float, ...]:
    """Patch scales as floats; ValueError unless there is at least one and all lie in (0, 1]."""
    values = tuple(float(s) for s in scales)
    if not values or not all(0.0 < s <= 1.0 for s in values):
        raise ValueError(f"scales must be in (0, 1], got {list(values)}")
    return values


def _resize8(array: np.ndarray, scale: float) -> np.ndarray:
    """An (H, W, C) uint8 image resized by ``scale`` (bicubic, antialiased when shrinking), still uint8."""
    h, w, c = array.shape
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    planes = [np.asarray(Image.fromarray(array[..., k]).resize(size, Image.Resampling.BICUBIC)) for k in range(c)]
    return np.stack(planes, axis=-1)


def _pad_to(x: torch.Tensor, size: int) -> torch.Tensor:
    """Pad a (C, H, W) tensor at the bottom/right to at least size x size (reflect where possible)."""
    _, h, w = x.shape
    ph, pw = max(size - h, 0), max(size - w, 0)
    if not ph and not pw:
        return x
    mode = "reflect" if ph < h and pw < w else "replicate"
    return F.pad(x.unsqueeze(0), (0, pw, 0, ph), mode=mode).squeeze(0)


class _Cached:
    """Lazily decoded, memory-cached images of a list of files."""

    def __init__(self, files: list[Path], grey: bool, cache: bool) -> None:
        self.files = files
        self.grey = grey
        self.cache = cache
        self._images: dict[int, np.ndarray] = {}

    def get(self, i: int) -> np.ndarray:
        image = self._images.get(i)
        if image is None:
            image = read_image(self.files[i], grey=self.grey)
            if self.cache:
                self._images[i] = image
        return image

    def preload(self) -> None:
        """Decode every image now (before forking DataLoader workers, so they share the cache)."""
        for i in range(len(self.files)):
            self.get(i)


class ImageFolder(Dataset):
    """Clean training patches from a folder of images (or several folders, concatenated in the given order).

    Item ``i`` is a ``(C, P, P)`` float tensor: a random crop of image ``i // patches_per_image`` with a
    random flip/90-degree rotation, drawn from a generator seeded by (seed, epoch, i). ``patch_size=None``
    returns the whole image (still augmented when ``augment``). ``scales`` other than ``(1.0,)`` first draw a scale
    ``s`` per item from the list (DnCNN trained on 1, 0.9, 0.8, 0.7): the crop is ``P / s`` pixels wide and is
    resized to ``P`` (bicubic, 8-bit), so the patch shows the picture ``s`` times smaller, with denser texture.
    """

    def __init__(
        self,
        root: str | Path | Sequence[str | Path],
        patch_size: int | None = 128,
        patches_per_image: int = 1,
        augment: bool = True,
        grey: bool = False,
        cache: bool = True,
        seed: int = 0,
        scales: Sequence[float] = (1.0,),
    ) -> None:
        if patch_size is not None and patch_size < 1:
            raise ValueError("patch_size must be >= 1")
        if patches_per_image < 1:
            raise ValueError("patches_per_image must be >= 1")
        roots = [root] if isinstance(root, str | Path) else list(root)
        if not roots:
            raise ValueError("ImageFolder needs at least one folder")
        self.roots = [Path(r) for r in roots]
        self.files = [f for r in self.roots for f in list_images(r)]
        self.patch_size = patch_size
        self.patches_per_image = patches_per_image
        self.augment = augment
        self.grey = grey
        self.seed = seed
        self.scales = check_scales(scales)
        self.epoch = 0
        self._images = _Cached(self.files, grey, cache)

    def __len__(self) -> int:
        return len(self.files) * self.patches_per_image

    def set_epoch(self, epoch: int) -> None:
        """Select the random draws of this epoch."""
        self.epoch = int(epoch)

    def preload(self) -> None:
        """Decode and cache all images now."""
        self._images.preload()

    def generator(self, index: int, purpose: str = "patch") -> torch.Generator:
        """The generator for item ``index`` in the current epoch."""
        return torch.Generator().manual_seed(seed_from(self.seed, purpose, self.epoch, index))

    def image(self, i: int) -> torch.Tensor:
        """Whole image ``i`` as a (C, H, W) float tensor."""
        return to_tensor(self._images.get(i))

    def __getitem__(self, index: int) -> torch.Tensor:
        if not 0 <= index < len(self):
            raise IndexError(index)
        g = self.generator(index)
        array = self._images.get(index // self.patches_per_image)
        if self.patch_size is not None:
            size = self.patch_size
            # drawn only when there is a choice, so the default keeps its random stream
            scale = (
                self.scales[int(torch.randint(0, len(self.scales), (1,), generator=g))]
                if len(self.scales) > 1
                else self.scales[0]
            )
            crop = size if scale == 1.0 else round(size / scale)
            h, w = array.shape[:2]
            top, left = _crop_params(h, w, crop, g)
            array = array[top : top + crop, left : left + crop]  # crop before converting: cheap
            if scale != 1.0:
                array = _resize8(array, scale)
            image = _pad_to(to_tensor(array), size)
        else:
            image = to_tensor(array)
        if self.augment:
            image = dihedral(image, int(torch.randint(0, 8, (1,), generator=g)))
        return image.contiguous()


class NoisyPatches(Dataset):
    """(noisy, clean) training pairs: a clean patch from an ImageFolder plus seeded synthetic noise.

    The noise of item ``i`` in epoch ``e`` comes from a generator seeded by (seed, "noise", e, i). Grey images
    (Train400) load as three identical channels; without a ``grey`` noise component each channel still gets its
    own noise. With one (``invdn.training.noise.GreyNoise``), the patch becomes a grey photo with one noise field shared
    by its channels, and the returned clean target is that grey patch.
    """

    def __init__(self, clean: ImageFolder, noise: NoiseModel | str) -> None:
        self.clean = clean
        self.noise = make_noise(noise) if isinstance(noise, str) else noise

    def __len__(self) -> int:
        return len(self.clean)

    def set_epoch(self, epoch: int) -> None:
        """Select the random draws (patches and noise) of this epoch."""
        self.clean.set_epoch(epoch)

    def preload(self) -> None:
        """Decode and cache all images now."""
        self.clean.preload()

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        clean = self.clean[index]
        g = self.clean.generator(index, purpose="noise")
        # the target is the clean patch, or its grey version when the noise makes a grey photo (``grey``)
        noisy, target = self.noise.pair(clean.unsqueeze(0), g)
        return noisy.squeeze(0), target.squeeze(0)


def _match_pairs(noisy_root: Path, clean_root: Path) -> list[tuple[Path, Path, str]]:
    """Pair files of two folders by relative path without extension; clear error when the names differ."""

    def index(root: Path) -> dict[str, Path]:
        out: dict[str, Path] = {}
        for p in list_images(root):
            key = p.relative_to(root).with_suffix("").as_posix()
            if key in out:
                raise ValueError(f"two images named {key!r} with different extensions in {root}")
            out[key] = p
        return out

    noisy, clean = index(noisy_root), index(clean_root)
    only_noisy = sorted(set(noisy) - set(clean))
    only_clean = sorted(set(clean) - set(noisy))
    if only_noisy or only_clean:
        lines = [f"noisy/ and clean/ names do not match under {noisy_root.parent}:"]
        if only_noisy:
            lines.append(f"  only in noisy/ ({len(only_noisy)}): {', '.join(only_noisy[:5])}")
        if only_clean:
            lines.append(f"  only in clean/ ({len(only_clean)}): {', '.join(only_clean[:5])}")
        raise ValueError("\n".join(lines))
    return [(noisy[k], clean[k], k) for k in sorted(noisy)]


class PairedFolder(Dataset):
    """Real-noise pairs from ``root/noisy`` and ``root/clean`` with matching names (extensions may differ).

    Item: dict with ``noisy`` and ``clean`` (C, H, W) float tensors and ``name`` (relative path, no
    extension). With ``patch_size`` the same random crop and flip/rotation is applied to both (for training on
    real pairs).
    """

    def __init__(
        self,
        root: str | Path,
        grey: bool = False,
        patch_size: int | None = None,
        augment: bool = False,
        cache: bool = True,
        seed: int = 0,
        limit: int | None = None,
    ) -> None:
        self.root = Path(root)
        noisy_root, clean_root = self.root / "noisy", self.root / "clean"
        for sub in (noisy_root, clean_root):
            if not sub.is_dir():
                raise FileNotFoundError(f"paired folder needs {sub}/ (with noisy/ and clean/ side by side)")
        self.pairs = _match_pairs(noisy_root, clean_root)[:limit]
        self.patch_size = patch_size
        self.augment = augment
        self.seed = seed
        self.epoch = 0
        self._noisy = _Cached([p[0] for p in self.pairs], grey, cache)
        self._clean = _Cached([p[1] for p in self.pairs], grey, cache)

    def __len__(self) -> int:
        return len(self.pairs)

    def set_epoch(self, epoch: int) -> None:
        """Select the random draws of this epoch."""
        self.epoch = int(epoch)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | str]:
        if not 0 <= index < len(self):
            raise IndexError(index)
        name = self.pairs[index][2]
        noisy = to_tensor(self._noisy.get(index))
        clean = to_tensor(self._clean.get(index))
        if noisy.shape != clean.shape:
            raise ValueError(f"pair {name!r}: noisy {tuple(noisy.shape)} and clean {tuple(clean.shape)} differ")
        g = torch.Generator().manual_seed(seed_from(self.seed, "pair", self.epoch, index))
        if self.patch_size is not None:
            both = _pad_to(torch.cat([noisy, clean]), self.patch_size)
            top, left = _crop_params(both.shape[1], both.shape[2], self.patch_size, g)
            both = both[:, top : top + self.patch_size, left : left + self.patch_size]
            noisy, clean = both.split(noisy.shape[0])
        if self.augment:
            k = int(torch.randint(0, 8, (1,), generator=g))
            noisy, clean = dihedral(noisy, k), dihedral(clean, k)
        return {"noisy": noisy.contiguous(), "clean": clean.contiguous(), "name": name}


class FullImageFolder(Dataset):
    """Whole clean images for validation/evaluation, with deterministic noisy versions for a noise spec.

    Item: dict with ``clean`` (C, H, W), ``name`` (relative path without extension) and, when ``noise`` is
    given, ``noisy``: noise drawn from a generator seeded by (seed_key, name, noise spec), so every method and
    every run sees the same noisy image. ``seed_key`` defaults to the folder name (e.g. "CBSD68").
    """

    def __init__(
        self,
        root: str | Path,
        noise: NoiseModel | str | None = None,
        grey: bool = False,
        limit: int | None = None,
        seed_key: str | None = None,
        cache: bool = True,
    ) -> None:
        self.root = Path(root)
        self.files = list_images(self.root)[:limit]
        self.names = [p.relative_to(self.root).with_suffix("").as_posix() for p in self.files]
        self.noise = make_noise(noise) if isinstance(noise, str) else noise
        self.grey = grey
        self.seed_key = seed_key if seed_key is not None else self.root.resolve().name
        self._images = _Cached(self.files, grey, cache)

    def __len__(self) -> int:
        return len(self.files)

    def noisy_version(self, clean: torch.Tensor, name: str) -> torch.Tensor:
        """The deterministic noisy version of a clean (C, H, W) image (grey noised as one channel)."""
        if self.noise is None:
            raise ValueError("FullImageFolder has no noise model")
        g = torch.Generator().manual_seed(seed_from(self.seed_key, name, self.noise.spec))
        return self.noise(clean.unsqueeze(0), g).squeeze(0)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | str]:
        if not 0 <= index < len(self):
            raise IndexError(index)
        clean = to_tensor(self._images.get(index))
        item: dict[str, torch.Tensor | str] = {"clean": clean, "name": self.names[index]}
        if self.noise is not None:
            item["noisy"] = self.noisy_version(clean, self.names[index])
        return item
