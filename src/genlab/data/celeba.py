"""CelebA (aligned and cropped faces) at 64×64, read lazily from torchvision's folder layout.

    <data.root>/celeba/img_align_celeba/000001.jpg ... 202599.jpg   (178 wide × 218 high)
    <data.root>/celeba/list_eval_partition.txt                      ("000001.jpg 0": 0 train, 1 valid, 2 test)

Only these two are read: the model is unconditional, so the attribute, identity, box and landmark files that
torchvision.datasets.CelebA also hashes are not needed. `download=True` calls torchvision's downloader (Google
Drive, often over quota); when it fails, the error says where to copy the files by hand.

Preprocessing follows the DDIM code (ermongroup/ddim, datasets/__init__.py, inherited from NCSNv2): a fixed
128×128 box around the face (rows 57-184, columns 25-152), then a resize to `resolution`.
"""

import os
from pathlib import Path
from typing import Any, Literal
from urllib.error import URLError

from torch import Tensor
from torch.utils.data import Dataset
from torchvision import datasets
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from genlab.data.base import FitMode, ImageDataModule, Item
from genlab.data.image_folder import ImageFileDataset, UNLABELLED
from genlab.errors import GenlabError

CelebASplit = Literal["train", "valid", "test"]
PARTITIONS: dict[str, int] = {"train": 0, "valid": 1, "test": 2}  # list_eval_partition.txt codes
NATIVE_SIZE = (218, 178)  # height, width of every img_align_celeba image
# DDIM's crop: cx = 89, cy = 121; F.crop(img, top=cy - 64, left=cx - 64, height=128, width=128).
FACE_BOX = (57, 25, 128)  # top, left, side


class FaceCrop:
    """Cut the DDIM face box out of a C×218×178 aligned CelebA image."""

    def __call__(self, image: Tensor) -> Tensor:
        """Return the C×128×128 crop; other sizes are not aligned CelebA and are refused."""
        height, width = image.shape[-2:]
        if (height, width) != NATIVE_SIZE:
            raise GenlabError(
                f"a CelebA image is {height}x{width}, not the {NATIVE_SIZE[0]}x{NATIVE_SIZE[1]} of img_align_celeba; "
                "for other face crops use data=image_folder with data.root=FOLDER"
            )
        top, left, side = FACE_BOX
        return F.crop(image, top, left, side, side)


def read_partition(path: Path) -> dict[str, list[str]]:
    """File names of each split, in file order, from list_eval_partition.txt."""
    names: dict[str, list[str]] = {split: [] for split in PARTITIONS}
    code_to_split = {code: split for split, code in PARTITIONS.items()}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split()
        if len(fields) != 2 or fields[1] not in ("0", "1", "2"):
            raise GenlabError(f"{path} line {number} is {line!r}; expected '<file name> <0|1|2>'")
        names[code_to_split[int(fields[1])]].append(fields[0])
    return names


class CelebADataModule(ImageDataModule):
    """CelebA faces, unlabelled (labels -1); the official train split trains, `val_split` validates.

    The partition file is read at setup and images are decoded per item (202,599 JPEGs stay on disk).
    `val_split` is "test" (19,962 images) by default, genlab's held-out split; "valid" (19,867) is the other.
    """

    name = "celeba"
    folder = "celeba"
    partition_file = "list_eval_partition.txt"
    image_folder = "img_align_celeba"

    def __init__(
        self, *, resolution: int = 64, fit: FitMode = "resize", val_split: CelebASplit = "test", **kwargs: Any
    ) -> None:
        super().__init__(resolution=resolution, fit=fit, **kwargs)
        if val_split not in ("valid", "test"):
            raise GenlabError(f"CelebA validates on 'valid' or 'test', got {val_split!r}")
        self.val_split = val_split

    @property
    def _native_channels(self) -> int:
        return 3

    @property
    def num_classes(self) -> None:
        """Unconditional: CelebA's attributes are not used as classes."""
        return None

    @property
    def data_dir(self) -> Path:
        """The folder that must hold img_align_celeba/ and list_eval_partition.txt."""
        return Path(self.root).expanduser().absolute() / self.folder

    def transform(self, train: bool) -> v2.Compose:
        """The face box first, then the shared [-1, 1] transform (resize to resolution, flips for training)."""
        return v2.Compose([FaceCrop(), super().transform(train)])

    def _missing(self) -> list[str]:
        wanted = [(self.partition_file, os.path.isfile), (self.image_folder + "/", os.path.isdir)]
        return [name for name, exists in wanted if not exists(self.data_dir / name.rstrip("/"))]

    def _require_files(self) -> None:
        missing = self._missing()
        if missing:
            raise GenlabError(
                f"celeba files not found in {self.data_dir} (missing {', '.join(missing)}). Put the aligned images "
                f"in {self.data_dir / self.image_folder}/ (unzip img_align_celeba.zip there) and "
                f"{self.partition_file} in {self.data_dir}/; set data.root=PATH to the folder that contains celeba/ "
                f"(data.root is now {self.root!r}). data.download=true tries torchvision's Google Drive download, "
                "which is often over quota. Any folder of face images also trains with data=image_folder "
                "data.root=FOLDER (flat folder: unconditional; seeded val_fraction split)."
            )

    def check_available(self) -> None:
        """Missing files fail here, unless they are to be downloaded (prepare_data does that on one process)."""
        if not self.download:
            self._require_files()

    def prepare_data(self) -> None:
        """Download with torchvision if asked to and the files are missing (Lightning runs this on one process)."""
        if self.download and self._missing():
            try:
                datasets.CelebA(self.root, split="train", target_type=[], download=True)
            except (URLError, OSError, RuntimeError) as err:
                raise GenlabError(
                    f"downloading celeba to {self.data_dir} failed ({err}). Google Drive often refuses it (quota). "
                    f"Copy img_align_celeba/ and {self.partition_file} into {self.data_dir} by hand and set "
                    "data.download=false, or use data=image_folder data.root=FOLDER."
                ) from err
        self._require_files()

    def _split(self, names: list[str], train: bool) -> ImageFileDataset:
        files = [self.data_dir / self.image_folder / name for name in names]
        return ImageFileDataset(files, [UNLABELLED] * len(files), self.channels, self.transform(train))

    def _build_datasets(self) -> tuple[Dataset[Item], Dataset[Item]]:
        self._require_files()
        splits = read_partition(self.data_dir / self.partition_file)
        for split in ("train", self.val_split):
            if not splits[split]:
                raise GenlabError(f"{self.data_dir / self.partition_file} lists no {split!r} images")
        return self._split(splits["train"], train=True), self._split(splits[self.val_split], train=False)
