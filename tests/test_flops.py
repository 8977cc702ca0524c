"""One definition of FLOPs per megapixel (`invdn.models.flops.flops_per_megapixel`): what it counts, and that
`invdn info`, `invdn compare`, `invdn bench speed` and the service report that same number."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from helpers import random_invdn
from helpers_service import encode, noisy_image, upload
from PIL import Image
from torch import nn

from invdn.bench import speed as bench_speed
from invdn.cli import main
from invdn.models import registry, weights
from invdn.models.danet import DANetConfig, UNetD
from invdn.models.flops import FLOPS_PROBE_SIZE, flops_per_megapixel
from invdn.models.latent_clean import InvDNLC, InvDNLCConfig


class TwoPassDenoiser(nn.Module):
    """forward runs one 3->3 3x3 convolution; denoise runs it twice: the two differ in FLOPs by 2x."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)

    def denoise(self, x: torch.Tensor, **kwargs: object) -> torch.Tensor:
        return self.conv(self.conv(x))


def test_counts_the_denoise_call_per_output_megapixel() -> None:
    # a 3->3 3x3 convolution costs 2 * 3 * 3 * 9 = 162 FLOPs per output pixel (multiply-add = 2); denoise runs two
    model = TwoPassDenoiser()
    assert flops_per_megapixel(model) == pytest.approx(2 * 162 * 1e6)
    assert flops_per_megapixel(model, size=16) == flops_per_megapixel(model)  # linear in the pixel count
    assert FLOPS_PROBE_SIZE == 64


def test_samples_decode_again_only_for_the_stochastic_model() -> None:
    invdn = random_invdn(dtype=torch.float32)
    one, two = flops_per_megapixel(invdn, samples=1, size=16), flops_per_megapixel(invdn, samples=2, size=16)
    assert one < two < 2 * one  # a second latent draw decodes again, the encoding is shared
    torch.manual_seed(0)
    lc = InvDNLC(InvDNLCConfig(blocks_per_level=1, hidden=8, width=16, res_blocks=1))
    assert flops_per_megapixel(lc, samples=2, size=16) == flops_per_megapixel(lc, samples=1, size=16) > 0


def test_leaves_the_model_as_it_found_it() -> None:
    danet = UNetD(DANetConfig(wf=8, depth=3)).double().train()
    before = {k: v.clone() for k, v in danet.state_dict().items()}
    assert flops_per_megapixel(danet, size=16) > 0  # float64 weights: the probe follows the model's dtype
    assert danet.training
    assert all(torch.equal(before[k], v) for k, v in danet.state_dict().items())


def test_info_and_compare_report_the_same_flops(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    runner = CliRunner()
    info = runner.invoke(main, ["info", "--json"])
    assert info.exit_code == 0, info.output
    monkeypatch.chdir(tmp_path)
    Image.fromarray(noisy_image(24, 32)).save(tmp_path / "photo.png")
    compared = runner.invoke(main, ["compare", "photo.png", "--sigma", "25", "--json"])
    assert compared.exit_code == 0, compared.output
    info_models, compare_models = json.loads(info.output)["models"], json.loads(compared.output)["models"]
    for name in registry.names():
        expected = flops_per_megapixel(weights.load(name))  # what compare ran: the shipped weights, if any
        assert info_models[name]["flops_per_megapixel"] == compare_models[name]["flops_per_megapixel"] == expected
    assert "model.denoise" in json.loads(info.output)["flops_method"]


def test_service_model_list_and_compare_report_the_same_flops(client_and_stubs) -> None:
    client, stubs = client_and_stubs
    listed = {m["name"]: m["flops_per_megapixel"] for m in client.get("/v1/models").json()["models"]}
    compared = client.post("/v1/compare", files=upload(encode(noisy_image(24, 24))), data={"sigma": "25"}).json()
    for name, stub in stubs.items():
        assert listed[name] == compared["models"][name]["flops_per_megapixel"] == flops_per_megapixel(stub) > 0


def test_bench_speed_rates_use_the_same_flops(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bench_speed, "SIZES", {0.25: (32, 32)})
    model = UNetD(DANetConfig(wf=8, depth=3)).eval()
    timer = bench_speed.Timer(threads=2)
    rows = bench_speed.inference_rows({"DANet-R": model}, [0.25], timer, 100.0, 1, [], [0.25], precisions=("fp32",))
    assert rows
    for row in rows:
        work = row.gflops_per_s * 1e9 * row.seconds  # FLOPs the row credits itself with
        draws = 8 if "ensemble" in row.method else 1
        assert work == pytest.approx(flops_per_megapixel(model) * draws * row.width * row.height / 1e6)
    assert np.isfinite([r.fraction_of_reference for r in rows]).all()
