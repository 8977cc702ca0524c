"""The optimised paths (config.fast) compute what the straightforward code computes, and stay out of the way of
autograd, FLOP counting and weight changes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner

from invdn.bench import speed as bench_speed
from invdn.inference import kernels
from invdn.models.danet import DANetConfig, UNetD
from invdn.models.flops import flops_per_megapixel
from invdn.models.invdn import InvDN, InvDNConfig, count_parameters
from tests.helpers_model import random_invdn


def small_invdn(fast: bool = True, dtype: torch.dtype = torch.float32, **cfg) -> InvDN:
    cfg.setdefault("hidden", 16)
    model = random_invdn(seed=1, dtype=dtype, std=0.05, **cfg)
    model.config.fast = fast
    return model


def small_danet(seed: int = 0) -> UNetD:
    torch.manual_seed(seed)
    return UNetD(DANetConfig(wf=8, depth=3)).eval()


def both_paths(model, fn):
    """fn(model) with config.fast False, then True."""
    out = []
    for fast in (False, True):
        model.config.fast = fast
        out.append(fn(model))
    return out


def seeded_denoise(**kwargs):
    def run(model):
        with torch.no_grad():
            return model.denoise(kwargs["x"], generator=torch.Generator().manual_seed(5), **kwargs["opts"])

    return run


@pytest.mark.parametrize("opts", [{}, {"samples": 2}, {"ensemble": True}])
def test_invdn_fast_denoise_matches_straightforward(opts):
    x = torch.rand(1, 3, 37, 53, generator=torch.Generator().manual_seed(0))
    slow, fast = both_paths(small_invdn(), seeded_denoise(x=x, opts=opts))
    assert fast.shape == x.shape
    assert (fast - slow).abs().max() <= 1e-4


def test_invdn_fast_encode_decode_match_and_round_trip():
    model = small_invdn()
    x = torch.rand(2, 3, 32, 40, generator=torch.Generator().manual_seed(1))

    def encode_decode(m):
        with torch.no_grad():
            enc = m.encode(x)
            return enc, m.decode(*enc)

    (slow_enc, slow_dec), (fast_enc, fast_dec) = both_paths(model, encode_decode)
    assert (fast_enc.lr - slow_enc.lr).abs().max() <= 1e-4
    assert (fast_enc.z - slow_enc.z).abs().max() <= 1e-4
    assert (fast_dec - x).abs().max() <= 1e-4
    assert (fast_dec - slow_dec).abs().max() <= 1e-4


def test_shipped_weights_load_and_both_paths_agree():
    from invdn.models.weights import load

    model = load("invdn-paper")
    assert count_parameters(model) == 2_640_960
    assert set(model.state_dict()) == set(InvDN(InvDNConfig(fast=False)).state_dict())
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    slow, fast = both_paths(model, seeded_denoise(x=x, opts={}))
    assert (fast - slow).abs().max() <= 1e-4


def test_weight_cache_follows_parameter_changes():
    model = small_invdn()
    x = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    run = seeded_denoise(x=x, opts={})
    before = run(model)
    with torch.no_grad():
        for block in model._couplings():
            block.F.conv3.weight.mul_(1.5)  # in place, as an optimizer step or load_state_dict would
    slow, fast = both_paths(model, run)
    assert (fast - before).abs().max() > 1e-3  # the cached inference weights were rebuilt
    assert (fast - slow).abs().max() <= 1e-4


def test_fast_training_gradients_equal_straightforward():
    x = torch.rand(2, 3, 16, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    grads = []
    for fast in (False, True):
        model = small_invdn(fast=fast, dtype=torch.float64)
        lr, z, size = model.encode(x)
        out = model.decode(lr, torch.zeros_like(z) + 0.1, size)
        ((out - x) ** 2).sum().add(lr.square().sum()).backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-9, atol=1e-12)


def test_bf16_autocast_runs_the_fast_path_and_stays_close():
    model = small_invdn()
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        ref = model.denoise(x, generator=torch.Generator().manual_seed(0))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model.denoise(x, generator=torch.Generator().manual_seed(0))
    assert low.dtype == torch.float32  # the invertible state stays float32
    assert 0 < (low - ref).abs().max() < 0.02 * ref.abs().max()


def test_flop_counter_sees_the_same_work_on_both_paths():
    model = small_invdn()
    slow, fast = both_paths(model, lambda m: flops_per_megapixel(m, size=16))
    assert slow == fast > 0
    danet = small_danet()
    slow, fast = both_paths(danet, lambda m: flops_per_megapixel(m, size=16))
    assert slow == fast > 0


def test_danet_fast_matches_straightforward_and_keeps_gradients():
    model = small_danet()
    x = torch.rand(2, 3, 21, 30, generator=torch.Generator().manual_seed(8))
    with torch.no_grad():
        slow, fast = both_paths(model, lambda m: m.denoise(x))
    assert (fast - slow).abs().max() <= 1e-4
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        low = model.denoise(x)
    assert (low.float() - slow).abs().max() < 0.05
    grads = []
    for fast_flag in (False, True):
        model.config.fast = fast_flag
        model.zero_grad(set_to_none=True)
        model(x).square().sum().backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-4, atol=1e-5)


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


def test_speed_rows_measure_both_paths(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(bench_speed, "SIZES", {0.25: (32, 32)})
    timer = bench_speed.Timer(threads=2)
    models = {"InvDN": small_invdn(), "DANet-R": small_danet()}
    rows = bench_speed.inference_rows(models, [0.25], timer, 100.0, 1, [0.25], [0.25])
    kinds = {(r.method, r.path, r.precision) for r in rows}
    assert ("InvDN", "straightforward", "fp32") in kinds and ("InvDN x8 ensemble", "optimised", "fp32") in kinds
    assert ("DANet-R", "optimised", "bf16") in kinds
    assert all(r.seconds > 0 and r.fraction_of_reference > 0 for r in rows)
    assert all(m.config.fast for m in models.values())  # left on the optimised path
    report = bench_speed.SpeedReport(
        threads=2, cpu_capability="AVX512", clock="wall", reference_gflops_per_s=100.0, rows=rows
    )
    summary = bench_speed.summary(report)
    assert "invdn_0.25MP_bf16_speedup_over_fp32" in summary
    assert summary["invdn_0.25MP_fp32_time_over_danet_r"] > 0  # every model's time against DANet-R's, same run
    assert "InvDN x8 ensemble" in bench_speed.format_table(report)


def test_bench_speed_command_is_listed():
    from invdn.cli.bench import bench

    result = CliRunner().invoke(bench, ["speed", "--help"])
    assert result.exit_code == 0 and "--quick" in result.output and "--json" in result.output


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
