"""Train a registry model on one accelerator in pieces of a few minutes, each piece resuming the last.

    python scripts/train_gpu.py --model invdn --data DIR [--data DIR ...] --run RUN_DIR --minutes 9
        [--total-steps 20000] [--batch auto|N] [--patch 128] [--noise SPEC] [--device cuda|cpu]
        [--bf16/--no-bf16] [--channels-last/--no-channels-last] [--compile] [--steps N] [--shard-mib 15]
    python scripts/train_gpu.py --export RUN_DIR --out weights.safetensors [--dtype float16]

Each invocation takes at most ``--minutes`` of wall time, setup (decoding the images, sizing the batch, loading the
checkpoint) and the final checkpoint (``--reserve-s``, at most a quarter of the piece) included, or stops after
``--steps`` steps. It writes RUN_DIR/checkpoint/: the weights of every trained module and the optimiser state (Adam
moments and step counts) as safetensors shards of at most ``--shard-mib`` MiB each (tensors larger than that are split),
plus index.json (tensor -> shard parts, shapes, dtypes, optimiser hyper-parameters, step, configuration). The next
invocation with the same RUN_DIR resumes from it: same step count, same optimiser moments, same learning-rate schedule
(cosine over ``--total-steps``); the run's saved settings (``CONFIG_KEYS``: model and its architecture, noise, patch,
batch, total steps, seed, lr, warm-up) win over the command line's. A checkpoint is written to checkpoint.tmp/ and
renamed, so a piece killed at any moment leaves the last one intact. RUN_DIR/weights/ holds the module weights alone
(same shards): ``--warm-from RUN_DIR/weights`` starts a new run from them with fresh Adam moments, the schedule
continuing at their step and the learning rate ramping up over ``--warmup-steps`` (a warm restart, not bit-exact; for
when only the weights can travel to a fresh machine). ``--init-from FILE`` starts a new run from an ordinary weights
file instead (the shipped ones in ``weights/``, or a cleaner deepened by ``invdn.models.latent_clean.deepen``): its
weights and, for InvDN-LC, its architecture (its ``model_args``, kept in the checkpoint for later pieces and
``--export``; the other models have one architecture), fresh Adam moments, the schedule from step 0 with the learning
rate ramping up over ``--warmup-steps`` (``invdn train --init-from`` has no ramp). ``--export`` reassembles the main
module into one ordinary weights file (``invdn.models.weights.save``).

On a lent GPU machine (commands run in a copy of the working tree; the tree and the carried ignored paths at most
64 MiB in all): ``scripts/gpu-prepare.py`` fills the git-ignored .gpu/data/ with what fits, and
``scripts/gpu-session.sh`` (carry ``.gpu``) runs one piece of each model per call, from the shipped weights, with its
runs under the git-ignored, uncarried runs/gpu/. While the machine stays warm, runs/gpu/ stays between calls and each
piece resumes bit-exactly from checkpoint/ (measured on CPU: InvDN-LC 24.0 MB, InvDN (paper) 32.0 MB, DANet-R 109.9
MB); a carried path is replaced at every call, so runs must not live under .gpu/, and gpu-prepare.py must not be
rerun between such calls (its subset depends on the tree's size). A fresh machine has only what is carried. With the
data filling the 64 MiB, a later session starts again from weights files: an export of what came back, put under
.gpu/ before gpu-prepare.py runs (it counts everything under .gpu/) and named by gpu-session.sh's INIT_INVDN /
INIT_DANET, the schedule from step 0. ``--warm-from`` a weights/ folder (a third of the checkpoint sizes above)
continues the schedule instead, where the folder fits beside the data.

Speed: the training images are decoded once into one uint8 tensor in device memory; each step crops, flips and
rotates its batch there with one gather, and synthesises the noise there (``invdn.training.noise``, seeded per step on a
device generator; the camera model's JPEG round trips go through the host). The batch of step k is a pure
function of (seed, k), so a resumed run sees the batches the uninterrupted run would have seen (bit-exact on
CPU; on CUDA up to the non-determinism of its kernels). bf16 autocast (default on CUDA): the tasks compute their
losses in float32, and the affine couplings compute their scale and shift in float32 themselves
(``invdn.models.coupling``), so the scale (tanh, exp) and the coupling arithmetic run in float32. Channels-last memory
format (default on CUDA).
``--compile`` compiles the convolutional sub-networks (``nn.Module.compile``, state-dict keys unchanged).
``--batch auto`` measures the peak memory of one step at batch 8 on a throw-away copy of the model and picks the
largest multiple of 8 that keeps a step under 70 % of the free device memory (at most ``--max-batch``); the batch
is stored in the checkpoint and kept by later pieces. Training pixels per second (batch x patch^2 per second) are
printed after the first minute of the piece and at its end.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import time
from collections.abc import Iterator
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT))

from invdn.io.atomic import swap_in_folder  # noqa: E402
from invdn.models import registry  # noqa: E402
from invdn.training.config import TrainConfig  # noqa: E402
from invdn.training.data import list_images, read_image  # noqa: E402
from invdn.training.noise import USERS_FILES_NOISE, make_noise, seed_from  # noqa: E402
from invdn.training.trainer import lr_factor  # noqa: E402

MiB = 1 << 20
DEFAULT_SHARD_MIB = 15.0
# the run's settings, saved in every checkpoint; a later piece takes them over the command line's
CONFIG_KEYS = (
    "model",
    "model_args",
    "noise",
    "patch",
    "batch",
    "total_steps",
    "seed",
    "lr",
    "warm_start_step",
    "warmup_steps",
)
COMPILE_UNITS = ("ResNetSubnet", "DenseSubnet", "LatentCleaner", "UNetD")


# ----------------------------------------------------------------------------- sharded checkpoints
def save_sharded(tensors: dict[str, Tensor], folder: Path, meta: dict, limit_bytes: int) -> list[Path]:
    """Write ``tensors`` as safetensors shards of at most ``limit_bytes`` each, plus index.json (with ``meta``).

    A tensor larger than the limit is split into parts along its flattened storage. Returns the shard paths.
    """
    budget = limit_bytes - 64 * 1024  # room for each shard's JSON header
    if budget <= 0:
        raise ValueError("shard limit too small")
    index: dict[str, dict] = {}
    shards: list[dict[str, Tensor]] = [{}]
    used = 0

    def put(key: str, t: Tensor) -> tuple[int, str]:
        nonlocal used
        size = t.numel() * t.element_size()
        if shards[-1] and used + size > budget:
            shards.append({})
            used = 0
        shards[-1][key] = t
        used += size
        return len(shards) - 1, key

    for name, tensor in tensors.items():
        t = tensor.detach().to("cpu").contiguous()
        flat = t.reshape(-1)
        per_part = max(1, budget // max(1, t.element_size()))
        parts = []
        if flat.numel() <= per_part:
            parts.append(put(f"{name}", t))
        else:
            for k, start in enumerate(range(0, flat.numel(), per_part)):
                parts.append(put(f"{name}@{k}", flat[start : start + per_part].clone()))
        index[name] = {"shape": list(t.shape), "dtype": str(t.dtype).removeprefix("torch."), "parts": parts}
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, shard in enumerate(shards):
        path = folder / f"shard-{i:03d}.safetensors"
        save_file(shard, str(path))
        paths.append(path)
    doc = {"format": "invdn-sharded-v1", "shards": [p.name for p in paths], "tensors": index, "meta": meta}
    (folder / "index.json").write_text(json.dumps(doc, indent=1))
    return paths


def load_sharded(folder: Path, device: str | torch.device = "cpu") -> tuple[dict[str, Tensor], dict]:
    """The tensors and meta written by ``save_sharded``, reassembled bit-exactly."""
    doc = json.loads((folder / "index.json").read_text())
    shards = [load_file(str(folder / name)) for name in doc["shards"]]
    out = {}
    for name, info in doc["tensors"].items():
        parts = [shards[s][key] for s, key in info["parts"]]
        if len(parts) == 1 and "@" not in info["parts"][0][1]:
            t = parts[0]
        else:
            t = torch.cat([p.reshape(-1) for p in parts]).reshape(info["shape"])
        if str(t.dtype).removeprefix("torch.") != info["dtype"] or list(t.shape) != info["shape"]:
            raise ValueError(f"{folder}: tensor {name} does not match its index entry")
        out[name] = t.to(device)
    return out, doc["meta"]


def _flatten_state(task, step: int, config: dict) -> tuple[dict[str, Tensor], dict]:
    """Tensors (module weights, optimiser state) and JSON meta (optimiser hyper-parameters, step, config)."""
    tensors: dict[str, Tensor] = {}
    for key, module in task.modules.items():
        for name, t in module.state_dict().items():
            tensors[f"module/{key}/{name}"] = t
    groups = {}
    for key, opt in task.optimizers.items():
        sd = opt.state_dict()
        for pid, st in sd["state"].items():
            for name, value in st.items():
                value = value if isinstance(value, Tensor) else torch.tensor(value)
                tensors[f"optim/{key}/{pid}/{name}"] = value
        groups[key] = sd["param_groups"]
    extra = task.state_dict() if hasattr(task, "state_dict") else {}
    meta = {"step": step, "config": config, "param_groups": groups, "task": extra}
    return tensors, meta


def _replace_folder(run: Path, name: str, tensors: dict[str, Tensor], meta: dict, limit_bytes: int) -> Path:
    """Write RUN/NAME.tmp, then swap it in for RUN/NAME (the old one stays whole until the new one is complete)."""
    folder, tmp = run / name, run / f"{name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    save_sharded(tensors, tmp, meta, limit_bytes)
    swap_in_folder(tmp, folder)
    return folder


def save_checkpoint(task, step: int, config: dict, run: Path, limit_bytes: int) -> Path:
    """RUN/checkpoint/ (weights and optimiser state) and RUN/weights/ (module weights only, for a warm restart)."""
    tensors, meta = _flatten_state(task, step, config)
    weights = {k: v for k, v in tensors.items() if k.startswith("module/")}
    _replace_folder(run, "weights", weights, {"step": step, "config": config}, limit_bytes)
    return _replace_folder(run, "checkpoint", tensors, meta, limit_bytes)


def init_from_file(task, path: Path) -> None:
    """Load an ordinary weights file (``invdn.models.weights.save``) into the task's main module."""
    from invdn.models.weights import load_file_model

    src = load_file_model(path)
    main = task.modules["main"]
    if src.model_args != main.model_args:  # a model whose task builds one architecture only
        raise SystemExit(f"--init-from {path}: architecture {src.model_args}, this run trains {main.model_args}")
    main.load_state_dict(src.state_dict())  # a float16 file is cast to the module's float32


def warm_start(task, folder: Path) -> int:
    """Load the module weights of a checkpoint/ or weights/ folder, keeping fresh optimisers; returns its step."""
    tensors, meta = load_sharded(folder)
    for key, module in task.modules.items():
        prefix = f"module/{key}/"
        state = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
        if state or key == "main":
            module.load_state_dict(state)
    return int(meta["step"])


def load_checkpoint(task, folder: Path, device: torch.device) -> int:
    """Restore module weights and optimiser state into ``task``; returns the step."""
    tensors, meta = load_sharded(folder)
    for key, module in task.modules.items():
        prefix = f"module/{key}/"
        module.load_state_dict({k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)})
    for key, opt in task.optimizers.items():
        state: dict[int, dict[str, Tensor]] = {}
        prefix = f"optim/{key}/"
        for k, v in tensors.items():
            if k.startswith(prefix):
                pid, name = k[len(prefix) :].split("/", 1)
                state.setdefault(int(pid), {})[name] = v
        opt.load_state_dict({"state": state, "param_groups": meta["param_groups"][key]})
    if meta.get("task") and hasattr(task, "load_state_dict"):
        task.load_state_dict(meta["task"])
    return int(meta["step"])


# ----------------------------------------------------------------------------- data on the device
class DeviceImages:
    """All training images as one uint8 (N, C, H, W) tensor on the device (portrait ones transposed)."""

    def __init__(self, folders: list[str], patch: int, device: torch.device) -> None:
        arrays = []
        for folder in folders:
            for path in list_images(folder):
                a = read_image(path)  # HxWx3 uint8, grey files replicated
                if a.shape[0] > a.shape[1]:
                    a = a.transpose(1, 0, 2)  # the dihedral augmentation makes orientation irrelevant
                arrays.append(a)
        if not arrays:
            raise ValueError("no training images")
        h = max(patch, max(a.shape[0] for a in arrays))
        w = max(patch, max(a.shape[1] for a in arrays))
        self.images = torch.zeros((len(arrays), 3, h, w), dtype=torch.uint8)
        sizes = []
        for i, a in enumerate(arrays):
            t = torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1)))
            if t.shape[1] < patch or t.shape[2] < patch:  # small image: replicate-pad to one patch
                ph, pw = max(0, patch - t.shape[1]), max(0, patch - t.shape[2])
                t = F.pad(t[None].float(), (0, pw, 0, ph), mode="replicate")[0].to(torch.uint8)
            self.images[i, :, : t.shape[1], : t.shape[2]] = t
            sizes.append(t.shape[1:])
        self.images = self.images.to(device)
        self.sizes = torch.tensor([list(s) for s in sizes], device=device)
        self.patch = patch
        self.device = device

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def nbytes(self) -> int:
        return self.images.numel()

    def batch(self, n: int, g: torch.Generator) -> Tensor:
        """n random patches (float in [0, 1]), each randomly flipped/rotated, drawn from ``g`` (on the device)."""
        p = self.patch
        idx = torch.randint(0, len(self), (n,), generator=g, device=self.device)
        hw = self.sizes[idx]
        top = (torch.rand(n, generator=g, device=self.device) * (hw[:, 0] - p + 1)).long()
        left = (torch.rand(n, generator=g, device=self.device) * (hw[:, 1] - p + 1)).long()
        ar = torch.arange(p, device=self.device)
        rows = (top[:, None] + ar)[:, None, :, None]
        cols = (left[:, None] + ar)[:, None, None, :]
        ch = torch.arange(3, device=self.device)[None, :, None, None]
        x = self.images[idx[:, None, None, None], ch, rows, cols].float().div_(255.0)
        k = torch.randint(0, 8, (n,), generator=g, device=self.device)
        flip = (k >= 4)[:, None, None, None]
        x = torch.where(flip, x.flip(-1), x)
        rot = k % 4
        out = x.clone()
        for r in (1, 2, 3):
            sel = rot == r
            out = torch.where(sel[:, None, None, None], torch.rot90(x, r, dims=(-2, -1)), out)
        return out


# ----------------------------------------------------------------------------- the model
def _compile(model: nn.Module) -> int:
    units = [m for m in model.modules() if type(m).__name__ in COMPILE_UNITS]
    top = [m for m in units if not any(m is not u and any(m is c for c in u.modules()) for u in units)]
    for m in top:
        m.compile()
    return len(top)


def build_task(args: argparse.Namespace, device: torch.device):
    cfg = TrainConfig(
        model=args.model, lr=args.lr, bf16=args.bf16, seed=args.seed, device=device.type, model_args=args.model_args
    )
    torch.manual_seed(seed_from(args.seed, "init"))
    task = registry.get(args.model).task(cfg, None, device)
    for module in task.modules.values():
        if args.channels_last:
            module.to(memory_format=torch.channels_last)
        module.train()
    return task


def auto_batch(args: argparse.Namespace, device: torch.device, images: DeviceImages, noise) -> int:
    """Largest multiple of 8 whose step fits 70 % of the free memory (CUDA), from one probe step at batch 8."""
    if device.type != "cuda":
        return 4
    probe = 8
    task = build_task(args, device)
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    base = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    g = torch.Generator(device=device).manual_seed(1)
    noisy, clean = _make_batch(images, noise, probe, g, args.channels_last)
    with _autocast(args, device):
        task.step(noisy, clean)
    torch.cuda.synchronize()
    per_sample = (torch.cuda.max_memory_allocated(device) - base) / probe
    del task, noisy, clean
    torch.cuda.empty_cache()
    free, _total = torch.cuda.mem_get_info(device)
    batch = int(0.7 * free / max(per_sample, 1)) // 8 * 8
    print(f"auto batch: {per_sample / MiB:.1f} MiB per sample at batch {probe}, {free / 2**30:.1f} GiB free -> {batch}")
    return max(8, min(batch, args.max_batch))


def _autocast(args: argparse.Namespace, device: torch.device):
    return torch.autocast(device.type, dtype=torch.bfloat16) if args.bf16 else nullcontext()


def _make_batch(images: DeviceImages, noise, n: int, g: torch.Generator, channels_last: bool) -> tuple[Tensor, Tensor]:
    clean = images.batch(n, g)
    noisy, target = noise.pair(clean, g)
    if channels_last:
        noisy = noisy.contiguous(memory_format=torch.channels_last)
        target = target.contiguous(memory_format=torch.channels_last)
    return noisy, target


def _batches(images: DeviceImages, noise, n: int, seed: int, start: int, channels_last: bool) -> Iterator:
    step = start
    while True:
        g = torch.Generator(device=images.device).manual_seed(seed_from(seed, "gpu-batch", step))
        yield _make_batch(images, noise, n, g, channels_last)
        step += 1


# ----------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=registry.DEFAULT, choices=registry.choices())
    p.add_argument("--data", action="append", default=[], help="folder of clean training images (repeatable)")
    p.add_argument("--run", type=Path, help="run folder (checkpoint/, log.jsonl); resumed when it has a checkpoint")
    p.add_argument(
        "--minutes", type=float, default=9.0, help="wall-clock minutes of this piece, setup and checkpoint included"
    )
    p.add_argument("--reserve-s", type=float, default=20.0, help="seconds kept free for the checkpoint at the end")
    p.add_argument("--steps", type=int, default=None, help="stop this piece after this many steps")
    p.add_argument("--total-steps", type=int, default=20000, help="length of the cosine schedule (the whole run)")
    p.add_argument("--batch", default="auto", help="batch size, or auto (CUDA: fit the device; CPU: 4)")
    p.add_argument("--max-batch", type=int, default=128)
    p.add_argument("--patch", type=int, default=128)
    p.add_argument("--noise", default=USERS_FILES_NOISE, help="training noise spec (invdn.training.noise)")
    p.add_argument("--lr", type=float, default=None, help="learning rate (default: the model's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=None, help="default: on for CUDA")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None, help="default: CUDA")
    p.add_argument("--compile", action="store_true", help="torch.compile the convolutional sub-networks")
    p.add_argument("--shard-mib", type=float, default=DEFAULT_SHARD_MIB, help="largest checkpoint file (MiB)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    p.add_argument("--log-every", type=int, default=50)
    p.add_argument(
        "--warm-from",
        type=Path,
        default=None,
        metavar="DIR",
        help="new run from the weights of a checkpoint/ or weights/ folder: fresh Adam, the schedule continues at its "
        "step, the learning rate ramps up over --warmup-steps",
    )
    p.add_argument(
        "--init-from",
        type=Path,
        default=None,
        metavar="FILE",
        help="new run from a weights file (e.g. weights/invdn-lc-v8.safetensors): its architecture and weights, "
        "fresh Adam, the schedule from step 0, the learning rate ramping up over --warmup-steps",
    )
    p.add_argument("--warmup-steps", type=int, default=200, help="learning-rate ramp after --warm-from or --init-from")
    p.add_argument(
        "--export",
        type=Path,
        default=None,
        metavar="RUN",
        help="write the main module of RUN's checkpoint (or of a checkpoint/ or weights/ folder) to --out",
    )
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--dtype", choices=["float32", "float16", "bfloat16"], default="float32")
    args = p.parse_args(argv)
    args.warm_start_step = None
    args.model_args = None  # the architecture: the registry's default, or --init-from's, or the saved run's
    if args.warm_from is not None and args.init_from is not None:
        p.error("--warm-from and --init-from both choose the starting weights; give one")
    if args.export is None and (args.run is None or not args.data):
        p.error("--run and --data are needed to train (or --export RUN --out FILE)")
    return args


def export(run: Path, out: Path, dtype: str) -> Path:
    """The main module of RUN's checkpoint (or of a checkpoint/ or weights/ folder itself, e.g. one fetched from a
    lent machine) as one weights file (``invdn.models.weights.save``, with its step)."""
    from invdn.models.weights import save

    tensors, meta = load_sharded(run / "checkpoint" if (run / "checkpoint" / "index.json").exists() else run)
    model = registry.get(meta["config"]["model"]).build(meta["config"].get("model_args") or {})
    prefix = "module/main/"
    model.load_state_dict({k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)})
    return save(model, out, dtype=getattr(torch, dtype) if dtype != "float32" else None, extra={"step": meta["step"]})


def main(argv: list[str] | None = None) -> dict:
    t0 = time.monotonic()
    args = parse_args(argv)
    if args.export is not None:
        if args.out is None:
            raise SystemExit("--export needs --out")
        path = export(args.export, args.out, args.dtype)
        print(f"wrote {path}")
        return {"export": str(path)}
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    args.bf16 = device.type == "cuda" if args.bf16 is None else args.bf16
    args.channels_last = device.type == "cuda" if args.channels_last is None else args.channels_last
    run: Path = args.run
    ckpt = run / "checkpoint"
    saved = json.loads((ckpt / "index.json").read_text())["meta"] if (ckpt / "index.json").exists() else None
    if saved is not None:  # a later piece: the run's settings win over the command line's
        for key in CONFIG_KEYS:
            setattr(args, key, saved["config"].get(key, getattr(args, key)))
    elif args.init_from is not None:  # checked before any data is decoded: a wrong file costs no device time
        from invdn.models.weights import read_metadata, read_model_args

        held, trains = read_metadata(args.init_from).get("model_type"), registry.get(args.model).model_type
        if held != trains:
            raise SystemExit(f"--init-from {args.init_from} holds {held} weights; this run trains {trains}")
        args.model_args = read_model_args(args.init_from)
    elif args.warm_from is not None:  # the architecture the weights were trained in
        args.model_args = json.loads((args.warm_from / "index.json").read_text())["meta"]["config"].get("model_args")
    t_setup = time.monotonic()
    noise = make_noise(args.noise)
    images = DeviceImages(args.data, args.patch, device)
    batch = auto_batch(args, device, images, noise) if str(args.batch) == "auto" else int(args.batch)
    args.batch = batch
    task = build_task(args, device)
    if saved is not None:
        step = load_checkpoint(task, ckpt, device)
    elif args.warm_from is not None:
        step = args.warm_start_step = warm_start(task, args.warm_from)
    elif args.init_from is not None:
        init_from_file(task, args.init_from)
        step = args.warm_start_step = 0
    else:
        step = 0
    if args.compile:
        compiled = sum(_compile(m) for m in task.modules.values())
        print(f"compiled {compiled} sub-networks")
    config = {k: getattr(args, k) for k in CONFIG_KEYS}
    limit = int(args.shard_mib * MiB)
    print(
        f"{'resuming at step ' + str(step) if saved else 'new run'}: {args.model}, batch {batch}, patch {args.patch}, "
        f"{len(images)} images ({images.nbytes / MiB:.0f} MiB on {device}), bf16 {args.bf16}, "
        f"channels-last {args.channels_last}, compile {args.compile}; setup {time.monotonic() - t_setup:.1f} s",
        flush=True,
    )
    run.mkdir(parents=True, exist_ok=True)
    log = open(run / "log.jsonl", "a")  # closed at the end of the piece
    data = _batches(images, noise, batch, args.seed, step, args.channels_last)
    reserve = min(args.reserve_s, 0.25 * args.minutes * 60.0)
    budget = args.minutes * 60.0 - (time.monotonic() - t0) - reserve  # training seconds left in this piece
    px_per_step = batch * args.patch * args.patch
    start = time.monotonic()
    first_minute: float | None = None
    steps_here, losses = 0, []
    stats: dict[str, float] = {}
    while step < args.total_steps and (args.steps is None or steps_here < args.steps):
        noisy, clean = next(data)
        torch.manual_seed(seed_from(args.seed, "step", step, 0))  # latent draws (InvDN), as invdn.training.trainer
        factor = lr_factor("cosine", step, args.total_steps)
        if args.warm_start_step is not None:  # fresh Adam moments after a warm restart: ramp the rate up
            factor *= min(1.0, (step - args.warm_start_step + 1) / max(1, args.warmup_steps))
        for opt in task.optimizers.values():
            for group in opt.param_groups:
                group.setdefault("initial_lr", group["lr"])
                group["lr"] = group["initial_lr"] * factor
        with _autocast(args, device):
            stats = task.step(noisy, clean)  # returns Python floats: the device is synchronised every step
        step += 1
        steps_here += 1
        losses.append(stats["loss"])
        elapsed = time.monotonic() - start
        if first_minute is None and elapsed >= 60.0:
            first_minute = steps_here * px_per_step / elapsed
            print(f"first minute: {first_minute:,.0f} training px/s ({steps_here} steps)", flush=True)
        if step % args.log_every == 0:
            row = {
                "step": step,
                "loss": float(np.mean(losses)),
                "lr": factor,
                "px_per_s": steps_here * px_per_step / elapsed,
            }
            log.write(json.dumps(row) + "\n")
            log.flush()
            losses = []
            if not math.isfinite(row["loss"]):
                print(f"loss is {row['loss']} at step {step}; stopping without a checkpoint", file=sys.stderr)
                raise SystemExit(3)
        if elapsed >= budget:
            break
    elapsed = time.monotonic() - start
    rate = steps_here * px_per_step / max(elapsed, 1e-9)
    if first_minute is None:
        print(f"first minute (piece shorter than a minute): {rate:,.0f} training px/s ({steps_here} steps)")
    t_save = time.monotonic()
    save_checkpoint(task, step, config, run, limit)
    shards = sorted((run / "checkpoint").glob("shard-*.safetensors"))
    largest = max(p.stat().st_size for p in shards)
    summary = {
        "step": step,
        "steps_this_piece": steps_here,
        "seconds": round(elapsed, 2),
        "px_per_s": rate,
        "loss": stats.get("loss"),
        "batch": batch,
        "shards": len(shards),
        "largest_shard_bytes": largest,
        "checkpoint_seconds": round(time.monotonic() - t_save, 2),
    }
    log.write(json.dumps({"piece": summary}) + "\n")
    log.close()
    print(
        f"end of piece: step {step}/{args.total_steps}, {steps_here} steps in {elapsed:.1f} s, {rate:,.0f} training "
        f"px/s; checkpoint {len(shards)} shards, largest {largest / MiB:.2f} MiB",
        flush=True,
    )
    return summary


if __name__ == "__main__":
    main()
