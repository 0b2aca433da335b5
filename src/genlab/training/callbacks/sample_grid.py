"""Sample a fixed-seed grid at every validation and write it to the run folder and the loggers."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger
from torch import Tensor

from genlab.images import image_grid, save_png
from genlab.runs import RunDir
from genlab.training.callbacks.final_checkpoint import out_of_time


def log_image(trainer: L.Trainer, key: str, image: Tensor, step: int) -> None:
    """Send a uint8 (C, H, W) image to every logger that shows images (W&B, TensorBoard)."""
    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger):
            # wandb.Image only casts to uint8, so it must get 0..255 values, channels last.
            logger.log_image(key=key, images=[image.permute(1, 2, 0).numpy()], step=step)
        elif isinstance(logger, TensorBoardLogger):
            logger.experiment.add_image(key, image, global_step=step)

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

    def __init__(self, run: RunDir, num_images: int = 64, seed: int = 0) -> None:
        self.run = run
        self.num_images = num_images
        self.seed = seed
        self.final_path: Path | None = None  # samples/final.png once written

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
        save_png(grid, self.run.grid(step))
        log_image(trainer, "val/samples", grid, step=step)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """samples/final.png, with the weights the run ends with (EMAWeightAveraging has copied the average in by
        now). When the last validation fell on the final step its grid shows these weights already: copy it."""
        # A signal is not the end of the run; its time budget is.
        stopped_early = trainer.should_stop and trainer.global_step < trainer.max_steps and not out_of_time(trainer)
        if not trainer.is_global_zero or stopped_early:
            return
        last = self.run.grid(trainer.global_step)
        if last.is_file():
            self.run.final_grid.write_bytes(last.read_bytes())
        else:
            images, nrow = pl_module.sample_grid(self.num_images, seed=self.seed)
            save_png(image_grid(images, nrow=nrow or None), self.run.final_grid)
        self.final_path = self.run.final_grid
