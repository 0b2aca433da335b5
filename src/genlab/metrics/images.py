"""Images as the feature extractors take them: uint8, 3 channels, at the data's own resolution.

torch-fidelity's contract (which its Inception and genlab's domain extractor follow) is a uint8 tensor
B x 3 x H x W. genlab images are floats in [-1, 1] with 1 or 3 channels at 16-32 px, so:

- **quantisation**: [-1, 1] -> 0..255 with rounding (`sampling.to_uint8`), the same values a PNG of the
  sample holds. (torchmetrics' `normalize=True` truncates with `.byte()`, which shifts every pixel by up to
  one level; genlab never uses it.)
- **grayscale**: a 1-channel image is repeated to 3 equal channels, which is what reading its grayscale PNG
  with PIL's `convert("RGB")` gives, so folders of PNGs and tensors produce the same features.
- **small images**: no resizing here. Inception resizes every image to 299 x 299 itself, with
  torch-fidelity's TF1-compatible bilinear interpolation without antialiasing; torchmetrics' own Inception
  matches that only with `antialias=False`. The domain extractor needs no resize: it runs at the data's size.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.utils.data import Dataset

from genlab.images import to_uint8


def to_extractor_uint8(images: Tensor) -> Tensor:
    """[-1, 1] images B x C x H x W (C = 1 or 3) to uint8 B x 3 x H x W, rounded, gray repeated."""
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"expected images B x 1|3 x H x W, got {tuple(images.shape)}")
    return to_uint8(images).expand(-1, 3, -1, -1).contiguous()  # [B, 1|3, H, W] -> [B, 3, H, W]


def from_extractor_uint8(images: Tensor, channels: int) -> Tensor:
    """uint8 B x 3 x H x W back to [-1, 1] floats with `channels` channels (gray: the mean of the three)."""
    x = images.float() / 127.5 - 1.0  # [B, 3, H, W] in [-1, 1]
    return x.mean(dim=1, keepdim=True) if channels == 1 else x


class UInt8Images(Dataset[Tensor]):
    """A torch-fidelity input: uint8 3 x H x W tensors, held in memory."""

    def __init__(self, images: Tensor) -> None:
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected uint8 N x 3 x H x W, got {images.dtype} {tuple(images.shape)}")
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> Tensor:
        return self.images[index]
