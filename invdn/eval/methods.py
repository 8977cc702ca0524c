"""The rows of an evaluation: what turns a noisy image into an estimate of the clean one.

A `Method` wraps a denoiser call: the noisy input itself, (C)BM3D with the oracle, an estimated or a fixed sigma,
or a registry model (`model_method`; `model_rows` loads the models `invdn eval` was asked for). Grey images
(HxWx1) reach colour models replicated to three channels, and their outputs are averaged back to one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from invdn.eval.cache import package_versions
from invdn.eval.config import OptionError
from invdn.inference.engine import Denoiser
from invdn.models import registry
from invdn.models.flops import count_parameters
from invdn.training.noise import seed_from

UNTRAINED_NOTE = "random init: no trained weights"


@dataclass(frozen=True)
class Condition:
    """One noise condition of a dataset: a table column."""

    label: str  # column header, e.g. "σ=25", "camera", "real"
    spec: str | None  # noise spec for synthetic noise; None for real pairs
    sigma: float | None  # oracle AWGN sigma on the 0-255 scale, or None when unknown


@dataclass(frozen=True)
class ImageContext:
    """What a method may know about the image it denoises (never the clean image)."""

    dataset: str  # dataset name (folder name)
    condition: Condition  # noise condition
    image: str  # image name (relative path without extension)


# A method's denoiser: (noisy float HxWxC image, context) -> output float HxWxC image.
DenoiseCall = Callable[[np.ndarray, ImageContext], np.ndarray]


@dataclass
class Method:
    """A row of the tables: something that turns a noisy image into an estimate of the clean one."""

    name: str  # row label
    run: DenoiseCall  # the denoiser
    kind: str = "model"  # "noisy", "bm3d" or "model"
    params: int | None = None  # learned parameters (plot x-axis); None for non-learned methods
    note: str = ""  # shown beside the row (e.g. "random init: no trained weights")
    real_only: bool = False  # run only on real-noise pairs
    cache_tag: str | None = None  # version of a deterministic method, for `invdn.eval.cache`; None: never cached


def _model_device(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def _label(model: nn.Module) -> str:
    """The registry's label for a module, else its `model_type`."""
    spec = registry.spec_of(model)
    return spec.label if spec is not None else str(getattr(model, "model_type", "model"))


def describe_model(model: nn.Module, name: str | None = None) -> dict:
    """Model facts for the report: name, type, parameters, whether trained weights are loaded, weights file."""
    model_type = str(getattr(model, "model_type", "model"))
    return {
        "name": name or _label(model),
        "model_type": model_type,
        "params": count_parameters(model),
        "pretrained": bool(getattr(model, "pretrained", False)),
        "weights": getattr(model, "weights_path", None),
    }


def model_method(model: nn.Module, name: str | None = None, ensemble: bool = False, seed: int = 0) -> Method:
    """A table row for a denoiser module (``.denoise``, ``model_type``, ``pretrained``), run as users' files are:
    through the inference engine (`invdn.inference.engine.Denoiser`, float32) with the model's automatic tiles."""
    label = name or _label(model)
    if ensemble:
        label += " (x8 ensemble)"
    denoiser = Denoiser(model, device=_model_device(model), precision="fp32")

    def run(noisy: np.ndarray, ctx: ImageContext) -> np.ndarray:
        draw = seed_from(seed, "draw", ctx.dataset, ctx.condition.label, ctx.image)
        return denoiser(np.asarray(noisy, dtype=np.float32), seed=draw, ensemble=ensemble)

    note = "" if getattr(model, "pretrained", False) else UNTRAINED_NOTE
    return Method(name=label, run=run, kind="model", params=count_parameters(model), note=note)


def noisy_method() -> Method:
    """The noisy input itself (the floor every denoiser must beat)."""
    return Method(name="Noisy input", run=lambda noisy, ctx: noisy, kind="noisy")


def bm3d_tag() -> str:
    """The cache tag of every (C)BM3D row: the versions of bm3d and of bm4d, its compiled engine (deterministic)."""
    return package_versions("bm3d", "bm4d")


def bm3d_denoise(noisy: np.ndarray, sigma: float) -> np.ndarray:
    """BM3D (grey, HxWx1) or CBM3D (colour, HxWx3) with noise std ``sigma`` on the [0, 1] scale."""
    import bm3d  # slow to import; only when used

    sigma = max(float(sigma), 1e-4)
    if noisy.shape[2] == 1:
        return np.asarray(bm3d.bm3d(noisy[..., 0], sigma_psd=sigma), dtype=np.float64)[..., None]
    return np.asarray(bm3d.bm3d_rgb(noisy, sigma_psd=sigma), dtype=np.float64)


def estimated_sigma(noisy: np.ndarray) -> float:
    """Noise std on the [0, 1] scale estimated by ``skimage.restoration.estimate_sigma`` (wavelet MAD)."""
    from skimage.restoration import estimate_sigma

    if noisy.shape[2] == 1:
        return float(estimate_sigma(noisy[..., 0], channel_axis=None))
    return float(estimate_sigma(noisy, channel_axis=-1, average_sigmas=True))


def bm3d_method(grey_name: bool = False) -> Method:
    """(C)BM3D with the oracle sigma where the condition has one, else sigma estimated per image."""

    def run(noisy: np.ndarray, ctx: ImageContext) -> np.ndarray:
        sigma = ctx.condition.sigma / 255.0 if ctx.condition.sigma is not None else estimated_sigma(noisy)
        return bm3d_denoise(noisy, sigma)

    return Method(name="BM3D" if grey_name else "CBM3D", run=run, kind="bm3d", cache_tag=bm3d_tag())


def fixed_sigma_bm3d(sigma: float) -> DenoiseCall:
    """(C)BM3D with one fixed sigma (0-255 scale)."""
    return lambda noisy, ctx: bm3d_denoise(noisy, sigma / 255.0)


# ---- the registry models `invdn eval` was asked for ----


class ModelLoadError(ValueError):
    """A requested model's weights could not be loaded."""


@dataclass
class ModelRows:
    """The model rows of an evaluation and what the report says about their models."""

    methods: list[Method] = field(default_factory=list)  # one row per model (and the default model's ensemble)
    described: list[dict] = field(default_factory=list)  # `describe_model` of each loaded model
    untrained: list[str] = field(default_factory=list)  # registry names loaded without trained weights


def parse_weight_overrides(items: Sequence[str]) -> dict[str, str]:
    """'NAME=PATH' items -> {canonical registry name: path}; OptionError (of --weights) for a bad item, an unknown
    name or a missing file."""
    out: dict[str, str] = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not path:
            raise OptionError("--weights", f"{item!r}: expected NAME=PATH")
        try:
            name = registry.get(name.strip()).name
        except registry.UnknownModel:
            raise OptionError("--weights", f"{item!r}: NAME must be one of {registry.names()}") from None
        if not Path(path).is_file():
            raise OptionError("--weights", f"{path}: no such file")
        out[name] = path
    return out


def model_names(requested: Sequence[str], weight_paths: dict[str, str]) -> list[str]:
    """Canonical names of the requested models (all of the registry when none), then any only given weights."""
    names = list(dict.fromkeys(registry.get(m).name for m in requested)) or registry.names()
    return names + [n for n in weight_paths if n not in names]


def model_rows(
    names: list[str],
    weight_paths: dict[str, str],
    device: torch.device | str = "cpu",
    seed: int = 0,
    ensemble: bool = False,
) -> ModelRows:
    """Load each named model (its `weight_paths` file, else the shipped weights) and make its table row; with
    `ensemble`, the registry's default model also gets an 8-way ensemble row. ModelLoadError names the model."""
    from invdn.models import weights

    rows = ModelRows()
    for name in names:
        try:
            model = weights.load(name, weight_paths.get(name), device=device)
        except (weights.WeightsError, OSError) as exc:
            raise ModelLoadError(f"cannot load {name}: {exc}") from None
        model.eval()
        rows.described.append(describe_model(model))
        rows.methods.append(model_method(model, seed=seed))
        if ensemble and name == registry.DEFAULT:
            rows.methods.append(model_method(model, ensemble=True, seed=seed))
        if not getattr(model, "pretrained", False):
            rows.untrained.append(name)
    return rows
