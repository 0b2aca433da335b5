"""Write image grids to disk and to whichever loggers can show images."""

from __future__ import annotations

import math
from pathlib import Path

import lightning as L
import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torchvision.utils import make_grid

from genlab.sampling import to_uint8


def image_grid(images: Tensor, nrow: int | None = None) -> Tensor:
    """[-1, 1] images (B, C, H, W) to one uint8 (C, H', W') grid, about square by default."""
    nrow = nrow or max(1, math.ceil(math.sqrt(images.shape[0])))
    grid = make_grid(to_uint8(images), nrow=nrow, padding=2, pad_value=0)
    # make_grid repeats a single channel three times; keep grayscale grids grayscale.
    return grid[:1] if images.shape[1] == 1 else grid


def save_png(image: Tensor, path: Path) -> None:
    """Save one uint8 (C, H, W) image as PNG, grayscale when C == 1."""
    path.parent.mkdir(parents=True, exist_ok=True)
    array = image.permute(1, 2, 0).cpu().numpy()  # C,H,W -> H,W,C
    if array.shape[2] == 1:
        array = array[:, :, 0]
    Image.fromarray(array).save(path)


def log_image(trainer: L.Trainer, key: str, image: Tensor, step: int) -> None:
    """Send a uint8 (C, H, W) image to every logger that shows images (W&B, TensorBoard)."""
    from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger

    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger):
            # wandb.Image only casts to uint8, so it must get 0..255 values, channels last.
            logger.log_image(key=key, images=[image.permute(1, 2, 0).numpy()], step=step)
        elif isinstance(logger, TensorBoardLogger):
            logger.experiment.add_image(key, image, global_step=step)


def load_png(path: Path) -> Tensor:
    """Read a PNG back as uint8 (C, H, W); used by tests and tools."""
    array = torch.from_numpy(np.array(Image.open(path)))
    return array.unsqueeze(0) if array.ndim == 2 else array.permute(2, 0, 1)
