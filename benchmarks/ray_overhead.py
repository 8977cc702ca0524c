"""Images per second of `invdn denoise` on this machine, locally and through Ray (`--ray`), in the same run.

Makes `--images` noisy photos (skimage's astronaut and coffee, resized to `--size`, plus Gaussian noise) as PNGs,
then times, as subprocesses, each the full command a user runs (process start, model load, every image written):

- local: `invdn denoise IN -o OUT` (torch threads = the machine's cores);
- ray 1x<cores>: the same with `--ray=ADDRESS --ray-actors 1 --ray-cpus <cores>`: one actor with all the cores,
  the like-for-like comparison (Ray's overhead);
- ray <cores>x1 (unless `--no-split`): `<cores>` actors with one core each (a different parallel split).

ADDRESS is a local Ray instance this script starts first (`ray.init(num_cpus=<cores>)`; its start-up time is
shown but not charged: on a cluster it is already running) and stops at the end. The runs alternate
`--repeats` times and the fastest of each is kept (other work on the machine only slows a run down; every run's
time and the load average before it are in the JSON); overhead = 1 - ray 1x<cores> images/s / local images/s.
Ray's cost is mostly fixed per run (importing ray, joining, starting actors that load the model: a few seconds),
so it shrinks as the batch grows. Outputs of local and Ray are compared byte for byte. Needs `pip install -e .[ray]`.

    python benchmarks/ray_overhead.py --images 24 --size 1024x768 --repeats 3 --no-split
    python benchmarks/ray_overhead.py --images 4 --size 128x96 --repeats 1 --json   # a quick check
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from skimage import data as skdata
from skimage.transform import resize

from invdn.models import registry
from invdn.runtime import available_cores

ROOT = Path(__file__).resolve().parent.parent


def make_images(folder: Path, count: int, width: int, height: int) -> float:
    """`count` noisy PNGs in `folder`; returns their total megapixels."""
    rng = np.random.default_rng(0)
    sources = [skdata.astronaut(), skdata.coffee()]
    for index in range(count):
        base = resize(sources[index % len(sources)], (height, width), anti_aliasing=True)
        noisy = np.clip(base + rng.normal(0, 25 / 255, base.shape), 0, 1)
        Image.fromarray((noisy * 255).round().astype(np.uint8)).save(folder / f"photo{index:03d}.png")
    return count * width * height / 1e6


def digest(folder: Path) -> dict[str, str]:
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def run_cli(name: str, args: list[str], out: Path, env: dict[str, str]) -> dict:
    """Time one `invdn denoise` run into a fresh `out`; raises if it fails."""
    command = [sys.executable, "-m", "invdn", "denoise", *args, "-o", str(out), "-q"]
    load = os.getloadavg()[0]
    started = time.perf_counter()
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(f"{name} failed ({result.returncode}): {result.stderr[-2000:]}")
    print(f"[ray_overhead] {name}: {seconds:.1f} s", file=sys.stderr, flush=True)
    return {"run": name, "seconds": round(seconds, 2), "loadavg_before": round(load, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=24, help="number of images")
    parser.add_argument("--size", default="1600x1200", help="WIDTHxHEIGHT of each image")
    parser.add_argument("--model", default=registry.DEFAULT, choices=registry.choices(), help="model to run")
    parser.add_argument("--repeats", type=int, default=2, help="alternating repeats; the fastest run is kept")
    parser.add_argument("--no-split", action="store_true", help="skip the one-core-per-actor Ray run")
    parser.add_argument("--json", action="store_true", help="print the result as JSON instead of a table")
    args = parser.parse_args()
    width, height = (int(side) for side in args.size.lower().split("x"))
    if args.images < 1 or args.repeats < 1 or width < 16 or height < 16:
        parser.error("--images and --repeats must be >= 1, --size at least 16x16")

    import ray

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so that `finally` stops the Ray instance
    cores = available_cores()
    started = time.perf_counter()
    ray.init(num_cpus=cores, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    ray_start = time.perf_counter() - started
    # after ray.init: the runs inherit its authentication settings (RAY_AUTH_MODE)
    env = {key: value for key, value in os.environ.items() if key not in ("INVDN_THREADS", "RAY_ADDRESS")}
    address = ray.get_runtime_context().gcs_address
    configs = {
        "local": [],
        f"ray 1x{cores}": [f"--ray={address}", "--ray-actors", "1", "--ray-cpus", str(cores)],
    }
    if not args.no_split and cores > 1:
        configs[f"ray {cores}x1"] = [f"--ray={address}", "--ray-actors", str(cores), "--ray-cpus", "1"]

    best: dict[str, float] = {}
    runs: list[dict] = []
    digests: dict[str, dict[str, str]] = {}
    local_peak_rss = 0
    try:
        with tempfile.TemporaryDirectory(prefix="invdn-ray-bench-") as temp:
            folder = Path(temp) / "in"
            folder.mkdir()
            megapixels = make_images(folder, args.images, width, height)
            for repeat in range(args.repeats):
                for name, extra in configs.items():
                    out = Path(temp) / f"out-{repeat}-{name.replace(' ', '-')}"
                    row = run_cli(name, [str(folder), "--model", args.model, *extra], out, env)
                    if name == "local" and repeat == 0:  # the first child: its peak is the local CLI's alone
                        local_peak_rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
                    runs.append(row)
                    best[name] = min(best.get(name, float("inf")), row["seconds"])
                    digests.setdefault(name, digest(out))
    finally:
        ray.shutdown()

    rows = [
        {
            "run": name,
            "seconds": round(seconds, 2),
            "images_per_s": round(args.images / seconds, 4),
            "megapixels_per_s": round(megapixels / seconds, 4),
            "identical_to_local": digests[name] == digests["local"],
        }
        for name, seconds in best.items()
    ]
    local_rate, ray_rate = rows[0]["images_per_s"], rows[1]["images_per_s"]
    result = {
        "images": args.images,
        "size": [width, height],
        "megapixels": round(megapixels, 3),
        "model": registry.get(args.model).name,
        "cores": cores,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch": torch.__version__,
        "ray": ray.__version__,
        "repeats": args.repeats,
        "ray_start_seconds": round(ray_start, 2),
        "local_peak_rss_mb": round(local_peak_rss / 1e6, 1),
        "rows": rows,
        "runs": runs,
        "ray_overhead": round(1 - ray_rate / local_rate, 4),
    }
    if args.json:
        print(json.dumps(result, indent=1))
        return
    print(
        f"{args.images} images of {width}x{height} ({megapixels:.2f} MP), model {result['model']}, {cores} cores, "
        f"CPU capability {result['cpu_capability']}, torch {result['torch']}, ray {result['ray']}, "
        f"best of {args.repeats}"
    )
    print(f"{'run':<12} {'seconds':>8} {'images/s':>9} {'MP/s':>7}  same bytes as local")
    for row in rows:
        print(
            f"{row['run']:<12} {row['seconds']:>8.2f} {row['images_per_s']:>9.3f} {row['megapixels_per_s']:>7.3f}  "
            f"{'yes' if row['identical_to_local'] else 'no'}"
        )
    print(
        f"Ray overhead (1 actor x {cores} cores against local): {result['ray_overhead']:.1%}; "
        f"local Ray start {ray_start:.1f} s (not charged); local CLI peak RSS {result['local_peak_rss_mb']:.0f} MB"
    )


if __name__ == "__main__":
    main()
