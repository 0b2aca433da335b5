"""The training objectives (noise processes) a diffusion model can have: one entry each. Code that serves every
objective asks a process what it supports (`likelihoods`, `discrete_samplers`), never its name."""

from __future__ import annotations

from enum import StrEnum

from genlab.diffusion.edm import EDM
from genlab.diffusion.flow import FlowMatching
from genlab.diffusion.gaussian import GaussianDiffusion


class Process(StrEnum):
    """diffusion.process: the objective the network is trained on."""

    vp = "vp"  # DDPM's discrete variance-preserving process (Ho et al. 2020), eps / x0 / v targets
    flow = "flow"  # flow matching on the straight path x_t = (1 - t) x0 + t eps (Lipman et al. 2023, Liu et al. 2023)
    edm = "edm"  # x = x0 + sigma n with EDM's preconditioning, sigma distribution and weighting (Karras et al. 2022)


PROCESSES: dict[str, type] = {Process.vp: GaussianDiffusion, Process.flow: FlowMatching, Process.edm: EDM}


def supports_discrete_samplers(process: str) -> bool:
    """Whether DDPM and DDIM (which need a discrete abar table) sample a model of `process`."""
    return bool(PROCESSES[str(process)].discrete_samplers)
