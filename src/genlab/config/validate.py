"""Range checks that a type cannot express; each failure names the key and the fix."""

from __future__ import annotations

import math
from typing import Any

from omegaconf import DictConfig, OmegaConf

from genlab.config.kinds import kind_facts
from genlab.config.schema import PerfConfig, to_container
from genlab.diffusion import LOSS_TERMS, PROCESSES, SamplerSettings, resolve_settings, supports_discrete_samplers
from genlab.errors import GenlabError
from genlab.nn.unet import check_layout


def _check(condition: bool, key: str, value: Any, requirement: str) -> None:
    if not condition:
        raise GenlabError(f"config key {key!r} = {value!r} is out of range: it must be {requirement}.")


def validate(cfg: DictConfig) -> None:
    """Range checks that a type cannot express."""
    if cfg.data.name == "image_folder" and not cfg.data.root:
        raise GenlabError("data=image_folder needs the folder of images: set data.root=PATH on the command line.")
    _check(cfg.data.resolution > 0, "data.resolution", cfg.data.resolution, "a positive integer")
    _check(cfg.data.batch_size > 0, "data.batch_size", cfg.data.batch_size, "a positive integer")
    _check(cfg.data.num_workers >= 0, "data.num_workers", cfg.data.num_workers, ">= 0")
    _check(0.0 < cfg.data.val_fraction < 1.0, "data.val_fraction", cfg.data.val_fraction, "in (0, 1)")
    if cfg.data.persistent_workers and cfg.data.num_workers == 0:
        raise GenlabError("data.persistent_workers=true keeps worker processes alive, but data.num_workers=0 starts "
                          "none: set data.num_workers > 0, or data.persistent_workers=null (automatic).")
    _check(cfg.data.channels in (None, 1, 3), "data.channels", cfg.data.channels, "1, 3 or null")
    _check(cfg.unet.base_channels > 0, "unet.base_channels", cfg.unet.base_channels, "a positive integer")
    _check(len(cfg.unet.channel_mult) > 0, "unet.channel_mult", list(cfg.unet.channel_mult), "a non-empty list")
    _check(cfg.unet.num_res_blocks > 0, "unet.num_res_blocks", cfg.unet.num_res_blocks, "a positive integer")
    _check(0.0 <= cfg.unet.dropout < 1.0, "unet.dropout", cfg.unet.dropout, "in [0, 1)")
    validate_unet(cfg)
    _check(cfg.diffusion.timesteps > 0, "diffusion.timesteps", cfg.diffusion.timesteps, "a positive integer")
    _check(
        0.0 < cfg.diffusion.beta_start < cfg.diffusion.beta_end < 1.0,
        "diffusion.beta_start/beta_end",
        (cfg.diffusion.beta_start, cfg.diffusion.beta_end),
        "0 < beta_start < beta_end < 1",
    )
    _check(cfg.diffusion.min_snr_gamma > 0, "diffusion.min_snr_gamma", cfg.diffusion.min_snr_gamma, "> 0")
    for term in cfg.diffusion.loss_weights:
        _check(term in LOSS_TERMS, f"diffusion.loss_weights.{term}", term, f"one of {sorted(LOSS_TERMS)}")
    _check(0.0 <= cfg.model.p_uncond <= 1.0, "model.p_uncond", cfg.model.p_uncond, "in [0, 1]")
    _check(cfg.model.optim.lr > 0, "model.optim.lr", cfg.model.optim.lr, "> 0")
    _check(len(cfg.model.optim.betas) == 2, "model.optim.betas", list(cfg.model.optim.betas), "two numbers")
    _check(cfg.model.optim.warmup_steps >= 0, "model.optim.warmup_steps", cfg.model.optim.warmup_steps, ">= 0")
    fraction = cfg.model.optim.decay_fraction
    _check(0.0 < fraction <= 1.0, "model.optim.decay_fraction", fraction, "in (0, 1]")
    _check(0.0 < cfg.model.ema.decay < 1.0, "model.ema.decay", cfg.model.ema.decay, "in (0, 1)")
    _check(0.0 < cfg.model.ema.sigma_rel < 0.28, "model.ema.sigma_rel", cfg.model.ema.sigma_rel, "in (0, 0.28)")
    for s in cfg.model.ema.posthoc_sigma_rels:
        _check(0.0 < s < 0.28, "model.ema.posthoc_sigma_rels", list(cfg.model.ema.posthoc_sigma_rels), "each in (0, 0.28)")
    _check(cfg.model.ema.posthoc_every_n_steps > 0, "model.ema.posthoc_every_n_steps",
           cfg.model.ema.posthoc_every_n_steps, "a positive integer")
    if cfg.model.ema.kind == "power" and (cfg.model.ema.start_step or cfg.model.ema.every_n_steps != 1):
        raise GenlabError("model.ema.kind=power averages every step from step 0 (that is its point): leave "
                          "model.ema.start_step=0 and model.ema.every_n_steps=1, or use model.ema.kind=ema.")
    validate_process(cfg)
    discrete = supports_discrete_samplers(cfg.diffusion.process)
    settings = SamplerSettings.from_config(cfg.sampler).check(cfg.diffusion.timesteps, prefix="sampler.",
                                                              discrete=discrete)
    if settings.sigma_max is not None:  # only then is the process built: its noise levels bound the grid's top
        process = PROCESSES[str(cfg.diffusion.process)].from_config(cfg.diffusion)
        settings.check_noise_range(process.schedule().noise_range(), prefix="sampler.")
    _check(cfg.trainer.max_steps > 0, "trainer.max_steps", cfg.trainer.max_steps, "a positive integer")
    if cfg.trainer.max_time is not None:
        _check(0 < cfg.trainer.max_time < math.inf, "trainer.max_time", cfg.trainer.max_time,
               "a positive, finite number of minutes; leave it out (null) for no time budget")
    _check(cfg.trainer.val_every_n_steps > 0, "trainer.val_every_n_steps", cfg.trainer.val_every_n_steps, "> 0")
    _check(cfg.trainer.log_every_n_steps > 0, "trainer.log_every_n_steps", cfg.trainer.log_every_n_steps, "> 0")
    _check(cfg.trainer.nonfinite_window > 0, "trainer.nonfinite_window", cfg.trainer.nonfinite_window, "> 0")
    _check(0.0 <= cfg.trainer.nonfinite_max_share < 1.0, "trainer.nonfinite_max_share",
           cfg.trainer.nonfinite_max_share, "in [0, 1)")
    _check(cfg.trainer.num_nodes > 0, "trainer.num_nodes", cfg.trainer.num_nodes, "a positive integer")
    _check(cfg.trainer.ddp_timeout_s > 0, "trainer.ddp_timeout_s", cfg.trainer.ddp_timeout_s, "a positive integer")
    ref = cfg.trainer.reference_batch_size
    _check(ref > 0, "trainer.reference_batch_size", ref, "a positive integer")
    grid = cfg.callbacks.sample_grid
    _check(grid.num_images > 0, "callbacks.sample_grid.num_images", grid.num_images, "a positive integer")
    validate_perf(cfg)
    validate_gan(cfg)
    per_class = cfg.callbacks.class_accuracy.per_class
    _check(per_class > 0, "callbacks.class_accuracy.per_class", per_class, "a positive integer")
    ckpt = cfg.callbacks.checkpoint
    _check(ckpt.every_n_steps > 0, "callbacks.checkpoint.every_n_steps", ckpt.every_n_steps, "a positive integer")
    _check(ckpt.every_n_minutes is None or ckpt.every_n_minutes > 0, "callbacks.checkpoint.every_n_minutes",
           ckpt.every_n_minutes, "a positive number of minutes, or null")
    validate_eval(cfg)


def validate_unet(cfg: DictConfig) -> None:
    """The U-Net's layout (the networks' own check, on plain numbers), for the kinds built on it."""
    if not kind_facts(cfg.model.kind).unet:
        return
    u, res = cfg.unet, cfg.data.resolution
    try:
        check_layout(res, u.base_channels, list(u.channel_mult), list(u.attention_resolutions), u.num_heads)
    except ValueError as exc:  # the message build_unet gives, now when the config loads
        raise GenlabError(f"invalid unet config for {res}x{res} data: {exc}.") from None


def validate_eval(cfg: DictConfig) -> None:
    """The `eval` block: FID during training runs at validation ends, where the EMA weights are swapped in."""
    ev = cfg.eval
    _check(ev.num_samples >= 2, "eval.num_samples", ev.num_samples, ">= 2 (FID needs a covariance)")
    _check(ev.batch_size > 0, "eval.batch_size", ev.batch_size, "a positive integer")
    _check(ev.every_n_steps >= 0, "eval.every_n_steps", ev.every_n_steps, ">= 0 (0: only at the end of training)")
    eval_sampler_settings(cfg)  # checked against T
    if not ev.enabled:
        return
    val_every = cfg.trainer.val_every_n_steps
    _check(
        ev.every_n_steps % val_every == 0,
        "eval.every_n_steps",
        ev.every_n_steps,
        f"a multiple of trainer.val_every_n_steps = {val_every} (FID runs at validation ends)",
    )
    if not kind_facts(cfg.model.kind).generates:
        raise GenlabError(
            f"eval.enabled=true needs a model that generates images; model.kind={cfg.model.kind} "
            f"({kind_facts(cfg.model.kind).description}) does not. Set eval.enabled=false."
        )
    if ev.features == "domain" and not ev.domain_classifier:
        raise GenlabError(
            "eval.features=domain needs the classifier whose features FID uses: set eval.domain_classifier=PATH to "
            "a checkpoint of experiment=classifier_* trained on the same dataset, or use eval.features=inception."
        )


def eval_sampler_settings(cfg: DictConfig) -> SamplerSettings:
    """The sampler of the FID samples during training: the `sampler` block with eval.sampler / eval.steps."""
    given = {"sampler": cfg.eval.sampler, "steps": cfg.eval.steps}
    return resolve_settings(SamplerSettings.from_config(cfg.sampler), given, cfg.diffusion.timesteps, prefix="eval.",
                            discrete=supports_discrete_samplers(cfg.diffusion.process))


def validate_process(cfg: DictConfig) -> None:
    """The objective's own keys: a process that fixes its network's target refuses a chosen one (it would be ignored)."""
    d = cfg.diffusion
    _check(d.timesteps >= 2, "diffusion.timesteps", d.timesteps, "at least 2")
    _check(d.logit_std > 0, "diffusion.logit_std", d.logit_std, "> 0")
    _check(0 < d.time_shift < math.inf, "diffusion.time_shift", d.time_shift, "a finite number > 0")
    _check(0 < d.edm_sigma_min < d.edm_sigma_max < math.inf, "diffusion.edm_sigma_min/edm_sigma_max",
           (d.edm_sigma_min, d.edm_sigma_max), "0 < edm_sigma_min < edm_sigma_max, finite")
    for key in ("edm_sigma_data", "edm_p_std", "edm_rho"):
        _check(0 < d[key] < math.inf, f"diffusion.{key}", d[key], "a finite number > 0")
    if PROCESSES[str(d.process)].chooses_target:
        return
    for key, default in (("prediction", "eps"), ("loss_weighting", "uniform")):
        if d[key] != default:
            raise GenlabError(f"diffusion.{key}={d[key]} applies to diffusion.process=vp; a {d.process} model has its "
                              f"own target ({PROCESSES[str(d.process)].prediction}). Leave diffusion.{key} out.")


def validate_perf(cfg: DictConfig) -> None:
    """Speed levers that cannot work with the rest of the config fail here, not at the first training step."""
    p = cfg.perf
    defaults = to_container(OmegaConf.structured(PerfConfig))
    changed = [k for k, v in to_container(p).items() if v != defaults[k]]
    if changed and not kind_facts(cfg.model.kind).perf_levers:
        raise GenlabError(f"perf.{changed[0]} is a lever of the DDPM / CFG U-Net; model.kind="
                          f"{cfg.model.kind} does not use the perf block. Leave it at its defaults.")
    if p.compile_mode != "default" and not p.compile:
        raise GenlabError(f"perf.compile_mode={p.compile_mode} has no effect without perf.compile=true.")
    if p.compile_mode == "reduce_overhead" and cfg.trainer.accelerator == "cpu":
        raise GenlabError("perf.compile_mode=reduce_overhead uses CUDA graphs: it needs a GPU (trainer.accelerator).")


def validate_gan(cfg: DictConfig) -> None:
    """Ranges of the `gan` block, and the combinations that cannot train."""
    g = cfg.gan
    for key in ("latent_dim", "g_channels", "d_channels", "d_num_res_blocks", "r1_every", "d_steps"):
        _check(g[key] > 0, f"gan.{key}", g[key], "a positive integer")
    for key in ("lambda_gp", "lambda_r1", "lambda_r2", "lambda_pixel", "collapse_threshold"):
        _check(g[key] >= 0, f"gan.{key}", g[key], ">= 0")
    for name in ("g_optim", "d_optim"):
        optim = g[name]
        _check(optim.lr > 0, f"gan.{name}.lr", optim.lr, "> 0")
        ok = len(optim.betas) == 2 and all(0 <= b < 1 for b in optim.betas)
        _check(ok, f"gan.{name}.betas", list(optim.betas), "two numbers in [0, 1)")
    if kind_facts(cfg.model.kind).adversarial and cfg.model.optim.decay != "none":
        raise GenlabError(f"model.optim.decay={cfg.model.optim.decay} schedules the diffusion and classifier "
                          "optimizer; a GAN trains with gan.g_optim and gan.d_optim, which keep a constant LR: "
                          "leave model.optim.decay=none.")
    if not kind_facts(cfg.model.kind).adversarial:
        return
    if g.loss == "wasserstein" and g.lambda_gp == 0 and not g.spectral_norm:
        raise GenlabError(
            "gan.loss=wasserstein needs a Lipschitz critic: set gan.lambda_gp=10 (WGAN-GP) or gan.spectral_norm=true."
        )
    ckpt = cfg.callbacks.checkpoint
    if ckpt.save_top_k != 0 and ckpt.monitor == "val/loss":
        raise GenlabError(
            "a GAN logs no val/loss to rank checkpoints by: set callbacks.checkpoint.save_top_k=0 "
            "(last.ckpt is still saved) or callbacks.checkpoint.monitor to a logged metric."
        )
