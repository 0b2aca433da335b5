"""Sample a fixed-seed grid at every validation and write it to the run folder and the loggers."""

from __future__ import annotations

from pathlib import Path

import lightning as L

from genlab.callbacks.images import image_grid, log_image, save_png


class SampleGrid(L.Callback):
    """At each validation end: `num_images` samples from the same x_T (seed), so grids compare across steps.

    Put it before Lightning's EMAWeightAveraging in the callback list: EMA swaps the averaged
    weights in at validation start and back at validation end, so the grid shows the EMA model.
    """

    def __init__(self, out_dir: Path, num_images: int = 64, seed: int = 0) -> None:
        self.out_dir = Path(out_dir)
        self.num_images = num_images
        self.seed = seed

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        images, nrow = pl_module.sample_grid(self.num_images, seed=self.seed)
        grid = image_grid(images, nrow=nrow or None)
        step = trainer.global_step
        save_png(grid, self.out_dir / f"step_{step:07d}.png")
        log_image(trainer, "val/samples", grid, step=step)
