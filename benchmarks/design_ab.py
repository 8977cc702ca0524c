"""The design A/B: InvDN-style candidates and DANet-R trained for the same CPU time, with learning curves.

    python benchmarks/design_ab.py --data ../shared/datasets/CBSD432 --data ../shared/datasets/Train400 \\
        --val ../shared/datasets/CBSD68 --cpu-minutes 20 --out runs/design-ab
    python benchmarks/design_ab.py --report --out runs/design-ab    # table + plot from finished runs

Every candidate trains in its own process with one torch thread, on the same batches (seeded per step: same
data, AWGN sigma 0-55 saved to 8 bits, 128-px patches, batch 8, seed 0), until its *process CPU time* spent in
training steps reaches the budget; processes may run side by side (--jobs) without changing anyone's budget.
Every --val-every CPU seconds (and at step 0 and at the end) each model is validated on the first 10 images of
the validation folder at sigma 25 and 50, noisy inputs saved to 8 bits (clipped, rounded), fp32, PSNR on 8-bit
outputs; validation time is not charged to the budget. Rows go to OUT/NAME/curve.jsonl, weights to
OUT/NAME/final.safetensors. `--report` writes benchmarks/design_ab.png, benchmarks/design_ab.json and prints the
markdown table (RESULTS.md quotes it).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch

from invdn.eval.metrics import psnr, quantize8
from invdn.models.flops import count_parameters, flops_per_megapixel
from invdn.runtime import bf16_native
from invdn.training.data import FullImageFolder, ImageFolder
from invdn.training.noise import seed_from
from invdn.training.trainer import StepBatches

HERE = Path(__file__).resolve().parent
SIGMAS = (25, 50)


def _invdn_task(**config):
    def make():
        from invdn.models.invdn import InvDNConfig
        from invdn.training.invdn_task import InvDNTask

        return InvDNTask(InvDNConfig(**config), lr=2e-4, ssim_weight=0.0)

    return make


def _lc_task(latent_weight: float = 1.0, **config):
    def make():
        from invdn.models.latent_clean import InvDNLCConfig
        from invdn.training.latent_clean_task import InvDNLCTask

        return InvDNLCTask(InvDNLCConfig(**config), lr=2e-4, latent_weight=latent_weight)

    return make


def _danet_task():
    from invdn.training.danet_task import DANetTask

    return DANetTask("l1", lr=1e-4)


# name -> (description, task factory). Every InvDN-style candidate starts with identity couplings (the last
# convolution of every coupling subnet is zero-initialised).
CANDIDATES: dict[str, tuple[str, Callable[[], object]]] = {
    "invdn-paper": ("InvDN paper: 2 Haar levels x 8 couplings, decode with a random z", _invdn_task()),
    "invdn-z0": ("InvDN paper architecture, decode with z = 0", _invdn_task(latent="zero")),
    "invdn-1level": ("InvDN, 1 Haar level x 8 couplings, random z", _invdn_task(levels=1)),
    "invdn-lc": (
        "InvDN-LC: 2 levels x 1 coupling + latent cleaner (6 res blocks, 128 wide), reconstruction + latent loss",
        _lc_task(latent_weight=1.0),
    ),
    "invdn-lc-rec": ("InvDN-LC trained by the reconstruction loss alone (no latent term)", _lc_task(latent_weight=0.0)),
    "danet-r": ("DANet-R (reference), L1", _danet_task),
}


def validate(model, folders: dict[int, FullImageFolder]) -> dict[str, float]:
    model.eval()
    out = {}
    with torch.no_grad():
        for sigma, folder in folders.items():
            scores = []
            for i in range(len(folder)):
                item = folder[i]
                gen = torch.Generator().manual_seed(seed_from("val", i))
                kwargs = {"generator": gen} if hasattr(model, "sample_latent") else {}
                den = model.denoise(item["noisy"].unsqueeze(0), **kwargs).squeeze(0).clamp(0, 1)
                clean = quantize8(item["clean"].permute(1, 2, 0).numpy())
                scores.append(psnr(quantize8(den.permute(1, 2, 0).numpy()), clean))
            out[f"psnr{sigma}"] = float(np.mean(scores))
    model.train()
    return out


def train_one(name: str, args: argparse.Namespace) -> None:
    torch.set_num_threads(1)
    torch.manual_seed(seed_from(args.seed, "init"))
    task = CANDIDATES[name][1]()
    model = task.modules["main"]
    folders = [ImageFolder(d, patch_size=args.patch, patches_per_image=8, seed=args.seed) for d in args.data]
    batches = StepBatches(folders, args.noise, args.batch, 0, 1, args.seed)
    val = {s: FullImageFolder(args.val, noise=f"awgn:{s}:clip8", limit=args.val_limit) for s in SIGMAS}
    run = Path(args.out) / name
    run.mkdir(parents=True, exist_ok=True)
    curve = run / "curve.jsonl"
    curve.unlink(missing_ok=True)
    bf16 = args.precision == "bf16" or (args.precision == "auto" and bf16_native())
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else nullcontext()
    meta = {
        "name": name,
        "description": CANDIDATES[name][0],
        "parameters": count_parameters(model),
        "gflops_per_mp": flops_per_megapixel(model) / 1e9,
        "precision": "bf16" if bf16 else "fp32",
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "batch": args.batch,
        "patch": args.patch,
        "noise": args.noise,
    }
    (run / "meta.json").write_text(json.dumps(meta, indent=2))
    from invdn.models.weights import save

    def log(row: dict) -> None:
        with open(curve, "a") as f:
            f.write(json.dumps(row) + "\n")

    cpu, pixels, step, losses = 0.0, 0, 0, []
    log({"step": 0, "cpu_s": 0.0, "pixels": 0, **validate(model, val)})
    next_val = args.val_every
    budget = args.cpu_minutes * 60
    while cpu < budget:
        noisy, clean = batches[step]
        t0 = time.process_time()
        torch.manual_seed(seed_from(args.seed, "step", step, 0))
        with autocast:
            stats = task.step(noisy, clean)
        cpu += time.process_time() - t0
        step += 1
        pixels += noisy.shape[0] * noisy.shape[-2] * noisy.shape[-1]
        losses.append(stats["loss"])
        if cpu >= next_val or cpu >= budget:
            row = {"step": step, "cpu_s": round(cpu, 1), "pixels": pixels, "loss": float(np.mean(losses))}
            row.update(validate(model, val))
            log(row)
            save(model, run / "final.safetensors", extra={"step": step})
            print(f"{name}: {row}", flush=True)
            losses = []
            next_val += args.val_every


def report(out: Path) -> dict:
    rows = {}
    for name in CANDIDATES:
        run = out / name
        if not (run / "curve.jsonl").exists():
            continue
        curve = [json.loads(line) for line in (run / "curve.jsonl").read_text().splitlines() if line.strip()]
        rows[name] = {**json.loads((run / "meta.json").read_text()), "curve": curve}
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(11, 7.5))
    for name, r in rows.items():
        for i, sigma in enumerate(SIGMAS):
            ys = [c[f"psnr{sigma}"] for c in r["curve"]]
            axes[i, 0].plot([c["pixels"] / 1e6 for c in r["curve"]], ys, marker="o", ms=3, label=name)
            axes[i, 1].plot([c["cpu_s"] / 60 for c in r["curve"]], ys, marker="o", ms=3, label=name)
    for i, sigma in enumerate(SIGMAS):
        axes[i, 0].set(xlabel="training pixels (millions)", ylabel=f"PSNR at sigma {sigma} (dB)")
        axes[i, 1].set(xlabel="CPU minutes of training", ylabel=f"PSNR at sigma {sigma} (dB)")
    axes[0, 1].legend(fontsize=8)
    fig.suptitle("Design A/B: first 10 CBSD68 images, 8-bit noisy inputs, equal CPU time")
    fig.tight_layout()
    fig.savefig(HERE / "design_ab.png", dpi=80)
    plt.close(fig)
    (HERE / "design_ab.json").write_text(json.dumps(rows, indent=1))
    print("| candidate | parameters | % of DANet-R | GFLOPs/MP | steps | training pixels | CPU min | "
          "PSNR sigma 25 | PSNR sigma 50 |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, r in rows.items():
        last = r["curve"][-1]
        print(f"| {name} | {r['parameters']:,} | {100 * r['parameters'] / 9153571:.1f} | {r['gflops_per_mp']:.0f} | "
              f"{last['step']:,} | {last['pixels'] / 1e6:.1f} M | {last['cpu_s'] / 60:.1f} | "
              f"{last['psnr25']:.2f} | {last['psnr50']:.2f} |")
    first = next(iter(rows.values()), None)
    if first:
        print(f"\nprecision {first['precision']}, CPU capability {first['cpu_capability']}, noise {first['noise']}, "
              f"batch {first['batch']} x {first['patch']} px")
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", action="append", help="training folder (repeatable)")
    p.add_argument("--val", help="validation folder (its first --val-limit images)")
    p.add_argument("--out", default="runs/design-ab", help="run folder")
    p.add_argument("--only", default=None, help="comma-separated candidates (default: all)")
    p.add_argument("--cpu-minutes", type=float, default=20.0, help="training CPU minutes per candidate")
    p.add_argument("--val-every", type=float, default=300.0, help="CPU seconds between validations")
    p.add_argument("--val-limit", type=int, default=10, help="validation images")
    p.add_argument("--jobs", type=int, default=2, help="candidates trained side by side (one thread each)")
    p.add_argument("--noise", default="awgn:0-55:clip8", help="training noise spec")
    p.add_argument("--batch", type=int, default=8, help="batch size")
    p.add_argument("--patch", type=int, default=128, help="patch size")
    p.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto",
                   help="training precision (auto: bf16 where the CPU has it natively)")
    p.add_argument("--seed", type=int, default=0, help="seed for weights, batches and noise")
    p.add_argument("--report", action="store_true", help="only write the table and plot from finished runs")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    out = Path(args.out)
    if args.report:
        report(out)
        return
    if not args.data or not args.val:
        p.error("--data and --val are required to train")
    if args.worker:
        train_one(args.worker, args)
        return
    names = args.only.split(",") if args.only else list(CANDIDATES)
    unknown = [n for n in names if n not in CANDIDATES]
    if unknown:
        p.error(f"unknown candidates {unknown}; choose from {list(CANDIDATES)}")
    pending, running = list(names), []
    while pending or running:
        while pending and len(running) < args.jobs:
            name = pending.pop(0)
            running.append(subprocess.Popen([sys.executable, __file__, *sys.argv[1:], "--worker", name]))
        time.sleep(2)
        running = [r for r in running if r.poll() is None]
    report(out)


if __name__ == "__main__":
    main()
