"""`--shard K/N`: split a batch over N machines by each file's relative path, never by listing order.

A file's shard depends on its own relative path only (a hash of it), so machines that list the same folder in
different orders, or at different moments while files are being added, still agree on who takes which file,
and every file belongs to exactly one shard.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from typing import Protocol, TypeVar

_SHARD = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


class Keyed(Protocol):
    key: str


K = TypeVar("K", bound=Keyed)


def parse_shard(text: str) -> tuple[int, int]:
    """'K/N' -> (K, N) with 1 <= K <= N; ValueError with the reason otherwise."""
    match = _SHARD.match(text)
    if not match:
        raise ValueError(f"expected K/N such as 1/4, got {text!r}")
    index, count = int(match.group(1)), int(match.group(2))
    if count < 1 or not 1 <= index <= count:
        raise ValueError(f"K/N needs 1 <= K <= N, got {text!r}")
    return index, count


def shard_of(key: str, count: int) -> int:
    """The shard (1..count) that the file with relative path `key` (POSIX separators) belongs to."""
    digest = hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % count + 1


def take_shard(items: Iterable[K], shard: tuple[int, int] | None) -> list[K]:
    """The items of shard (K, N) by their `key`, in their original order; all of them for None."""
    if shard is None:
        return list(items)
    index, count = shard
    return [item for item in items if shard_of(item.key, count) == index]
