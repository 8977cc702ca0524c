"""scripts/train_gpu.py on CPU: sharded checkpoints, training in pieces, bit-exact resume, export."""

from __future__ import annotations

import json
import re
import tarfile
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


def test_init_from_a_weights_file_keeps_its_architecture(tg, data: Path, tmp_path: Path, capsys) -> None:
    from invdn.models.invdn import InvDN
    from invdn.models.latent_clean import InvDNLC, InvDNLCConfig, deepen
    from invdn.models.weights import load_file_model, save

    torch.manual_seed(3)
    src = deepen(InvDNLC(InvDNLCConfig(res_blocks=2)), 3)  # not the registry's default architecture
    for p in src.parameters():  # trained-looking weights, none of them a fresh model's
        p.data.add_(0.01 * torch.randn_like(p))
    init = save(src, tmp_path / "init.safetensors", dtype=torch.float16)  # shipped files may be float16
    run = tmp_path / "run"
    common = ["--model", "invdn", "--data", str(data), "--device", "cpu", "--patch", "32", "--batch", "2"]
    common += ["--threads", "1", "--total-steps", "50", "--minutes", "5", "--log-every", "1", "--warmup-steps", "10"]
    assert tg.main(common + ["--run", str(run), "--init-from", str(init), "--steps", "0"])["step"] == 0
    ck, meta = _ckpt(tg, run)
    assert meta["config"]["model_args"]["res_blocks"] == 3 and meta["config"]["warm_start_step"] == 0
    want = {k: v.float() for k, v in load_file_model(init).state_dict().items()}
    assert {k[len("module/main/") :] for k in ck if k.startswith("module/main/")} == set(want)
    for name, t in want.items():
        assert torch.equal(ck[f"module/main/{name}"], t), name

    assert tg.main(common + ["--run", str(run), "--steps", "2"])["step"] == 2  # a later piece: same architecture
    ck2, meta2 = _ckpt(tg, run)
    assert meta2["config"]["model_args"]["res_blocks"] == 3
    assert any(not torch.equal(ck2[f"module/main/{k}"], t) for k, t in want.items())  # it trained
    rows = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines() if '"lr"' in line]
    assert rows[0]["step"] == 1 and rows[0]["lr"] == pytest.approx(tg.lr_factor("cosine", 0, 50) / 10)  # ramp

    out = tg.main(["--export", str(run), "--out", str(tmp_path / "out.safetensors")])["export"]
    from_weights = tg.main(["--export", str(run / "weights"), "--out", str(tmp_path / "w.safetensors")])["export"]
    for path in (out, from_weights):  # the run, or its weights/ folder as fetched from a lent machine
        back = load_file_model(path)
        assert back.config.res_blocks == 3
        for name, t in back.state_dict().items():
            assert torch.equal(t, ck2[f"module/main/{name}"]), name

    paper = save(InvDN(), tmp_path / "paper.safetensors")
    with pytest.raises(SystemExit, match="holds invdn weights; this run trains invdn-lc"):
        tg.main(common + ["--run", str(tmp_path / "wrong"), "--init-from", str(paper), "--steps", "0"])
    with pytest.raises(SystemExit) as exc:  # argparse: two sources of starting weights
        tg.main(common + ["--run", str(tmp_path / "both"), "--init-from", str(init), "--warm-from", str(run)])
    assert exc.value.code == 2 and "give one" in capsys.readouterr().err


def _session(tmp_path: Path, data: Path, name: str, **env: str):
    import os
    import subprocess
    import sys

    root = tmp_path / name
    for sub in ("CBSD432", "Train400"):  # the layout the session script reads
        (root / "data" / sub).mkdir(parents=True, exist_ok=True)
        for p in data.iterdir():
            (root / "data" / sub / p.name).write_bytes(p.read_bytes())
    full = {
        **os.environ,
        "OUT": str(root / "out"),
        "DATA": str(root / "data"),
        "RUNS": str(root / "runs"),
        "DEVICE": "cpu",
        "PY": sys.executable,
        "EXTRA": "--steps 1 --batch 2 --patch 32 --threads 1",
        **env,
    }
    proc = subprocess.run(["bash", str(ROOT / "scripts/gpu-session.sh")], env=full, capture_output=True, text=True)
    return proc, root / "out"


def test_gpu_session_script_returns_what_the_device_tool_can_carry_back(tg, data: Path, tmp_path: Path) -> None:
    from invdn.models.weights import load_file_model, shipped_path

    proc, out = _session(tmp_path, data, "ok")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    files = [p for p in out.rglob("*") if p.is_file()]
    assert len(files) <= 8 and all(p.stat().st_size < 16 << 20 for p in files)  # the device tool's limits
    assert sum(p.stat().st_size for p in files) <= 64 << 20
    for p in files:  # at most two folders down, names of letters, digits, '.', '_' and '-'
        parts = p.relative_to(out).parts
        assert len(parts) <= 3 and all(re.fullmatch(r"[A-Za-z0-9._-]+", part) for part in parts), parts
    with tarfile.open(out / "logs.tgz") as tar:
        assert set(tar.getnames()) == {f"{m}/{f}" for m in ("invdn", "danet-r") for f in ("console.log", "log.jsonl")}
    assert proc.stdout.count("end of piece: step 1/8000") == 2 and "new run from" in proc.stdout
    for model in ("invdn", "danet-r"):
        path = tg.export(out / model / "weights", tmp_path / f"{model}.safetensors", "float32")
        got, shipped = load_file_model(path), load_file_model(shipped_path(model))
        assert got.model_args == shipped.model_args and got.weights_meta["step"] == "1"
        want = shipped.state_dict()
        assert any(not torch.equal(t, want[k].float()) for k, t in got.state_dict().items())  # it trained

    again, _ = _session(tmp_path, data, "ok", MODELS="invdn")  # a second call while the machine stays warm
    assert (
        again.returncode == 0 and "resuming at step 1" in again.stdout and "end of piece: step 2/8000" in again.stdout
    )

    bad, out = _session(tmp_path, data, "bad", MODELS="invdn paper", DATA=str(tmp_path / "nothing"))
    assert bad.returncode == 1 and "invdn: FAILED" in bad.stdout and "paper: not trained here" in bad.stdout
    with tarfile.open(out / "logs.tgz") as tar:  # the logs come back even so
        assert "invdn/console.log" in tar.getnames()


def test_gpu_prepare_fills_what_a_device_call_can_carry(tmp_path: Path) -> None:
    prep = load_script("scripts/gpu-prepare.py", "gpu_prepare")
    files = []
    for i in range(10):
        f = tmp_path / "sizes" / f"{i}.jpg"
        f.parent.mkdir(exist_ok=True)
        f.write_bytes(b"x" * 100)
        files.append(f)
    assert prep.evenly_spaced(files, 1000) == files
    picked = prep.evenly_spaced(files, 450)  # room for 4 of 10: spread over the whole list
    assert [p.name for p in picked] == ["0.jpg", "2.jpg", "5.jpg", "7.jpg"]
    assert prep.evenly_spaced(files, 50) == []

    datasets = tmp_path / "datasets"
    for name, count in (("Train400", 3), ("CBSD432", 8)):
        (datasets / name).mkdir(parents=True)
        for i in range(count):
            (datasets / name / f"{i:02d}.png").write_bytes(b"y" * 1000)
    tree = prep.travelling_bytes(ROOT)
    carried = tmp_path / "carry"
    out = carried / "data"
    (carried / "init.safetensors").parent.mkdir()
    (carried / "init.safetensors").write_bytes(b"w" * 2000)  # carried too: counted against the limit
    (out / "old").mkdir(parents=True)
    (out / "old" / "stale.png").write_bytes(b"s" * 10**6)  # replaced by this run: not counted
    # room for Train400 and 4 of the 8 colour images, after the working tree, the other carried file and the margin
    limit = (tree + 2000 + 3000 + 4500) / (1 << 20) + 1.0
    args = ["--datasets", str(datasets), "--out", str(out), "--carried", str(carried), "--margin-mib", "1"]
    got = prep.main(args + ["--limit-mib", str(limit)])
    assert got["grey"] == 3 and got["colour"] == 4 and not (out / "old").exists()
    assert sorted(p.name for p in (out / "CBSD432").iterdir()) == ["00.png", "02.png", "04.png", "06.png"]
    assert "CBSD432 4/8" in (out / "SUBSET.txt").read_text()
    with pytest.raises(SystemExit, match="no room for Train400"):
        prep.main(args + ["--limit-mib", str((tree + 2000) / (1 << 20) + 1.0)])
