"""The models the service runs and the bounded pool that runs them.

Models are loaded once, at start-up, through a `ModelProvider` (the shipped weights by default; tests pass tiny
stand-ins). Inference runs in a fixed pool of threads; `InferenceQueue` admits at most workers + queue_size jobs
at once and refuses the rest (503 with Retry-After) instead of letting a backlog grow without bound.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import torch
from torch import nn

from invdn.flops import count_parameters
from service.config import Settings
from service.errors import NotReady, Overloaded

log = logging.getLogger("uvicorn.error.invdn")

T = TypeVar("T")

# API name -> name understood by invdn.weights.load
WEIGHT_NAMES: dict[str, str] = {"invdn": "invdn", "danet": "danet-r"}

# Loads one model by its weights name ("invdn" or "danet-r").
ModelProvider = Callable[[str], nn.Module]


def shipped_model_provider(settings: Settings) -> ModelProvider:
    """Loads the shipped weights, or the files named by INVDN_INVDN_WEIGHTS / INVDN_DANET_WEIGHTS."""
    paths = {"invdn": settings.invdn_weights, "danet-r": settings.danet_weights}

    def load(name: str) -> nn.Module:
        from invdn import weights

        return weights.load(name, path=paths[name], device="cpu")

    return load


@dataclass
class LoadedModel:
    """A model ready to serve."""

    name: str  # API name: "invdn" or "danet"
    module: nn.Module  # the network, in eval mode
    denoiser: Callable[..., np.ndarray]  # invdn.inference.Denoiser around the module
    parameters: int  # parameter count
    device: torch.device  # where the module's weights live


@dataclass
class ModelStore:
    """Loads and warms up every model once; answers whether the service is ready."""

    settings: Settings
    provider: ModelProvider
    models: dict[str, LoadedModel] = field(default_factory=dict)
    ready: bool = False  # True once every model is loaded and has run the warm-up image
    error: str | None = None  # why loading failed, when it did

    def load_and_warm_up(self) -> None:
        """Blocking: load each model, wrap it for tiled inference, run a small image through it."""
        from invdn.compare import compare
        from invdn.inference import Denoiser

        rng = np.random.default_rng(0)
        side = self.settings.warmup_size
        warm_image = rng.random((side, side, 3), dtype=np.float32)
        for name, weight_name in WEIGHT_NAMES.items():
            start = time.perf_counter()
            module = self.provider(weight_name).eval()
            denoiser = Denoiser(
                module,
                device=self.settings.device,
                precision=self.settings.precision,
                tile=self.settings.tile or None,
                overlap=self.settings.tile_overlap,
            )
            denoiser(warm_image, samples=1, ensemble=False, seed=0)
            self.models[name] = LoadedModel(name, module, denoiser, count_parameters(module), denoiser.device)
            log.info(
                "model %s ready (pretrained=%s, %d parameters, %.2f s)",
                name,
                getattr(module, "pretrained", None),
                self.models[name].parameters,
                time.perf_counter() - start,
            )
        # One small comparison fills invdn.compare's FLOPs cache, so the first /v1/compare is not slower.
        compare(
            warm_image,
            sigma=25.0,
            models={"invdn": self.models["invdn"].module, "danet-r": self.models["danet"].module},
            device=self.models["invdn"].device,
        )
        self.ready = True

    def ensure_ready(self) -> None:
        """Raises NotReady (503 with Retry-After) while start-up is still running or has failed."""
        if not self.ready:
            raise NotReady(
                self.error or "models are still loading", headers={"Retry-After": str(self.settings.retry_after_s)}
            )

    def get(self, name: str) -> LoadedModel:
        """A loaded model, or NotReady (503) while start-up is still running."""
        self.ensure_ready()
        return self.models[name]


class InferenceQueue:
    """Runs blocking jobs in `workers` threads, admitting at most `workers + queue_size` jobs at once.

    A job counts until its thread finishes, even if the client that asked for it has gone, so the pool's own
    backlog can never grow past the limit.
    """

    def __init__(
        self, workers: int, queue_size: int, retry_after_s: int, on_depth: Callable[[int], None] | None = None
    ) -> None:
        self.capacity = workers + queue_size
        self.retry_after_s = retry_after_s
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="invdn-inference")
        self._depth = 0
        self._lock = threading.Lock()
        self._on_depth = on_depth

    @property
    def depth(self) -> int:
        """Jobs admitted and not finished."""
        return self._depth

    def _change_depth(self, delta: int) -> None:
        with self._lock:
            self._depth += delta
            depth = self._depth
        if self._on_depth is not None:
            self._on_depth(depth)

    def _overloaded(self) -> Overloaded:
        return Overloaded(
            f"the server is busy ({self.capacity} images in progress); retry in {self.retry_after_s} s",
            headers={"Retry-After": str(self.retry_after_s)},
        )

    def ensure_room(self) -> None:
        """Raises Overloaded (503 with Retry-After) when the queue is full right now (admission is in `run`)."""
        if self._depth >= self.capacity:
            raise self._overloaded()

    def _admit(self) -> None:
        with self._lock:
            if self._depth >= self.capacity:
                raise self._overloaded()
            self._depth += 1
            depth = self._depth
        if self._on_depth is not None:
            self._on_depth(depth)

    async def run(self, job: Callable[..., T], *args: Any) -> T:
        """Runs `job(*args)` in the pool, or raises Overloaded (503) when the queue is full."""
        self._admit()
        try:
            future: Future[T] = self._pool.submit(job, *args)
        except BaseException:
            self._change_depth(-1)
            raise
        future.add_done_callback(lambda _: self._change_depth(-1))
        return await asyncio.wrap_future(future)

    def shutdown(self) -> None:
        """Waits for running jobs and stops the threads."""
        self._pool.shutdown(wait=True, cancel_futures=True)
