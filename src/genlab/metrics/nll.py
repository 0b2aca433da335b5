"""-log p(x) of a diffusion checkpoint over a dataset split, in bits/dim: DDPM's variational bound or the
probability-flow ODE's likelihood."""

from __future__ import annotations

from typing import Any

import torch
from omegaconf import DictConfig

from genlab.diffusion.denoiser import Denoiser
from genlab.diffusion.likelihood import nll_bpd, quantize_to_bins
from genlab.diffusion.ode_likelihood import ode_nll_bpd
from genlab.errors import GenlabError
from genlab.metrics.reference import split_images
from genlab.models import facts_of


NLL_METHODS = {"bound": "the variational bound of DDPM (Ho et al. 2020, eq. 5)",
               "ode": "the probability-flow ODE (Song et al. 2021), Heun, Hutchinson, uniform dequantisation"}


def nll_method(module: Any, method: str | None) -> str:
    """The NLL that `genlab eval nll=true nll_method=...` computes for this module: `method`, or the process's first
    (the variational bound of a VP model, the ODE's likelihood of a flow or EDM model)."""
    if not facts_of(module).sampler:
        raise GenlabError("nll=true: -log p(x) is defined for diffusion models; this checkpoint is a GAN, whose "
                          "samples have no density to evaluate.")
    supported = module.diffusion.likelihoods
    if method is None:
        return supported[0]
    if method not in supported:
        raise GenlabError(f"nll_method={method}: this checkpoint's process ({module.diffusion.process}) has "
                          f"{' and '.join(supported)} only ({'; '.join(f'{m}: {NLL_METHODS[m]}' for m in supported)}).")
    return method


def compute_nll(module: Any, cfg: DictConfig, split: str, batch_size: int, seed: int, device: torch.device,
                limit: int | None = None, method: str | None = None) -> tuple[float, int]:
    """Mean -log p(x) in bits/dim over the split's first `limit` images (all by default), with the data quantised
    to 8 bits: the variational bound or the ODE's likelihood (nll_method); and the number of images."""
    method = nll_method(module, method)
    images = split_images(cfg, split)[:limit, : int(cfg.data.channels)]  # [N, C, H, W] uint8, gray copies dropped
    generator = torch.Generator(device=device).manual_seed(seed)
    totals = []
    for batch in images.split(batch_size):
        x0 = quantize_to_bins(batch.float().to(device) / 127.5 - 1.0)
        kwargs = {}
        if module.conditional:  # the unconditional mode of a CFG model: the null label
            kwargs = {"y": torch.full((len(x0),), module.unet.null_class, device=device, dtype=torch.long)}
        if method == "bound":
            totals.append(nll_bpd(module.diffusion, module.model_fn, x0, generator=generator, model_kwargs=kwargs)["total"])
        else:
            denoiser = Denoiser(module.network_output, module.diffusion, model_kwargs=kwargs)
            totals.append(ode_nll_bpd(denoiser, x0, generator=generator))
    return float(torch.cat(totals).mean()), len(images)
