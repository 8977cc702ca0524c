"""Evaluation on tiny generated folders with stub models: hand-checked PSNR, same noisy images, outputs."""

from __future__ import annotations

import csv
import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from torch import nn

from invdn.eval.config import EvalConfig
from invdn.eval.methods import describe_model, model_method
from invdn.eval.report import markdown_report, summarize, write_outputs
from invdn.eval.run import run_evaluation
from invdn.models import registry
from invdn.training.noise import seed_from

LABEL = registry.get(registry.DEFAULT).label


class IdentityDenoiser(nn.Module):
    """Stub denoiser: returns its input; records every input it sees."""

    model_type = "invdn-lc"  # the registry's default model: its label names the rows
    pretrained = True

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1)  # 12 parameters, never used
        self.seen: list[torch.Tensor] = []

    def denoise(self, x: torch.Tensor, **kwargs: object) -> torch.Tensor:
        self.seen.append(x.clone())
        return x


class DrawingDenoiser(IdentityDenoiser):
    """Stub with a random draw, like InvDN's latent: output depends on the generator."""

    model_type = "invdn"  # the paper InvDN: the registry's stochastic model (the engine passes it a generator)

    def denoise(self, x: torch.Tensor, generator: torch.Generator | None = None, **kwargs: object) -> torch.Tensor:
        return x + 0.01 * torch.randn(x.shape, generator=generator)


def _write_folder(root: Path, grey: bool = False, n: int = 3) -> Path:
    rng = np.random.default_rng(42)
    root.mkdir(parents=True)
    for k in range(n):
        shape = (24 + 2 * k, 28) if grey else (24 + 2 * k, 28, 3)
        smooth = np.clip(rng.normal(128, 40, shape), 0, 255).astype(np.uint8)
        Image.fromarray(smooth).save(root / f"img{k}.png")
    return root


def _hand_psnr_noisy(path: Path, dataset: str, sigma: float) -> float:
    """Noisy-input PSNR computed by hand: seeded N(0,1) draw * sigma, clip, round, 10 log10(255^2 / MSE)."""
    clean = np.asarray(Image.open(path).convert("RGB"), dtype=np.float64)
    g = torch.Generator().manual_seed(seed_from(dataset, path.stem, f"awgn:{sigma:g}"))
    z = torch.randn((1, 3, clean.shape[0], clean.shape[1]), generator=g)[0].numpy().transpose(1, 2, 0)
    noisy = clean / 255.0 + (sigma / 255.0) * z
    noisy8 = np.clip(np.rint(noisy * 255.0), 0, 255)
    mse = np.mean((noisy8 - clean) ** 2)
    return 10 * math.log10(255.0**2 / mse)


def test_noisy_row_psnr_is_hand_computable_and_identity_matches(tmp_path: Path) -> None:
    root = _write_folder(tmp_path / "tiny")
    model = IdentityDenoiser()
    config = EvalConfig(datasets=[root], sigmas=[25.0], bm3d=False)
    results = run_evaluation(config, [model_method(model, name="Identity")])
    by = {(s.method, s.image): s for s in results.scores}
    for k in range(3):
        expected = _hand_psnr_noisy(root / f"img{k}.png", "tiny", 25.0)
        assert by[("Noisy input", f"img{k}")].psnr == pytest.approx(expected, abs=1e-9)
        assert by[("Identity", f"img{k}")].psnr == pytest.approx(expected, abs=1e-9)
        assert 0 < by[("Noisy input", f"img{k}")].ssim < 1
    assert len(results.scores) == 6
    assert results.datasets["tiny"]["grey"] is False


def test_every_method_sees_the_same_noisy_images(tmp_path: Path) -> None:
    root = _write_folder(tmp_path / "tiny")
    a, b = IdentityDenoiser(), IdentityDenoiser()
    config = EvalConfig(datasets=[root], sigmas=[15.0, 50.0], bm3d=False)
    run_evaluation(config, [model_method(a, name="A"), model_method(b, name="B")])
    assert len(a.seen) == len(b.seen) == 1 + 6  # warm-up + 3 images x 2 sigmas
    assert all(torch.equal(x, y) for x, y in zip(a.seen, b.seen, strict=True))
    # a second run regenerates exactly the same noise
    c = IdentityDenoiser()
    run_evaluation(config, [model_method(c, name="C")])
    assert all(torch.equal(x, y) for x, y in zip(a.seen, c.seen, strict=True))


def test_clip8_inputs_on_the_8bit_grid(tmp_path: Path) -> None:
    root = _write_folder(tmp_path / "tiny", n=1)
    model = IdentityDenoiser()
    run_evaluation(EvalConfig(datasets=[root], sigmas=[50.0], bm3d=False, clip8=True), [model_method(model)])
    x = model.seen[-1]
    assert x.min() >= 0 and x.max() <= 1
    assert torch.allclose(x * 255, torch.round(x * 255), atol=1e-4)
    unclipped = IdentityDenoiser()
    run_evaluation(EvalConfig(datasets=[root], sigmas=[50.0], bm3d=False), [model_method(unclipped)])
    assert unclipped.seen[-1].min() < 0 or unclipped.seen[-1].max() > 1


def test_seeded_model_draws_are_reproducible(tmp_path: Path) -> None:
    root = _write_folder(tmp_path / "tiny", n=2)
    config = EvalConfig(datasets=[root], sigmas=[25.0], bm3d=False)
    first = [s.psnr for s in run_evaluation(config, [model_method(DrawingDenoiser())]).scores]
    second = [s.psnr for s in run_evaluation(config, [model_method(DrawingDenoiser())]).scores]
    assert first == second


def test_grey_folder_replicates_channels_and_scores_one(tmp_path: Path) -> None:
    root = _write_folder(tmp_path / "greyset", grey=True, n=2)
    model = IdentityDenoiser()
    results = run_evaluation(EvalConfig(datasets=[root], sigmas=[25.0], bm3d=False), [model_method(model)])
    assert results.datasets["greyset"]["grey"] is True
    x = model.seen[-1]
    assert x.shape[1] == 3 and torch.equal(x[:, 0], x[:, 1]) and torch.equal(x[:, 0], x[:, 2])
    noisy = [s.psnr for s in results.scores if s.method == "Noisy input"]
    ident = [s.psnr for s in results.scores if s.method == LABEL]
    assert noisy == pytest.approx(ident)


def test_outputs_written_and_quoted_rows_marked(tmp_path: Path) -> None:
    root = _write_folder(tmp_path / "CBSD68")
    model = IdentityDenoiser()
    results = run_evaluation(EvalConfig(datasets=[root], sigmas=[25.0], bm3d=False), [model_method(model)])
    results.models = [describe_model(model)]
    written = write_outputs(results, tmp_path / "out")
    with open(written["csv"], newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 6 and {r["method"] for r in rows} == {"Noisy input", LABEL}
    summary = json.loads(written["json"].read_text())
    noisy_row = next(r for r in summary["rows"] if r["method"] == "Noisy input")
    assert noisy_row["psnr"] == pytest.approx(np.mean([float(r["psnr"]) for r in rows[::2]]), abs=1e-3)
    assert all(q["quoted"] for q in summary["quoted"])
    md = written["markdown"].read_text()
    assert md == markdown_report(summary)
    measured, quoted = md.split("quoted (published, not measured here")
    assert "31.24" in quoted and "CDnCNN-B (quoted)" in quoted
    assert "31.24" not in measured and "(quoted)" not in measured
    assert "σ=15" not in quoted  # only the evaluated sigmas
    assert written["plot"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"| {LABEL} | 12 |" in md  # the stub's parameter count in the model table


def test_unquoted_dataset_has_no_quoted_table(tmp_path: Path) -> None:
    root = _write_folder(tmp_path / "mine", n=1)
    results = run_evaluation(EvalConfig(datasets=[root], sigmas=[25.0], bm3d=False), [])
    assert "quoted" not in markdown_report(summarize(results)).split("## mine")[1]


def test_real_pairs_with_bm3d_estimated_and_tuned_rows(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    root = tmp_path / "pairs"
    (root / "clean").mkdir(parents=True)
    (root / "noisy").mkdir()
    clean = np.clip(rng.normal(128, 30, (32, 32, 3)), 0, 255)
    clean = (clean + np.roll(clean, 1, 0) + np.roll(clean, 1, 1)) / 3  # some structure
    noisy = np.clip(clean + rng.normal(0, 15, clean.shape), 0, 255)
    Image.fromarray(clean.astype(np.uint8)).save(root / "clean" / "p.png")
    Image.fromarray(noisy.astype(np.uint8)).save(root / "noisy" / "p.png")
    config = EvalConfig(pairs=[root], bm3d=True, bm3d_sweep=[10.0, 20.0])
    results = run_evaluation(config, [model_method(IdentityDenoiser())])
    methods = {s.method: s for s in results.scores}
    tuned = [m for m in methods if "tuned on test set" in m]
    assert len(tuned) == 1 and "CBM3D (σ estimated per image)" in methods
    assert methods[tuned[0]].psnr > methods["Noisy input"].psnr
    assert methods[LABEL].psnr == pytest.approx(methods["Noisy input"].psnr)
    assert results.datasets["pairs"]["kind"] == "pairs"


def test_cli_table_json_and_broken_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from invdn.cli.evaluate import evaluate
    from invdn.models import weights

    monkeypatch.setattr(weights, "load", lambda name, path=None, device="cpu": IdentityDenoiser())
    root = _write_folder(tmp_path / "tiny", n=2)
    runner = CliRunner()
    result = runner.invoke(evaluate, ["--dataset", str(root), "--sigma", "25", "--no-bm3d", "--quiet"])
    assert result.exit_code == 0, result.output
    assert "| Noisy input |" in result.output and "σ=25 PSNR / SSIM" in result.output
    result = runner.invoke(
        evaluate, ["--dataset", str(root), "--sigma", "15,25", "--no-bm3d", "--quiet", "--json", "--model", "invdn"]
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert {r["condition"] for r in summary["rows"]} == {"σ=15", "σ=25"}
    (root / "zz_broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    result = runner.invoke(
        evaluate, ["--dataset", str(root), "--sigma", "25", "--no-bm3d", "--quiet", "--out", str(tmp_path / "o")]
    )
    assert result.exit_code == 1
    assert "zz_broken" in result.output and "| Noisy input |" in result.output
    assert (tmp_path / "o" / "summary.json").exists()
    result = runner.invoke(evaluate, ["--sigma", "25"])
    assert result.exit_code != 0 and "--dataset" in result.output


def test_model_rows_run_through_the_engines_automatic_tiles(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "big"
    root.mkdir()
    pixels = np.random.default_rng(1).integers(0, 256, (300, 260, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(root / "a.png")
    model = IdentityDenoiser()
    spec = dataclasses.replace(registry.spec_of(model), min_tile=128, max_tile=160, tile_overlap=16)
    monkeypatch.setattr(registry, "spec_of", lambda m: spec)
    results = run_evaluation(EvalConfig(datasets=[root], sigmas=[25.0], bm3d=False, clip8=True), [model_method(model)])
    assert model.seen and max(max(x.shape[-2:]) for x in model.seen) <= 160  # as users' files: in tiles
    noisy, ident = ([s.psnr for s in results.scores if s.method == m] for m in ("Noisy input", LABEL))
    assert ident == pytest.approx(noisy, abs=1e-6)  # and blended back seamlessly
