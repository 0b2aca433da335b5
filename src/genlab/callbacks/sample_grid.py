"""Sample a fixed-seed grid at every validation and write it to the run folder and the loggers."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from torch import Tensor

from genlab.callbacks.images import image_grid, log_image, save_png


def gather_shares(pl_module: L.LightningModule, images: Tensor) -> Tensor:
    """Every rank's images in rank order (on every rank); shares may differ in length by one."""
    sizes = pl_module.all_gather(torch.tensor([images.shape[0]], device=pl_module.device)).view(-1).tolist()
    padded = images.new_zeros((max(sizes), *images.shape[1:])).to(pl_module.device)
    padded[: images.shape[0]] = images.to(pl_module.device)
    gathered = pl_module.all_gather(padded)  # [world, max share, C, H, W]
    return torch.cat([gathered[r, :size] for r, size in enumerate(sizes)]).cpu()


class SampleGrid(L.Callback):
    """At each validation end: `num_images` samples from the same x_T (seed), so grids compare across steps.

    Under DDP each rank samples its share of the grid (rank r with seed + r, as the FID callback does), so a grid
    takes 1/world of the time; rank 0 gathers the shares and writes the PNG and the logger image.

    Put it before Lightning's EMAWeightAveraging in the callback list: EMA swaps the averaged
    weights in at validation start and back at validation end, so the grid shows the EMA model.
    """

    def __init__(self, out_dir: Path, num_images: int = 64, seed: int = 0) -> None:
        self.out_dir = Path(out_dir)
        self.num_images = num_images
        self.seed = seed

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        if trainer.world_size == 1:
            images, nrow = pl_module.sample_grid(self.num_images, seed=self.seed)
        else:  # every rank samples its share; rank 0 gathers them and writes the grid
            images, nrow = pl_module.sample_grid(self.num_images, seed=self.seed,
                                                 part=(trainer.global_rank, trainer.world_size))
            images = gather_shares(pl_module, images)
        if not trainer.is_global_zero:
            return
        grid = image_grid(images, nrow=nrow or None)
        step = trainer.global_step
        save_png(grid, self.out_dir / f"step_{step:07d}.png")
        log_image(trainer, "val/samples", grid, step=step)
