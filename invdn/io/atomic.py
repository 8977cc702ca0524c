"""Atomic file writes: a file is either absent or complete, never partial, and never clobbered unless asked.

`write_atomic` writes through a temporary file in the target's folder, named `.NAME.XXXXXXXX.invdn-tmp`, then
links or renames it into place. A run killed mid-write leaves only such a temporary file; `STALE_TEMP` recognises
them so the next run can delete them (`stale_temp_target`). `swap_in_folder` does the same for whole folders
(checkpoints).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

TEMP_SUFFIX = ".invdn-tmp"  # temporary files of `write_atomic` end with this
# "." + the target's name + "." + 8 random characters (tempfile's) + TEMP_SUFFIX
STALE_TEMP = re.compile(r"^\.(?P<name>.+)\.[a-z0-9_]{8}" + re.escape(TEMP_SUFFIX) + "$")


def current_umask() -> int:
    """The process umask, read without changing it (Linux: /proc/self/status); elsewhere the set-and-restore
    idiom, which briefly changes it for every thread, so only there."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def temp_name(target_name: str, token: str) -> str:
    """The name of a temporary file for `target_name` (`token`: 8 random characters), as STALE_TEMP matches."""
    return f".{target_name}.{token}{TEMP_SUFFIX}"


def stale_temp_target(name: str) -> str | None:
    """The target file name a leftover temporary file named `name` was for, or None when it is not one."""
    match = STALE_TEMP.match(name)
    return match.group("name") if match else None


def write_atomic(path: str | os.PathLike[str], data: bytes, overwrite: bool = False) -> None:
    """Write `data` to `path` through a temporary file in the same folder, so no partial file ever exists.

    Without `overwrite`, an existing file is left alone and FileExistsError raised (also when another writer
    creates it meanwhile: the file is hard-linked into place, which fails rather than replace). With it, the file
    is renamed over the old one. Missing parent folders are created; the file gets the permissions a new file
    gets under the process umask (which is read, never changed). The temporary file is removed on any failure.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    if not overwrite and target.exists():
        raise FileExistsError(f"{target} exists (not overwriting)")
    handle, temp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=TEMP_SUFFIX, dir=target.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temp, 0o666 & ~current_umask())
        if overwrite:
            os.replace(temp, target)
        else:
            try:
                os.link(temp, target)  # fails if the target appeared meanwhile: never clobbers
            except FileExistsError:
                raise
            except OSError:  # file systems without hard links
                if target.exists():
                    raise FileExistsError(f"{target} exists (not overwriting)") from None
                os.replace(temp, target)
    finally:
        if os.path.exists(temp):
            os.unlink(temp)


def swap_in_folder(staged: Path, folder: Path) -> None:
    """Replace `folder` by the complete folder `staged` (its sibling): the old one stays whole until the new one is
    in place, and a crash leaves either of them (or FOLDER.old next to `staged`), never a mix."""
    old = folder.with_name(folder.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if folder.exists():
        folder.rename(old)
    staged.rename(folder)
    shutil.rmtree(old, ignore_errors=True)
