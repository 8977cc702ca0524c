"""Inputs and outputs named by URI (s3://, gs://, hdfs://, file://, anything `pyarrow.fs.FileSystem.from_uri`
opens), for the Ray path of `invdn denoise`. pyarrow comes with the `ray` extra and is imported only here.

Planning mirrors `invdn.cli.denoise.build_plan` for folders: the same output names, formats and hidden-file
rules; outputs are written through a temporary file next to the target and never replace an existing file
unless asked to (local paths through `invdn.io.images.write_image_atomic` itself).
"""

from __future__ import annotations

import secrets
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

import click

from invdn.io.images import TEMP_SUFFIX, format_for_path

if TYPE_CHECKING:
    from pyarrow.fs import FileSystem

    from invdn.cli.denoise import Job


def is_uri(text: str | Path | None) -> bool:
    """Whether `text` names a location by URI (scheme://...) rather than a local path."""
    return isinstance(text, str) and "://" in text


def open_uri(uri: str) -> tuple[FileSystem, str]:
    """(file system, path inside it) for a URI."""
    try:
        from pyarrow import fs as pafs
    except ImportError as exc:
        raise click.UsageError(f"{uri}: URIs need pyarrow: pip install 'invdn[ray]'") from exc
    try:
        return pafs.FileSystem.from_uri(uri)
    except (ValueError, OSError) as exc:  # pyarrow raises ArrowInvalid (a ValueError) or OSError
        raise click.UsageError(f"cannot open {uri}: {exc}") from exc


def _join(base: str, *parts: str) -> str:
    tail = "/".join(part for part in parts if part and part != ".")
    return base.rstrip("/") + "/" + tail if tail else base


def _list_images(fs: FileSystem, folder: str, recursive: bool, exclude: str | None) -> list[str]:
    """Image files under `folder` (relative POSIX paths, sorted), skipping hidden entries and `exclude`."""
    from pyarrow.fs import FileSelector, FileType

    from invdn.cli.denoise import IMAGE_EXTENSIONS

    base = folder.rstrip("/")
    found = []
    for info in fs.get_file_info(FileSelector(base, recursive=recursive)):
        if info.type != FileType.File:
            continue
        relative = info.path[len(base) :].lstrip("/")
        parts = PurePosixPath(relative).parts
        if any(part.startswith(".") for part in parts):
            continue
        if exclude is not None and (info.path + "/").startswith(exclude.rstrip("/") + "/"):
            continue
        if PurePosixPath(relative).suffix.lower() in IMAGE_EXTENSIONS:
            found.append(relative)
    return sorted(found)


def plan_uris(
    inputs: tuple[str, ...], output: str | None, fmt: str, suffix: str, recursive: bool, allow_inside: bool
) -> list[Job]:
    """Jobs for URI inputs (folders or files; no globs), written under OUT (a URI or a local folder)."""
    from pyarrow.fs import FileType

    from invdn.cli.denoise import STDIO, Job, _job_format, _output_name

    if output is None or output == STDIO:
        raise click.UsageError("with URI inputs, -o must name an output folder (a URI or a local path)")
    not_uris = [item for item in inputs if not is_uri(item)]
    if not_uris:
        raise click.UsageError(
            f"{not_uris[0]} is not a URI: with URI inputs give every input as a URI (file:///path for local files)"
        )
    out_uri = output.rstrip("/") if is_uri(output) else None
    jobs: list[Job] = []
    for item in inputs:
        fs, path = open_uri(item)
        info = fs.get_file_info(path)
        if info.type == FileType.Directory:
            inside = out_uri is not None and (out_uri + "/").startswith(item.rstrip("/") + "/")
            if inside and not allow_inside:
                raise click.UsageError(
                    f"output folder {output} is inside input folder {item}; choose another -o or pass --allow-inside"
                )
            exclude = open_uri(out_uri)[1] if inside and out_uri is not None else None
            entries = [(_join(item, rel), rel) for rel in _list_images(fs, path, recursive, exclude)]
        elif info.type == FileType.File:
            entries = [(item, PurePosixPath(path).name)]
        else:
            raise click.UsageError(f"no such file or folder: {item}")
        for source, relative in entries:
            rel = PurePosixPath(relative)
            if format_for_path(rel.name) is None:
                raise click.UsageError(f"{source}: a URI input needs an image file extension")
            name = _output_name(Path(rel.name), fmt, suffix)
            folder = rel.parent.as_posix()
            target: str | Path = _join(out_uri, folder, name) if out_uri is not None else Path(output) / folder / name
            # Job's fields are typed as paths; URI jobs carry URI strings (str() of either names the file)
            jobs.append(Job(source=source, target=target, fmt=_job_format(Path(rel.name), fmt), key=rel.as_posix()))  # type: ignore[arg-type]

    sources = {str(job.source) for job in jobs}
    seen: dict[str, Job] = {}
    for job in jobs:
        target_name = str(job.target)
        if target_name in sources:
            raise click.UsageError(f"output {job.target} would replace an input file; change -o or --suffix")
        if target_name in seen:
            raise click.UsageError(
                f"{seen[target_name].source} and {job.source} would both be written to {job.target}; "
                "denoise them in separate runs or use --suffix"
            )
        seen[target_name] = job
    return jobs


def exists(location: str | Path) -> bool:
    """Whether a local path or a URI names an existing file."""
    if not is_uri(location):
        return Path(location).exists()
    from pyarrow.fs import FileType

    fs, path = open_uri(str(location))
    return fs.get_file_info(path).type != FileType.NotFound


def read_bytes(uri: str) -> bytes:
    """The whole file at `uri`."""
    fs, path = open_uri(uri)
    with fs.open_input_stream(path) as stream:
        return stream.read()


def write_atomic(uri: str, data: bytes, overwrite: bool = False) -> None:
    """Write `data` to `uri` through a temporary file next to it, then move it in place.

    Without `overwrite` an existing target is left alone (FileExistsError). On local file systems this is
    `write_image_atomic` (a hard link: never clobbers, even in a race); on object stores the existence check
    and the move are two calls, which is safe because shards never share an output.
    """
    from pyarrow.fs import FileType, LocalFileSystem

    from invdn.io.images import write_image_atomic

    fs, path = open_uri(uri)
    if isinstance(fs, LocalFileSystem):
        write_image_atomic(path, data, overwrite=overwrite)
        return
    if not overwrite and fs.get_file_info(path).type != FileType.NotFound:
        raise FileExistsError(f"{uri} exists (not overwriting)")
    parent, name = str(PurePosixPath(path).parent), PurePosixPath(path).name
    fs.create_dir(parent, recursive=True)
    temp = f"{parent}/.{name}.{secrets.token_hex(4)}{TEMP_SUFFIX}"
    try:
        with fs.open_output_stream(temp) as stream:
            stream.write(data)
        if not overwrite and fs.get_file_info(path).type != FileType.NotFound:
            raise FileExistsError(f"{uri} exists (not overwriting)")
        fs.move(temp, path)
    finally:
        if fs.get_file_info(temp).type != FileType.NotFound:
            fs.delete_file(temp)


def remove_stale_temp_files(jobs: list[Job]) -> int:
    """Delete temporary files that a killed run left next to URI outputs of `jobs`; returns how many."""
    from pyarrow.fs import FileSelector, FileType

    from invdn.cli.denoise import STALE_TEMP

    by_folder: dict[str, set[str]] = {}
    for job in jobs:
        if is_uri(job.target):
            folder, _, name = str(job.target).rpartition("/")
            by_folder.setdefault(folder, set()).add(name)
    removed = 0
    for folder, names in by_folder.items():
        fs, path = open_uri(folder)
        for info in fs.get_file_info(FileSelector(path, allow_not_found=True)):
            match = STALE_TEMP.match(info.base_name)
            if info.type == FileType.File and match and match.group("name") in names:
                fs.delete_file(info.path)
                removed += 1
    return removed
