"""Diffusion math in plain PyTorch (never imports lightning): schedules, the Gaussian process and its loss, samplers.

The network is always an argument, `model_fn(x_t, t, **model_kwargs) -> eps`, with `t` a LongTensor [B] of original
timesteps in [0, T).
"""

from genlab.diffusion.classifier_guidance import classifier_grad_fn
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
from genlab.diffusion.generate import Steering, generate, guided_functions
from genlab.diffusion.prediction import LossWeighting, Prediction, loss_weight, target, to_eps, to_x0
from genlab.diffusion.guidance import cfg_combine, classifier_free_guidance, guidance_weight
from genlab.diffusion.inversion import ddim_invert, slerp
from genlab.diffusion.samplers import ddim_sample, ddim_sigma, ddim_step, ddpm_sample, ddpm_step, timestep_batch
from genlab.diffusion.settings import DEFAULT_STEPS, SamplerName, SamplerSettings
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
from genlab.diffusion.solvers import (
    SOLVER_DEFAULT_SPACING,
    SOLVERS,
    dpmpp_2m_sample,
    euler_sample,
    heun_sample,
    solver_nfe,
    unipc_sample,
)
from genlab.diffusion.time_grids import CLEAN, TIME_GRIDS, GridName, GridPoint, VPSchedule, grid_points, time_grid

__all__ = [
    "LossWeighting",
    "Prediction",
    "loss_weight",
    "target",
    "to_eps",
    "to_x0",
    "DEFAULT_STEPS",
    "SamplerName",
    "SamplerSettings",
    "Schedule",
    "Steering",
    "Variance",
    "generate",
    "guided_functions",
    "predict_x0",
    "timestep_batch",
    "x0_coefficients",
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
    "SOLVERS",
    "SOLVER_DEFAULT_SPACING",
    "TIME_GRIDS",
    "VPSchedule",
    "dpmpp_2m_sample",
    "euler_sample",
    "grid_points",
    "heun_sample",
    "solver_nfe",
    "time_grid",
    "unipc_sample",
]
