"""The peer score cache (invdn.eval.cache): reused only for the same bytes, method, version and sigma."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from invdn.eval.cache import ScoreCache, score_key
from invdn.eval.config import EvalConfig
from invdn.eval.methods import ImageContext, Method
from invdn.eval.run import run_evaluation


def _folder(root: Path, n: int = 2) -> Path:
    rng = np.random.default_rng(7)
    root.mkdir(parents=True)
    for k in range(n):
        Image.fromarray(rng.integers(40, 220, (20, 24, 3), dtype=np.uint8)).save(root / f"im{k}.png")
    return root


class Counting:
    """A deterministic 'peer': a 3x3 box blur that counts its calls (the warm-up call included)."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, noisy: np.ndarray, ctx: ImageContext) -> np.ndarray:
        self.calls += 1
        padded = np.pad(noisy, ((1, 1), (1, 1), (0, 0)), mode="edge")
        h, w = noisy.shape[:2]
        return sum(padded[i : i + h, j : j + w] for i in range(3) for j in range(3)) / 9.0


def test_key_depends_on_every_input() -> None:
    rng = np.random.default_rng(0)
    noisy = rng.random((8, 8, 3))
    clean = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    base = score_key("CBM3D", "bm3d 4.0.3", 25.0, noisy, clean)
    assert base == score_key("CBM3D", "bm3d 4.0.3", 25.0, noisy.copy(), clean.copy())
    changed = noisy.copy()
    changed[3, 3, 1] = np.nextafter(changed[3, 3, 1], 2.0)  # one ulp of one pixel
    other_clean = clean.copy()
    other_clean[0, 0, 0] ^= 1
    variants = [
        score_key("BM3D", "bm3d 4.0.3", 25.0, noisy, clean),
        score_key("CBM3D", "bm3d 4.0.4", 25.0, noisy, clean),
        score_key("CBM3D", "bm3d 4.0.3", 50.0, noisy, clean),
        score_key("CBM3D", "bm3d 4.0.3", None, noisy, clean),
        score_key("CBM3D", "bm3d 4.0.3", 25.0, changed, clean),
        score_key("CBM3D", "bm3d 4.0.3", 25.0, noisy, other_clean),
        score_key("CBM3D", "bm3d 4.0.3", 25.0, noisy.reshape(4, 16, 3), clean.reshape(4, 16, 3)),
    ]
    assert len({base, *variants}) == len(variants) + 1


def test_key_depends_on_the_scoring_code_and_packages(monkeypatch: pytest.MonkeyPatch) -> None:
    from invdn.eval import cache

    noisy, clean = np.zeros((4, 4, 3)), np.zeros((4, 4, 3), dtype=np.uint8)
    base = score_key("CBM3D", "bm3d 4.0.3", 25.0, noisy, clean)
    for package in ("numpy", "scipy", "scikit-image", "PyWavelets"):
        assert package in cache.scoring_environment()
    monkeypatch.setattr(cache, "SCORE_VERSION", cache.SCORE_VERSION + 1)
    assert score_key("CBM3D", "bm3d 4.0.3", 25.0, noisy, clean) != base
    monkeypatch.setattr(cache, "SCORE_VERSION", cache.SCORE_VERSION - 1)
    assert score_key("CBM3D", "bm3d 4.0.3", 25.0, noisy, clean) == base
    monkeypatch.setattr(cache, "scoring_environment", lambda: "score v1, scipy 0.0")
    assert score_key("CBM3D", "bm3d 4.0.3", 25.0, noisy, clean) != base


def test_file_round_trip_skips_a_torn_line(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "scores.jsonl"
    cache = ScoreCache(path)
    assert len(cache) == 0 and not path.exists()
    cache.put("a" * 64, (30.5, 0.8, 1.25), "label")
    cache.put("b" * 64, (20.0, 0.5, 2.0))
    with path.open("a") as f:
        f.write('{"key": "c", "psnr": 1')  # a run killed mid-write
    again = ScoreCache(path)
    assert len(again) == 2
    assert again.get("a" * 64) == (30.5, 0.8, 1.25)
    assert again.get("c") is None
    assert json.loads(path.read_text().splitlines()[0])["label"] == "label"


def test_second_run_reuses_cached_peer_scores_and_reruns_models(tmp_path: Path) -> None:
    root = _folder(tmp_path / "set")
    config = EvalConfig(datasets=[root], sigmas=[25.0, 50.0], bm3d=False, clip8=True)
    cache_path = tmp_path / "scores.jsonl"

    def rows(peer: Counting, model: Counting) -> list[Method]:
        return [Method("Peer", peer, kind="peer", cache_tag="peer 1"), Method("Model", model, kind="model")]

    peer1, model1 = Counting(), Counting()
    first = run_evaluation(config, rows(peer1, model1), cache=ScoreCache(cache_path))
    assert peer1.calls == model1.calls == 1 + 4  # warm-up + 2 images x 2 sigmas
    assert first.cached == 0
    assert len(cache_path.read_text().splitlines()) == 4

    peer2, model2 = Counting(), Counting()
    second = run_evaluation(config, rows(peer2, model2), cache=ScoreCache(cache_path))
    assert peer2.calls == 1  # the warm-up only: every score came from the file
    assert model2.calls == 1 + 4  # models are always measured
    assert second.cached == 4
    key = lambda s: (s.method, s.condition, s.image)  # noqa: E731
    assert sorted((key(s), s.psnr, s.ssim) for s in first.scores) == sorted(
        (key(s), s.psnr, s.ssim) for s in second.scores
    )

    # other noisy bytes (float inputs instead of 8-bit): nothing matches, everything is measured again
    peer3 = Counting()
    third = run_evaluation(
        EvalConfig(datasets=[root], sigmas=[25.0], bm3d=False, clip8=False),
        rows(peer3, Counting()),
        cache=ScoreCache(cache_path),
    )
    assert peer3.calls == 1 + 2 and third.cached == 0


@pytest.mark.parametrize("grey", [False, True])
def test_bm3d_rows_carry_the_package_version(grey: bool) -> None:
    from importlib.metadata import version

    from invdn.eval.methods import bm3d_method

    tag = bm3d_method(grey_name=grey).cache_tag
    assert tag is not None and f"bm3d {version('bm3d')}" in tag and "bm4d" in tag  # bm4d: its compiled engine


def test_reused_rows_are_marked_in_the_report(tmp_path: Path) -> None:
    from invdn.eval.report import markdown_report, summarize

    root = _folder(tmp_path / "set", n=1)
    config = EvalConfig(datasets=[root], sigmas=[25.0], bm3d=False, clip8=True)
    cache = tmp_path / "scores.jsonl"
    rows = lambda: [Method("Peer", Counting(), kind="peer", cache_tag="peer 1")]  # noqa: E731
    fresh = markdown_report(summarize(run_evaluation(config, rows(), cache=ScoreCache(cache))))
    assert "reused" not in fresh
    again = run_evaluation(config, rows(), cache=ScoreCache(cache))
    assert [s.cached for s in again.scores if s.method == "Peer"] == [True]
    assert "1 of 1 scores reused from the score cache" in markdown_report(summarize(again))
    from invdn.eval.report import write_outputs

    write_outputs(again, tmp_path / "out")
    with (tmp_path / "out" / "per_image.csv").open(newline="") as f:
        cached = {row["method"]: row["cached"] for row in csv.DictReader(f)}
    assert cached == {"Noisy input": "0", "Peer": "1"}


def test_the_tuned_cbm3d_row_of_real_pairs_is_reused_and_marked(tmp_path: Path) -> None:
    pytest.importorskip("bm3d")
    root = tmp_path / "pairs"
    rng = np.random.default_rng(3)
    for k in range(2):
        clean = rng.integers(60, 200, (24, 20, 3), dtype=np.uint8)
        noisy = np.clip(clean + rng.normal(0, 10, clean.shape), 0, 255).round().astype(np.uint8)
        for sub, arr in (("clean", clean), ("noisy", noisy)):
            (root / sub).mkdir(parents=True, exist_ok=True)
            Image.fromarray(arr).save(root / sub / f"p{k}.png")
    config = EvalConfig(pairs=[root], bm3d=True, bm3d_sweep=[10.0, 20.0])
    cache = tmp_path / "scores.jsonl"
    first = run_evaluation(config, [], cache=ScoreCache(cache))
    again = run_evaluation(config, [], cache=ScoreCache(cache))
    tuned = lambda r: sorted((s.image, s.psnr, s.cached) for s in r.scores if "tuned" in s.method)  # noqa: E731
    assert [c for *_, c in tuned(first)] == [False, False]
    assert [c for *_, c in tuned(again)] == [True, True]
    assert [x[:2] for x in tuned(first)] == [x[:2] for x in tuned(again)]


def test_a_line_torn_inside_a_multibyte_character_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "scores.jsonl"
    ScoreCache(path).put("e" * 64, (2.0, 0.2, 0.1), "CBSD68 σ=25 x CBM3D")
    torn = json.dumps({"key": "f" * 64, "psnr": 1.0, "ssim": 0.1, "seconds": 1.0, "label": "σ"}, ensure_ascii=False)
    cut = torn.encode()[: torn.encode().index("σ".encode()) + 1]  # killed between the two bytes of "σ"
    with path.open("ab") as f:
        f.write(cut)
    again = ScoreCache(path)
    assert len(again) == 1 and again.get("e" * 64) == (2.0, 0.2, 0.1)
    again.put("g" * 64, (3.0, 0.3, 0.2))
    assert ScoreCache(path).get("g" * 64) == (3.0, 0.3, 0.2)


def test_row_after_a_torn_line_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "scores.jsonl"
    path.write_text('{"key": "x", "psnr": 3')  # killed mid-write, no newline
    ScoreCache(path).put("d" * 64, (1.0, 0.1, 0.5))
    assert ScoreCache(path).get("d" * 64) == (1.0, 0.1, 0.5)
