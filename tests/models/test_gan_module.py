"""GAN module: manual optimisation, which parameters each step changes, and what global_step counts."""

from __future__ import annotations

import copy

import lightning as L
import pytest
import torch

from genlab.build import build_datamodule, resolve_data_keys
from genlab.config import load_config, parse_overrides, to_container
from genlab.errors import GenlabError
from genlab.models.gan import GANModule
from genlab.training.callbacks.nonfinite import NonFiniteGuard

TINY_GAN = ["gan.latent_dim=8", "gan.g_channels=8", "gan.d_channels=8", "data.batch_size=16"]


def tiny_gan(*overrides: str) -> tuple[GANModule, L.LightningDataModule]:
    cfg = load_config(parse_overrides(["experiment=gan_digits", *TINY_GAN, *overrides]))
    datamodule = build_datamodule(cfg)
    resolve_data_keys(cfg, datamodule)
    return GANModule(to_container(cfg)), datamodule


def fit(module: GANModule, datamodule: L.LightningDataModule, **trainer_kwargs: object) -> L.Trainer:
    """A bare Trainer with the run's NaN guard (it decides what a non-finite loss does)."""
    trainer = L.Trainer(
        accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, limit_val_batches=0,
        # max_share=1: these one-step runs test the guard's policy, not its stop on a mostly skipped run
        callbacks=[NonFiniteGuard(module.cfg.trainer.on_nonfinite, max_share=1.0)], **trainer_kwargs,
    )
    trainer.fit(module, datamodule=datamodule)
    return trainer


def params(net: torch.nn.Module) -> dict[str, torch.Tensor]:
    # Parameters only: spectral norm's power-iteration buffers move in every train-mode forward.
    return {k: v.detach().clone() for k, v in net.named_parameters()}


def changed(before: dict[str, torch.Tensor], net: torch.nn.Module) -> bool:
    return any(not torch.equal(before[k], v) for k, v in net.named_parameters())


def test_one_training_step_changes_both_networks() -> None:
    module, dm = tiny_gan()
    g0, d0 = params(module.generator), params(module.discriminator)
    trainer = fit(module, dm, max_steps=1)
    assert changed(g0, module.generator) and changed(d0, module.discriminator)
    assert trainer.global_step == 1 and module.d_updates == 1


@pytest.mark.parametrize("loss", ["non_saturating", "hinge"])
@pytest.mark.parametrize("reuse", [False, True])
def test_discriminator_step_leaves_the_generator_unchanged(loss: str, reuse: bool) -> None:
    # d_steps=2 and one batch: a discriminator step and no generator step.
    module, dm = tiny_gan("gan.d_steps=2", f"gan.loss={loss}", "gan.lambda_r1=1.0", "gan.r1_every=1",
                          f"gan.reuse_fakes={reuse}")
    g0, d0 = params(module.generator), params(module.discriminator)
    fit(module, dm, max_epochs=1, limit_train_batches=1)
    assert module.d_updates == 1
    assert not changed(g0, module.generator)
    assert changed(d0, module.discriminator)


def test_reused_fakes_save_a_generator_forward_per_generator_step() -> None:
    """gan.reuse_fakes: the generator step trains G on the fakes D was just trained against. With d_steps=2 and one
    generator step: 2 generator forwards instead of 3, the same discriminator (its two steps drew the same z), and a
    different generator step (it reused z instead of drawing new ones)."""
    ran, nets = {}, {}
    for reuse in (False, True):
        torch.manual_seed(0)
        module, dm = tiny_gan("gan.d_steps=2", "gan.loss=relativistic", "gan.lambda_r1=0.1", "gan.lambda_r2=0.1",
                              "gan.r1_every=2", f"gan.reuse_fakes={reuse}")
        calls = []
        module.generator.register_forward_hook(lambda *args: calls.append(1))
        g0 = params(module.generator)
        torch.manual_seed(1)
        fit(module, dm, max_steps=1)
        assert changed(g0, module.generator) and module.d_updates == 2
        ran[reuse], nets[reuse] = len(calls), (params(module.generator), params(module.discriminator))
    assert ran == {False: 3, True: 2}
    (g_new, d_new), (g_reused, d_reused) = nets[False], nets[True]
    assert all(torch.equal(d_new[k], d_reused[k]) for k in d_new)
    assert any(not torch.equal(g_new[k], g_reused[k]) for k in g_new)


def test_global_step_counts_generator_steps() -> None:
    module, dm = tiny_gan("gan.d_steps=3")
    trainer = fit(module, dm, max_steps=2)
    assert trainer.global_step == 2  # Lightning alone would count the 6 discriminator steps as well
    assert module.d_updates == 6


def test_unet_discriminator_with_gradient_penalty_trains_and_logs_every_term() -> None:
    module, dm = tiny_gan("gan.discriminator=unet", "gan.loss=wasserstein", "gan.lambda_gp=10", "gan.spectral_norm=false")
    logged: dict[str, float] = {}
    log = module.log
    module.log = lambda key, value, **kw: (logged.__setitem__(key, float(value)), log(key, value, **kw))[1]
    d0 = params(module.discriminator)
    fit(module, dm, max_steps=1)
    assert changed(d0, module.discriminator)
    for key in ("train/d_adv", "train/d_adv_pixel", "train/d_gp", "train/d_real", "train/d_fake", "train/d_loss",
                "train/g_adv", "train/g_adv_pixel", "train/g_loss", "train/d_grad_norm", "train/g_grad_norm",
                "train/diversity"):
        assert key in logged and torch.isfinite(torch.tensor(logged[key])), key
    expected = logged["train/d_adv"] + logged["train/d_adv_pixel"] + 10 * logged["train/d_gp"]
    assert logged["train/d_loss"] == pytest.approx(expected, rel=1e-5)


def test_r3gan_terms_with_diffaugment_train_and_add_up() -> None:
    """R3GAN's objective (relativistic loss, R1 on reals, R2 on fakes) with DiffAugment on everything D sees."""
    module, dm = tiny_gan("gan.loss=relativistic", "gan.lambda_r1=0.2", "gan.lambda_r2=0.2", "gan.r1_every=1",
                          "gan.diffaugment=[color,translation,cutout]")
    logged: dict[str, float] = {}
    log = module.log
    module.log = lambda key, value, **kw: (logged.__setitem__(key, float(value)), log(key, value, **kw))[1]
    g0, d0 = params(module.generator), params(module.discriminator)
    fit(module, dm, max_steps=1)
    assert changed(g0, module.generator) and changed(d0, module.discriminator)
    assert logged["train/d_r1"] > 0 and logged["train/d_r2"] > 0
    expected = logged["train/d_adv"] + 0.1 * logged["train/d_r1"] + 0.1 * logged["train/d_r2"]
    assert logged["train/d_loss"] == pytest.approx(expected, rel=1e-5)
    seen = module.augment(torch.ones(4, 1, 8, 8))
    assert not torch.equal(seen, torch.ones(4, 1, 8, 8))  # D sees augmented images


def test_collapsed_generator_is_reported() -> None:
    module, dm = tiny_gan("gan.collapse_threshold=0.5")
    with torch.no_grad():  # every z gives the same image: the last layer ignores its input
        module.generator.out[-1].weight.zero_()
        module.generator.out[-1].weight.requires_grad_(False)
    with pytest.warns(UserWarning, match="collapsed"):
        fit(module, dm, max_steps=1)


def test_nonfinite_loss_skips_the_update_and_warns() -> None:
    module, dm = tiny_gan("trainer.on_nonfinite=skip")
    d0 = params(module.discriminator)
    module.discriminator_terms = lambda real, fake, y: (torch.tensor(float("nan"), requires_grad=True), {})
    with pytest.warns(UserWarning, match="non-finite discriminator loss"):
        fit(module, dm, max_steps=1)
    assert not changed(d0, module.discriminator)


def test_samples_are_reproducible_and_batch_size_independent() -> None:
    module, _ = tiny_gan()
    a = module.sample(10, seed=3, batch_size=4)
    b = module.sample(10, seed=3, batch_size=10)
    assert a.shape == (10, 1, 16, 16) and torch.allclose(a, b, atol=1e-6)
    assert not torch.equal(a, module.sample(10, seed=4))


def test_conditional_gan_grid_has_a_row_per_class() -> None:
    module, _ = tiny_gan("model.conditional=true")
    images, per_row = module.sample_grid(25, seed=0)
    assert per_row == 2 and images.shape == (20, 1, 16, 16)
    clone = copy.deepcopy(module)
    assert torch.equal(clone.sample(4, seed=0), module.sample(4, seed=0))


def test_nonfinite_loss_stops_the_run_by_default() -> None:
    module, dm = tiny_gan()
    module.discriminator_terms = lambda real, fake, y: (torch.tensor(float("nan"), requires_grad=True), {})
    with pytest.raises(GenlabError, match="non-finite discriminator loss .* at step 0"):
        fit(module, dm, max_steps=1)
