"""The library behind `invdn eval` and `invdn info`: reading the options, choosing and loading the models, and the
model facts table (without the click runner)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from invdn.eval.config import EvalConfig, OptionError, check_noise_specs, parse_sigmas, parse_sweep
from invdn.eval.methods import ModelLoadError, model_names, model_rows, parse_weight_overrides
from invdn.eval.model_info import format_info, gather_info
from invdn.models import registry, weights


def test_sigmas_and_sweeps_are_read_or_refused() -> None:
    assert parse_sigmas("15, 25,50,") == [15.0, 25.0, 50.0]
    assert parse_sweep("5:10:2.5") == [5.0, 7.5, 10.0]
    assert parse_sweep("10,20") == [10.0, 20.0]
    for bad in ("15,x", "-5"):
        with pytest.raises(ValueError):
            parse_sigmas(bad)
    for bad in ("10:5:1", "5:10:0", "5:10", "a,b"):
        with pytest.raises(ValueError, match="LO:HI:STEP"):
            parse_sweep(bad)


def test_noise_specs_must_be_valid_and_colour() -> None:
    check_noise_specs(["camera", "awgn:10"])
    with pytest.raises(ValueError):
        check_noise_specs(["not-a-noise"])
    with pytest.raises(ValueError, match="grey noise spec"):
        check_noise_specs(["awgn:25:grey"])


def test_config_from_cli_names_the_option_at_fault(tmp_path: Path) -> None:
    config = EvalConfig.from_cli(
        (tmp_path,), (), "25", ("camera",), "10:20:5", limit=3, clip8=True, bm3d=False, grey="on", seed=7
    )
    assert config == EvalConfig(
        datasets=[tmp_path],
        pairs=[],
        sigmas=[25.0],
        noises=["camera"],
        limit=3,
        clip8=True,
        bm3d=False,
        bm3d_sweep=[10.0, 15.0, 20.0],
        grey="on",
        seed=7,
    )
    cases = {"--sigma": ("x", (), "5"), "--bm3d-sweep": ("25", (), "9:1:1"), "--noise": ("25", ("awgn:1:grey",), "5")}
    for option, (sigma, noises, sweep) in cases.items():
        with pytest.raises(OptionError) as caught:
            EvalConfig.from_cli((tmp_path,), (), sigma, noises, sweep)
        assert caught.value.option == option


def test_weight_overrides_resolve_aliases_and_check_files(tmp_path: Path) -> None:
    path = tmp_path / "w.safetensors"
    path.write_bytes(b"x")
    assert parse_weight_overrides([f"danet={path}"]) == {"danet-r": str(path)}
    for bad, message in (("danet", "NAME=PATH"), (f"nope={path}", "NAME must be"), ("invdn=/no/such", "no such")):
        with pytest.raises(OptionError, match=message) as caught:
            parse_weight_overrides([bad])
        assert caught.value.option == "--weights"


def test_model_names_default_to_the_registry_then_add_weight_only_models() -> None:
    assert model_names([], {}) == registry.names()
    assert model_names(["danet", "danet-r"], {}) == ["danet-r"]
    assert model_names(["invdn"], {"danet-r": "x"}) == ["invdn", "danet-r"]


class Tiny(nn.Module):
    model_type = "danet-r"

    def __init__(self, pretrained: bool) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1)
        self.pretrained = pretrained

    def denoise(self, x: torch.Tensor, **kwargs: object) -> torch.Tensor:
        return x


def test_model_rows_load_describe_and_flag_untrained(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[tuple[str, str | None]] = []

    def load(name: str, path: str | None = None, device: object = "cpu") -> nn.Module:
        asked.append((name, path))
        return Tiny(pretrained=name == "danet-r")

    monkeypatch.setattr(weights, "load", load)
    rows = model_rows([registry.DEFAULT, "danet-r"], {"danet-r": "d.safetensors"}, ensemble=True)
    assert asked == [(registry.DEFAULT, None), ("danet-r", "d.safetensors")]
    assert [m.name for m in rows.methods] == ["DANet-R", "DANet-R (x8 ensemble)", "DANet-R"]  # Tiny's label
    assert rows.untrained == [registry.DEFAULT]
    assert [d["params"] for d in rows.described] == [12, 12]

    def broken(name: str, path: str | None = None, device: object = "cpu") -> nn.Module:
        raise weights.WeightsError("checksum mismatch")

    monkeypatch.setattr(weights, "load", broken)
    with pytest.raises(ModelLoadError, match="cannot load danet-r: checksum mismatch"):
        model_rows(["danet-r"], {})


def test_model_info_counts_and_table() -> None:
    data = gather_info()
    models = data["models"]
    assert list(models)[: len(registry.names())] == registry.names()
    assert models["danet-total"]["parameters"] == 63_011_175
    assert data["ratios"]["invdn-paper"]["over_danet_all"] == pytest.approx(2_640_960 / 63_011_175)
    table = format_info(data)
    lines = table.splitlines()
    assert lines[0].split() == ["model", "parameters", "GFLOP/MP", "weights"]
    paper = next(line for line in lines if line.startswith("invdn-paper "))
    assert f"{models['invdn-paper']['flops_per_megapixel'] / 1e9:,.0f}" in paper and "2,640,960" in paper
    assert "28.9%" in table and "4.19%" in table and "danet-r config: {" in table
