"""Any folder of images: one subfolder per class (labelled), or images directly in the root (unlabelled)."""

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset
from torchvision.transforms.v2 import functional as F

from genlab.data.base import FitMode, ImageDataModule, Item, split_indices
from genlab.errors import GenlabError
from genlab.images import to_8bit

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
UNLABELLED = -1


def _is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def _visible_dirs(folder: Path) -> list[Path]:
    # Hidden folders (.ipynb_checkpoints, .git, ...) are never classes.
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def scan_image_folder(root: Path) -> tuple[list[Path], list[int], list[str]]:
    """List (files, labels, class names); class names are empty and labels -1 for a flat folder."""
    if not root.is_dir():
        raise GenlabError(
            f"image folder {root} does not exist; set data.root=PATH to a folder of images "
            "(either images directly inside it, or one subfolder of images per class)"
        )
    top_images = sorted(p for p in root.iterdir() if _is_image(p))
    class_dirs = _visible_dirs(root)
    if top_images and class_dirs:
        raise GenlabError(
            f"image folder {root} mixes images ({top_images[0].name}, ...) with subfolders "
            f"({class_dirs[0].name}, ...); keep either only images (unlabelled) or only class subfolders"
        )
    if top_images:
        return top_images, [UNLABELLED] * len(top_images), []
    if not class_dirs:
        raise GenlabError(
            f"no images found in {root} (looked for {', '.join(IMAGE_EXTENSIONS)}); "
            "set data.root=PATH to a folder that holds images or class subfolders of images"
        )
    files: list[Path] = []
    labels: list[int] = []
    for label, class_dir in enumerate(class_dirs):
        found = sorted(p for p in class_dir.rglob("*") if _is_image(p))
        if not found:
            raise GenlabError(
                f"class folder {class_dir} has no images ({', '.join(IMAGE_EXTENSIONS)}); "
                "add images to it or remove it"
            )
        files.extend(found)
        labels.extend([label] * len(found))
    return files, labels, [d.name for d in class_dirs]


# PIL modes by channel count, for the mixed-channels warning.
_MODE_CHANNELS = {"1": 1, "L": 1, "P": 3, "RGB": 3, "RGBA": 4, "CMYK": 4, "YCbCr": 3, "LA": 2, "I": 1, "F": 1}


def check_images(files: list[Path], channels: int) -> None:
    """Open every file's header (cheap: no pixels are decoded) before training starts.

    Unreadable files stop the run with their names; images with differing channel counts are converted to
    `channels`, with a warning that says how many of each there are.
    """
    bad: list[str] = []
    counts: dict[int, int] = {}
    for path in files:
        try:
            with Image.open(path) as img:
                counts[_MODE_CHANNELS.get(img.mode, 3)] = counts.get(_MODE_CHANNELS.get(img.mode, 3), 0) + 1
        except (OSError, ValueError, Image.DecompressionBombError) as err:
            bad.append(f"{path} ({type(err).__name__})")
    if bad:
        shown = "; ".join(bad[:5]) + (f"; and {len(bad) - 5} more" if len(bad) > 5 else "")
        raise GenlabError(f"{len(bad)} image(s) cannot be read: {shown}. Replace or delete them, then run again.")
    if len(counts) > 1:
        summary = ", ".join(f"{n} with {c} channel{'s' if c > 1 else ''}" for c, n in sorted(counts.items()))
        warnings.warn(
            f"the image folder mixes channel counts ({summary}); every image is converted to data.channels={channels}.",
            stacklevel=2,
        )


class ImageFileDataset(Dataset[Item]):
    """Decodes one image file per item with PIL, converted to `channels`, then transformed."""

    def __init__(
        self, files: list[Path], labels: list[int], channels: int, transform: Callable[[Tensor], Tensor]
    ) -> None:
        self.files = files
        self.labels = torch.as_tensor(labels, dtype=torch.int64)
        self.mode = "L" if channels == 1 else "RGB"
        self.transform = transform

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> Item:
        path = self.files[index]
        try:
            with Image.open(path) as img:
                pixels = F.pil_to_tensor(to_8bit(img).convert(self.mode))  # C×H×W uint8
        except (OSError, ValueError, Image.DecompressionBombError) as err:
            raise GenlabError(f"cannot read image {path} ({err}); replace or delete the file") from err
        return self.transform(pixels), self.labels[index]


class ImageFolderDataModule(ImageDataModule):
    """Images under `root`; class subfolder names, sorted, give labels 0..K-1.

    The folder is listed in the constructor (so `num_classes` is known before `setup()`); images are
    decoded lazily per item. Validation is a seeded `val_fraction` split. Default fit is
    "center_crop" (keeps the aspect ratio); default channels 3 (RGB), 1 converts to grayscale.
    """

    name = "image_folder"

    def __init__(self, *, fit: FitMode = "center_crop", **kwargs: Any) -> None:
        super().__init__(fit=fit, **kwargs)
        folder = Path(self.root).expanduser().absolute()
        self.files, self.labels, self.class_names = scan_image_folder(folder)
        check_images(self.files, self.channels)

    @property
    def _native_channels(self) -> int:
        return 3

    @property
    def num_classes(self) -> int | None:
        """Number of class subfolders, or None for a flat (unlabelled) folder."""
        return len(self.class_names) or None

    def _subset(self, indices: Tensor, train: bool) -> ImageFileDataset:
        chosen = indices.tolist()
        files = [self.files[i] for i in chosen]
        labels = [self.labels[i] for i in chosen]
        return ImageFileDataset(files, labels, self.channels, self.transform(train))

    def _build_datasets(self) -> tuple[Dataset[Item], Dataset[Item]]:
        train_idx, val_idx = split_indices(len(self.files), self.val_fraction, self.seed)
        return self._subset(train_idx, train=True), self._subset(val_idx, train=False)
