"""The models the service runs, one per entry of `invdn.models.registry.MODELS`.

Models are loaded once, at start-up, through a `ModelProvider` (the shipped weights by default; tests pass tiny
stand-ins). Their tiles run in `service.scheduler.TileScheduler`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from invdn.models import registry
from invdn.models.flops import count_parameters, flops_per_megapixel
from invdn_service.config import Settings
from invdn_service.errors import NotReady

if TYPE_CHECKING:
    from invdn.inference.engine import Denoiser

log = logging.getLogger("uvicorn.error.invdn")

# Loads one model by its canonical registry name.
ModelProvider = Callable[[str], nn.Module]


def shipped_model_provider(settings: Settings) -> ModelProvider:
    """Loads the shipped weights, or the files named by INVDN_WEIGHTS_FILES."""

    def load(name: str) -> nn.Module:
        from invdn.models import weights

        return weights.load(name, path=settings.weights_files.get(name), device="cpu")

    return load


@dataclass
class LoadedModel:
    """A model ready to serve."""

    spec: registry.ModelSpec  # its registry entry
    module: nn.Module  # the network, in eval mode
    denoiser: Denoiser  # invdn.inference.engine.Denoiser around the module
    parameters: int  # parameter count
    device: torch.device  # where the module's weights live
    flops_per_megapixel: float | None = None  # invdn.models.flops.flops_per_megapixel (None: not countable)

    @property
    def name(self) -> str:
        """Canonical registry name."""
        return self.spec.name

    @property
    def pretrained(self) -> bool:
        return bool(getattr(self.module, "pretrained", False))


@dataclass
class ModelStore:
    """Loads and warms up every model once; answers whether the service is ready."""

    settings: Settings
    provider: ModelProvider
    models: dict[str, LoadedModel] = field(default_factory=dict)
    ready: bool = False  # True once every model is loaded and has run the warm-up image
    error: str | None = None  # why loading failed, when it did

    def load_and_warm_up(self) -> None:
        """Blocking: load each registry model, wrap it for tiled inference, run a small image through it."""
        from invdn.inference.engine import Denoiser

        rng = np.random.default_rng(0)
        side = self.settings.warmup_size
        warm_image = rng.random((side, side, 3), dtype=np.float32)
        for spec in registry.MODELS:
            start = time.perf_counter()
            module = self.provider(spec.name).eval()
            denoiser = Denoiser(
                module,
                device=self.settings.device,
                precision=self.settings.precision,
                tile=self.settings.tile or None,
                overlap=self.settings.tile_overlap,
            )
            denoiser(warm_image, samples=1, ensemble=False, seed=0)
            try:
                flops: float | None = flops_per_megapixel(module)
            except (RuntimeError, TypeError, ValueError) as exc:  # a model FLOPs cannot be counted for
                log.warning("FLOPs of %s not counted: %s", spec.name, exc)
                flops = None
            loaded = LoadedModel(spec, module, denoiser, count_parameters(module), denoiser.device, flops)
            self.models[spec.name] = loaded
            log.info(
                "model %s ready (pretrained=%s, %d parameters, %.2f s)",
                spec.name,
                loaded.pretrained,
                loaded.parameters,
                time.perf_counter() - start,
            )
        self.ready = True

    def ensure_ready(self) -> None:
        """Raises NotReady (503 with Retry-After) while start-up is still running or has failed."""
        if not self.ready:
            raise NotReady(
                self.error or "models are still loading", headers={"Retry-After": str(self.settings.retry_after_s)}
            )

    def get(self, name: str) -> LoadedModel:
        """A loaded model by registry name or alias, or NotReady (503) while start-up is still running."""
        self.ensure_ready()
        return self.models[registry.get(name).name]

    def all(self) -> list[LoadedModel]:
        """Every served model, in registry order (NotReady while start-up is still running)."""
        self.ensure_ready()
        return [self.models[name] for name in registry.names()]
