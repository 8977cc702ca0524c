"""`invdn denoise INPUT... -o OUT`: the command line over `invdn.batch` (plan, run, report), nothing more.

Planning is `invdn.batch.plan`, the threaded local run `invdn.batch.run`, the Ray run `invdn.batch.ray`, the
progress lines and the report `invdn.batch.progress`; the options are in `invdn.cli.denoise_options`.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from invdn.batch.pipeline import Options, SetupError, load_denoiser
from invdn.batch.plan import Job, PlanError, plan_jobs, read_sizes, remove_stale_temp_files
from invdn.batch.progress import Reporter, dry_run_lines
from invdn.batch.reports import ReportError, merge_messages, merge_report_files
from invdn.batch.run import run_batch, run_jobs
from invdn.cli.denoise_options import DenoiseArgs, denoise_options
from invdn.io.uris import UriError
from invdn.models import registry

Work = Callable[[list[Job], Reporter], bool]


@click.command(context_settings={"show_default": True, "help_option_names": ["-h", "--help"]})
@denoise_options
def denoise(**values: Any) -> None:
    """Denoise image files, folders (recursively, mirrored under OUT) and globs; '-' reads stdin.

    Inputs are never modified; outputs are written atomically and existing ones are skipped, so an
    interrupted run can simply be started again. Broken files are reported and passed over.
    In folders, files with an image extension are taken; hidden files and folders are not.
    Exit status: 0 all done, 1 some files failed, 2 usage error.
    """
    args = DenoiseArgs(**values)
    if args.merge_reports:
        _merge_reports(args)
        return
    if "/" in args.suffix or os.sep in args.suffix:
        raise click.BadParameter("must not contain a path separator", param_hint="--suffix")
    on_ray = args.ray_address is not None
    try:
        jobs = plan_jobs(args.plan_request(), args.shard, args.overwrite, args.skip_existing, uri_inputs=on_ray)
    except (PlanError, UriError) as exc:
        raise click.UsageError(str(exc)) from exc
    stdio = any(job.target is None for job in jobs)
    if on_ray and stdio:
        raise click.UsageError("--ray writes files: give -o a folder, not '-'")
    if not jobs:
        shard = f" for shard {args.shard[0]}/{args.shard[1]}" if args.shard else ""
        click.echo(f"no images found in the inputs{shard}", err=True)
        return
    read_sizes(jobs)
    if args.dry_run:
        for line in dry_run_lines(jobs):
            click.echo(line)
        return

    connected = _connect_ray(args.ray_address) if on_ray else False
    try:
        work = _ray_work(args, args.options()) if on_ray else _local_work(args, args.options())
        removed = remove_stale_temp_files(jobs)
        if removed:
            click.echo(f"removed {removed} temporary file(s) left by an interrupted run", err=True)
        skipped = sum(job.status == "skipped" for job in jobs)
        if skipped and not args.quiet:
            click.echo(f"skipping {skipped} file(s) whose output exists", err=True)
        outcome = run_batch(jobs, work, args.report, args.quiet or stdio, args.fail_fast)
    finally:
        if connected:
            import ray

            ray.shutdown()
    summary = ("interrupted: " if outcome.interrupted else "") + outcome.summary
    if not outcome.completed and not outcome.interrupted:
        summary += " (stopped early: --fail-fast)"
    click.echo(summary, err=True)
    if outcome.interrupted:
        sys.exit(130)
    if outcome.counts["failed"]:
        sys.exit(1)


def _merge_reports(args: DenoiseArgs) -> None:
    """`--merge-reports`: INPUT... are reports; the merged one goes to --report. Exit 1 if any file failed."""
    paths = [Path(path) for path in args.inputs]
    try:
        merged = merge_report_files(paths, args.report, overwrite=args.overwrite)
    except ReportError as exc:
        raise click.UsageError(str(exc)) from exc
    assert args.report is not None  # merge_report_files refuses a run without one
    for line in merge_messages(merged, len(paths), args.report, args.quiet):
        click.echo(line, err=True)
    if merged.counts["failed"]:
        sys.exit(1)


def _local_work(args: DenoiseArgs, options: Options) -> Work:
    """The model loaded here (setup problems are usage errors), run by the threaded local pipeline."""
    from invdn.runtime import configure_threads

    configure_threads(args.workers)
    try:
        denoiser = load_denoiser(args.model, args.weights, args.device, args.precision, args.tile, args.overlap)
    except SetupError as exc:
        raise click.UsageError(str(exc)) from exc
    if not getattr(denoiser.model, "pretrained", False):
        click.echo(
            f"warning: no trained {args.model} weights found; using a randomly initialised network, "
            "so the output is not denoised (pass --weights FILE)",
            err=True,
        )
    if args.samples > 1 and not getattr(registry.spec_of(denoiser.model), "stochastic", False):
        click.echo(f"warning: --samples has no effect on {args.model} (it draws no random latents)", err=True)
    return lambda todo, reporter: run_jobs(todo, denoiser, options, reporter, args.workers, args.fail_fast)


def _connect_ray(address: str | None) -> bool:
    """Join (or start) Ray; True when this process connected and must disconnect."""
    from invdn.batch.ray import connect

    try:
        return connect(None if address == "default" else address)
    except (RuntimeError, ConnectionError, ValueError) as exc:  # RayUnavailable is a RuntimeError
        raise click.UsageError(f"cannot start or join Ray ({address}): {exc}") from exc


def _ray_work(args: DenoiseArgs, options: Options) -> Work:
    """The run on the connected Ray cluster's actors, each loading the model once."""
    from invdn.batch.ray import ActorSettings, ModelSettings, run_on_ray

    model = ModelSettings(args.model, args.weights, args.device, args.precision, args.tile, args.overlap)
    actors = ActorSettings(args.ray_actors, args.ray_cpus, args.ray_gpus)
    untrained = (
        f"warning: no trained {args.model} weights found on the Ray workers; the output is not denoised "
        "(pass --weights FILE)"
    )
    return lambda todo, reporter: run_on_ray(
        todo, model, options, reporter, actors, args.fail_fast, on_untrained=lambda: click.echo(untrained, err=True)
    )
