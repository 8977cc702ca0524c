"""`invdn denoise INPUT... -o OUT`: denoise files, folders and globs into OUT, safely and resumably.

Inputs are only read. Each output is written atomically (temporary file + rename), existing outputs are
skipped by default so an interrupted run resumes where it stopped, and a broken file is reported and passed
over. Decoding and encoding run in `--workers` threads while the model works on the current image.
"""

from __future__ import annotations

import glob
import json
import os
import re
import sys
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, TypeVar

import click

from invdn.batch.pipeline import Options, SetupError, decode, denoise_pixels, encode, failure_reason, load_denoiser
from invdn.batch.shard import parse_shard, take_shard
from invdn.models import registry

T = TypeVar("T")

if TYPE_CHECKING:
    import numpy as np

    from invdn.inference.engine import Denoiser
    from invdn.io.images import LoadedImage

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".jpe", ".webp", ".tif", ".tiff", ".gif", ".bmp")
FORMAT_CHOICES = ("keep", "png", "jpg", "jpeg", "webp", "tiff", "tif")
# Temporary files of invdn.io.images.write_image_atomic: "." + name + "." + 8 random characters + suffix.
STALE_TEMP = re.compile(r"^\.(?P<name>.+)\.[a-z0-9_]{8}\.invdn-tmp$")
STDIO = "-"
# Decoded or denoised images held at once (about 12 bytes per pixel each) before decoding the next one.
IN_FLIGHT_MEGAPIXELS = 32.0
PLAIN_PROGRESS_SECONDS = 30.0  # without a terminal, how often a long image reports its progress


@dataclass
class Job:
    """One input image and where its result goes."""

    source: Path | None  # the input file; None for stdin
    target: Path | None  # the output file; None for stdout
    fmt: str  # output format name for encode_image ("keep" only for stdin, resolved after sniffing)
    status: str = "pending"  # pending, done, skipped or failed
    reason: str = ""  # why it was skipped or failed
    size: tuple[int, int] | None = None  # (width, height) once known
    seconds: float = 0.0  # decode + denoise + encode + write time
    bytes_out: int = 0  # size of the written file
    key: str = ""  # the input's path relative to its INPUT argument (the folder mirrored under OUT); --shard uses it

    @property
    def name(self) -> str:
        """The input as shown to the user."""
        return "<stdin>" if self.source is None else str(self.source)

    @property
    def target_name(self) -> str:
        """The output as shown to the user."""
        return "<stdout>" if self.target is None else str(self.target)

    @property
    def megapixels(self) -> float:
        """Megapixels, 0 while unknown."""
        return 0.0 if self.size is None else self.size[0] * self.size[1] / 1e6


@dataclass
class Plan:
    """Every job of a run, in input order, and what planning found out."""

    jobs: list[Job] = field(default_factory=list)  # one per input image
    stdio: bool = False  # reading stdin / writing stdout


def _output_name(source: Path, fmt: str, suffix: str) -> str:
    """File name of the output for `source`: stem + suffix + extension of the output format."""
    from invdn.io.images import FORMAT_EXTENSIONS, format_for_path, normalize_format, output_format

    if fmt == "keep":
        source_format = format_for_path(source) or _sniff_file(source) or "PNG"
        written = output_format(source_format)
        if written == source_format and format_for_path(source) == written:
            return source.stem + suffix + source.suffix  # keep the user's spelling (.jpeg, .TIF ...)
        return source.stem + suffix + FORMAT_EXTENSIONS[written]
    return source.stem + suffix + FORMAT_EXTENSIONS[normalize_format(fmt)]


def _sniff_file(path: Path) -> str | None:
    from invdn.io.images import sniff_format

    try:
        with open(path, "rb") as stream:
            return sniff_format(stream.read(16))
    except OSError:
        return None


def _job_format(source: Path, fmt: str) -> str:
    """The format an output is written in: "keep" follows the input's extension (GIF becomes PNG)."""
    from invdn.io.images import format_for_path, output_format

    if fmt != "keep":
        return fmt
    return output_format(format_for_path(source) or _sniff_file(source) or "PNG")


def _walk_images(folder: Path, exclude: Path | None, recursive: bool) -> list[Path]:
    """Image files (by extension) under `folder`, sorted, skipping hidden entries and the `exclude` tree."""
    found: list[Path] = []
    for root, dirs, files in os.walk(folder):
        root_path = Path(root)
        dirs[:] = sorted(
            d for d in dirs if not d.startswith(".") and (exclude is None or (root_path / d).resolve() != exclude)
        )
        if not recursive:
            dirs[:] = []
        for name in sorted(files):
            if not name.startswith(".") and Path(name).suffix.lower() in IMAGE_EXTENSIONS:
                found.append(root_path / name)
    return found


def _glob_base(pattern: str) -> Path:
    """The folder part of a glob before its first wildcard (outputs are mirrored relative to it)."""
    parts = Path(pattern).parts
    base: list[str] = []
    for part in parts[:-1]:
        if glob.has_magic(part):
            break
        base.append(part)
    return Path(*base) if base else Path(".")


def _is_within(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def build_plan(
    inputs: tuple[str, ...],
    output: str | None,
    fmt: str,
    suffix: str,
    recursive: bool,
    allow_inside: bool,
) -> Plan:
    """Turn INPUT arguments into jobs; raises click.UsageError for anything that makes the run unsafe."""
    if STDIO in inputs:
        if len(inputs) > 1:
            raise click.UsageError("'-' (stdin) must be the only input")
        if output not in (None, STDIO):
            raise click.UsageError("with stdin as input, the output goes to stdout: leave -o out or use -o -")
        return Plan(jobs=[Job(source=None, target=None, fmt=fmt)], stdio=True)
    if output is None:
        raise click.UsageError("missing -o/--output (a folder; or '-' for stdout with a single input file)")

    out = Path(output)
    # (source, output path relative to OUT) pairs
    sources: list[tuple[Path, Path]] = []
    out_resolved = out.resolve()
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            folder = path.resolve()
            if _is_within(out_resolved, folder) and not allow_inside:
                raise click.UsageError(
                    f"output folder {out} is inside input folder {item}; choose another -o or pass --allow-inside"
                )
            exclude = out_resolved if _is_within(out_resolved, folder) else None
            for file in _walk_images(path, exclude, recursive):
                sources.append((file, file.relative_to(path).parent))
        elif path.is_file():
            sources.append((path, Path(".")))
        elif glob.has_magic(item):
            base = _glob_base(item)
            matches = sorted(Path(match) for match in glob.glob(item, recursive=True))
            matches = [match for match in matches if match.is_file()]
            if not matches:
                raise click.UsageError(f"no files match {item!r}")
            if _is_within(out_resolved, base.resolve()) and not allow_inside:
                raise click.UsageError(
                    f"output folder {out} is inside {base} where {item!r} matches; "
                    "choose another -o or pass --allow-inside"
                )
            for match in matches:
                if _is_within(match.resolve(), out_resolved):
                    continue  # never denoise our own outputs
                sources.append((match, match.relative_to(base).parent if base != Path(".") else match.parent))
        else:
            raise click.UsageError(f"no such file or folder: {item}")

    if output == STDIO:
        if len(sources) != 1:
            raise click.UsageError(f"-o - (stdout) takes exactly one input image, got {len(sources)}")
        source = sources[0][0]
        return Plan(jobs=[Job(source=source, target=None, fmt=_job_format(source, fmt), key=source.name)], stdio=True)

    single_file_target = (
        len(inputs) == 1
        and len(sources) == 1
        and Path(inputs[0]).is_file()
        and out.suffix.lower() in IMAGE_EXTENSIONS
        and not out.is_dir()
    )
    if single_file_target and out.suffix.lower() == ".gif":
        raise click.UsageError("cannot write GIF (a palette cannot hold a denoised photo); name the output .png")
    jobs: list[Job] = []
    for source, relative_folder in sources:
        if single_file_target:  # -o names the output file; with --format keep, its extension picks the format
            target = out
            job_fmt = fmt if fmt != "keep" else _format_from_name(out)
        else:
            target = out / relative_folder / _output_name(source, fmt, suffix)
            job_fmt = _job_format(source, fmt)
        jobs.append(Job(source=source, target=target, fmt=job_fmt, key=(relative_folder / source.name).as_posix()))

    input_files = {source.resolve() for source, _ in sources}
    seen: dict[Path, Job] = {}
    for job in jobs:
        assert job.target is not None and job.source is not None
        resolved = job.target.resolve()
        if resolved in input_files:
            raise click.UsageError(f"output {job.target} would replace an input file; change -o or --suffix")
        if resolved in seen:
            raise click.UsageError(
                f"{seen[resolved].source} and {job.source} would both be written to {job.target}; "
                "denoise them in separate runs or use --suffix"
            )
        seen[resolved] = job
    return Plan(jobs=jobs)


def _format_from_name(path: Path) -> str:
    from invdn.io.images import format_for_path, output_format

    return output_format(format_for_path(path) or "PNG")


def remove_stale_temp_files(jobs: list[Job]) -> int:
    """Delete temporary files that a killed run left next to this run's outputs; returns how many."""
    by_folder: dict[Path, set[str]] = {}
    for job in jobs:
        if job.target is not None:
            by_folder.setdefault(job.target.parent, set()).add(job.target.name)
    removed = 0
    for folder, names in by_folder.items():
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            match = STALE_TEMP.match(entry.name)
            if match and match.group("name") in names and entry.is_file(follow_symlinks=False):
                try:
                    os.unlink(entry.path)
                    removed += 1
                except FileNotFoundError:
                    pass
    return removed


class Reporter:
    """Per-file messages, the progress bar (terminal) or plain lines (otherwise), the JSONL report.

    With `order` (the jobs in input order), files finished out of order (decoding, denoising and writing overlap)
    are held back so that their lines and report entries come in input order, numbered by input position.
    """

    def __init__(
        self,
        total_files: int,
        total_megapixels: float,
        report: IO[str] | None,
        quiet: bool,
        order: list[Job] | None = None,
    ) -> None:
        self.total_files = total_files
        self.report = report
        self._position = {id(job): index for index, job in enumerate(order)} if order is not None else None
        self._held: dict[int, Job] = {}  # finished jobs waiting for an earlier one, by input position
        self._next = 0  # input position of the next line
        self.quiet = quiet
        self.counts = {"done": 0, "skipped": 0, "failed": 0}
        self.megapixels_done = 0.0
        self.started = time.perf_counter()
        self.last_plain = self.started  # when the last plain progress line was printed
        self.bar = None
        if sys.stderr.isatty() and not quiet and total_files:
            from tqdm import tqdm

            self.bar = tqdm(
                total=round(total_megapixels, 2),
                unit="MP",
                unit_scale=False,
                dynamic_ncols=True,
                bar_format="{l_bar}{bar}| {n:.1f}/{total:.1f} MP [{elapsed}<{remaining}, {rate_fmt}{postfix}]",
                file=sys.stderr,
            )
            self._update_postfix()

    @property
    def finished(self) -> int:
        return sum(self.counts.values())

    def _update_postfix(self) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(
                f"files {self.finished}/{self.total_files}, failed {self.counts['failed']}", refresh=False
            )

    def _line(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text, file=sys.stderr)
        else:
            click.echo(text, err=True)

    def advance(self, job: Job, megapixels: float, fraction: float) -> None:
        """Part of an image is done (called per tile): move the bar, or say so every PLAIN_PROGRESS_SECONDS."""
        if self.bar is not None:
            if megapixels > 0:
                self.bar.update(megapixels)
            return
        now = time.perf_counter()
        if not self.quiet and fraction < 1 and now - self.last_plain >= PLAIN_PROGRESS_SECONDS:
            self.last_plain = now
            self._line(
                f"[{self.finished + 1}/{self.total_files}] {job.name}: {fraction:.0%} of {job.megapixels:.1f} MP"
            )

    def record(self, job: Job, progressed: float = 0.0) -> None:
        """Count a finished job, print its line, append it to the report. `progressed`: MP already shown."""
        self.counts[job.status] += 1
        if job.status == "done":
            self.megapixels_done += job.megapixels
        if self.bar is not None:
            self.bar.update(max(0.0, job.megapixels - progressed))
            self._update_postfix()
        if self._position is None or id(job) not in self._position:
            self._emit(job, self.finished)
            return
        self._held[self._position[id(job)]] = job
        self._flush(until=self._next)

    def _flush(self, until: int | None) -> None:
        """Emits held jobs in input order: those contiguous from the next position (`until` = that position), or
        every one (`until` None, at the end of a run that stopped early)."""
        for index in sorted(self._held):
            if until is not None and index != self._next:
                break
            self._emit(self._held.pop(index), index + 1)
            self._next = index + 1

    def _emit(self, job: Job, number: int) -> None:
        """The line and report entry of one finished job, numbered `number` of total_files."""
        position = f"[{number}/{self.total_files}]"
        if job.status == "failed":
            self._line(f"{position} failed {job.name}: {job.reason}")
        elif self.bar is None and not self.quiet and job.status == "done":  # skips are counted up front
            self._line(
                f"{position} done {job.name} -> {job.target_name} ({job.megapixels:.2f} MP, {job.seconds:.1f} s)"
            )
        if self.report is not None:
            line = {
                "input": None if job.source is None else str(job.source),
                "output": None if job.target is None else str(job.target),
                "status": job.status,
                "reason": job.reason or None,
                "size": list(job.size) if job.size else None,
                "megapixels": round(job.megapixels, 3),
                "bytes": job.bytes_out or None,
                "seconds": round(job.seconds, 3),
                "time": datetime.now(UTC).isoformat(timespec="seconds"),
            }
            self.report.write(json.dumps(line) + "\n")
            self.report.flush()

    def close(self) -> str:
        """Emit any line still held back, close the bar; return the summary line."""
        self._flush(until=None)
        if self.bar is not None:
            self.bar.close()
        elapsed = time.perf_counter() - self.started
        rate = self.megapixels_done / elapsed if elapsed > 0 else 0.0
        return (
            f"done {self.counts['done']}, skipped {self.counts['skipped']}, failed {self.counts['failed']} "
            f"in {elapsed:.1f} s ({self.megapixels_done:.1f} MP, {rate:.2f} MP/s)"
        )


def _decode(job: Job, options: Options) -> LoadedImage:
    return decode(sys.stdin.buffer.read() if job.source is None else job.source, options)


def _encode_and_write(job: Job, image: LoadedImage, pixels: np.ndarray, options: Options) -> int:
    from invdn.io.images import write_image_atomic

    data = encode(image, pixels, job.fmt, options)
    if job.target is None:
        stream = sys.stdout.buffer
        stream.write(data)
        stream.flush()
    else:
        write_image_atomic(job.target, data, overwrite=options.overwrite)
    return len(data)


def run_jobs(
    jobs: list[Job], denoiser: Denoiser, options: Options, reporter: Reporter, workers: int, fail_fast: bool
) -> bool:
    """Decode ahead and encode behind in `workers` threads while the denoiser runs; False if stopped early."""
    ahead = max(1, workers)
    pending_decodes: deque[tuple[Job, Future[LoadedImage], float]] = deque()
    pending_writes: deque[tuple[Job, Future[int], float, float]] = deque()
    queue = deque(jobs)
    stopped = False

    def finish_write(job: Job, future: Future[int], started: float, progressed: float) -> None:
        nonlocal stopped
        try:
            job.bytes_out = future.result()
            job.status = "done"
        except Exception as exc:  # any failure of one file is reported, not fatal to the run
            job.status, job.reason = "failed", failure_reason(exc)
            stopped = stopped or fail_fast
        reporter.record(job, progressed)

    def in_flight() -> float:
        return sum(item[0].megapixels for item in pending_decodes) + sum(item[0].megapixels for item in pending_writes)

    with ThreadPoolExecutor(max_workers=ahead, thread_name_prefix="invdn-io") as pool:
        try:
            while (queue or pending_decodes) and not stopped:
                # decode ahead, but keep the decoded/denoised images in memory under IN_FLIGHT_MEGAPIXELS
                while queue and len(pending_decodes) < ahead:
                    load = in_flight()
                    if load > 0 and load + queue[0].megapixels > IN_FLIGHT_MEGAPIXELS:
                        break
                    job = queue.popleft()
                    decoding = pool.submit(_timed, job, _decode, job, options)
                    pending_decodes.append((job, decoding, time.perf_counter()))
                if not pending_decodes:  # memory is held by images being written: wait for the oldest
                    finish_write(*pending_writes.popleft())
                    continue
                job, decoding, started = pending_decodes.popleft()
                try:
                    image = decoding.result()
                except Exception as exc:  # a broken file: report it and go on
                    job.status, job.reason = "failed", failure_reason(exc)
                    reporter.record(job)
                    stopped = fail_fast
                    continue
                finally:
                    del decoding  # the future would keep the image alive after it is written
                job.size = (image.width, image.height)
                megapixels = job.megapixels
                shown = [0.0]

                def on_tile(
                    done: int, total: int, job: Job = job, mp: float = megapixels, shown: list[float] = shown
                ) -> None:
                    step = mp * done / total - shown[0]
                    shown[0] += step
                    reporter.advance(job, step, done / total)

                try:
                    result = _timed(job, denoise_pixels, denoiser, image, options, progress=on_tile)
                except (RuntimeError, ValueError, MemoryError) as exc:
                    job.status, job.reason = "failed", failure_reason(exc)
                    reporter.record(job, shown[0])
                    stopped = fail_fast
                    continue
                image.pixels = result  # the input pixels are no longer needed: free them
                del result
                while len(pending_writes) >= ahead:
                    finish_write(*pending_writes.popleft())
                writing = pool.submit(_timed, job, _encode_and_write, job, image, image.pixels, options)
                pending_writes.append((job, writing, started, shown[0]))
                del image
                while pending_writes and pending_writes[0][1].done():
                    finish_write(*pending_writes.popleft())
        finally:
            for _, future, _ in pending_decodes:
                future.cancel()
            while pending_writes:
                finish_write(*pending_writes.popleft())
    return not stopped


def _timed(job: Job, fn: Callable[..., T], *args: object, **kwargs: object) -> T:
    """fn(*args, **kwargs), its own running time added to `job.seconds` (not the time the job waited its turn)."""
    start = time.perf_counter()
    try:
        return fn(*args, **kwargs)
    finally:
        job.seconds += time.perf_counter() - start


def _load_denoiser(
    model: str, weights: Path | None, device: str, precision: str, tile: int | None, overlap: int | None
) -> Denoiser:
    """The model wrapped for inference; setup problems become usage errors (exit 2)."""
    try:
        denoiser = load_denoiser(model, weights, device, precision, tile, overlap)
    except SetupError as exc:
        raise click.UsageError(str(exc)) from exc
    if not getattr(denoiser.model, "pretrained", False):
        click.echo(
            f"warning: no trained {model} weights found; using a randomly initialised network, "
            "so the output is not denoised (pass --weights FILE)",
            err=True,
        )
    return denoiser


def _read_sizes(jobs: list[Job]) -> None:
    """Fill in each job's size from its header (no decoding); unreadable files stay unknown."""
    from invdn.io.images import ImageError, read_image_header

    for job in jobs:
        if job.source is None:
            continue
        try:
            _, width, height = read_image_header(job.source)
            job.size = (width, height)
        except (ImageError, OSError):
            job.size = None


def plan_jobs(
    inputs: tuple[str, ...],
    output: str | None,
    fmt: str,
    suffix: str,
    recursive: bool,
    allow_inside: bool,
    shard: tuple[int, int] | None,
    overwrite: bool,
    skip_existing: bool,
    uri_inputs: bool = False,
) -> list[Job]:
    """The jobs of this run (of shard K/N only, if given), those whose output exists marked skipped or failed.

    `uri_inputs`: inputs and OUT may be URIs that pyarrow.fs opens (the Ray path; see invdn.io.uris).
    """
    from invdn.io import uris

    if uri_inputs and any(uris.is_uri(item) for item in (*inputs, output)):
        jobs = uris.plan_uris(inputs, output, fmt, suffix, recursive, allow_inside)
    elif any(uris.is_uri(item) for item in (*inputs, output)):
        raise click.UsageError("URIs (scheme://...) are read and written by the Ray path only: add --ray")
    else:
        plan = build_plan(inputs, output, fmt, suffix, recursive, allow_inside)
        if plan.stdio and shard is not None:
            raise click.UsageError("--shard splits folders and globs; it cannot split stdin/stdout")
        jobs = plan.jobs
    jobs = take_shard(jobs, shard)
    for job in jobs:
        if job.target is not None and not overwrite and uris.exists(job.target):
            if skip_existing:
                job.status, job.reason = "skipped", f"output exists ({job.target})"
            else:
                job.status = "failed"
                job.reason = f"output {job.target} exists; pass --overwrite to replace it or --skip-existing"
    return jobs


def _parse_shard(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[int, int] | None:
    if value is None:
        return None
    try:
        return parse_shard(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc


def _merge_reports(paths: tuple[str, ...], destination: Path | None, overwrite: bool, quiet: bool) -> None:
    """`--merge-reports`: INPUT... are reports; the merged one goes to --report. Exit 1 if any file failed."""
    from invdn.batch.reports import ReportError, merge_reports, write_report

    if destination is None:
        raise click.UsageError("--merge-reports writes the merged report to --report FILE; give one")
    if any(Path(path).resolve() == destination.resolve() for path in paths):
        raise click.UsageError(f"--report {destination} is one of the reports being merged; name a new file")
    try:
        merged = merge_reports([Path(path) for path in paths])
        write_report(destination, merged.lines, overwrite=overwrite)
    except ReportError as exc:
        raise click.UsageError(str(exc)) from exc
    except FileExistsError as exc:
        raise click.UsageError(f"{destination} exists; pass --overwrite to replace it") from exc
    for name in merged.duplicates:
        click.echo(f"warning: {name} was denoised by more than one of these runs (overlapping shards?)", err=True)
    if not quiet:
        for line in merged.lines:
            if line["status"] == "failed":
                click.echo(f"failed {line.get('input')}: {line.get('reason')}", err=True)
    counts = merged.counts
    click.echo(
        f"merged {len(paths)} report(s), {merged.read} line(s) -> {destination}: {len(merged.lines)} file(s), "
        f"done {counts['done']}, skipped {counts['skipped']}, failed {counts['failed']}",
        err=True,
    )
    if counts["failed"]:
        sys.exit(1)


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


@click.command(context_settings={"show_default": True, "help_option_names": ["-h", "--help"]})
@click.argument("inputs", metavar="INPUT...", nargs=-1, required=True)
@click.option(
    "-o",
    "--output",
    metavar="OUT",
    default=None,
    show_default=False,
    help="Output folder (inputs' folders are mirrored under it), a file name for a single input file, "
    "or '-' for stdout.",
)
@click.option(
    "--model",
    type=click.Choice(registry.choices()),
    default=registry.DEFAULT,
    help="Denoiser: "
    + "; ".join(
        f"{spec.name} = {spec.label}" + (f" (alias {', '.join(spec.aliases)})" if spec.aliases else "")
        for spec in registry.MODELS
    )
    + ".",
)
@click.option(
    "--weights",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    show_default=False,
    help="A .safetensors weights file to use instead of the shipped weights.",
)
@click.option("--samples", type=click.IntRange(min=1), default=1, help="InvDN latent draws averaged per image.")
@click.option("--ensemble/--no-ensemble", default=False, help="Average the 8 flips/transposes (8x slower).")
@click.option("--seed", type=int, default=0, help="Seed of InvDN's latent draws: same seed, same output.")
@click.option(
    "--tile",
    type=click.IntRange(min=64),
    default=None,
    show_default="chosen from available memory",
    help="Tile side in pixels; images larger than this are denoised in overlapping tiles.",
)
@click.option(
    "--overlap",
    type=click.IntRange(min=0),
    default=None,
    show_default=f"the model's own: {_overlap_help()}",
    help="Minimum overlap between tiles, pixels.",
)
@click.option("--device", default="auto", help="auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps.")
@click.option(
    "--precision",
    type=click.Choice(["fp32", "bf16", "fp16"]),
    default="fp32",
    help="Compute precision; bf16/fp16 only where the device supports them.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMAT_CHOICES, case_sensitive=False),
    default="keep",
    help="Output format; keep = the input's (GIF is written as PNG).",
)
@click.option("--quality", type=click.IntRange(1, 100), default=95, help="JPEG/WebP quality.")
@click.option("--suffix", default="", help="Appended to each output's file name stem, e.g. _denoised.")
@click.option("--recursive/--no-recursive", default=True, help="Descend into sub-folders of input folders.")
@click.option("--overwrite", is_flag=True, help="Replace outputs that already exist.")
@click.option(
    "--skip-existing/--no-skip-existing",
    default=True,
    help="Skip inputs whose output exists (so an interrupted run resumes); without it, existing outputs "
    "are failures unless --overwrite.",
)
@click.option("--allow-inside", is_flag=True, help="Allow OUT inside an input folder (OUT itself is not read).")
@click.option("--fail-fast", is_flag=True, help="Stop at the first file that fails.")
@click.option("--dry-run", is_flag=True, help="List what would be done (reads headers only); write nothing.")
@click.option(
    "--report",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    show_default=False,
    help="Append one JSON line per file (input, output, status, reason, size, seconds) to this file.",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=1,
    help="Threads decoding/encoding alongside inference; torch threads are reduced to match the cores.",
)
@click.option(
    "--max-megapixels",
    type=click.FloatRange(min=0, min_open=True),
    default=250.0,
    help="Refuse images larger than this (checked on the header, before decoding).",
)
@click.option("-q", "--quiet", is_flag=True, help="Only errors and the summary.")
@click.option(
    "--shard",
    metavar="K/N",
    default=None,
    callback=_parse_shard,
    show_default=False,
    help="Take only part K of N (1 <= K <= N) of the files, chosen by each file's relative path, so N machines "
    "sharing a file system or bucket can split a batch; merge their reports with --merge-reports.",
)
@click.option(
    "--merge-reports",
    is_flag=True,
    help="Instead of denoising: INPUT... are --report files (e.g. of N shards), merged into --report FILE with "
    "each file's latest line; exit 1 if any file's latest status is failed.",
)
@click.option(
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
)
@click.option(
    "--ray-actors",
    type=click.IntRange(min=1),
    default=None,
    show_default="as many as the cluster's CPUs (GPUs) allow",
    help="With --ray: actors, each loading the model once.",
)
@click.option(
    "--ray-cpus",
    type=click.FloatRange(min=0, min_open=True),
    default=1.0,
    help="With --ray: CPUs reserved per actor (its torch threads).",
)
@click.option(
    "--ray-gpus",
    type=click.FloatRange(min=0),
    default=0.0,
    help="With --ray: GPUs per actor; above 0 the actors denoise on CUDA.",
)
def denoise(
    inputs: tuple[str, ...],
    output: str | None,
    model: str,
    weights: Path | None,
    samples: int,
    ensemble: bool,
    seed: int,
    tile: int | None,
    overlap: int | None,
    device: str,
    precision: str,
    fmt: str,
    quality: int,
    suffix: str,
    recursive: bool,
    overwrite: bool,
    skip_existing: bool,
    allow_inside: bool,
    fail_fast: bool,
    dry_run: bool,
    report: Path | None,
    workers: int,
    max_megapixels: float,
    quiet: bool,
    shard: tuple[int, int] | None,
    merge_reports: bool,
    ray_address: str | None,
    ray_actors: int | None,
    ray_cpus: float,
    ray_gpus: float,
) -> None:
    """Denoise image files, folders (recursively, mirrored under OUT) and globs; '-' reads stdin.

    Inputs are never modified; outputs are written atomically and existing ones are skipped, so an
    interrupted run can simply be started again. Broken files are reported and passed over.
    In folders, files with an image extension are taken; hidden files and folders are not.
    Exit status: 0 all done, 1 some files failed, 2 usage error.
    """
    if merge_reports:
        _merge_reports(inputs, report, overwrite, quiet)
        return
    fmt = fmt.lower()
    if "/" in suffix or os.sep in suffix:
        raise click.BadParameter("must not contain a path separator", param_hint="--suffix")
    on_ray = ray_address is not None
    jobs = plan_jobs(
        inputs, output, fmt, suffix, recursive, allow_inside, shard, overwrite, skip_existing, uri_inputs=on_ray
    )
    stdio = any(job.target is None for job in jobs)
    if on_ray and stdio:
        raise click.UsageError("--ray writes files: give -o a folder, not '-'")
    if not jobs:
        click.echo("no images found in the inputs" + (f" for shard {shard[0]}/{shard[1]}" if shard else ""), err=True)
        return
    _read_sizes(jobs)
    todo = [job for job in jobs if job.status == "pending"]
    done_before = [job for job in jobs if job.status != "pending"]

    if dry_run:
        for job in jobs:
            size = f" ({job.size[0]}x{job.size[1]})" if job.size else " (size unknown: unreadable?)"
            verb = {"pending": "would denoise", "skipped": "would skip", "failed": "would fail"}[job.status]
            line = f"{verb} {job.name} -> {job.target_name}{size if job.status == 'pending' else ''}"
            click.echo(line + (f": {job.reason}" if job.reason else ""))
        click.echo(f"{len(todo)} to denoise, {len(done_before)} skipped or refused (dry run: nothing written)")
        return

    if on_ray:
        from invdn.batch.ray import connect
        from invdn.io import uris

        try:
            connected = connect(None if ray_address == "default" else ray_address)
        except (RuntimeError, ConnectionError, ValueError) as exc:  # RayUnavailable is a RuntimeError
            raise click.UsageError(f"cannot start or join Ray ({ray_address}): {exc}") from exc
        denoiser = None
        removed = remove_stale_temp_files([job for job in jobs if not uris.is_uri(job.target)])
        removed += uris.remove_stale_temp_files(jobs)
    else:
        from invdn.runtime import configure_threads

        configure_threads(workers)
        denoiser = _load_denoiser(model, weights, device, precision, tile, overlap)
        if samples > 1 and not getattr(registry.spec_of(denoiser.model), "stochastic", False):
            click.echo(f"warning: --samples has no effect on {model} (it draws no random latents)", err=True)
        removed = remove_stale_temp_files(jobs)
    if removed:
        click.echo(f"removed {removed} temporary file(s) left by an interrupted run", err=True)
    skipped = sum(job.status == "skipped" for job in jobs)
    if skipped and not quiet:
        click.echo(f"skipping {skipped} file(s) whose output exists", err=True)

    report_stream = None
    if report is not None:
        report.parent.mkdir(parents=True, exist_ok=True)
        report_stream = open(report, "a", encoding="utf-8")  # closed in the finally below
    total_mp = sum(job.megapixels for job in todo)
    reporter = Reporter(len(jobs), total_mp, report_stream, quiet or stdio, order=jobs)
    options = Options.from_cli(overwrite, quality, samples, ensemble, seed, max_megapixels)
    interrupted = False
    try:
        for job in done_before:
            reporter.record(job)
        if fail_fast and any(job.status == "failed" for job in done_before):
            completed = False
        elif on_ray:
            from invdn.batch.ray import ActorSettings, ModelSettings, run_on_ray

            completed = run_on_ray(
                todo,
                ModelSettings(model, weights, device, precision, tile, overlap),
                options,
                reporter,
                ActorSettings(ray_actors, ray_cpus, ray_gpus),
                fail_fast,
                on_untrained=lambda: click.echo(
                    f"warning: no trained {model} weights found on the Ray workers; the output is not denoised "
                    "(pass --weights FILE)",
                    err=True,
                ),
            )
        else:
            assert denoiser is not None
            completed = run_jobs(todo, denoiser, options, reporter, workers, fail_fast)
    except KeyboardInterrupt:
        interrupted = True
        completed = False
    finally:
        summary = reporter.close()
        if report_stream is not None:
            report_stream.close()
        if on_ray and connected:
            import ray

            ray.shutdown()
    if not completed and not interrupted:
        summary += " (stopped early: --fail-fast)"
    click.echo(("interrupted: " if interrupted else "") + summary, err=True)
    if interrupted:
        sys.exit(130)
    if reporter.counts["failed"]:
        sys.exit(1)
