"""`invdn eval`: PSNR/SSIM tables of the noisy input, (C)BM3D and the models on datasets and real pairs."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from invdn.models import registry


@click.command(name="eval")
@click.option(
    "--model",
    "models",
    multiple=True,
    type=click.Choice(registry.choices()),
    help=f"Model to evaluate (repeatable). Default: all of {', '.join(registry.names())}.",
)
@click.option(
    "--weights",
    "weights",
    multiple=True,
    metavar="NAME=PATH",
    help="Weights file for a model instead of the shipped one (repeatable), e.g. invdn=runs/x/best.safetensors.",
)
@click.option(
    "--dataset",
    "datasets",
    multiple=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Folder of clean images, evaluated with seeded AWGN (repeatable).",
)
@click.option(
    "--pairs",
    "pairs",
    multiple=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Real-noise folder with noisy/ and clean/ of matching names (repeatable).",
)
@click.option("--sigma", "sigma_text", default="15,25,50", help="AWGN sigmas on the 0-255 scale, comma-separated.")
@click.option(
    "--noise",
    "noises",
    multiple=True,
    metavar="SPEC",
    help="Extra synthetic noise spec for --dataset folders (repeatable), e.g. camera:chroma=2.",
)
@click.option(
    "--limit", type=click.IntRange(min=1), default=None, help="Evaluate only the first N images of each folder."
)
@click.option(
    "--clip8/--no-clip8",
    default=False,
    help="Save noisy inputs as 8-bit (clip + round) before denoising, as users' files arrive.",
)
@click.option("--ensemble", is_flag=True, help="Add an 8-way flip/rotation ensemble row for InvDN.")
@click.option("--bm3d/--no-bm3d", default=True, help="Include (C)BM3D rows (slow: seconds per image).")
@click.option(
    "--bm3d-sweep",
    "sweep_text",
    default="5:30:2.5",
    help="Sigmas (0-255) swept for the tuned-on-test-set CBM3D row of real pairs: LO:HI:STEP or a list.",
)
@click.option(
    "--grey",
    type=click.Choice(["auto", "on", "off"]),
    default="auto",
    help="Grey handling: auto detects grey folders (Set12, BSD68); on forces grey; off forces colour.",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Write per_image.csv, summary.json, results.md and psnr_vs_params.png here.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary JSON instead of the markdown table.")
@click.option("--device", default="cpu", help="Device for the models: auto, cpu, cuda, cuda:N or mps.")
@click.option("--seed", type=int, default=0, help="Seed of InvDN's latent draws (noise seeds do not depend on it).")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="Torch threads (default: all cores).")
@click.option(
    "--score-cache",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="JSON-lines file of (C)BM3D scores keyed by the exact input bytes: reused where they match, added to.",
)
@click.option("--quiet", is_flag=True, help="No progress lines on stderr.")
def evaluate(
    models: tuple[str, ...],
    weights: tuple[str, ...],
    datasets: tuple[Path, ...],
    pairs: tuple[Path, ...],
    sigma_text: str,
    noises: tuple[str, ...],
    limit: int | None,
    clip8: bool,
    ensemble: bool,
    bm3d: bool,
    sweep_text: str,
    grey: str,
    out_dir: Path | None,
    as_json: bool,
    device: str,
    seed: int,
    threads: int | None,
    score_cache: Path | None,
    quiet: bool,
) -> None:
    """PSNR/SSIM of noisy input, (C)BM3D, DANet-R and InvDN on the same seeded noisy images.

    Example: invdn eval --dataset ../shared/datasets/CBSD68 --limit 10 --sigma 25
    """
    from invdn.eval.cache import ScoreCache
    from invdn.eval.config import EvalConfig, OptionError
    from invdn.eval.methods import ModelLoadError, model_names, model_rows, parse_weight_overrides
    from invdn.eval.report import markdown_report, summarize, write_outputs
    from invdn.eval.run import run_evaluation
    from invdn.inference.engine import InferenceSetupError, resolve_device
    from invdn.runtime import configure_threads

    if not datasets and not pairs:
        raise click.UsageError("give at least one --dataset or --pairs folder")
    try:
        config = EvalConfig.from_cli(
            datasets, pairs, sigma_text, noises, sweep_text, limit=limit, clip8=clip8, bm3d=bm3d, grey=grey, seed=seed
        )
        weight_paths = parse_weight_overrides(weights)
    except OptionError as exc:
        raise click.BadParameter(str(exc), param_hint=exc.option) from None
    configure_threads(threads=threads)
    try:
        torch_device = resolve_device(device)
    except InferenceSetupError as exc:
        raise click.BadParameter(str(exc), param_hint="--device") from None
    try:
        rows = model_rows(model_names(models, weight_paths), weight_paths, torch_device, seed, ensemble)
    except ModelLoadError as exc:
        raise click.ClickException(str(exc)) from None
    for name in rows.untrained:
        click.echo(f"warning: {name} has no trained weights; its rows use a random init", err=True)

    say = None if quiet else (lambda m: click.echo(m, err=True))
    cache = ScoreCache(score_cache) if score_cache is not None else None
    results = run_evaluation(config, rows.methods, progress=say, cache=cache)
    if cache is not None and not quiet:
        click.echo(f"{results.cached} scores reused from {score_cache}", err=True)
    results.models = rows.described
    summary = summarize(results)
    if out_dir is not None:
        written = write_outputs(results, out_dir)
        if not quiet:
            click.echo("wrote " + ", ".join(str(p) for p in written.values()), err=True)
    click.echo(json.dumps(summary, indent=2, ensure_ascii=False) if as_json else markdown_report(summary))
    if results.failures:
        click.echo(f"{len(results.failures)} image(s) could not be read; see the report", err=True)
        sys.exit(1)
