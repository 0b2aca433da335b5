"""Section 3 of issue 9: sampling throughput of DDPM (1000 steps) and DDIM (50 and 10 steps), and classifier-free
guidance as one batched pass of 2B against two passes of B."""

from __future__ import annotations

import torch
from torch import Tensor

from bench_config import Bench
from report import Section, Target
from timing import interleaved, timed_once
from genlab.build import build_datamodule, resolve_data_keys
from genlab.config import load_config, to_container
from genlab.diffusion import SamplerSettings, ddim_sample
from genlab.diffusion.guidance import cfg_combine, classifier_free_guidance
from genlab.models import DiffusionModule


def digits_module(b: Bench, experiment: str) -> DiffusionModule:
    """An untrained DiffusionModule of the experiment (the weights do not change the speed)."""
    overrides = {"experiment": experiment}
    if b.quick:
        overrides.update({"unet.base_channels": "8", "diffusion.timesteps": "100"})
    cfg = load_config(overrides)
    resolve_data_keys(cfg, build_datamodule(cfg))
    torch.manual_seed(0)
    return DiffusionModule(to_container(cfg)).to(b.device).eval()


def two_passes(model_fn, w: float, null_class: int):  # noqa: ANN001, ANN201: mirrors classifier_free_guidance
    """Guidance with the conditional and the unconditional prediction as two separate forwards of B samples."""

    def guided(x: Tensor, t: Tensor, y: Tensor) -> Tensor:
        eps_uncond = model_fn(x, t, y=torch.full_like(y, null_class))
        return cfg_combine(model_fn(x, t, y=y), eps_uncond, w)

    return guided


def run(b: Bench) -> Section:
    section = Section("3. Sampling throughput")
    n = 4 if b.quick else 16
    module = digits_module(b, "ddpm_digits")
    T = module.diffusion.num_timesteps
    ddim_steps = (5, 2) if b.quick else (50, 10)
    module.sample(n, SamplerSettings(name="ddim", steps=2), batch_size=n)  # warm-up: first calls allocate and pick kernels
    ddpm_s = timed_once(lambda: module.sample(n, SamplerSettings(name="ddpm", steps=None), batch_size=n), b.device)
    ddim = interleaved({s: (lambda s=s: module.sample(n, SamplerSettings(name="ddim", steps=s), batch_size=n)) for s in ddim_steps},
                       rounds=b.rounds + 1, warmup=1, device=b.device)
    rows = [[f"DDPM, {T} steps", f"{n / ddpm_s:.2f}", f"{ddpm_s:.1f}", "1.0"]]
    for steps in ddim_steps:
        rows.append([f"DDIM, {steps} steps", f"{ddim[steps].rate(n):.2f}", f"{ddim[steps].median:.2f}",
                     f"{ddpm_s / ddim[steps].median:.1f}"])
    section.lines += [f"experiment=ddpm_digits U-Net (untrained: weights do not change the speed), {n} images per "
                      f"call on {b.device}; DDPM timed once, DDIM medians of {b.rounds + 1} interleaved rounds.", ""]
    section.table(["sampler", "images/s", "s per call", "speed-up vs DDPM"], rows)
    section.targets.append(Target(f"DDIM-{ddim_steps[0]} / DDPM-{T} images/s", ddpm_s / ddim[ddim_steps[0]].median,
                                  0.95 * T / ddim_steps[0], "fixed per-call costs (noise, clipping) outweigh the "
                                  "network at few steps"))
    solver_rows(section, b, module, n)
    cfg_rows(section, b, n)
    return section


def solver_rows(section: Section, b: Bench, module: DiffusionModule, n: int) -> None:
    """The ODE solvers against DDIM at equal network evaluations: their step math must cost only a few percent."""
    nfe = 4 if b.quick else 20
    candidates = {name: SamplerSettings().override(name=name).with_nfe(nfe) for name in
                  ("ddim", "dpmpp_2m", "unipc", "heun", "euler")}
    T = module.diffusion.num_timesteps
    timings = interleaved({k: (lambda s=s: module.sample(n, s, batch_size=n)) for k, s in candidates.items()},
                          rounds=b.rounds + 1, warmup=1, device=b.device)
    ddim = timings["ddim"].median / candidates["ddim"].nfe(T)
    rows = []
    for name, settings in candidates.items():
        per_nfe = timings[name].median / settings.nfe(T)
        rows.append([settings.label(T), f"{timings[name].rate(n):.2f}", f"{1e3 * per_nfe:.1f}", f"{per_nfe / ddim:.3f}"])
    section.lines += ["", f"ODE solvers at about {nfe} network evaluations ({n} images per call; heun reaches odd NFE "
                      "only): time per network evaluation against DDIM's.", ""]
    section.table(["sampler", "images/s", "ms per NFE", "per-NFE time / DDIM's"], rows)
    worst = max(timings[k].median / candidates[k].nfe(T) for k in candidates if k != "ddim") / ddim
    section.targets.append(Target("slowest solver's time per NFE / DDIM's", worst, 1.05,
                                  "the solver math (a few tensor ops per step) is measurable against a small U-Net",
                                  lower_is_better=True))


def cfg_rows(section: Section, b: Bench, n: int) -> None:
    module = digits_module(b, "cfg_digits")
    steps = 5 if b.quick else 50
    y = torch.arange(n, device=b.device) % int(module.cfg.data.num_classes)
    shape = (n, *module.image_shape)
    fns = {"batched (one pass of 2B)": classifier_free_guidance(module.model_fn, 1.0, module.unet.null_class),
           "two passes of B": two_passes(module.model_fn, 1.0, module.unet.null_class)}

    def sample(fn):  # noqa: ANN001, ANN202
        g = torch.Generator(device=b.device).manual_seed(0)
        with torch.no_grad():
            return ddim_sample(module.diffusion, fn, shape, steps=steps, generator=g, model_kwargs={"y": y})

    same = torch.allclose(sample(fns["batched (one pass of 2B)"]), sample(fns["two passes of B"]), atol=1e-4)
    timings = interleaved({k: (lambda fn=fn: sample(fn)) for k, fn in fns.items()}, b.rounds + 1, 1, b.device)
    batched, two = timings["batched (one pass of 2B)"], timings["two passes of B"]
    section.lines += ["", f"Classifier-free guidance (experiment=cfg_digits U-Net, w = 1, DDIM-{steps}, {n} images): "
                      f"the same images either way ({'checked' if same else 'NOT equal: check'}).", ""]
    section.table(["guidance", "images/s", "s per call"],
                  [[k, f"{t.rate(n):.2f}", f"{t.median:.2f}"] for k, t in timings.items()])
    section.targets.append(Target("batched CFG / two passes images/s", two.median / batched.median, 1.5,
                                  "a CPU is compute-bound at these batches: 2B images cost about twice B, so batching "
                                  "saves only per-call overhead (a GPU at small batches is launch-bound and gains "
                                  "more)"))
