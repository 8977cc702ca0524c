"""scripts/train_gpu.py on CPU: sharded checkpoints, training in pieces, bit-exact resume, export."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import load_script
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def _script():
    return load_script("scripts/train_gpu.py", "train_gpu")


@pytest.fixture(scope="module")
def tg():
    return _script()


@pytest.fixture()
def data(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    folder = tmp_path / "data"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (40 + 9 * i, 36 + 5 * i, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    Image.fromarray(rng.integers(0, 256, (30, 28), dtype=np.uint8)).save(folder / "grey.png")  # smaller than a patch
    return folder


def test_shards_respect_the_limit_and_reassemble_bit_exactly(tg, tmp_path: Path) -> None:
    g = torch.Generator().manual_seed(1)
    tensors = {
        "big": torch.randn(700_000, generator=g),  # 2.7 MiB: split over several shards
        "matrix": torch.randn(300, 257, generator=g),
        "bf16": torch.randn(40, 40, generator=g).bfloat16(),
        "ints": torch.randint(-(2**40), 2**40, (1000,), generator=g),
        "scalar": torch.tensor(3.0),
        "empty": torch.zeros(0, 4),
    }
    limit = 1 << 20
    paths = tg.save_sharded(tensors, tmp_path / "ck", {"step": 7}, limit)
    assert len(paths) >= 3
    assert all(p.stat().st_size < limit for p in paths)
    back, meta = tg.load_sharded(tmp_path / "ck")
    assert meta == {"step": 7} and set(back) == set(tensors)
    for name, t in tensors.items():
        assert back[name].dtype == t.dtype and back[name].shape == t.shape
        assert torch.equal(back[name], t), name


def _ckpt(tg, run: Path) -> tuple[dict[str, torch.Tensor], dict]:
    return tg.load_sharded(run / "checkpoint")


def test_pieces_resume_bit_exactly_and_export(tg, data: Path, tmp_path: Path) -> None:
    common = ["--model", "invdn", "--data", str(data), "--device", "cpu", "--patch", "32", "--batch", "2"]
    common += ["--threads", "1", "--total-steps", "50", "--minutes", "5", "--log-every", "1"]
    pieces, whole = tmp_path / "pieces", tmp_path / "whole"
    first = tg.main(common + ["--run", str(pieces), "--steps", "2", "--shard-mib", "4"])
    assert first["step"] == 2 and first["steps_this_piece"] == 2
    second = tg.main(common + ["--run", str(pieces), "--steps", "2", "--shard-mib", "4"])
    assert second["step"] == 4 and second["steps_this_piece"] == 2  # resumed, not restarted
    once = tg.main(common + ["--run", str(whole), "--steps", "4"])  # default shard limit
    assert once["step"] == 4

    for run, limit in ((pieces, 4 << 20), (whole, 16 << 20)):
        shards = sorted((run / "checkpoint").glob("shard-*.safetensors"))
        assert len(shards) >= 2
        assert all(p.stat().st_size < limit for p in shards)
    a, meta_a = _ckpt(tg, pieces)
    b, meta_b = _ckpt(tg, whole)
    assert meta_a["step"] == meta_b["step"] == 4
    assert set(a) == set(b)
    assert any(k.startswith("optim/main/") and k.endswith("/exp_avg_sq") for k in a)  # optimiser state is there
    for k in a:  # two pieces == one run: weights and Adam moments bit for bit
        assert torch.equal(a[k], b[k]), k
    assert int(a[next(k for k in a if k.endswith("/step"))]) == 4

    # the weights really trained (not the seed's initial weights)
    init = tg.main(common + ["--run", str(tmp_path / "zero"), "--steps", "0"])
    assert init["step"] == 0
    z, _ = _ckpt(tg, tmp_path / "zero")
    moved = [k for k in z if k.startswith("module/") and z[k].is_floating_point() and not torch.equal(z[k], a[k])]
    assert moved

    # warm restart from the weights-only folder: same weights and step, fresh Adam, ramped learning rate
    wshards = sorted((pieces / "weights").glob("shard-*.safetensors"))
    assert wshards and all(p.stat().st_size < 4 << 20 for p in wshards)
    warm = tmp_path / "warm"
    args = common + ["--run", str(warm), "--warm-from", str(pieces / "weights"), "--warmup-steps", "10"]
    assert tg.main(args + ["--steps", "0"])["step"] == 4
    w, meta_w = _ckpt(tg, warm)
    assert not any(k.startswith("optim/") for k in w)  # Adam starts afresh
    assert all(torch.equal(w[k], a[k]) for k in w) and set(w) == {k for k in a if k.startswith("module/")}
    assert meta_w["config"]["warm_start_step"] == 4
    assert tg.main(common + ["--run", str(warm), "--steps", "1"])["step"] == 5  # a later piece keeps the ramp
    last = [json.loads(line) for line in (warm / "log.jsonl").read_text().splitlines() if '"lr"' in line][-1]
    assert last["step"] == 5 and last["lr"] == pytest.approx(tg.lr_factor("cosine", 4, 50) * 1 / 10)

    out = tmp_path / "exported.safetensors"
    tg.main(["--export", str(pieces), "--out", str(out)])
    from invdn.models.weights import load_file_model

    model = load_file_model(out)
    assert model.weights_meta["step"] == "4"
    for name, t in model.state_dict().items():
        assert torch.equal(t, a[f"module/main/{name}"]), name


def test_device_batches_are_seeded_patches(tg, data: Path) -> None:
    images = tg.DeviceImages([str(data)], 32, torch.device("cpu"))
    assert len(images) == 4
    x1 = images.batch(16, torch.Generator().manual_seed(3))
    x2 = images.batch(16, torch.Generator().manual_seed(3))
    assert x1.shape == (16, 3, 32, 32) and torch.equal(x1, x2)
    assert torch.equal(x1 * 255, torch.round(x1 * 255)) and x1.min() >= 0 and x1.max() <= 1
    # every patch is a flipped/rotated crop of one of the images
    sources = [
        torch.from_numpy(np.array(Image.open(p).convert("RGB"))).permute(2, 0, 1).float() / 255
        for p in sorted(data.iterdir())
    ]
    for patch in x1[:4]:
        found = False
        for src in sources:
            src = src if src.shape[1] <= src.shape[2] else src.transpose(1, 2)
            for k in range(8):
                view = torch.rot90(patch, -(k % 4), dims=(-2, -1))  # undo the rotation, then the flip
                view = view.flip(-1) if k >= 4 else view
                windows = (
                    torch.nn.functional.pad(
                        src, (0, max(0, 32 - src.shape[2]), 0, max(0, 32 - src.shape[1])), mode="replicate"
                    )
                    .unfold(1, 32, 1)
                    .unfold(2, 32, 1)
                )
                if (windows == view[:, None, None]).flatten(3).all(-1).all(0).any():
                    found = True
                    break
            if found:
                break
        assert found


def test_bf16_couplings_keep_float32_scale_and_shift() -> None:
    from invdn.models.coupling import AffineCoupling
    from invdn.models.latent_clean import InvDNLC

    model = InvDNLC()
    coupling = next(m for m in model.modules() if isinstance(m, AffineCoupling))
    x = torch.rand(1, coupling.split1 + coupling.split2, 8, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert coupling.H(x[:, : coupling.split1]).dtype == torch.bfloat16  # the subnets do run in bf16
        s, g = coupling.scale_and_shift(x[:, : coupling.split1])
        y, _ = coupling(x)
    assert s.dtype == g.dtype == y.dtype == torch.float32
