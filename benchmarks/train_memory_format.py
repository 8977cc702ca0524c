"""Training speed of `invdn train` in channels-last against NCHW memory format, side by side in one process.

Each (model, format) pair trains a fresh run of `--steps` steps with the trainer users run
(`invdn.training.trainer.Trainer`, the stage-4 settings: InvDN-LC on 128-px patches at batch 8, DANet-R on 256-px
patches at batch 2, both 131,072 pixels per step, bf16 autocast where the CPU has it natively) and reports the
median of the logged training pixels per second after the first third of the steps (allocation and kernel choice
stay out). Pairs run in the order A B B A over the models, so a drift of the machine hits both formats alike.
Pause any background training first (`kill -STOP PID`, then `kill -CONT PID`): this measures a quiet machine.

    python benchmarks/train_memory_format.py --data ../shared/datasets/CBSD432 --steps 240 --threads 1 [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

import torch

from invdn.runtime import auto_precision
from invdn.training.config import TrainConfig
from invdn.training.trainer import Trainer

# registry name -> (patch, batch): the stage-4 runs of weights/MODEL_CARD.md
SETTINGS = {"invdn": (128, 8), "danet-r": (256, 2)}


def measure(model: str, channels_last: bool, data: list[str], steps: int, runs_dir: Path) -> float:
    """Median training px/s of one fresh run after its first third of steps."""
    patch, batch = SETTINGS[model]
    name = f"{model}-{'cl' if channels_last else 'nchw'}"
    cfg = TrainConfig(
        model=model,
        data=data,
        name=name,
        runs_dir=str(runs_dir),
        patch=patch,
        batch=batch,
        max_steps=steps,
        total_steps=10 * steps,
        checkpoint_every=1e9,
        bf16=auto_precision("cpu") == "bf16",
        channels_last=channels_last,
        log_every=10,
    )
    Trainer(cfg, progress=False).train()
    rows = [json.loads(line) for line in (runs_dir / name / "metrics.jsonl").read_text().splitlines()]
    rates = [r["px_per_s"] for r in rows if "px_per_s" in r and r["step"] > steps // 3]
    return statistics.median(rates)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", action="append", required=True, help="clean training image folder (repeatable)")
    parser.add_argument("--model", action="append", choices=sorted(SETTINGS), default=[], help="default: both")
    parser.add_argument("--steps", type=int, default=240, help="steps per run")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a markdown table")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    models = args.model or sorted(SETTINGS)
    rates: dict[str, dict[str, float]] = {m: {} for m in models}
    with tempfile.TemporaryDirectory() as tmp:
        for k, model in enumerate(models):
            for fmt in ((True, False) if k % 2 == 0 else (False, True)):
                rates[model]["channels_last" if fmt else "nchw"] = measure(model, fmt, args.data, args.steps, Path(tmp))
    env = {
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "bf16": auto_precision("cpu") == "bf16",
        "threads": args.threads,
        "steps": args.steps,
        "torch": torch.__version__,
    }
    if args.json:
        print(json.dumps({"environment": env, "px_per_s": rates}, indent=2))
        return 0
    print(f"CPU capability {env['cpu_capability']}, bf16 {env['bf16']}, {args.threads} thread(s), {args.steps} steps\n")
    print("| model | NCHW px/s | channels-last px/s | channels-last / NCHW |")
    print("|---|---|---|---|")
    for model, r in rates.items():
        print(f"| {model} | {r['nchw']:,.0f} | {r['channels_last']:,.0f} | {r['channels_last'] / r['nchw']:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
