"""Planning a batch: which input files become which output files, refusing anything that could lose data.

`build_plan` turns INPUT arguments (files, folders walked for image extensions, globs, "-" for stdin) into jobs
with output paths mirrored under OUT; `plan_uris` does the same for URIs (the Ray path). Planning refuses an
output folder inside an input (unless allowed), an output that would replace an input and two inputs written to
one output (PlanError). `plan_jobs` adds sharding and marks jobs whose output exists as skipped or failed; nothing
here writes a file except `remove_stale_temp_files`, which deletes what a killed run left behind.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from invdn.batch.shard import take_shard
from invdn.io import formats
from invdn.io.atomic import stale_temp_target

STDIO = "-"  # as INPUT: read stdin; as OUT: write stdout


class PlanError(ValueError):
    """The inputs and outputs asked for cannot be run safely (or do not exist); the message says what to change."""


@dataclass(frozen=True)
class PlanRequest:
    """What to plan: the INPUT arguments, OUT, and how outputs are named and found."""

    inputs: tuple[str, ...]  # files, folders, globs, "-" (stdin); URIs on the Ray path
    output: str | None  # OUT: a folder, a file name for a single input, "-" (stdout); None with stdin
    fmt: str = "keep"  # output format (lower case): keep or a name from invdn.io.formats.CLI_FORMAT_CHOICES
    suffix: str = ""  # appended to each output's file name stem
    recursive: bool = True  # descend into sub-folders of input folders
    allow_inside: bool = False  # allow OUT inside an input folder (OUT itself is not read)


@dataclass
class Job:
    """One input image and where its result goes."""

    source: Path | None  # the input file; None for stdin (URI jobs carry the URI string)
    target: Path | None  # the output file; None for stdout (URI jobs carry the URI string)
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


def _sniff_file(path: Path) -> str | None:
    try:
        with open(path, "rb") as stream:
            return formats.sniff_format(stream.read(formats.SNIFF_BYTES))
    except OSError:
        return None


def _source_format(source: Path) -> str:
    """The format of an input by its extension, else by its first bytes, else PNG."""
    return formats.format_for_path(source) or _sniff_file(source) or "PNG"


def output_name(source: Path, fmt: str, suffix: str) -> str:
    """File name of the output for `source`: stem + suffix + extension of the output format."""
    if fmt == "keep":
        source_format = _source_format(source)
        written = formats.output_format(source_format)
        if written == source_format and formats.format_for_path(source) == written:
            return source.stem + suffix + source.suffix  # keep the user's spelling (.jpeg, .TIF ...)
        return source.stem + suffix + formats.extension(written)
    return source.stem + suffix + formats.extension(fmt)


def job_format(source: Path, fmt: str) -> str:
    """The format an output is written in: "keep" follows the input's extension (GIF becomes PNG)."""
    return fmt if fmt != "keep" else formats.output_format(_source_format(source))


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
            if not name.startswith(".") and formats.is_image_path(name):
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


def _inside_message(out: object, where: str) -> str:
    return f"output folder {out} is inside {where}; choose another -o or pass --allow-inside"


def _sources(inputs: tuple[str, ...], out: Path, recursive: bool, allow_inside: bool) -> list[tuple[Path, Path]]:
    """(input file, its folder relative to OUT) for every image the INPUT arguments name, in order."""
    sources: list[tuple[Path, Path]] = []
    out_resolved = out.resolve()
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            folder = path.resolve()
            if _is_within(out_resolved, folder) and not allow_inside:
                raise PlanError(_inside_message(out, f"input folder {item}"))
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
                raise PlanError(f"no files match {item!r}")
            if _is_within(out_resolved, base.resolve()) and not allow_inside:
                raise PlanError(_inside_message(out, f"{base} where {item!r} matches"))
            for match in matches:
                if _is_within(match.resolve(), out_resolved):
                    continue  # never denoise our own outputs
                sources.append((match, match.relative_to(base).parent if base != Path(".") else match.parent))
        else:
            raise PlanError(f"no such file or folder: {item}")
    return sources


def _check_targets(jobs: list[Job], inputs: set[object], identify: Callable[[object], object]) -> None:
    """PlanError when an output would replace an input or two inputs would be written to one output.

    `identify` turns a job's target into what `inputs` holds: the resolved path, or the URI string.
    """
    seen: dict[object, Job] = {}
    for job in jobs:
        target = identify(job.target)
        if target in inputs:
            raise PlanError(f"output {job.target} would replace an input file; change -o or --suffix")
        if target in seen:
            raise PlanError(
                f"{seen[target].source} and {job.source} would both be written to {job.target}; "
                "denoise them in separate runs or use --suffix"
            )
        seen[target] = job


def build_plan(request: PlanRequest) -> Plan:
    """Turn local INPUT arguments into jobs; raises PlanError for anything that makes the run unsafe."""
    inputs, output, fmt, suffix = request.inputs, request.output, request.fmt, request.suffix
    if STDIO in inputs:
        if len(inputs) > 1:
            raise PlanError("'-' (stdin) must be the only input")
        if output not in (None, STDIO):
            raise PlanError("with stdin as input, the output goes to stdout: leave -o out or use -o -")
        return Plan(jobs=[Job(source=None, target=None, fmt=fmt)], stdio=True)
    if output is None:
        raise PlanError("missing -o/--output (a folder; or '-' for stdout with a single input file)")

    out = Path(output)
    sources = _sources(inputs, out, request.recursive, request.allow_inside)
    if output == STDIO:
        if len(sources) != 1:
            raise PlanError(f"-o - (stdout) takes exactly one input image, got {len(sources)}")
        source = sources[0][0]
        return Plan(jobs=[Job(source=source, target=None, fmt=job_format(source, fmt), key=source.name)], stdio=True)

    single_file_target = (
        len(inputs) == 1
        and len(sources) == 1
        and Path(inputs[0]).is_file()
        and formats.is_image_path(out)
        and not out.is_dir()
    )
    out_format = formats.lookup(formats.format_for_path(out) or "PNG")
    if single_file_target and not out_format.writable:
        written = formats.extension(formats.output_format(out_format.name))
        raise PlanError(f"cannot write {out_format.name} ({out_format.unwritable_because}); name the output {written}")
    jobs: list[Job] = []
    for source, relative_folder in sources:
        if single_file_target:  # -o names the output file; with --format keep, its extension picks the format
            target = out
            job_fmt = fmt if fmt != "keep" else formats.output_format(out_format.name)
        else:
            target = out / relative_folder / output_name(source, fmt, suffix)
            job_fmt = job_format(source, fmt)
        jobs.append(Job(source=source, target=target, fmt=job_fmt, key=(relative_folder / source.name).as_posix()))
    _check_targets(jobs, {source.resolve() for source, _ in sources}, lambda target: Path(str(target)).resolve())
    return Plan(jobs=jobs)


def plan_uris(request: PlanRequest) -> list[Job]:
    """Jobs for URI inputs (folders or files; no globs), written under OUT (a URI or a local folder), with the
    output names, formats and hidden-file rules of `build_plan`."""
    from invdn.io import uris

    inputs, output, fmt, suffix = request.inputs, request.output, request.fmt, request.suffix
    if output is None or output == STDIO:
        raise PlanError("with URI inputs, -o must name an output folder (a URI or a local path)")
    not_uris = [item for item in inputs if not uris.is_uri(item)]
    if not_uris:
        raise PlanError(
            f"{not_uris[0]} is not a URI: with URI inputs give every input as a URI (file:///path for local files)"
        )
    out_uri = output.rstrip("/") if uris.is_uri(output) else None
    jobs: list[Job] = []
    for item in inputs:
        found = uris.kind(item)
        if found == "folder":
            inside = out_uri is not None and (out_uri + "/").startswith(item.rstrip("/") + "/")
            if inside and not request.allow_inside:
                raise PlanError(_inside_message(output, f"input folder {item}"))
            relatives = uris.list_images(item, request.recursive, out_uri if inside else None)
            entries = [(uris.join(item, relative), relative) for relative in relatives]
        elif found == "file":
            entries = [(item, PurePosixPath(uris.open_uri(item)[1]).name)]
        else:
            raise PlanError(f"no such file or folder: {item}")
        for source, relative in entries:
            rel = PurePosixPath(relative)
            if formats.format_for_path(rel.name) is None:
                raise PlanError(f"{source}: a URI input needs an image file extension")
            name = output_name(Path(rel.name), fmt, suffix)
            folder = rel.parent.as_posix()
            target = uris.join(out_uri, folder, name) if out_uri is not None else Path(output) / folder / name
            # Job's fields are typed as paths; URI jobs carry URI strings (str() of either names the file)
            jobs.append(Job(source=source, target=target, fmt=job_format(Path(rel.name), fmt), key=rel.as_posix()))  # type: ignore[arg-type]
    _check_targets(jobs, {str(job.source) for job in jobs}, str)
    return jobs


def plan_jobs(
    request: PlanRequest,
    shard: tuple[int, int] | None = None,
    overwrite: bool = False,
    skip_existing: bool = True,
    uri_inputs: bool = False,
) -> list[Job]:
    """The jobs of this run (of shard K/N only, if given), those whose output exists marked skipped or failed.

    `uri_inputs`: inputs and OUT may be URIs that pyarrow.fs opens (the Ray path; see invdn.io.uris). Raises
    PlanError (or invdn.io.uris.UriError) for a run that cannot be planned safely.
    """
    from invdn.io import uris

    named_by_uri = any(uris.is_uri(item) for item in (*request.inputs, request.output))
    if uri_inputs and named_by_uri:
        jobs = plan_uris(request)
    elif named_by_uri:
        raise PlanError("URIs (scheme://...) are read and written by the Ray path only: add --ray")
    else:
        plan = build_plan(request)
        if plan.stdio and shard is not None:
            raise PlanError("--shard splits folders and globs; it cannot split stdin/stdout")
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


def read_sizes(jobs: list[Job]) -> None:
    """Fill in each local job's size from its header (no decoding); unreadable files stay unknown."""
    from invdn.io.decode import read_image_header
    from invdn.io.errors import ImageError
    from invdn.io.uris import is_uri

    for job in jobs:
        if job.source is None or is_uri(job.source):
            continue
        try:
            _, width, height = read_image_header(job.source)
            job.size = (width, height)
        except (ImageError, OSError):
            job.size = None


def remove_stale_temp_files(jobs: list[Job]) -> int:
    """Delete temporary files that a killed run left next to the outputs of `jobs` (local or URI); how many."""
    from invdn.io import uris

    local = [job.target for job in jobs if job.target is not None and not uris.is_uri(job.target)]
    remote = [str(job.target) for job in jobs if uris.is_uri(job.target)]
    return _remove_local_temp_files(local) + (uris.remove_stale_temp_files(remote) if remote else 0)


def _remove_local_temp_files(targets: list[Path]) -> int:
    by_folder: dict[Path, set[str]] = {}
    for target in targets:
        by_folder.setdefault(target.parent, set()).add(target.name)
    removed = 0
    for folder, names in by_folder.items():
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            if stale_temp_target(entry.name) in names and entry.is_file(follow_symlinks=False):
                try:
                    os.unlink(entry.path)
                    removed += 1
                except FileNotFoundError:
                    pass
    return removed
