"""`invdn eval`: PSNR/SSIM tables of the noisy input, (C)BM3D and the models on datasets and real pairs."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import click

from invdn.models import registry


def _parse_sigmas(text: str) -> list[float]:
    try:
        sigmas = [float(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise click.BadParameter(f"{text!r}: expected numbers like 15,25,50", param_hint="--sigma") from None
    if any(s < 0 for s in sigmas):
        raise click.BadParameter("sigmas must be >= 0", param_hint="--sigma")
    return sigmas


def _parse_sweep(text: str) -> list[float]:
    """'5:30:2.5' -> [5, 7.5, ..., 30]; '10,20' -> [10, 20]."""
    try:
        if ":" in text:
            lo, hi, step = (float(p) for p in text.split(":"))
            if step <= 0 or hi < lo:
                raise ValueError
            n = int(round((hi - lo) / step))
            return [round(lo + k * step, 6) for k in range(n + 1)]
        return [float(p) for p in text.split(",") if p.strip()]
    except ValueError:
        raise click.BadParameter(f"{text!r}: use LO:HI:STEP or a list", param_hint="--bm3d-sweep") from None


def _parse_weights(items: tuple[str, ...]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not path:
            raise click.BadParameter(f"{item!r}: expected NAME=PATH", param_hint="--weights")
        try:
            name = registry.get(name.strip()).name
        except registry.UnknownModel:
            message = f"{item!r}: NAME must be one of {registry.names()}"
            raise click.BadParameter(message, param_hint="--weights") from None
        if not Path(path).is_file():
            raise click.BadParameter(f"{path}: no such file", param_hint="--weights")
        out[name] = path
    return out


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
@click.option("--bm3d/--no-bm3d", "use_bm3d", default=True, help="Include (C)BM3D rows (slow: seconds per image).")
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
    use_bm3d: bool,
    sweep_text: str,
    grey: str,
    out_dir: Path | None,
    as_json: bool,
    device: str,
    seed: int,
    threads: int | None,
    quiet: bool,
) -> None:
    """PSNR/SSIM of noisy input, (C)BM3D, DANet-R and InvDN on the same seeded noisy images.

    Example: invdn eval --dataset ../shared/datasets/CBSD68 --limit 10 --sigma 25
    """
    from invdn.eval.suite import (
        EvalConfig,
        describe_model,
        markdown_report,
        model_method,
        run_evaluation,
        summarize,
        write_outputs,
    )
    from invdn.inference.engine import InferenceSetupError, resolve_device
    from invdn.runtime import configure_threads
    from invdn.training.noise import make_noise

    if not datasets and not pairs:
        raise click.UsageError("give at least one --dataset or --pairs folder")
    for spec in noises:
        try:
            make_noise(spec)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--noise") from None
        if re.search(r"(^|:)gr[ae]y(:|$|=)", spec):
            raise click.BadParameter(
                f"{spec!r}: a grey noise spec would score a grey noisy image against a colour reference; "
                "evaluate a grey dataset with --grey and a colour noise spec instead",
                param_hint="--noise",
            )
    weight_paths = _parse_weights(weights)
    names = list(dict.fromkeys(registry.get(m).name for m in models)) or registry.names()
    names += [n for n in weight_paths if n not in names]
    config = EvalConfig(
        datasets=list(datasets),
        pairs=list(pairs),
        sigmas=_parse_sigmas(sigma_text),
        noises=list(noises),
        limit=limit,
        clip8=clip8,
        bm3d=use_bm3d,
        bm3d_sweep=_parse_sweep(sweep_text),
        grey=grey,
        seed=seed,
    )
    configure_threads(threads=threads)
    try:
        torch_device = resolve_device(device)
    except InferenceSetupError as exc:
        raise click.BadParameter(str(exc), param_hint="--device") from None

    from invdn.models import weights as weights_mod

    rows = []
    described = []
    for name in names:
        try:
            model = weights_mod.load(name, weight_paths.get(name), device=torch_device)
        except (weights_mod.WeightsError, OSError) as exc:
            raise click.ClickException(f"cannot load {name}: {exc}") from None
        model.eval()
        described.append(describe_model(model))
        rows.append(model_method(model, seed=seed))
        if ensemble and name == registry.DEFAULT:
            rows.append(model_method(model, ensemble=True, seed=seed))
        if not getattr(model, "pretrained", False):
            click.echo(f"warning: {name} has no trained weights; its rows use a random init", err=True)

    progress = None if quiet else (lambda msg: click.echo(msg, err=True))
    results = run_evaluation(config, rows, progress=progress)
    results.models = described
    summary = summarize(results)
    if out_dir is not None:
        written = write_outputs(results, out_dir)
        if not quiet:
            click.echo("wrote " + ", ".join(str(p) for p in written.values()), err=True)
    click.echo(json.dumps(summary, indent=2, ensure_ascii=False) if as_json else markdown_report(summary))
    if results.failures:
        click.echo(f"{len(results.failures)} image(s) could not be read; see the report", err=True)
        sys.exit(1)
