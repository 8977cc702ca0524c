"""The one list of models: every command, the service, the web page, `invdn.load`, evaluation and the
benchmarks read it. Adding a model means adding one `ModelSpec` to `MODELS`.

Two kinds of name:
- `name` (and `aliases`): what users type and what `weights/manifest.json` is keyed by ("invdn", "invdn-paper",
  "danet-r"). The first entry is the default model.
- `model_type`: the architecture a weights file stores in its metadata, i.e. which class rebuilds it ("invdn" is
  the `InvDN` class, kept for old weights files; "invdn-lc" the `InvDNLC` class; "danet-r" `UNetD`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

from torch import nn


def _build_invdn_lc(args: dict) -> nn.Module:
    from invdn.models.latent_clean import InvDNLC, InvDNLCConfig

    return InvDNLC(InvDNLCConfig.from_dict(args))


def _build_invdn(args: dict) -> nn.Module:
    from invdn.models.invdn import InvDN, InvDNConfig

    return InvDN(InvDNConfig.from_dict(args))


def _build_danet_r(args: dict) -> nn.Module:
    from invdn.models.danet import DANetConfig, UNetD

    return UNetD(DANetConfig(**{k: v for k, v in args.items() if k not in RUNTIME_SWITCHES}))


def _task_invdn_lc(cfg, grad_sync, device):
    from invdn.models.latent_clean import InvDNLCConfig
    from invdn.training.latent_clean_task import InvDNLCTask

    return InvDNLCTask(
        InvDNLCConfig.from_dict(cfg.model_args or {}), lr=cfg.lr or 2e-4, grad_sync=grad_sync, device=device
    )


def _task_invdn(cfg, grad_sync, device):
    from invdn.models.invdn import InvDNConfig
    from invdn.training.invdn_task import InvDNTask

    if cfg.bf16 and cfg.memory_saving:
        raise ValueError("bf16 with memory-saving InvDN would rebuild activations from bf16 outputs; use one")
    config = InvDNConfig(blocks_per_level=cfg.blocks_per_level, memory_saving=cfg.memory_saving)
    return InvDNTask(
        config,
        lr=cfg.lr or 2e-4,
        grad_sync=grad_sync,
        device=device,
        sobel_weight=cfg.sobel_weight,
        ssim_weight=cfg.ssim_weight,
    )


def _task_danet_r(cfg, grad_sync, device):
    from invdn.training.danet_task import DANetTask

    return DANetTask(cfg.danet_mode, lr=cfg.lr or 1e-4, grad_sync=grad_sync, device=device)


@dataclass(frozen=True)
class ModelSpec:
    name: str  # canonical name: CLI choices, service, invdn.load, the manifest key
    label: str  # short human label for tables, grids and the web page
    model_type: str  # architecture key stored in weights files (which class `build` makes)
    build: Callable[[dict], nn.Module]  # model_args -> a randomly initialised module
    task: Callable  # (invdn.training.config.TrainConfig, grad_sync, device) -> its training task
    description: str  # one line for `invdn info` and the service's model list
    aliases: tuple[str, ...] = ()  # other names accepted for this model
    tile_overlap: int = 32  # pixels by which inference tiles overlap (measured; see each entry)
    min_tile: int = 128  # smallest automatic tile side
    max_tile: int | None = None  # largest automatic tile side, for weights that do better on tiles (measured)
    bytes_per_pixel: int = 4096  # peak activation memory per input pixel of the fp32 inference path
    stochastic: bool = False  # denoise draws random latents (takes `samples` and a `generator`)
    fast: str | None = None  # "module:Class" of its inference-only variant (`Class.from_model(model)`), if any


MODELS: tuple[ModelSpec, ...] = (
    ModelSpec(
        name="invdn",
        label="InvDN-LC",
        model_type="invdn-lc",
        build=_build_invdn_lc,
        task=_task_invdn_lc,
        description="InvDN with a latent cleaner: invertible encode, cleaned (lr, z), decode (the default)",
        aliases=("invdn-lc",),
        # The cleaner's 14 3x3 convolutions at 1/4 scale see 56 px of the input each way, past a 32 px overlap, but
        # the raised-cosine blend keeps the seam error small: tests/test_latent_clean.py checks tiled against whole.
        tile_overlap=32,
        min_tile=128,
        # benchmarks/memory_per_pixel.py: 407 B/px (fp32, 1024x1024, AVX512), here with ~1.9x headroom
        bytes_per_pixel=768,
        fast="invdn.inference.fast:FastInvDNLC",
    ),
    ModelSpec(
        name="invdn-paper",
        label="InvDN (paper)",
        model_type="invdn",
        build=_build_invdn,
        task=_task_invdn,
        description="InvDN as published: 2 Haar levels x 8 couplings, decoded with a fresh random z",
        # with the v2 weights, 256-px tiles overlapping by 16 stay within 0.018 dB of the whole image on three
        # Kodak24 images at sigma 15 and 50 (8: 0.059 dB), measured by benchmarks/tile_overlap.py
        tile_overlap=16,
        min_tile=128,
        bytes_per_pixel=768,  # benchmarks/memory_per_pixel.py: 559 B/px (fp32, 1024x1024, AVX512)
        stochastic=True,
        fast="invdn.inference.fast:FastInvDN",
    ),
    ModelSpec(
        name="danet-r",
        label="DANet-R",
        model_type="danet-r",
        build=_build_danet_r,
        task=_task_danet_r,
        description="DANet's denoiser R (Yue et al., ECCV 2020), the baseline",
        aliases=("danet",),
        # The v3 weights (128-px training patches) did better on 160-px tiles than on whole images (+0.53 dB), so
        # automatic tiles were capped at 160 px. The v4 weights, fine-tuned on 256-px patches, no longer do: on the
        # first 10 CBSD68 images at sigma 25 and 50 (8-bit inputs), tiled - whole is -0.007 dB on average for
        # 160/16 (max 0.052), -0.000 for 256/16 (max 0.017) and -0.003 for 256/32, measured by
        # benchmarks/tile_overlap.py, so automatic tiles are as large as memory allows and overlap by 16.
        tile_overlap=16,
        min_tile=128,
        bytes_per_pixel=2048,  # benchmarks/memory_per_pixel.py: 1228 B/px (fp32, 1024x1024, AVX512)
        fast="invdn.inference.fast:FastDANetR",
    ),
)

DEFAULT = MODELS[0].name
_BY_NAME = {alias: spec for spec in MODELS for alias in (spec.name, *spec.aliases)}
_BY_TYPE = {spec.model_type: spec for spec in MODELS}


# Configuration fields that choose how a network runs, not what it is: never saved in weights files' model_args
# ("fast" was one until the optimised paths moved to invdn.inference.fast; old files that carry it still load).
RUNTIME_SWITCHES = ("fast", "memory_saving")


def architecture_args(config: object) -> dict:
    """A model config dataclass as the `model_args` a weights file stores: architecture only."""
    return {k: v for k, v in asdict(config).items() if k not in RUNTIME_SWITCHES}


class UnknownModel(ValueError):
    """A model name that is not in the registry."""


def names() -> list[str]:
    """Canonical model names, default first."""
    return [spec.name for spec in MODELS]


def choices() -> list[str]:
    """Every accepted name (canonical names and aliases), for CLI choices."""
    return list(_BY_NAME)


def get(name: str) -> ModelSpec:
    """The spec for a canonical name or alias."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise UnknownModel(f"unknown model {name!r}; choose one of {names()}") from None


def by_type(model_type: str) -> ModelSpec:
    """The spec whose architecture is `model_type` (a weights file's metadata, a module's `model_type`)."""
    try:
        return _BY_TYPE[model_type]
    except KeyError:
        raise UnknownModel(f"unknown model type {model_type!r}; known: {sorted(_BY_TYPE)}") from None


def spec_of(model: nn.Module) -> ModelSpec | None:
    """The spec of a module (by its `model_type`), or None for a module the registry does not know."""
    return _BY_TYPE.get(str(getattr(model, "model_type", "")))
