"""Denoise a batch on a Ray cluster (`pip install 'invdn[ray]'`): `invdn denoise --ray` and `denoise_on_ray`.

Ray Data hands the planned files to a pool of actors; each actor loads the model once (on CPU, or on a GPU with
`gpus_per_actor`) and runs, per file, the same steps as the local `invdn denoise` (`invdn.batch.pipeline`: decode,
denoise, encode) before writing with the same never-overwrite, atomic rules (`invdn.io.atomic`). Outputs are therefore
byte-identical to the local CLI's. A file that fails comes back as a "failed" report line; nothing is raised.

Inputs and outputs are local paths (shared by every node, e.g. NFS) or URIs that `pyarrow.fs` opens (s3://...,
gs://..., file://...). Ray itself is imported only when a Ray run starts.
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from invdn.batch.pipeline import Options
from invdn.models import registry

if TYPE_CHECKING:
    import numpy as np

    from invdn.batch.plan import Job
    from invdn.batch.progress import Reporter


class RayUnavailable(RuntimeError):
    """Ray (with Ray Data) is not installed."""


def _import_ray() -> Any:
    try:
        import ray
        import ray.data  # noqa: F401  (Ray Data is what runs the batch)
    except ImportError as exc:
        raise RayUnavailable("the Ray path needs Ray Data: pip install 'invdn[ray]'") from exc
    return ray


@dataclass(frozen=True)
class ModelSettings:
    """How each actor builds its denoiser (the same arguments as `invdn.batch.pipeline.load_denoiser`)."""

    model: str = registry.DEFAULT
    weights: Path | None = None  # read once by the driver and shipped to the actors, so workers need no copy
    device: str = "auto"  # "auto" means cuda on actors given GPUs, else cpu
    precision: str = "fp32"
    tile: int | None = None
    overlap: int | None = None


@dataclass(frozen=True)
class ActorSettings:
    """The actor pool: how many actors, and what each one reserves."""

    actors: int | None = None  # None: as many as the cluster's CPUs (or GPUs) allow, at most one per file
    cpus: float = 1.0  # CPUs reserved per actor; torch gets that many threads (INVDN_THREADS overrides)
    gpus: float = 0.0  # GPUs per actor; > 0 denoises on CUDA


def process_file(source: str | Path, target: str | Path, fmt: str, denoiser: Any, options: Options) -> dict[str, Any]:
    """Read, denoise, encode and write one file (what the local CLI does per file); failures are returned.

    Returns {"status", "reason", "width", "height", "bytes", "seconds"}; status is "done" or "failed".
    """
    from invdn.batch.pipeline import denoise_bytes, failure_reason
    from invdn.io import uris
    from invdn.io.atomic import write_atomic

    started = time.perf_counter()
    row: dict[str, Any] = {"status": "failed", "reason": "", "width": -1, "height": -1, "bytes": 0}
    try:
        data = uris.read_bytes(str(source)) if uris.is_uri(source) else Path(source).read_bytes()
        encoded, (row["width"], row["height"]) = denoise_bytes(data, fmt, denoiser, options)
        if uris.is_uri(target):
            uris.write_atomic(str(target), encoded, overwrite=options.overwrite)
        else:
            write_atomic(target, encoded, overwrite=options.overwrite)
        row["status"], row["bytes"] = "done", len(encoded)
    except Exception as exc:  # one file's failure is reported, never fatal to the run
        row["reason"] = failure_reason(exc)
    row["seconds"] = time.perf_counter() - started
    return row


class DenoiseActor:
    """A Ray Data actor: loads the model once, then denoises one planned file per call."""

    def __init__(self, settings: ModelSettings, weights_data: bytes | None, options: Options, threads: int) -> None:
        from invdn.batch.pipeline import load_denoiser
        from invdn.runtime import configure_threads

        configure_threads(threads=threads)
        weights = None
        if weights_data is not None:  # the driver's --weights file, written where this worker can read it
            handle, name = tempfile.mkstemp(suffix=".safetensors", prefix="invdn-weights-")
            with os.fdopen(handle, "wb") as stream:
                stream.write(weights_data)
            weights = Path(name)
        try:
            self.denoiser = load_denoiser(
                settings.model, weights, settings.device, settings.precision, settings.tile, settings.overlap
            )
        finally:
            if weights is not None:
                weights.unlink()
        self.pretrained = bool(getattr(self.denoiser.model, "pretrained", False))
        self.options = options

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list[Any]]:
        """Denoise a batch of planned files: local ones through the local pipeline (`invdn.batch.run.run_jobs`: the
        next file decoded and the previous one encoded while the model works), URIs one by one (`process_file`)."""
        from invdn.batch.plan import Job
        from invdn.batch.run import run_jobs

        rows: dict[str, list[Any]] = {key: [] for key in _RESULT_KEYS}

        def add(index: int, row: dict[str, Any]) -> None:
            for key, value in (*row.items(), ("index", index), ("pretrained", self.pretrained)):
                rows[key].append(value)

        local: list[tuple[int, Job]] = []
        for index, source, target, fmt in zip(
            batch["index"], batch["source"], batch["target"], batch["fmt"], strict=True
        ):
            if "://" in str(source) or "://" in str(target):
                add(
                    int(index),
                    process_file(_location(source), _location(target), str(fmt), self.denoiser, self.options),
                )
            else:
                local.append((int(index), Job(source=Path(str(source)), target=Path(str(target)), fmt=str(fmt))))
        if local:
            collector = _Collector()
            run_jobs([job for _, job in local], self.denoiser, self.options, collector, workers=1, fail_fast=False)
            for index, job in local:
                width, height = job.size or (-1, -1)
                row = {"status": job.status, "reason": job.reason, "width": width, "height": height}
                add(index, {**row, "bytes": job.bytes_out, "seconds": job.seconds})
        return rows


_RESULT_KEYS = ("index", "status", "reason", "width", "height", "bytes", "seconds", "pretrained")


def _location(value: object) -> str | Path:
    text = str(value)
    return text if "://" in text else Path(text)


class _Collector:
    """Stands in for the Reporter inside an actor (a `invdn.batch.run.JobSink`): the jobs carry the results back."""

    def record(self, job: Job, progressed: float = 0.0) -> None:
        pass

    def advance(self, job: Job, megapixels: float, fraction: float) -> None:
        pass


def _actor_count(ray: Any, actors: ActorSettings, files: int) -> int:
    if actors.actors is not None:
        return max(1, min(actors.actors, files))
    resources = ray.cluster_resources()
    if actors.gpus > 0:
        fit = int(resources.get("GPU", 0) // actors.gpus)
    else:
        fit = int(resources.get("CPU", 1) // max(actors.cpus, 1e-9))
    return max(1, min(fit, files))


def _threads(actors: ActorSettings) -> int:
    if os.environ.get("INVDN_THREADS"):
        return int(os.environ["INVDN_THREADS"])
    return max(1, int(actors.cpus))


def connect(address: str | None) -> bool:
    """Join the Ray cluster at `address` (None: RAY_ADDRESS, else a new local instance) unless this process
    already has; returns True when this call connected (the caller then disconnects with `ray.shutdown`)."""
    ray = _import_ray()
    if ray.is_initialized():
        return False
    ray.init(address=address, logging_level="ERROR", log_to_driver=False, include_dashboard=False)
    return True


def run_on_ray(
    jobs: list[Job],
    settings: ModelSettings,
    options: Options,
    reporter: Reporter,
    actors: ActorSettings | None = None,
    fail_fast: bool = False,
    on_untrained: Any = None,
) -> bool:
    """Denoise `jobs` (pending, planned by `invdn.batch.plan`) on the connected Ray cluster.

    Each finished file is filled in (status, reason, size, bytes, seconds) and passed to `reporter.record`, as
    in the local pipeline. `on_untrained()` is called once if the actors found no trained weights. Returns False
    if stopped early by `fail_fast`.
    """
    ray = _import_ray()
    if not jobs:
        return True
    actors = actors or ActorSettings()
    if actors.gpus > 0 and settings.device == "auto":
        settings = replace(settings, device="cuda")
    elif settings.device == "auto":
        settings = replace(settings, device="cpu")  # a GPU the actor did not reserve is not its to use
    weights_data = settings.weights.read_bytes() if settings.weights is not None else None

    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    items = [
        {"index": index, "source": str(job.source), "target": str(job.target), "fmt": job.fmt}
        for index, job in enumerate(jobs)
    ]
    pool = _actor_count(ray, actors, len(jobs))
    # one file per block (up to a cap), so files spread evenly over the actors and results stream back one by one
    dataset = ray.data.from_items(items, override_num_blocks=min(len(items), 4096)).map_batches(
        DenoiseActor,
        fn_constructor_kwargs={
            "settings": replace(settings, weights=None),
            "weights_data": weights_data,
            "options": options,
            "threads": _threads(actors),
        },
        # a few files per call, so each actor overlaps decoding and encoding with the model as the CLI does, while
        # every actor still gets several batches
        batch_size=max(1, min(8, len(jobs) // (pool * 4))),
        compute=ray.data.ActorPoolStrategy(size=pool),
        num_cpus=actors.cpus,
        num_gpus=actors.gpus,
    )
    warned = False
    for row in dataset.iter_rows():
        job = jobs[int(row["index"])]
        job.status, job.reason = str(row["status"]), str(row["reason"])
        if int(row["width"]) > 0:
            job.size = (int(row["width"]), int(row["height"]))
        job.bytes_out, job.seconds = int(row["bytes"]), float(row["seconds"])
        if not row["pretrained"] and not warned and on_untrained is not None:
            on_untrained()
            warned = True
        reporter.record(job)
        if fail_fast and job.status == "failed":
            return False
    return True


def denoise_on_ray(
    inputs: list[str | Path],
    output: str | Path,
    *,
    settings: ModelSettings | None = None,
    actors: ActorSettings | None = None,
    fmt: str = "keep",
    quality: int = 95,
    suffix: str = "",
    samples: int = 1,
    ensemble: bool = False,
    seed: int = 0,
    max_megapixels: float = 250.0,
    recursive: bool = True,
    overwrite: bool = False,
    skip_existing: bool = True,
    allow_inside: bool = False,
    shard: tuple[int, int] | None = None,
    report: Path | None = None,
    address: str | None = None,
) -> dict[str, int]:
    """Denoise files and folders (local paths or URIs) into `output` on Ray, as `invdn denoise --ray` does.

    Uses the cluster this process is connected to, else joins `address` (None: RAY_ADDRESS or a new local
    instance) for the call. Appends one JSON line per file to `report` when given. Returns the counts
    {"done", "skipped", "failed"}; per-file failures are counted and reported, not raised. Planning problems
    (an output inside an input, a missing input...) raise `invdn.batch.plan.PlanError` (or
    `invdn.io.uris.UriError`) with the CLI's message.
    """
    from invdn.batch.plan import PlanRequest, plan_jobs, remove_stale_temp_files
    from invdn.batch.run import run_batch

    sources = tuple(str(item) for item in inputs)
    request = PlanRequest(sources, str(output), fmt.lower(), suffix, recursive, allow_inside)
    jobs = plan_jobs(request, shard, overwrite, skip_existing, uri_inputs=True)
    options = Options.from_cli(overwrite, quality, samples, ensemble, seed, max_megapixels)
    connected = connect(address)
    try:
        remove_stale_temp_files(jobs)
        outcome = run_batch(
            jobs,
            lambda todo, reporter: run_on_ray(todo, settings or ModelSettings(), options, reporter, actors),
            report,
            quiet=True,
            in_order=False,
        )
    finally:
        if connected:
            _import_ray().shutdown()
    if outcome.interrupted:
        raise KeyboardInterrupt
    return outcome.counts
