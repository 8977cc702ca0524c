import pytest
import torch
from torch import nn

from invdn.models.danet import DANetConfig, Discriminator, UNetD, UNetG, count_parameters, danet_parameter_counts
from invdn.training.danet_task import DANetTask, gaussian_kernel

# Small widths keep the training tests fast; the architecture tests use the published configuration.
SMALL = DANetConfig(wf=8, critic_width=8)


def test_published_parameter_counts_are_exact():
    assert danet_parameter_counts() == {
        "r": 9_153_571,
        "g": 9_153_859,
        "discriminator": 44_703_745,
        "total": 63_011_175,
    }


def test_counts_on_meta_match_a_real_network():
    assert count_parameters(UNetD()) == danet_parameter_counts()["r"]
    assert danet_parameter_counts(SMALL)["r"] == count_parameters(UNetD(SMALL))


def test_published_layer_facts():
    r = UNetD()
    convs = [m for m in r.modules() if isinstance(m, nn.Conv2d)]
    downs = [m for m in convs if m.kernel_size == (4, 4)]
    assert [m.out_channels for m in downs] == [32, 64, 128, 256]
    assert all(m.stride == (2, 2) and m.bias is None for m in downs)
    assert all(m.bias is not None for m in convs if m.kernel_size == (3, 3))
    ups = [m for m in r.modules() if isinstance(m, nn.ConvTranspose2d)]
    assert [m.out_channels for m in ups] == [256, 128, 64, 32]
    assert not any(isinstance(m, nn.BatchNorm2d | nn.InstanceNorm2d) for m in r.modules())
    slopes = {m.negative_slope for m in r.modules() if isinstance(m, nn.LeakyReLU)}
    assert slopes == {0.2}
    assert UNetG().unet.encoder[0].body[0].in_channels == 4


@pytest.mark.parametrize("shape", [(1, 3, 37, 53), (2, 3, 16, 16), (1, 3, 5, 3), (1, 3, 1, 1)])
def test_r_and_g_keep_any_size(shape):
    torch.manual_seed(0)
    y = torch.rand(shape)
    with torch.no_grad():
        assert UNetD()(y).shape == shape
        assert UNetG()(y).shape == shape


def test_r_is_noisy_minus_predicted_noise():
    torch.manual_seed(0)
    r = UNetD(SMALL)
    y = torch.rand(1, 3, 21, 30)
    with torch.no_grad():
        noise = r.noise(y)
        assert torch.equal(r(y), y - noise)
        # on a multiple of 16 nothing is padded: the U-Net sees the image itself
        square = torch.rand(1, 3, 32, 48)
        assert torch.allclose(r.noise(square), r.unet(square))


def test_denoise_ignores_invdn_options_and_clamps():
    torch.manual_seed(0)
    r = UNetD(SMALL)
    y = torch.rand(1, 3, 24, 24)
    with torch.no_grad():
        plain = r.denoise(y)
        same = r.denoise(y, samples=4, generator=torch.Generator().manual_seed(3))
    assert torch.equal(plain, same)
    assert plain.min() >= 0 and plain.max() <= 1


def test_ensemble_averages_the_eight_flips_and_transposes():
    torch.manual_seed(0)
    r = UNetD(SMALL)
    y = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        out = r.denoise(y, ensemble=True)
        # averaging over the whole group makes the result commute with every flip/transpose
        assert torch.allclose(r.denoise(y.flip(-1), ensemble=True), out.flip(-1), atol=1e-5)
        assert torch.allclose(r.denoise(y.transpose(-2, -1), ensemble=True), out.transpose(-2, -1), atol=1e-5)
        assert not torch.allclose(out, r.denoise(y), atol=1e-5)


def test_r_attributes_and_model_args_rebuild_it():
    r = UNetD(SMALL)
    assert r.model_type == "danet-r" and r.pretrained is False
    rebuilt = UNetD(DANetConfig(**r.model_args))
    assert rebuilt.config == r.config
    assert count_parameters(rebuilt) == count_parameters(r)


def test_g_noise_map_is_drawn_from_the_generator_or_given():
    torch.manual_seed(0)
    g = UNetG(SMALL)
    x = torch.rand(2, 3, 19, 23)
    with torch.no_grad():
        a = g(x, generator=torch.Generator().manual_seed(1))
        b = g(x, generator=torch.Generator().manual_seed(1))
        c = g(x, generator=torch.Generator().manual_seed(2))
        z = torch.randn(2, 1, 19, 23, generator=torch.Generator().manual_seed(1))
        assert torch.equal(a, b) and not torch.equal(a, c)
        assert torch.equal(g(x, z=z), a)
    with pytest.raises(ValueError, match="z of shape"):
        g(x, z=torch.zeros(2, 1, 19, 22))


def test_discriminator_scores_128_pairs_and_rejects_other_sizes():
    torch.manual_seed(0)
    d = Discriminator()
    with torch.no_grad():
        assert d(torch.rand(2, 6, 128, 128)).shape == (2,)
    with pytest.raises(ValueError, match="128x128"):
        d(torch.rand(1, 6, 64, 64))
    with pytest.raises(ValueError, match="6"):
        d(torch.rand(1, 3, 128, 128))


def test_discriminator_initialisation_is_normal_002():
    torch.manual_seed(0)
    d = Discriminator()
    weights = torch.cat([m.weight.flatten() for m in d.modules() if isinstance(m, nn.Conv2d | nn.Linear)])
    assert abs(weights.mean().item()) < 1e-3
    assert weights.std().item() == pytest.approx(0.02, rel=0.01)
    assert torch.all(d.score.bias == 0)
    assert all(m.bias is None for m in d.modules() if isinstance(m, nn.Conv2d))


def test_gaussian_kernel_is_opencv_5x5():
    kernel = gaussian_kernel(5, 3)
    assert kernel.shape == (3, 1, 5, 5)
    assert kernel[0].sum().item() == pytest.approx(1.0)
    # OpenCV's sigma for size 5 is 1.1: neighbouring taps of the 1-D kernel differ by exp(-1 / (2 * 1.21))
    line = kernel[0, 0, 2] / kernel[0, 0, 2].sum()
    assert (line[1] / line[2]).item() == pytest.approx(torch.exp(torch.tensor(-1 / 2.42)).item(), rel=1e-5)


def _snapshot(module: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def _changed(module: nn.Module, before: list[torch.Tensor]) -> bool:
    return any(not torch.equal(a, b) for a, b in zip(before, module.parameters(), strict=True))


def _pair(size: int, batch: int = 1, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    clean = torch.rand(batch, 3, size, size, generator=generator)
    noisy = clean + 0.1 * torch.randn(batch, 3, size, size, generator=generator)
    return noisy, clean


def test_dual_steps_follow_the_critic_schedule_and_train_all_three_networks():
    torch.manual_seed(0)
    synced: list[str] = []
    critic_grads: list[list[torch.Tensor]] = []

    def record(module: nn.Module) -> None:
        synced.append(type(module).__name__)
        if isinstance(module, Discriminator):
            critic_grads.append([p.grad.clone() for p in module.parameters()])

    task = DANetTask("dual", config=SMALL, grad_sync=record)
    assert set(task.modules) == {"main", "generator", "critic"} == set(task.optimizers)
    before = {name: _snapshot(module) for name, module in task.modules.items()}
    noisy, clean = _pair(128)
    first = task.step(noisy, clean)
    # the first two batches train only the critic
    assert _changed(task.modules["critic"], before["critic"])
    assert not _changed(task.modules["main"], before["main"])
    assert not _changed(task.modules["generator"], before["generator"])
    assert "r_loss" not in first and "loss" in first
    task.step(noisy, clean)
    third = task.step(noisy, clean)
    assert all(_changed(task.modules[name], before[name]) for name in task.modules)
    assert synced == ["Discriminator", "Discriminator", "Discriminator", "UNetD", "UNetG"]
    assert {"loss", "critic_loss", "r_loss", "g_loss"} <= set(third)
    assert all(isinstance(v, float) for v in third.values())
    # R's and G's losses add nothing to the critic's gradients, and the critic is trainable again afterwards
    assert third["critic_grad_norm"] < 10  # no clipping happened, so the synced gradients are the final ones
    critic = task.modules["critic"]
    assert all(torch.equal(p.grad, g) for p, g in zip(critic.parameters(), critic_grads[-1], strict=True))
    assert all(p.requires_grad for p in critic.parameters())


def test_dual_optimizer_settings_are_the_published_ones():
    task = DANetTask("dual", config=SMALL)
    groups = {name: opt.param_groups[0] for name, opt in task.optimizers.items()}
    assert groups["main"]["lr"] == 1e-4 and groups["main"]["betas"] == (0.9, 0.999)
    assert groups["generator"]["lr"] == 1e-4 and groups["generator"]["betas"] == (0.5, 0.9)
    assert groups["critic"]["lr"] == 2e-4 and groups["critic"]["betas"] == (0.5, 0.9)


def test_dual_needs_128_patches():
    task = DANetTask("dual", config=SMALL)
    with pytest.raises(ValueError, match="128x128 patches"):
        task.step(*_pair(64))


def test_dual_step_is_deterministic_given_the_seed():
    runs = []
    for _ in range(2):
        torch.manual_seed(5)
        task = DANetTask("dual", config=SMALL)
        runs.append([task.step(*_pair(128)) for _ in range(3)])
    assert runs[0] == runs[1]


def test_l1_steps_lower_the_loss_on_a_fixed_batch():
    torch.manual_seed(0)
    synced: list[nn.Module] = []
    task = DANetTask("l1", lr=1e-3, config=SMALL, grad_sync=synced.append)
    assert set(task.modules) == {"main"} == set(task.optimizers)
    noisy, clean = _pair(32, batch=2)
    losses = [task.step(noisy, clean)["loss"] for _ in range(6)]
    assert all(later < earlier for earlier, later in zip(losses[:-1], losses[1:], strict=True))
    assert losses[-1] < 0.95 * losses[0]
    assert synced == [task.modules["main"]] * 6


def test_bad_mode_and_mismatched_batches_are_rejected():
    with pytest.raises(ValueError, match="unknown DANet training mode"):
        DANetTask("gan")
    task = DANetTask("l1", config=SMALL)
    with pytest.raises(ValueError, match="same"):
        task.step(torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 16))


def test_weights_file_rebuilds_r_from_its_model_args(tmp_path):
    from invdn.models import weights

    torch.manual_seed(0)
    r = UNetD(SMALL)
    path = weights.save(r, tmp_path / "r.safetensors")
    loaded = weights.load("danet-r", path=path)
    assert isinstance(loaded, UNetD) and loaded.pretrained is True and loaded.config == SMALL
    y = torch.rand(1, 3, 20, 20)
    with torch.no_grad():
        assert torch.equal(loaded.denoise(y), r.denoise(y))
