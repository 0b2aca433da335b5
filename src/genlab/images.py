"""Images as genlab stores them: [-1, 1] floats to uint8, grids, PNG files and folders of PNGs. The one place."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from PIL.PngImagePlugin import PngInfo
from torch import Tensor
from torchvision.utils import make_grid

# Every PNG genlab writes carries this text chunk, so that a later command can tell genlab's images from a user's
# (outputs.py): it overwrites only its own.
PNG_MARK = "genlab"
FIGURE_MARK = {PNG_MARK: "written by genlab"}  # matplotlib's savefig(metadata=...) writes it as that chunk


def to_uint8(images: Tensor) -> Tensor:
    """[-1, 1] floats to 0..255 uint8, rounded (what PNG writers and wandb.Image expect)."""
    return ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def image_grid(images: Tensor, nrow: int | None = None) -> Tensor:
    """[-1, 1] images (B, C, H, W) to one uint8 (C, H', W') grid, about square by default."""
    nrow = nrow or max(1, math.ceil(math.sqrt(images.shape[0])))
    grid = make_grid(to_uint8(images), nrow=nrow, padding=2, pad_value=0)
    # make_grid repeats a single channel three times; keep grayscale grids grayscale.
    return grid[:1] if images.shape[1] == 1 else grid


def png_info() -> PngInfo:
    """The text chunk that marks a PNG as genlab's."""
    info = PngInfo()
    info.add_text(PNG_MARK, FIGURE_MARK[PNG_MARK])
    return info


def save_png(image: Tensor, path: Path) -> None:
    """Save one uint8 (C, H, W) image as PNG, grayscale when C == 1, with genlab's mark."""
    path.parent.mkdir(parents=True, exist_ok=True)
    array = image.permute(1, 2, 0).cpu().numpy()  # C,H,W -> H,W,C
    if array.shape[2] == 1:
        array = array[:, :, 0]
    Image.fromarray(array).save(path, pnginfo=png_info())


def load_png(path: Path) -> Tensor:
    """Read a PNG back as uint8 (C, H, W)."""
    array = torch.from_numpy(np.array(Image.open(path)))
    return array.unsqueeze(0) if array.ndim == 2 else array.permute(2, 0, 1)


# PIL modes of high-bit-depth grayscale images: 16-bit PNGs open as "I;16" (or "I", 32-bit integer, holding 16-bit
# values); their 0..65535 range is scaled to 0..255, not clipped (PIL's own convert("L") clips it, so every bright
# pixel becomes white).
HIGH_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")


def to_8bit(img: Image.Image) -> Image.Image:
    """The image with 8 bits per channel: 16-bit grayscale scaled by 255 / 65535 (rounded); others unchanged."""
    if img.mode not in HIGH_BIT_MODES:
        return img
    array = np.asarray(img, dtype=np.float64)
    top = 65535.0 if array.max(initial=0) <= 65535 else float(array.max())  # a 32-bit "I" beyond 16 bits: its range
    return Image.fromarray(np.round(array.clip(0, None) * (255.0 / top)).astype(np.uint8), mode="L")


def is_folder_target(out: str) -> bool:
    """`out` names a folder (one PNG per image) rather than a grid file."""
    return out.endswith(("/", os.sep)) or Path(out).is_dir()


def png_names(n: int) -> list[str]:
    """The file names of a folder of n images: 000000.png, 000001.png, ..."""
    return [f"{i:06d}.png" for i in range(n)]


def save_png_folder(images: Tensor, folder: Path) -> None:
    """One PNG per image (grayscale stays 1-channel), named by png_names. Writes over those names only: a folder
    that may hold anything else goes through outputs.start_folder first."""
    for name, image in zip(png_names(len(images)), to_uint8(images)):
        save_png(image, folder / name)
