"""Diffusion math in plain PyTorch (never imports lightning): schedules, the Gaussian process and its loss, samplers.

The network is always an argument: a sampler takes a Denoiser (the network's raw output in its own target, and the
guidance of one batch), the DDPM/DDIM loops and inversion `model_fn(x_t, t, **model_kwargs) -> eps`. Every sampler
is one entry of sampler_registry.SAMPLERS.
"""

from genlab.diffusion.classifier_guidance import classifier_grad_fn
from genlab.diffusion.denoiser import Denoiser
from genlab.diffusion.edm import EDM, EDMSchedule
from genlab.diffusion.flow import FlowMatching, FlowSchedule, FlowTime
from genlab.diffusion.gaussian import (
    LOSS_TERMS,
    VARIANCES,
    GaussianDiffusion,
    LossInputs,
    ModelFn,
    Variance,
    VarianceName,
    predict_x0,
    x0_coefficients,
)
from genlab.diffusion.generate import NetworkCalls, Steering, generate, guided_functions, run_sampler
from genlab.diffusion.prediction import LossWeighting, Prediction, denoised, loss_weight, target, to_eps, to_x0
from genlab.diffusion.guidance import (
    autoguidance,
    autoguide_combine,
    cfg_combine,
    classifier_free_guidance,
    guidance_weight,
)
from genlab.diffusion.inversion import ddim_invert, slerp
from genlab.diffusion.samplers import ddim_sample, ddim_sigma, ddim_step, ddpm_sample, ddpm_step, timestep_batch
from genlab.diffusion.processes import PROCESSES, Process, supports_discrete_samplers
from genlab.diffusion.sampler_registry import ROBUST_SAMPLER, SAMPLERS, SamplerEntry, register, sampler_entry
from genlab.diffusion.settings import GRID_SETTINGS, SAMPLER_FIELDS, SamplerSettings, resolve_settings
from genlab.diffusion.schedules import (
    SCHEDULES,
    SPACINGS,
    Schedule,
    ScheduleName,
    Spacing,
    cosine_betas,
    ddim_timesteps,
    linear_betas,
    make_betas,
)
from genlab.diffusion.solvers import dpmpp_2m_sample, euler_invert, euler_sample, heun_sample, unipc_sample
from genlab.diffusion.time_grids import CLEAN, TIME_GRIDS, GridName, GridPoint, VPSchedule, grid_points, time_grid

__all__ = [
    "LossWeighting",
    "Prediction",
    "loss_weight",
    "target",
    "to_eps",
    "to_x0",
    "Denoiser",
    "EDM",
    "EDMSchedule",
    "FlowMatching",
    "FlowSchedule",
    "FlowTime",
    "PROCESSES",
    "Process",
    "supports_discrete_samplers",
    "denoised",
    "ROBUST_SAMPLER",
    "SAMPLERS",
    "GRID_SETTINGS",
    "SAMPLER_FIELDS",
    "SamplerEntry",
    "SamplerSettings",
    "register",
    "resolve_settings",
    "sampler_entry",
    "Schedule",
    "NetworkCalls",
    "Steering",
    "Variance",
    "generate",
    "guided_functions",
    "run_sampler",
    "predict_x0",
    "timestep_batch",
    "x0_coefficients",
    "autoguidance",
    "autoguide_combine",
    "cfg_combine",
    "classifier_free_guidance",
    "classifier_grad_fn",
    "guidance_weight",
    "GaussianDiffusion",
    "LOSS_TERMS",
    "LossInputs",
    "ModelFn",
    "SCHEDULES",
    "SPACINGS",
    "ScheduleName",
    "Spacing",
    "VARIANCES",
    "VarianceName",
    "cosine_betas",
    "ddim_invert",
    "ddim_sample",
    "ddim_sigma",
    "ddim_step",
    "ddim_timesteps",
    "ddpm_sample",
    "ddpm_step",
    "linear_betas",
    "make_betas",
    "slerp",
    # ODE solvers (solvers.py, solver_steps.py) and their time grids (time_grids.py)
    "CLEAN",
    "GridName",
    "GridPoint",
    "TIME_GRIDS",
    "VPSchedule",
    "dpmpp_2m_sample",
    "euler_invert",
    "euler_sample",
    "grid_points",
    "heun_sample",
    "time_grid",
    "unipc_sample",
]
