"""The inference-only variants (`invdn.inference.fast`) compute what the models compute, follow weight changes,
and leave the models' own code (autograd, FLOP counting) alone."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from helpers import random_invdn

from invdn.bench import speed as bench_speed
from invdn.inference import kernels
from invdn.inference.engine import Denoiser
from invdn.inference.fast import FastDANetR, FastInvDN, FastInvDNLC, for_inference
from invdn.models import registry
from invdn.models.danet import DANetConfig, UNetD
from invdn.models.flops import count_parameters, flops_per_megapixel
from invdn.models.invdn import InvDN, InvDNConfig
from invdn.models.latent_clean import InvDNLC, InvDNLCConfig


def small_invdn(dtype: torch.dtype = torch.float32, **cfg) -> InvDN:
    cfg.setdefault("hidden", 16)
    return random_invdn(seed=1, dtype=dtype, std=0.05, **cfg)


def small_danet(seed: int = 0) -> UNetD:
    torch.manual_seed(seed)
    return UNetD(DANetConfig(wf=8, depth=3)).eval()


def small_lc(seed: int = 0) -> InvDNLC:
    torch.manual_seed(seed)
    model = InvDNLC(InvDNLCConfig(hidden=8, width=16, res_blocks=2))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))
    return model.eval()


def denoise_both(model, x, **opts):
    """(model.denoise, for_inference(model).denoise) on x, seeded alike."""
    out = []
    for runner in (model, for_inference(model)):
        with torch.no_grad():
            if isinstance(model, InvDN):
                opts["generator"] = torch.Generator().manual_seed(5)
            out.append(runner.denoise(x, **opts))
    return out


def test_the_registry_names_a_variant_for_every_model():
    kinds = {spec.name: type(for_inference(spec.build({}))) for spec in registry.MODELS}
    assert kinds == {"invdn": FastInvDNLC, "invdn-paper": FastInvDN, "danet-r": FastDANetR}
    dense = InvDN(InvDNConfig(blocks_per_level=1, hidden=8, subnet="dense"))
    assert for_inference(dense) is dense  # no fused variant for dense subnets: the model's own code runs


@pytest.mark.parametrize("opts", [{}, {"samples": 2}, {"ensemble": True}])
def test_invdn_variant_matches_the_model(opts):
    x = torch.rand(1, 3, 37, 53, generator=torch.Generator().manual_seed(0))
    plain, fast = denoise_both(small_invdn(), x, **opts)
    assert fast.shape == x.shape
    assert (fast - plain).abs().max() <= 1e-4


def test_invdn_variant_encodes_decodes_and_round_trips():
    model = small_invdn()
    fast = FastInvDN.from_model(model)
    x = torch.rand(2, 3, 32, 40, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        enc = model.encode(x)
        lr, z = fast.encode(x)
        back = fast.decode(lr, z)
    assert (lr - enc.lr).abs().max() <= 1e-4 and (z - enc.z).abs().max() <= 1e-4
    assert (back - x).abs().max() <= 1e-4


@pytest.mark.parametrize("ensemble", [False, True])
def test_lc_and_danet_variants_match_their_models(ensemble):
    x = torch.rand(2, 3, 21, 30, generator=torch.Generator().manual_seed(8))
    for model in (small_lc(), small_danet()):
        plain, fast = denoise_both(model, x, ensemble=ensemble)
        assert (fast - plain).abs().max() <= 1e-4, type(model).__name__


@pytest.mark.parametrize("name", registry.names())
def test_shipped_weights_variants_agree(name):
    from invdn.models.weights import load

    model = load(name)
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    plain, fast = denoise_both(model, x)
    assert (fast - plain).abs().max() <= 1e-4
    if name == "invdn-paper":
        assert count_parameters(model) == 2_640_960


def test_weight_cache_follows_parameter_changes():
    model = small_invdn()
    fast = for_inference(model)
    x = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    gen = lambda: torch.Generator().manual_seed(5)  # noqa: E731
    before = fast.denoise(x, generator=gen())
    with torch.no_grad():
        for block in model.blocks:
            if hasattr(block, "F"):
                block.F.conv3.weight.mul_(1.5)  # in place, as an optimizer step or load_state_dict would
        plain = model.denoise(x, generator=gen())
    after = fast.denoise(x, generator=gen())
    assert (after - before).abs().max() > 1e-3  # the prepared inference weights were rebuilt
    assert (after - plain).abs().max() <= 1e-4


def test_bf16_variants_keep_a_float32_state_and_stay_close():
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(7))
    for model in (small_invdn(), small_lc(), small_danet()):
        plain, _ = denoise_both(model, x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            _, low = denoise_both(model, x)
        assert low.dtype == torch.float32
        assert 0 < (low - plain).abs().max() < 0.02 * max(1.0, float(plain.abs().max())), type(model).__name__


def test_models_train_and_count_flops_through_their_own_code():
    model = small_invdn(dtype=torch.float64)
    x = torch.rand(2, 3, 16, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    for_inference(model)  # building the variant changes nothing in the model
    lr, z, size = model.encode(x)
    model.decode(lr, torch.zeros_like(z) + 0.1, size).square().sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    assert flops_per_megapixel(small_danet(), size=16) > 0


def test_engine_runs_the_variant_and_the_plain_code_alike():
    pixels = np.random.default_rng(0).random((40, 56, 3), dtype=np.float32)
    model = small_lc()
    fast = Denoiser(model, device="cpu")
    plain = Denoiser(model, device="cpu", optimised=False)
    assert isinstance(fast.runner, FastInvDNLC) and plain.runner is model
    np.testing.assert_allclose(fast(pixels), plain(pixels), atol=1e-4)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])  # float64: the unfused fallback
def test_kernel_conv_matches_conv2d(dtype):
    gen = torch.Generator().manual_seed(9)
    x = kernels.channels_last(torch.randn(1, 5, 9, 11, generator=gen, dtype=dtype))
    w = kernels.channels_last(torch.randn(7, 5, 3, 3, generator=gen, dtype=dtype))
    b = torch.randn(7, generator=gen, dtype=dtype)
    add = kernels.channels_last(torch.randn(1, 7, 9, 11, generator=gen, dtype=dtype))
    ref = F.conv2d(x, w, b, padding=1)
    torch.testing.assert_close(kernels.conv(x, w, b, act="lrelu", slope=0.2), F.leaky_relu(ref, 0.2))
    torch.testing.assert_close(kernels.conv(x, w, b, add=add), ref + add)
    with pytest.raises(ValueError):
        kernels.conv(x, w, b, act="lrelu", add=add)


def test_speed_rows_measure_every_path(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(bench_speed, "SIZES", {0.25: (32, 32)})
    timer = bench_speed.Timer(threads=2)
    models = {"InvDN": small_invdn(), "DANet-R": small_danet()}
    rows = bench_speed.inference_rows(models, [0.25], timer, 100.0, 1, [0.25], [0.25])
    kinds = {(r.method, r.path, r.precision) for r in rows}
    assert ("InvDN", "straightforward", "fp32") in kinds and ("InvDN x8 ensemble", "optimised", "fp32") in kinds
    assert ("DANet-R", "optimised", "bf16") in kinds
    assert all(r.seconds > 0 and r.fraction_of_reference > 0 and r.first_call_seconds > 0 for r in rows)
    report = bench_speed.SpeedReport(
        threads=2, cpu_capability="AVX512", clock="wall", reference_gflops_per_s=100.0, rows=rows
    )
    summary = bench_speed.summary(report)
    assert "invdn_0.25MP_bf16_speedup_over_fp32" in summary
    assert summary["invdn_0.25MP_fp32_time_over_danet_r"] > 0  # every model's time against DANet-R's, same run
    assert "InvDN x8 ensemble" in bench_speed.format_table(report)


@pytest.mark.slow
def test_speed_rows_time_torch_compile(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(bench_speed, "SIZES", {0.25: (32, 32)})
    rows = bench_speed.inference_rows(
        {"DANet-R": small_danet()}, [0.25], bench_speed.Timer(1), 100.0, 1, [], [], ("fp32",), compile_sizes=(0.25,)
    )
    compiled = [r for r in rows if r.path == "compiled"]
    assert len(compiled) == 1 and compiled[0].first_call_seconds > compiled[0].seconds  # compilation is the first call
    report = bench_speed.SpeedReport(threads=1, cpu_capability="AVX512", clock="thread-cpu", reference_gflops_per_s=1.0)
    report.rows = rows
    assert "danet_r_0.25MP_fp32_compiled_time_over_optimised" in bench_speed.summary(report)


def test_bench_speed_command_is_listed():
    from invdn.cli.bench import bench

    result = CliRunner().invoke(bench, ["speed", "--help"])
    assert result.exit_code == 0 and "--quick" in result.output and "--compile" in result.output


@pytest.mark.parametrize("shape", [(2, 11, 9, 13), (1, 5, 1, 1), (1, 7, 2, 3)])
@pytest.mark.parametrize("c_out", [1, 3])
def test_conv3x3_by_taps_is_the_convolution_plus_add(shape, c_out):
    g = torch.Generator().manual_seed(0)
    x = kernels.channels_last(torch.randn(shape, generator=g))
    w = torch.randn(c_out, shape[1], 3, 3, generator=g)
    b = torch.randn(c_out, generator=g)
    add = kernels.channels_last(torch.randn(shape[0], c_out, *shape[2:], generator=g))
    got = kernels.conv3x3_by_taps(x, kernels.taps_weight(w), b, add)
    torch.testing.assert_close(got, F.conv2d(x, w, b, padding=1) + add, rtol=1e-5, atol=1e-5)
    assert got.is_contiguous(memory_format=torch.channels_last)
    with pytest.raises(ValueError, match="3x3"):
        kernels.taps_weight(torch.zeros(3, 2, 1, 1))
