"""Files named by URI (s3://, gs://, hdfs://, file://, anything `pyarrow.fs.FileSystem.from_uri` opens), for the
Ray path of `invdn denoise`: listing images, reading, writing atomically, removing leftover temporary files.

pyarrow comes with the `ray` extra and is imported only when a URI is used. Writes follow `invdn.io.atomic`: a
temporary file next to the target (same name pattern), never replacing an existing file unless asked to; local
file systems go through `invdn.io.atomic.write_atomic` itself.
"""

from __future__ import annotations

import secrets
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from invdn.io.atomic import stale_temp_target, temp_name
from invdn.io.atomic import write_atomic as write_local_atomic
from invdn.io.formats import is_image_path

if TYPE_CHECKING:
    from pyarrow.fs import FileSystem


class UriError(ValueError):
    """A URI that cannot be opened (or pyarrow, which opens them, is missing)."""


def is_uri(text: str | Path | None) -> bool:
    """Whether `text` names a location by URI (scheme://...) rather than a local path."""
    return isinstance(text, str) and "://" in text


def open_uri(uri: str) -> tuple[FileSystem, str]:
    """(file system, path inside it) for a URI."""
    try:
        from pyarrow import fs as pafs
    except ImportError as exc:
        raise UriError(f"{uri}: URIs need pyarrow: pip install 'invdn[ray]'") from exc
    try:
        return pafs.FileSystem.from_uri(uri)
    except (ValueError, OSError) as exc:  # pyarrow raises ArrowInvalid (a ValueError) or OSError
        raise UriError(f"cannot open {uri}: {exc}") from exc


def join(base: str, *parts: str) -> str:
    """`base` (a URI) with the relative POSIX `parts` appended ("." and empty parts are left out)."""
    tail = "/".join(part for part in parts if part and part != ".")
    return base.rstrip("/") + "/" + tail if tail else base


def list_images(folder: str, recursive: bool, exclude: str | None = None) -> list[str]:
    """Image files under the URI `folder` (relative POSIX paths, sorted), skipping hidden entries and the URI
    `exclude` (a folder inside it)."""
    from pyarrow.fs import FileSelector, FileType

    fs, base = open_uri(folder)
    base = base.rstrip("/")
    skip = open_uri(exclude)[1].rstrip("/") + "/" if exclude is not None else None
    found = []
    for info in fs.get_file_info(FileSelector(base, recursive=recursive)):
        if info.type != FileType.File:
            continue
        relative = info.path[len(base) :].lstrip("/")
        parts = PurePosixPath(relative).parts
        if any(part.startswith(".") for part in parts):
            continue
        if skip is not None and (info.path + "/").startswith(skip):
            continue
        if is_image_path(relative):
            found.append(relative)
    return sorted(found)


def kind(uri: str) -> str:
    """What `uri` names: "file", "folder" or "missing"."""
    from pyarrow.fs import FileType

    fs, path = open_uri(uri)
    found = fs.get_file_info(path).type
    return {FileType.File: "file", FileType.Directory: "folder"}.get(found, "missing")


def exists(location: str | Path) -> bool:
    """Whether a local path or a URI names an existing file."""
    if not is_uri(location):
        return Path(location).exists()
    return kind(str(location)) != "missing"


def read_bytes(uri: str) -> bytes:
    """The whole file at `uri`."""
    fs, path = open_uri(uri)
    with fs.open_input_stream(path) as stream:
        return stream.read()


def write_atomic(uri: str, data: bytes, overwrite: bool = False) -> None:
    """Write `data` to `uri` through a temporary file next to it, then move it in place.

    Without `overwrite` an existing target is left alone (FileExistsError). On local file systems this is
    `invdn.io.atomic.write_atomic` (a hard link: never clobbers, even in a race); on object stores the existence
    check and the move are two calls, which is safe because shards never share an output.
    """
    from pyarrow.fs import FileType, LocalFileSystem

    fs, path = open_uri(uri)
    if isinstance(fs, LocalFileSystem):
        write_local_atomic(path, data, overwrite=overwrite)
        return
    if not overwrite and fs.get_file_info(path).type != FileType.NotFound:
        raise FileExistsError(f"{uri} exists (not overwriting)")
    parent, name = str(PurePosixPath(path).parent), PurePosixPath(path).name
    fs.create_dir(parent, recursive=True)
    temp = f"{parent}/{temp_name(name, secrets.token_hex(4))}"
    try:
        with fs.open_output_stream(temp) as stream:
            stream.write(data)
        if not overwrite and fs.get_file_info(path).type != FileType.NotFound:
            raise FileExistsError(f"{uri} exists (not overwriting)")
        fs.move(temp, path)
    finally:
        if fs.get_file_info(temp).type != FileType.NotFound:
            fs.delete_file(temp)


def remove_stale_temp_files(targets: list[str]) -> int:
    """Delete temporary files that a killed run left next to the URI `targets`; returns how many."""
    from pyarrow.fs import FileSelector, FileType

    by_folder: dict[str, set[str]] = {}
    for target in targets:
        folder, _, name = target.rpartition("/")
        by_folder.setdefault(folder, set()).add(name)
    removed = 0
    for folder, names in by_folder.items():
        fs, path = open_uri(folder)
        for info in fs.get_file_info(FileSelector(path, allow_not_found=True)):
            if info.type == FileType.File and stale_temp_target(info.base_name) in names:
                fs.delete_file(info.path)
                removed += 1
    return removed
