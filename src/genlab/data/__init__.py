"""DataModules yielding (image C×H×W in [-1, 1], int64 label) items, and their registry by name."""

from enum import StrEnum

from genlab.data.base import FIT_MODES, FitMode, ImageDataModule
from genlab.data.celeba import CelebADataModule
from genlab.data.digits import DigitsDataModule
from genlab.data.image_folder import IMAGE_EXTENSIONS, ImageFolderDataModule
from genlab.data.torchvision_sets import CIFAR10DataModule, FashionMNISTDataModule, MNISTDataModule

# The config names a dataset by one of these keys (data.name); no class paths in YAML.
DATAMODULES: dict[str, type[ImageDataModule]] = {
    cls.name: cls
    for cls in (
        DigitsDataModule,
        MNISTDataModule,
        FashionMNISTDataModule,
        CIFAR10DataModule,
        ImageFolderDataModule,
        CelebADataModule,
    )
}


class DataName(StrEnum):
    """data.name: the DataModule of a run (each is a key of DATAMODULES)."""

    digits = "digits"
    mnist = "mnist"
    fashion_mnist = "fashion_mnist"
    cifar10 = "cifar10"
    image_folder = "image_folder"
    celeba = "celeba"  # aligned CelebA faces, DDIM's 128x128 face box resized (torchvision folder layout)


assert set(DataName) == set(DATAMODULES), "every DataModule needs a DataName member, and only those"

__all__ = [
    "DataName",
    "CIFAR10DataModule",
    "CelebADataModule",
    "DATAMODULES",
    "DigitsDataModule",
    "FIT_MODES",
    "FashionMNISTDataModule",
    "FitMode",
    "IMAGE_EXTENSIONS",
    "ImageDataModule",
    "ImageFolderDataModule",
    "MNISTDataModule",
]
