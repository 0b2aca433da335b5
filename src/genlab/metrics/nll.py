"""The variational bound on -log p(x) of a diffusion checkpoint over a dataset split, in bits/dim."""

from __future__ import annotations

from typing import Any

import torch
from omegaconf import DictConfig

from genlab.diffusion.likelihood import nll_bpd, quantize_to_bins
from genlab.errors import GenlabError
from genlab.metrics.reference import split_images
from genlab.models import facts_of


def compute_nll(module: Any, cfg: DictConfig, split: str, batch_size: int, seed: int, device: torch.device,
                limit: int | None = None) -> tuple[float, int]:
    """Mean variational bound on -log p(x) in bits/dim over the split's first `limit` images (all by default),
    with the data quantised to 8 bits; and the number of images."""
    if not facts_of(module).sampler or not module.diffusion.likelihood:
        raise GenlabError("nll=true: the variational bound is defined for DDPM's discrete VP process; this checkpoint "
                          "has none (a GAN, or a flow model, whose likelihood needs the ODE's divergence).")
    images = split_images(cfg, split)[:limit, : int(cfg.data.channels)]  # [N, C, H, W] uint8, gray copies dropped
    generator = torch.Generator(device=device).manual_seed(seed)
    totals = []
    for batch in images.split(batch_size):
        x0 = quantize_to_bins(batch.float().to(device) / 127.5 - 1.0)
        kwargs = {}
        if module.conditional:  # the unconditional mode of a CFG model: the null label
            kwargs = {"y": torch.full((len(x0),), module.unet.null_class, device=device, dtype=torch.long)}
        totals.append(nll_bpd(module.diffusion, module.model_fn, x0, generator=generator, model_kwargs=kwargs)["total"])
    return float(torch.cat(totals).mean()), len(images)
