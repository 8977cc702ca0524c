"""invdn.io.atomic: a written file is whole or absent, never clobbered unless asked, its temporary file always
cleaned up or recognisable as stale, and the process umask is read without being changed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from invdn.io import atomic
from invdn.io.atomic import STALE_TEMP, stale_temp_target, swap_in_folder, temp_name, write_atomic


def test_a_target_that_appears_during_the_write_is_not_clobbered(tmp_path: Path, monkeypatch) -> None:
    target = tmp_path / "out.png"
    real_link = os.link

    def other_writer_first(source: str, destination: Path) -> None:
        Path(destination).write_bytes(b"theirs")  # created after the exists() check, before the link
        real_link(source, destination)

    monkeypatch.setattr(os, "link", other_writer_first)
    with pytest.raises(FileExistsError):
        write_atomic(target, b"ours")
    assert target.read_bytes() == b"theirs"
    assert [p.name for p in tmp_path.iterdir()] == ["out.png"]  # our temporary file is gone


def test_a_failed_write_leaves_neither_target_nor_temporary_file(tmp_path: Path, monkeypatch) -> None:
    def disk_full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space"):
        write_atomic(tmp_path / "sub" / "out.png", b"data")
    assert list((tmp_path / "sub").iterdir()) == []


def test_without_hard_links_it_still_never_clobbers(tmp_path: Path, monkeypatch) -> None:
    def no_links(source: str, destination: Path) -> None:
        raise PermissionError(1, "Operation not permitted")  # e.g. some network and FAT file systems

    monkeypatch.setattr(os, "link", no_links)
    target = tmp_path / "out.png"
    write_atomic(target, b"first")
    with pytest.raises(FileExistsError):
        write_atomic(target, b"second")
    assert target.read_bytes() == b"first" and [p.name for p in tmp_path.iterdir()] == ["out.png"]


def test_temporary_files_are_named_as_stale_temp_recognises(tmp_path: Path, monkeypatch) -> None:
    seen: list[str] = []
    real_link = os.link

    def spy(source: str, destination: Path) -> None:
        seen.append(Path(source).name)
        real_link(source, destination)

    monkeypatch.setattr(os, "link", spy)
    write_atomic(tmp_path / "photo.v2.png", b"data")
    assert len(seen) == 1 and STALE_TEMP.match(seen[0]) and stale_temp_target(seen[0]) == "photo.v2.png"
    assert stale_temp_target(temp_name("a.jpg", "k1ll3d00")) == "a.jpg"
    assert stale_temp_target("photo.png") is None and stale_temp_target(".photo.png.tmp") is None


def test_permissions_follow_the_umask_which_stays_unchanged(tmp_path: Path, monkeypatch) -> None:
    changed: list[int] = []
    real_umask = os.umask
    old = real_umask(0o027)
    try:
        monkeypatch.setattr(os, "umask", lambda mask: changed.append(mask) or real_umask(mask))
        write_atomic(tmp_path / "a.png", b"a")
        write_atomic(tmp_path / "a.png", b"b", overwrite=True)
        assert (tmp_path / "a.png").stat().st_mode & 0o777 == 0o640
        assert atomic.current_umask() == 0o027
        assert changed == []  # read from /proc, never set-and-restored
    finally:
        monkeypatch.undo()
        os.umask(old)


def test_swap_in_folder_replaces_the_old_folder_whole(tmp_path: Path) -> None:
    folder, staged = tmp_path / "checkpoint", tmp_path / "checkpoint.tmp"
    folder.mkdir()
    (folder / "old.bin").write_bytes(b"old")
    staged.mkdir()
    (staged / "new.bin").write_bytes(b"new")
    swap_in_folder(staged, folder)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint"]
    assert [p.name for p in folder.iterdir()] == ["new.bin"]
    staged.mkdir()
    swap_in_folder(staged, tmp_path / "fresh")  # nothing to replace yet
    assert (tmp_path / "fresh").is_dir() and not staged.exists()
