"""What a batch run tells its user: a line per file (or a progress bar on a terminal), the JSONL report, the
summary; and the dry run's listing.

Files finish out of order (decoding, denoising and writing overlap, Ray actors finish when they do); the
`Reporter` holds finished files back so that their lines and report entries come in input order.
"""

from __future__ import annotations

import json
import sys
import time
from datetime import UTC, datetime
from typing import IO

import click

from invdn.batch.plan import Job

PLAIN_PROGRESS_SECONDS = 30.0  # without a terminal, how often a long image reports its progress


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


def dry_run_lines(jobs: list[Job]) -> list[str]:
    """What `--dry-run` prints: one line per job (what would happen to it), then the count."""
    lines = []
    for job in jobs:
        size = f" ({job.size[0]}x{job.size[1]})" if job.size else " (size unknown: unreadable?)"
        verb = {"pending": "would denoise", "skipped": "would skip", "failed": "would fail"}[job.status]
        line = f"{verb} {job.name} -> {job.target_name}{size if job.status == 'pending' else ''}"
        lines.append(line + (f": {job.reason}" if job.reason else ""))
    todo = sum(job.status == "pending" for job in jobs)
    lines.append(f"{todo} to denoise, {len(jobs) - todo} skipped or refused (dry run: nothing written)")
    return lines
