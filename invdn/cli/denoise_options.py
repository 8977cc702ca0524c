"""The options of `invdn denoise`, and `DenoiseArgs`, the typed values the command receives.

Every option has its help text here; the command itself (`invdn.cli.denoise`) only calls the library.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import click

from invdn.batch.pipeline import Options
from invdn.batch.plan import PlanRequest
from invdn.batch.shard import parse_shard
from invdn.io.formats import CLI_FORMAT_CHOICES
from invdn.models import registry

F = TypeVar("F", bound=Callable[..., Any])


def _parse_shard(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[int, int] | None:
    if value is None:
        return None
    try:
        return parse_shard(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc


def _ray_address(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is None or value == "default":
        return value
    if value not in ("auto", "local") and ":" not in value:
        raise click.BadParameter(
            f"{value!r} is not a Ray address (auto, local, HOST:PORT or ray://HOST:PORT); an INPUT right after "
            "--ray is read as its address: write --ray=ADDRESS, or put --ray after the inputs"
        )
    return value


def _overlap_help() -> str:
    return ", ".join(f"{spec.label} {spec.tile_overlap}" for spec in registry.MODELS)


@dataclass(frozen=True)
class DenoiseArgs:
    """What `invdn denoise` was given, one field per option (see the options' help)."""

    inputs: tuple[str, ...]
    output: str | None
    model: str
    weights: Path | None
    samples: int
    ensemble: bool
    seed: int
    tile: int | None
    overlap: int | None
    device: str
    precision: str
    fmt: str
    quality: int
    suffix: str
    recursive: bool
    overwrite: bool
    skip_existing: bool
    allow_inside: bool
    fail_fast: bool
    dry_run: bool
    report: Path | None
    workers: int
    max_megapixels: float
    quiet: bool
    shard: tuple[int, int] | None
    merge_reports: bool
    ray_address: str | None
    ray_actors: int | None
    ray_cpus: float
    ray_gpus: float

    def plan_request(self) -> PlanRequest:
        """What to plan: the inputs, OUT and how outputs are named."""
        return PlanRequest(self.inputs, self.output, self.fmt.lower(), self.suffix, self.recursive, self.allow_inside)

    def options(self) -> Options:
        """What every job of the run shares."""
        return Options.from_cli(
            self.overwrite, self.quality, self.samples, self.ensemble, self.seed, self.max_megapixels
        )


_OPTIONS: tuple[Callable[[Any], Any], ...] = (
    click.argument("inputs", metavar="INPUT...", nargs=-1, required=True),
    click.option(
        "-o",
        "--output",
        metavar="OUT",
        default=None,
        show_default=False,
        help="Output folder (inputs' folders are mirrored under it), a file name for a single input file, "
        "or '-' for stdout.",
    ),
    click.option(
        "--model",
        type=click.Choice(registry.choices()),
        default=registry.DEFAULT,
        help="Denoiser: "
        + "; ".join(
            f"{spec.name} = {spec.label}" + (f" (alias {', '.join(spec.aliases)})" if spec.aliases else "")
            for spec in registry.MODELS
        )
        + ".",
    ),
    click.option(
        "--weights",
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        default=None,
        show_default=False,
        help="A .safetensors weights file to use instead of the shipped weights.",
    ),
    click.option("--samples", type=click.IntRange(min=1), default=1, help="InvDN latent draws averaged per image."),
    click.option("--ensemble/--no-ensemble", default=False, help="Average the 8 flips/transposes (8x slower)."),
    click.option("--seed", type=int, default=0, help="Seed of InvDN's latent draws: same seed, same output."),
    click.option(
        "--tile",
        type=click.IntRange(min=64),
        default=None,
        show_default="chosen from available memory",
        help="Tile side in pixels; images larger than this are denoised in overlapping tiles.",
    ),
    click.option(
        "--overlap",
        type=click.IntRange(min=0),
        default=None,
        show_default=f"the model's own: {_overlap_help()}",
        help="Minimum overlap between tiles, pixels.",
    ),
    click.option("--device", default="auto", help="auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps."),
    click.option(
        "--precision",
        type=click.Choice(["fp32", "bf16", "fp16"]),
        default="fp32",
        help="Compute precision; bf16/fp16 only where the device supports them.",
    ),
    click.option(
        "--format",
        "fmt",
        type=click.Choice(CLI_FORMAT_CHOICES, case_sensitive=False),
        default="keep",
        help="Output format; keep = the input's (GIF is written as PNG).",
    ),
    click.option("--quality", type=click.IntRange(1, 100), default=95, help="JPEG/WebP quality."),
    click.option("--suffix", default="", help="Appended to each output's file name stem, e.g. _denoised."),
    click.option("--recursive/--no-recursive", default=True, help="Descend into sub-folders of input folders."),
    click.option("--overwrite", is_flag=True, help="Replace outputs that already exist."),
    click.option(
        "--skip-existing/--no-skip-existing",
        default=True,
        help="Skip inputs whose output exists (so an interrupted run resumes); without it, existing outputs "
        "are failures unless --overwrite.",
    ),
    click.option("--allow-inside", is_flag=True, help="Allow OUT inside an input folder (OUT itself is not read)."),
    click.option("--fail-fast", is_flag=True, help="Stop at the first file that fails."),
    click.option("--dry-run", is_flag=True, help="List what would be done (reads headers only); write nothing."),
    click.option(
        "--report",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        show_default=False,
        help="Append one JSON line per file (input, output, status, reason, size, seconds) to this file.",
    ),
    click.option(
        "--workers",
        type=click.IntRange(min=1),
        default=1,
        help="Threads decoding/encoding alongside inference; torch threads are reduced to match the cores.",
    ),
    click.option(
        "--max-megapixels",
        type=click.FloatRange(min=0, min_open=True),
        default=250.0,
        help="Refuse images larger than this (checked on the header, before decoding).",
    ),
    click.option("-q", "--quiet", is_flag=True, help="Only errors and the summary."),
    click.option(
        "--shard",
        metavar="K/N",
        default=None,
        callback=_parse_shard,
        show_default=False,
        help="Take only part K of N (1 <= K <= N) of the files, chosen by each file's relative path, so N machines "
        "sharing a file system or bucket can split a batch; merge their reports with --merge-reports.",
    ),
    click.option(
        "--merge-reports",
        is_flag=True,
        help="Instead of denoising: INPUT... are --report files (e.g. of N shards), merged into --report FILE with "
        "each file's latest line; exit 1 if any file's latest status is failed.",
    ),
    click.option(
        "--ray",
        "ray_address",
        metavar="[ADDRESS]",
        is_flag=False,
        flag_value="default",
        default=None,
        callback=_ray_address,
        show_default=False,
        help="Denoise on a Ray cluster (pip install 'invdn[ray]'): --ray alone joins RAY_ADDRESS or starts a local "
        "instance, --ray=ADDRESS joins that one. Inputs and OUT may then also be URIs (s3://, gs://, file://...).",
    ),
    click.option(
        "--ray-actors",
        type=click.IntRange(min=1),
        default=None,
        show_default="as many as the cluster's CPUs (GPUs) allow",
        help="With --ray: actors, each loading the model once.",
    ),
    click.option(
        "--ray-cpus",
        type=click.FloatRange(min=0, min_open=True),
        default=1.0,
        help="With --ray: CPUs reserved per actor (its torch threads).",
    ),
    click.option(
        "--ray-gpus",
        type=click.FloatRange(min=0),
        default=0.0,
        help="With --ray: GPUs per actor; above 0 the actors denoise on CUDA.",
    ),
)


def denoise_options(command: F) -> F:
    """Add INPUT... and every option of `invdn denoise` to `command`, in the order `--help` lists them."""
    for option in reversed(_OPTIONS):
        command = option(command)
    return command
