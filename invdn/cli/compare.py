"""`invdn compare`: every registry model on one image (table or JSON, and a side-by-side PNG grid)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    import numpy as np


def default_grid_path(image: Path) -> Path:
    """Where the grid goes without --grid: IMAGE-stem_compare.png in the current folder."""
    return Path.cwd() / f"{image.stem}_compare.png"


def _read_rgb(path: Path, what: str) -> np.ndarray:
    """An image file as float32 (H, W, 3) in [0, 1]; grey is repeated to three channels, alpha dropped."""
    import numpy as np

    from invdn.io.decode import decode_image
    from invdn.io.errors import ImageError

    try:
        loaded = decode_image(path)
    except (ImageError, OSError) as exc:
        raise click.ClickException(f"cannot read {what} {path}: {exc}") from exc
    pixels = loaded.pixels
    return np.repeat(pixels, 3, axis=2) if pixels.shape[2] == 1 else pixels


@click.command()
@click.argument("image", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--reference",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Clean version of IMAGE; without it and without --sigma/--noise camera, no PSNR/SSIM is reported.",
)
@click.option(
    "--sigma",
    type=float,
    default=None,
    help="Treat IMAGE as clean and add Gaussian noise of this sigma (0-255 scale) before denoising.",
)
@click.option(
    "--noise",
    type=click.Choice(["awgn", "camera"]),
    default="awgn",
    help="Synthetic noise: awgn (needs --sigma) or camera (realistic sRGB camera noise, its own level).",
)
@click.option("--seed", type=int, default=0, help="Seed of the synthetic noise and of InvDN's latent draws.")
@click.option("--samples", type=click.IntRange(min=1), default=1, help="InvDN latent draws to average.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of the table.")
@click.option(
    "--grid",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Where to write the side-by-side PNG (default: IMAGE-stem_compare.png in the current folder).",
)
@click.option("--overwrite", is_flag=True, help="Replace an existing grid file.")
@click.option("--device", default="cpu", help="Torch device to run the networks on, e.g. cpu or cuda.")
def compare(
    image: Path,
    reference: Path | None,
    sigma: float | None,
    noise: str,
    seed: int,
    samples: int,
    as_json: bool,
    grid: Path | None,
    overwrite: bool,
    device: str,
) -> None:
    """Denoise IMAGE with InvDN and DANet-R; report PSNR/SSIM, time, parameters and FLOPs."""
    if reference is not None and (sigma is not None or noise != "awgn"):
        raise click.UsageError("give either --reference or synthetic noise (--sigma / --noise camera), not both")
    if noise == "camera" and sigma is not None:
        raise click.UsageError("--noise camera draws its own noise level; leave out --sigma")
    grid_path = grid if grid is not None else default_grid_path(image)
    if grid_path.exists() and not overwrite:
        raise click.ClickException(f"{grid_path} exists; pass --overwrite to replace it or --grid for another path")

    import torch

    from invdn.eval.compare import compare as run_compare
    from invdn.eval.compare import format_table, side_by_side_png
    from invdn.io.atomic import write_atomic
    from invdn.runtime import configure_threads

    configure_threads()
    try:
        torch_device = torch.device(device)
    except RuntimeError as exc:
        raise click.BadParameter(str(exc), param_hint="--device") from exc
    pixels = _read_rgb(image, "image")
    clean = _read_rgb(reference, "reference") if reference is not None else None
    try:
        result = run_compare(
            pixels, reference=clean, sigma=sigma, noise=noise, seed=seed, samples=samples, device=torch_device
        )
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    try:
        write_atomic(grid_path, side_by_side_png(result), overwrite=overwrite)
    except FileExistsError as exc:
        raise click.ClickException(f"{exc}; pass --overwrite to replace it") from exc

    if as_json:
        payload = result.to_dict()
        payload["image"] = str(image)
        payload["grid"] = str(grid_path)
        click.echo(json.dumps(payload))
        return
    click.echo(f"{image}")
    click.echo(format_table(result))
    click.echo(f"grid: {grid_path}")
