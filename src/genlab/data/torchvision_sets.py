"""MNIST, Fashion-MNIST and CIFAR-10 through torchvision.datasets, held in memory as uint8 tensors.

Each uses its official train split for training and its official test split for validation, so
`val_fraction` is unused. Files are looked for under `root` (torchvision's layout); with
`download=True` they are fetched in `prepare_data()`, which Lightning runs on one process per node.
"""

import os
from typing import Any
from urllib.error import URLError

import torch
from torch.utils.data import Dataset
from torchvision import datasets

from genlab.data.base import FitMode, ImageDataModule, Item, TensorImageDataset
from genlab.errors import GenlabError

_MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
_CIFAR10_FILES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch", "batches.meta")


class _TorchvisionDataModule(ImageDataModule):
    """A torchvision dataset whose whole uint8 array is turned into one tensor at setup."""

    dataset_cls: type[datasets.VisionDataset]
    native_size: int
    native_channels: int
    folder: str  # relative to root, where torchvision keeps (or downloads) the files
    files: tuple[str, ...]

    def __init__(self, *, resolution: int = 32, fit: FitMode = "pad", **kwargs: Any) -> None:
        super().__init__(resolution=resolution, fit=fit, **kwargs)
        if self.fit == "pad" and self.resolution < self.native_size:
            raise GenlabError(
                f"data.fit=pad cannot shrink {self.name}'s {self.native_size}x{self.native_size} images to "
                f"data.resolution={self.resolution}; use data.fit=resize or data.resolution>={self.native_size}"
            )

    @property
    def _native_channels(self) -> int:
        return self.native_channels

    @property
    def num_classes(self) -> int:
        """All three sets have ten classes."""
        return 10

    @property
    def data_dir(self) -> str:
        """The absolute folder that must hold the dataset files."""
        return os.path.join(os.path.abspath(os.path.expanduser(self.root)), self.folder)

    def _files_present(self) -> bool:
        # Existence only: torchvision's own check for CIFAR hashes ~180 MB, too slow to run on every rank.
        return all(os.path.isfile(os.path.join(self.data_dir, name)) for name in self.files)

    def _require_files(self, hint: str = "") -> None:
        if not self._files_present():
            top = self.folder.split(os.sep)[0]
            raise GenlabError(
                f"{self.name} files not found in {self.data_dir} (expected {', '.join(self.files)}). "
                f"Set data.root=PATH to the folder that contains {top}/ (data.root is now {self.root!r}), "
                f"or set data.download=true to fetch them.{hint}"
            )

    def check_available(self) -> None:
        """Missing files fail here, unless they are to be downloaded (prepare_data does that on one process)."""
        if not self.download:
            self._require_files()

    def prepare_data(self) -> None:
        """Download the files if asked to and they are missing (Lightning runs this on one process)."""
        if self.download and not self._files_present():
            try:
                self.dataset_cls(self.root, train=True, download=True)  # type: ignore[call-arg]
            except (URLError, OSError, RuntimeError) as err:
                raise GenlabError(
                    f"downloading {self.name} to {self.data_dir} failed ({err}). Without network access, "
                    f"copy the files {', '.join(self.files)} into {self.data_dir} by hand and set "
                    "data.download=false."
                ) from err
        self._require_files()

    def _load_split(self, train: bool) -> TensorImageDataset:
        try:
            dataset = self.dataset_cls(self.root, train=train, download=False)  # type: ignore[call-arg]
        except (OSError, RuntimeError, ValueError) as err:
            raise GenlabError(
                f"cannot read {self.name} from {self.data_dir} ({err}); delete the folder and set "
                "data.download=true, or copy intact files there"
            ) from err
        images = _as_nchw_uint8(dataset.data)  # type: ignore[attr-defined]
        labels = torch.as_tensor(dataset.targets, dtype=torch.int64)  # type: ignore[attr-defined]
        return TensorImageDataset(images, labels, self.transform(train))

    def _build_datasets(self) -> tuple[Dataset[Item], Dataset[Item]]:
        hint = " With data.download=true, call prepare_data() before setup()." if self.download else ""
        self._require_files(hint)
        return self._load_split(train=True), self._load_split(train=False)


def _as_nchw_uint8(data: Any) -> torch.Tensor:
    """MNIST stores N×H×W, CIFAR N×H×W×C (numpy); both become one N×C×H×W uint8 tensor."""
    array = torch.as_tensor(data)
    if array.ndim == 3:
        return array.unsqueeze(1)
    return array.permute(0, 3, 1, 2).contiguous()


class MNISTDataModule(_TorchvisionDataModule):
    """MNIST digits, 28×28 gray; default 32×32 by padding (fit="pad").

    Padding keeps every stroke pixel exactly as recorded (no resampling blur) and only adds the
    black border that MNIST already has, so 32×32 U-Nets can halve the size five times.
    """

    name = "mnist"
    dataset_cls = datasets.MNIST
    native_size = 28
    native_channels = 1
    folder = os.path.join("MNIST", "raw")
    files = _MNIST_FILES


class FashionMNISTDataModule(_TorchvisionDataModule):
    """Fashion-MNIST, 28×28 gray; default 32×32 by padding, for the same reason as MNIST."""

    name = "fashion_mnist"
    dataset_cls = datasets.FashionMNIST
    native_size = 28
    native_channels = 1
    folder = os.path.join("FashionMNIST", "raw")
    files = _MNIST_FILES


class CIFAR10DataModule(_TorchvisionDataModule):
    """CIFAR-10, 32×32 RGB; default fit="resize", a no-op at the default resolution 32."""

    name = "cifar10"
    dataset_cls = datasets.CIFAR10
    native_size = 32
    native_channels = 3
    folder = "cifar-10-batches-py"
    files = _CIFAR10_FILES

    def __init__(self, *, resolution: int = 32, fit: FitMode = "resize", **kwargs: Any) -> None:
        super().__init__(resolution=resolution, fit=fit, **kwargs)
