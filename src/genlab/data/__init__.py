"""DataModules yielding (image C×H×W in [-1, 1], int64 label) items, and their registry by name."""

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

__all__ = [
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
