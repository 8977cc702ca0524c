"""Combine the JSONL reports of several `invdn denoise --report` runs (shards, reruns) into one.

Each report line describes one input file in one run. A report is appended to on every run, and N shards write
N reports, so one input can have several lines: the merged report keeps the latest line of each input (by its
time, then by the order of the reports and of their lines), i.e. the file's state after the last run.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

STATUSES = ("done", "skipped", "failed")


class ReportError(ValueError):
    """A report that cannot be read: missing, or a line that is not a report line."""


@dataclass
class MergedReport:
    """The latest line of every input, and what the merge noticed."""

    lines: list[dict] = field(default_factory=list)  # one per input, sorted by input
    read: int = 0  # lines read from all reports
    # inputs denoised ("done") in more than one report: shards that overlapped, or a batch run twice
    duplicates: list[str] = field(default_factory=list)

    @property
    def counts(self) -> dict[str, int]:
        counted = Counter(line.get("status") for line in self.lines)
        return {status: counted.get(status, 0) for status in STATUSES}


def read_report(path: Path) -> list[dict]:
    """The lines of one report; ReportError names the file and line of anything unreadable."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ReportError(f"cannot read report {path}: {exc.strerror or exc}") from exc
    lines = []
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            line = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ReportError(f"{path}:{number}: not a JSON line ({exc.msg})") from exc
        if not isinstance(line, dict) or line.get("status") not in STATUSES:
            raise ReportError(f"{path}:{number}: not an invdn denoise report line (no done/skipped/failed status)")
        lines.append(line)
    return lines


def merge_reports(paths: list[Path]) -> MergedReport:
    """Merge reports: per input, its latest line. Lines without an input (stdin) are kept as they are."""
    latest: dict[str, tuple[tuple[str, int, int], dict]] = {}
    done_in: dict[str, set[int]] = {}
    merged = MergedReport()
    anonymous: list[dict] = []
    for order, path in enumerate(paths):
        for number, line in enumerate(read_report(path)):
            merged.read += 1
            name = line.get("input")
            if name is None:
                anonymous.append(line)
                continue
            if line["status"] == "done":
                done_in.setdefault(name, set()).add(order)
            rank = (str(line.get("time") or ""), order, number)
            if name not in latest or rank >= latest[name][0]:
                latest[name] = (rank, line)
    merged.lines = [latest[name][1] for name in sorted(latest)] + anonymous
    merged.duplicates = sorted(name for name, reports in done_in.items() if len(reports) > 1)
    return merged


def write_report(path: Path, lines: list[dict], overwrite: bool = False) -> None:
    """Write report lines to `path` atomically; an existing file is kept (FileExistsError) unless `overwrite`."""
    from invdn.io.images import write_image_atomic

    data = "".join(json.dumps(line) + "\n" for line in lines).encode("utf-8")
    write_image_atomic(path, data, overwrite=overwrite)
