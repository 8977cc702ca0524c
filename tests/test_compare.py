import io
import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from invdn.cli import main
from invdn.eval.compare import GRID_GAP, RANDOM_INIT_NOTE, compare, format_table, side_by_side_png
from invdn.models import registry

HEIGHT, WIDTH = 32, 48


def _clean_image() -> np.ndarray:
    """A smooth colour image in [0.2, 0.8], so sigma-25 noise is hardly ever clipped."""
    rows = np.linspace(0.2, 0.8, HEIGHT, dtype=np.float32)[:, None]
    cols = np.linspace(0.8, 0.2, WIDTH, dtype=np.float32)[None, :]
    return np.stack([rows + 0 * cols, cols + 0 * rows, 0.5 * (rows + cols)], axis=2)


def test_compare_synthetic_awgn_reports_every_measure(registry_models):
    result = compare(_clean_image(), sigma=25, seed=0, models=registry_models)
    data = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert data["mode"] == "synthetic" and data["noise"] == "awgn:25:clip8"
    assert set(data["models"]) == {"noisy", *registry.names()}
    noisy = data["models"]["noisy"]
    assert noisy["psnr"] == pytest.approx(20.17, abs=0.5)
    assert 0 < noisy["ssim"] < 1
    for name, model in registry_models.items():
        row = data["models"][name]
        assert row["parameters"] == sum(p.numel() for p in model.parameters())
        assert row["psnr"] is not None and row["ssim"] is not None
        assert row["ms"] > 0 and row["flops_per_megapixel"] > 1e9
        assert row["pretrained"] is False and row["note"] == RANDOM_INIT_NOTE
    assert data["models"]["invdn-paper"]["parameters"] == 2_640_960
    assert data["models"]["danet-r"]["parameters"] == 9_153_571
    assert data["ratios"]["invdn-paper_over_danet_r"] == pytest.approx(2_640_960 / 9_153_571)
    assert data["ratios_percent"]["invdn-paper_over_danet_r"] == 28.85
    assert data["ratios_percent"]["invdn-paper_over_danet_all"] == 4.19
    assert data["ratios"]["invdn_over_danet_r"] < 0.4  # the default model's budget
    assert data["danet_parameters"]["total"] == 63_011_175
    assert len(data["warnings"]) == 3
    assert set(result.images) == {"noisy", *registry.names(), "clean"}
    assert all(img.dtype == np.uint8 and img.shape == (HEIGHT, WIDTH, 3) for img in result.images.values())
    table = format_table(result)
    assert "28.9 % of DANet-R" in table and "4.19 % of DANet" in table and RANDOM_INIT_NOTE in table


def test_noise_is_seeded_and_rounded_to_8_bits(registry_models):
    a = compare(_clean_image(), sigma=25, seed=1, models=registry_models)
    b = compare(_clean_image(), sigma=25, seed=1, models=registry_models)
    c = compare(_clean_image(), sigma=25, seed=2, models=registry_models)
    assert np.array_equal(a.images["noisy"], b.images["noisy"])
    assert not np.array_equal(a.images["noisy"], c.images["noisy"])
    assert a.row("noisy").psnr == b.row("noisy").psnr


def test_trained_weights_are_not_flagged(registry_models):
    registry_models["danet-r"].pretrained = True
    try:
        result = compare(_clean_image(), sigma=15, models=registry_models)
    finally:
        registry_models["danet-r"].pretrained = False
    assert result.row("danet-r").note == "" and result.row("invdn").note == RANDOM_INIT_NOTE
    assert len(result.warnings) == 2


def test_reference_and_blind_modes(registry_models):
    clean8 = (_clean_image() * 255).round().astype(np.uint8)
    same = compare(clean8, reference=clean8, models=registry_models)
    assert same.mode == "reference" and same.row("noisy").psnr == float("inf")
    assert same.to_dict()["models"]["noisy"]["psnr"] is None  # JSON has no infinity
    blind = compare(clean8, models=registry_models)
    assert blind.mode == "blind" and blind.row("invdn").psnr is None
    assert "clean" not in blind.images
    panels = 1 + len(registry.names())
    assert Image.open(io.BytesIO(side_by_side_png(blind))).width == panels * WIDTH + (panels - 1) * GRID_GAP


def test_camera_noise(registry_models):
    result = compare(_clean_image(), noise="camera", seed=0, models=registry_models)
    assert result.noise == "camera:clip8"
    assert not np.array_equal(result.images["noisy"], result.images["clean"])


def test_bad_requests_are_refused(registry_models):
    image = _clean_image()
    with pytest.raises(ValueError, match="not both"):
        compare(image, reference=image, sigma=25, models=registry_models)
    with pytest.raises(ValueError, match="differs"):
        compare(image, reference=image[:, :-1], models=registry_models)
    with pytest.raises(ValueError, match="RGB"):
        compare(image[..., 0], models=registry_models)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        compare(image * 255, models=registry_models)
    with pytest.raises(ValueError, match="sigma"):
        compare(image, sigma=-1, models=registry_models)
    with pytest.raises(ValueError, match="unknown noise"):
        compare(image, noise="salt", models=registry_models)


def test_side_by_side_grid_has_a_labelled_panel_per_model(registry_models):
    result = compare(_clean_image(), sigma=25, models=registry_models)
    grid = Image.open(io.BytesIO(side_by_side_png(result)))
    panels = 2 + len(registry.names())
    assert grid.width == panels * WIDTH + (panels - 1) * GRID_GAP and grid.height > HEIGHT
    pixels = np.asarray(grid.convert("RGB"))
    strip = pixels[: grid.height - HEIGHT]
    assert (strip < 128).any()  # labels were drawn above the panels
    assert np.array_equal(pixels[grid.height - HEIGHT :, :WIDTH], result.images["noisy"])
    assert np.array_equal(pixels[grid.height - HEIGHT :, -WIDTH:], result.images["clean"])


def test_cli_compare_json_and_grid(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Image.fromarray((_clean_image() * 255).round().astype(np.uint8)).save(tmp_path / "tiny.png")
    runner = CliRunner()
    result = runner.invoke(main, ["compare", "tiny.png", "--sigma", "25", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert {"models", "ratios", "ratios_percent", "danet_parameters", "warnings", "grid"} <= set(data)
    assert data["models"]["noisy"]["psnr"] == pytest.approx(20.17, abs=0.5)
    for name in registry.names():
        if not data["models"][name]["pretrained"]:
            assert data["models"][name]["note"] == RANDOM_INIT_NOTE
    grid_path = tmp_path / "tiny_compare.png"
    assert data["grid"] == str(grid_path)
    grid = Image.open(grid_path)
    panels = 2 + len(registry.names())
    assert grid.width == panels * WIDTH + (panels - 1) * GRID_GAP
    before = grid_path.read_bytes()

    again = runner.invoke(main, ["compare", "tiny.png", "--sigma", "25", "--seed", "3"])
    assert again.exit_code != 0 and "--overwrite" in again.output
    assert grid_path.read_bytes() == before

    table = runner.invoke(main, ["compare", "tiny.png", "--sigma", "25", "--seed", "3", "--overwrite"])
    assert table.exit_code == 0, table.output
    assert "InvDN (paper): 28.9 % of DANet-R, 4.19 % of DANet" in table.output
    assert grid_path.read_bytes() != before


def test_cli_rejects_reference_with_sigma_and_unreadable_images(tmp_path):
    image = tmp_path / "a.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(image)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image at all")
    runner = CliRunner()
    both = runner.invoke(main, ["compare", str(image), "--reference", str(image), "--sigma", "5"])
    assert both.exit_code != 0 and "not both" in both.output
    bad = runner.invoke(main, ["compare", str(broken), "--grid", str(tmp_path / "g.png")])
    assert bad.exit_code != 0 and "cannot read image" in bad.output
    assert not (tmp_path / "g.png").exists()
