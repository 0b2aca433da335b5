"""The shared DataModule base: options, [-1, 1] image transforms, seeded split, loaders."""

import warnings
from collections.abc import Callable
from enum import StrEnum

import lightning as L
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from genlab.data.sampler import ResumableShuffle, ShardedSequential
from genlab.errors import GenlabError

class FitMode(StrEnum):
    """How an image reaches the training resolution."""

    resize = "resize"
    pad = "pad"
    center_crop = "center_crop"


FIT_MODES: tuple[str, ...] = tuple(m.value for m in FitMode)
Item = tuple[Tensor, Tensor]  # (image C×H×W float32 in [-1, 1], label int64 scalar)


class FitToSquare:
    """Bring a [-1, 1] image (..., C, H, W) to resolution × resolution by resize, pad or center crop."""

    def __init__(self, resolution: int, fit: FitMode) -> None:
        self.resolution = resolution
        self.fit = fit

    def __call__(self, image: Tensor) -> Tensor:
        """Return the image at the target size (works on single images and on batches)."""
        height, width = image.shape[-2:]
        if self.fit == "pad":
            return self._pad(image, height, width)
        if self.fit == "center_crop" and height != width:
            side = min(height, width)
            image = F.center_crop(image, [side, side])
        size = [self.resolution, self.resolution]
        # Antialias matters when shrinking; bilinear weights are convex, so values stay in [-1, 1].
        return F.resize(image, size, interpolation=v2.InterpolationMode.BILINEAR, antialias=True)

    def _pad(self, image: Tensor, height: int, width: int) -> Tensor:
        if height > self.resolution or width > self.resolution:
            raise GenlabError(
                f"data.fit=pad cannot shrink a {height}x{width} image to data.resolution={self.resolution}; "
                f"set data.resolution>={max(height, width)} or data.fit=resize or data.fit=center_crop"
            )
        top, left = (self.resolution - height) // 2, (self.resolution - width) // 2
        bottom, right = self.resolution - height - top, self.resolution - width - left
        # -1 is black in [-1, 1] space, matching the dark background of digit datasets.
        return F.pad(image, [left, top, right, bottom], fill=-1.0)


class ToChannels:
    """Convert a C×H×W image to 1 channel (luma) or 3 channels (repeated gray)."""

    def __init__(self, channels: int) -> None:
        self.channels = channels

    def __call__(self, image: Tensor) -> Tensor:
        """Return the image with self.channels channels."""
        have = image.shape[-3]
        if have == self.channels:
            return image
        if have == 1 and self.channels == 3:
            return image.expand(*image.shape[:-3], 3, *image.shape[-2:]).clone()
        if have == 3 and self.channels == 1:
            return F.rgb_to_grayscale(image, num_output_channels=1)
        raise GenlabError(
            f"cannot convert a {have}-channel image to {self.channels} channels; use data.channels=1 or 3"
        )


def image_transform(*, resolution: int, fit: FitMode, channels: int, hflip: bool = False) -> v2.Compose:
    """Transform a uint8 (0..255) or float ([0, 1]) image C×H×W to float32 [-1, 1] at resolution²."""
    steps: list[Callable[[Tensor], Tensor]] = [
        v2.ToDtype(torch.float32, scale=True),
        ToChannels(channels),
        v2.Normalize([0.5] * channels, [0.5] * channels),  # [0, 1] -> [-1, 1]
        FitToSquare(resolution, fit),
    ]
    if hflip:
        steps.append(v2.RandomHorizontalFlip())
    return v2.Compose(steps)


class TensorImageDataset(Dataset[Item]):
    """Images held in one tensor N×C×H×W, transformed per item; labels an int64 tensor N."""

    def __init__(self, images: Tensor, labels: Tensor, transform: Callable[[Tensor], Tensor] | None = None) -> None:
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        self.images = images
        self.labels = labels.to(torch.int64)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> Item:
        image = self.images[index]
        if self.transform is not None:
            image = self.transform(image)
        return image, self.labels[index]


def split_indices(n: int, val_fraction: float, seed: int) -> tuple[Tensor, Tensor]:
    """Split range(n) into (train, val) index tensors; the same seed gives the same split everywhere."""
    n_val = max(1, round(n * val_fraction))
    if n - n_val < 1:
        raise GenlabError(f"{n} images are too few to split with data.val_fraction={val_fraction}; add images")
    # A private generator: the split must not depend on (or disturb) the global RNG, so every rank agrees.
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return order[n_val:], order[:n_val]


class ImageDataModule(L.LightningDataModule):
    """Base for all genlab data: items are (image C×H×W in [-1, 1], int64 label; -1 when unlabelled).

    `batch_size` is per device: under DDP the global batch is batch_size × devices × nodes.
    `channels`, `resolution` and `num_classes` are known right after construction, so a model can be
    built before `setup()`. Subclasses set `name` and implement `_native_channels`, `num_classes` and
    `_build_datasets`.
    """

    name: str = ""

    def __init__(
        self,
        *,
        root: str = "data",
        download: bool = False,
        resolution: int,
        channels: int | None = None,
        fit: FitMode = "resize",
        hflip: bool = False,
        batch_size: int = 64,
        num_workers: int = 0,
        val_fraction: float = 0.1,
        seed: int = 0,
        pin_memory: bool | None = None,
        persistent_workers: bool | None = None,
    ) -> None:
        super().__init__()
        _check_options(resolution, channels, fit, batch_size, num_workers, val_fraction)
        if persistent_workers and num_workers == 0:
            raise GenlabError("data.persistent_workers=true needs worker processes: set data.num_workers > 0")
        # The run config is the one set of hyper-parameters a logger gets; the DataModule's own copy is not logged.
        self.save_hyperparameters(logger=False)
        self.root = str(root)
        self.download = download
        self.resolution = resolution
        self._channels = channels
        self.fit: FitMode = fit
        self.hflip = hflip
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.val_fraction = val_fraction
        self.seed = seed
        # None: page-locked memory only pays when batches go to a GPU; persistent workers only exist with workers.
        self.pin_memory = torch.cuda.is_available() if pin_memory is None else pin_memory
        self.persistent_workers = num_workers > 0 if persistent_workers is None else persistent_workers
        self.train_dataset: Dataset[Item] | None = None
        self.val_dataset: Dataset[Item] | None = None
        # Training batches used so far in the current epoch, saved in checkpoints to resume mid-epoch.
        self._position = {"epoch": 0, "batches": 0}
        self._resume_position: dict[str, int] | None = None

    @property
    def channels(self) -> int:
        """Channels of every image: the configured value, else the dataset's own."""
        return self._channels if self._channels is not None else self._native_channels

    @property
    def _native_channels(self) -> int:
        raise NotImplementedError

    @property
    def num_classes(self) -> int | None:
        """Number of classes, or None for unlabelled data (labels are then -1)."""
        raise NotImplementedError

    def transform(self, train: bool) -> v2.Compose:
        """The per-image transform; random flips only for training."""
        return image_transform(
            resolution=self.resolution, fit=self.fit, channels=self.channels, hflip=self.hflip and train
        )

    def _build_datasets(self) -> tuple[Dataset[Item], Dataset[Item]]:
        raise NotImplementedError

    def check_available(self) -> None:
        """Raise GenlabError now if the data cannot be found (before a run folder exists); datasets that are
        listed or embedded at construction have nothing more to check."""

    def setup(self, stage: str | None = None) -> None:
        """Create the train and val datasets once (Lightning calls this on every rank)."""
        if self.train_dataset is None:
            self.train_dataset, self.val_dataset = self._build_datasets()

    def train_dataloader(self) -> DataLoader[Item]:
        """Batches in a (seed, epoch)-determined shuffle; drops the last partial batch when there is a full one."""
        dataset = self._require(self.train_dataset)
        size = len(dataset)  # type: ignore[arg-type]  # our datasets are sized
        rank, world = self._rank_and_world()
        sampler = ResumableShuffle(size, seed=self.seed, rank=rank, world_size=world)
        if self._resume_position is not None:  # resuming mid-epoch: skip the batches already trained on
            sampler.skip(self._resume_position["epoch"], self._resume_position["batches"] * self.batch_size)
            self._position = dict(self._resume_position)
            self._resume_position = None
        return self._loader(dataset, sampler=sampler, drop_last=len(sampler) >= self.batch_size)

    def val_dataloader(self) -> DataLoader[Item]:
        """Validation batches in a fixed order; each DDP rank takes every W-th item."""
        dataset = self._require(self.val_dataset)
        rank, world = self._rank_and_world()
        sampler = ShardedSequential(len(dataset), rank, world)  # type: ignore[arg-type]
        return self._loader(dataset, sampler=sampler, drop_last=False)

    def _rank_and_world(self) -> tuple[int, int]:
        """This process's rank and the number of processes; genlab shards the data itself (the Trainer is built
        with use_distributed_sampler=False), so that the order stays (seed, epoch)-determined."""
        trainer = self.trainer
        if trainer is None:
            return 0, 1
        return trainer.global_rank, trainer.world_size

    def on_after_batch_transfer(self, batch: Item, dataloader_idx: int) -> Item:
        """Count the training batches of the epoch (after any prefetching, so the count is what was trained on)."""
        trainer = self.trainer
        if trainer is not None and trainer.training:
            epoch = trainer.current_epoch
            if epoch != self._position["epoch"]:
                self._position = {"epoch": epoch, "batches": 0}
            self._position["batches"] += 1
        return batch

    def state_dict(self) -> dict[str, int]:
        """Where in the data order training is; Lightning stores it in every checkpoint."""
        return dict(self._position)

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        self._resume_position = {"epoch": int(state_dict["epoch"]), "batches": int(state_dict["batches"])}
        # Lightning warns that a mid-epoch resume repeats data unless the DataLoader itself is stateful; here the
        # DataModule restores the position (train_dataloader skips the used batches), so the warning is wrong.
        warnings.filterwarnings("ignore", message="You're resuming from a checkpoint that ended before the epoch")

    def _require(self, dataset: Dataset[Item] | None) -> Dataset[Item]:
        if dataset is None:
            raise RuntimeError(f"{type(self).__name__}.setup() must run before asking for a dataloader")
        return dataset

    def _loader(self, dataset: Dataset[Item], *, sampler: Sampler[int], drop_last: bool) -> DataLoader[Item]:
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            sampler=sampler,
            drop_last=drop_last,
            # Worker seeds come from this generator, not the global one: starting an epoch or a validation
            # leaves the global RNG (timesteps, noise, dropout) untouched, so a resumed run draws the same numbers.
            generator=torch.Generator().manual_seed(self.seed),
            num_workers=self.num_workers,
            persistent_workers=self.persistent_workers,
            pin_memory=self.pin_memory,
        )


def _check_options(
    resolution: int, channels: int | None, fit: str, batch_size: int, num_workers: int, val_fraction: float
) -> None:
    if not isinstance(resolution, int) or resolution < 1:
        raise GenlabError(f"data.resolution must be a positive integer, got {resolution!r}")
    if channels not in (None, 1, 3):
        raise GenlabError(f"data.channels must be 1, 3 or null (the dataset's own), got {channels!r}")
    if fit not in FIT_MODES:
        raise GenlabError(f"data.fit must be one of {', '.join(FIT_MODES)}, got {fit!r}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise GenlabError(f"data.batch_size must be a positive integer, got {batch_size!r}")
    if not isinstance(num_workers, int) or num_workers < 0:
        raise GenlabError(f"data.num_workers must be an integer >= 0, got {num_workers!r}")
    if not 0.0 < val_fraction < 1.0:
        raise GenlabError(f"data.val_fraction must be between 0 and 1 (exclusive), got {val_fraction!r}")
