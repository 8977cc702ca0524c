"""How much tile overlap a model needs: PSNR of tiled against whole-image denoising, and the 12 MP speed it buys.

Quality: each image of `--dataset` (first `--limit`, after skipping `--skip`) gets seeded AWGN at each `--sigma`,
saved to 8 bits (clipped and rounded, as users' files arrive; `--float-inputs`: float, clipped only), is denoised
whole and in tiles of each `--tiles` side at each `--overlaps` value (small tiles: many seams), and the PSNR
difference tiled - whole is reported with its mean and largest magnitude over the images (InvDN's latent is drawn
per tile, so part of the difference is the draw). A positive mean says the weights do better on tiles than on the
whole image (a network whose receptive field outgrew its training patches), a negative one that seams cost.
Speed (`--speed`): the 4000x3000 test image of `invdn bench speed` through `invdn.inference.engine.Denoiser` with its
automatic tiles at each overlap, in one process, as seconds per megapixel and fraction of the reference
convolution (as in `invdn bench speed`; one thread: the thread's CPU time is the clock).

    python benchmarks/tile_overlap.py --dataset ../shared/datasets/Kodak24 --skip 2 --limit 3 --sigma 15,50
    python benchmarks/tile_overlap.py --model danet-r --weights FILE --dataset ../shared/datasets/CBSD68 --limit 10 \
        --sigma 25,50 --tiles 128,192,256,320 --overlaps 32
    python benchmarks/tile_overlap.py --dataset ../shared/datasets/Kodak24 --limit 1 --speed --threads 1 --json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from invdn.bench import speed as bench_speed
from invdn.eval.metrics import psnr
from invdn.inference.engine import Denoiser
from invdn.models import registry
from invdn.models.flops import flops_per_megapixel
from invdn.models.weights import load, load_file_model
from invdn.runtime import tune_allocator
from invdn.training.data import list_images, read_image


def key(tile: int, overlap: int) -> str:
    """The row field holding PSNR tiled - whole for one tile side and overlap."""
    return f"delta_tile_{tile}_overlap_{overlap}"


def quality_rows(
    model: torch.nn.Module,
    files: list[Path],
    sigmas: list[float],
    tiles: list[int],
    overlaps: list[int],
    clip8: bool = True,
) -> list[dict]:
    tiled = {(t, o): Denoiser(model, device="cpu", tile=t, overlap=o) for t in tiles for o in overlaps}
    rows = []
    for index, path in enumerate(files):
        clean = read_image(path).astype(np.float32) / 255.0  # grey images come as three channels
        for sigma in sigmas:
            rng = np.random.default_rng([index, int(sigma * 100)])
            noise = rng.standard_normal(clean.shape).astype(np.float32) * np.float32(sigma / 255)
            noisy = np.clip(clean + noise, 0.0, 1.0)
            if clip8:
                noisy = np.round(noisy * 255.0) / np.float32(255.0)
            whole_side = -(-max(clean.shape[:2]) // 64) * 64
            whole = psnr(Denoiser(model, device="cpu", tile=whole_side)(noisy, seed=0), clean)
            row = {"image": path.name, "sigma": sigma, "whole_psnr": whole}
            for (tile, overlap), denoiser in tiled.items():
                row[key(tile, overlap)] = psnr(denoiser(noisy, seed=0), clean) - whole
            rows.append(row)
            print(f"[tile_overlap] {path.name} sigma {sigma:g} done", file=sys.stderr, flush=True)
    return rows


def speed_rows(model: torch.nn.Module, overlaps: list[int], threads: int) -> list[dict]:
    timer = bench_speed.Timer(threads)
    reference = bench_speed.reference_gflops(timer)
    flops = flops_per_megapixel(model)
    pixels = bench_speed.test_image(4000, 3000)
    Denoiser(model, device="cpu")(pixels[:1024, :1024], seed=0)  # warm-up: weights prepared, heap grown
    rows = []
    for overlap in overlaps:
        denoiser = Denoiser(model, device="cpu", overlap=overlap)
        start = timer.clock()
        denoiser(pixels, seed=0)
        seconds = timer.clock() - start
        rows.append(
            {
                "overlap": overlap,
                "tile": denoiser.tile_size(),
                "seconds": seconds,
                "seconds_per_mp": seconds / 12.0,
                "fraction_of_reference": flops * 12.0 / seconds / 1e9 / reference,
            }
        )
        print(f"[tile_overlap] 12 MP overlap {overlap} done", file=sys.stderr, flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="invdn", choices=registry.choices(), help="Shipped model to measure.")
    parser.add_argument("--weights", type=Path, help="A weights file to measure instead of the shipped ones.")
    parser.add_argument("--dataset", type=Path, required=True, help="Folder of clean images.")
    parser.add_argument("--skip", type=int, default=0, help="Images skipped at the start of the sorted folder.")
    parser.add_argument("--limit", type=int, default=3, help="Images measured after the skipped ones.")
    parser.add_argument("--sigma", default="15,50", help="AWGN sigmas on the 0-255 scale, comma-separated.")
    parser.add_argument("--tiles", default="256", help="Tile sides compared, comma-separated (small: many seams).")
    parser.add_argument("--overlaps", default="32,16,8", help="Overlaps compared, pixels, comma-separated.")
    parser.add_argument(
        "--float-inputs", action="store_true", help="Float noisy inputs (clipped) instead of 8-bit files."
    )
    parser.add_argument("--speed", action="store_true", help="Also time 12 MP at each overlap (minutes per overlap).")
    parser.add_argument("--threads", type=int, default=1, help="Torch threads (1: thread CPU time is the clock).")
    parser.add_argument("--json", action="store_true", help="Print one JSON object instead of tables.")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    tune_allocator()
    model = (load_file_model(args.weights) if args.weights else load(args.model)).eval()
    files = list_images(args.dataset)[args.skip :][: args.limit]
    if not files:
        parser.error(f"no images in {args.dataset} after skipping {args.skip}")
    sigmas = [float(s) for s in args.sigma.split(",")]
    tiles = [int(t) for t in args.tiles.split(",")]
    overlaps = [int(o) for o in args.overlaps.split(",")]
    too_wide = [(t, o) for t in tiles for o in overlaps if o < 0 or t < 2 * o + 16]
    if too_wide:
        parser.error(f"(tile, overlap) {too_wide} do not fit (need 0 <= overlap <= (tile - 16) / 2)")
    rows = quality_rows(model, files, sigmas, tiles, overlaps, clip8=not args.float_inputs)
    report = {
        "model": args.model,
        "weights": str(args.weights) if args.weights else getattr(model, "weights_path", None),
        "pretrained": bool(getattr(model, "pretrained", False)),
        "inputs": "float" if args.float_inputs else "8-bit",
        "quality": rows,
        "summary": [
            {
                "tile": t,
                "overlap": o,
                "mean_delta": float(np.mean([r[key(t, o)] for r in rows])),
                "max_abs_delta": max(abs(r[key(t, o)]) for r in rows),
            }
            for t in tiles
            for o in overlaps
        ],
    }
    if args.speed:
        report["speed_12mp"] = speed_rows(model, overlaps, args.threads)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    cols = [(t, o) for t in tiles for o in overlaps]
    print(f"{args.model} ({report['weights']}, {report['inputs']} inputs): PSNR tiled - whole, dB")
    print(f"{'image':<16} {'sigma':>5} {'whole':>7} " + " ".join(f"{f'{t}/{o}':>8}" for t, o in cols))
    for r in rows:
        deltas = " ".join(f"{r[key(t, o)]:+8.3f}" for t, o in cols)
        print(f"{r['image']:<16} {r['sigma']:5g} {r['whole_psnr']:7.3f} {deltas}")
    for row in report["summary"]:
        print(
            f"tile {row['tile']}, overlap {row['overlap']}: mean {row['mean_delta']:+.3f}, "
            f"max |delta| {row['max_abs_delta']:.3f}"
        )
    for r in report.get("speed_12mp", []):
        print(
            f"12 MP, overlap {r['overlap']}, auto tile {r['tile']}: {r['seconds']:.2f} s, "
            f"{r['seconds_per_mp']:.2f} s/MP, {r['fraction_of_reference']:.3f} of the reference"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
