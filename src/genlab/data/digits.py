"""scikit-learn's 8×8 handwritten digits: 1,797 images, 10 classes, no download, CPU-sized."""

from typing import Any

import torch
from sklearn.datasets import load_digits
from torch.utils.data import Dataset
from torchvision.transforms import v2

from genlab.data.base import ImageDataModule, Item, TensorImageDataset, image_transform, split_indices

DIGITS_MAX_VALUE = 16.0  # load_digits pixels are counts 0..16 (4×4 blocks of a 32×32 bitmap)


class DigitsDataModule(ImageDataModule):
    """The sklearn digits, upsampled to `resolution` (default 16) and split by `val_fraction`.

    `root` and `download` are accepted for a uniform interface but unused: the data ships with
    scikit-learn. The whole set is transformed once in `setup()`; only random flips run per item.
    """

    name = "digits"

    def __init__(self, *, resolution: int = 16, **kwargs: Any) -> None:
        super().__init__(resolution=resolution, **kwargs)

    @property
    def _native_channels(self) -> int:
        return 1

    @property
    def num_classes(self) -> int:
        """Ten digit classes, 0..9."""
        return 10

    def _build_datasets(self) -> tuple[Dataset[Item], Dataset[Item]]:
        digits = load_digits()
        raw = torch.as_tensor(digits.images, dtype=torch.float32) / DIGITS_MAX_VALUE  # N×8×8 in [0, 1]
        fixed = image_transform(resolution=self.resolution, fit=self.fit, channels=self.channels)
        images = fixed(raw.unsqueeze(1))  # N×1×8×8 -> N×C×R×R in [-1, 1], done once for the whole set
        labels = torch.as_tensor(digits.target, dtype=torch.int64)
        train_idx, val_idx = split_indices(len(images), self.val_fraction, self.seed)
        flip = v2.RandomHorizontalFlip() if self.hflip else None
        train = TensorImageDataset(images[train_idx], labels[train_idx], flip)
        val = TensorImageDataset(images[val_idx], labels[val_idx])
        return train, val
