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

from invdn.io.atomic import write_atomic

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
    data = "".join(json.dumps(line) + "\n" for line in lines).encode("utf-8")
    write_atomic(path, data, overwrite=overwrite)


def merge_report_files(paths: list[Path], destination: Path | None, overwrite: bool = False) -> MergedReport:
    """`invdn denoise --merge-reports`: merge the reports `paths` into the new file `destination`.

    ReportError (with the message for the user) when there is no destination, it is one of the reports, it
    exists and not `overwrite`, or a report cannot be read.
    """
    if destination is None:
        raise ReportError("--merge-reports writes the merged report to --report FILE; give one")
    if any(path.resolve() == destination.resolve() for path in paths):
        raise ReportError(f"--report {destination} is one of the reports being merged; name a new file")
    merged = merge_reports(paths)
    try:
        write_report(destination, merged.lines, overwrite=overwrite)
    except FileExistsError as exc:
        raise ReportError(f"{destination} exists; pass --overwrite to replace it") from exc
    return merged


def merge_messages(merged: MergedReport, reports: int, destination: Path, quiet: bool) -> list[str]:
    """What `--merge-reports` tells the user: overlaps, failed files (unless `quiet`), then the counts."""
    overlap = "was denoised by more than one of these runs (overlapping shards?)"
    lines = [f"warning: {name} {overlap}" for name in merged.duplicates]
    if not quiet:
        failed = [line for line in merged.lines if line["status"] == "failed"]
        lines += [f"failed {line.get('input')}: {line.get('reason')}" for line in failed]
    counts = merged.counts
    lines.append(
        f"merged {reports} report(s), {merged.read} line(s) -> {destination}: {len(merged.lines)} file(s), "
        f"done {counts['done']}, skipped {counts['skipped']}, failed {counts['failed']}"
    )
    return lines
