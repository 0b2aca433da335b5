"""DataModules: shapes, [-1, 1] range, labels, seeded splits, fit modes and user-facing errors."""

from pathlib import Path
from urllib.error import URLError

import numpy as np
import pytest
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import DataLoader

from genlab.data import (
    DATAMODULES,
    CIFAR10DataModule,
    DigitsDataModule,
    FashionMNISTDataModule,
    ImageFolderDataModule,
    MNISTDataModule,
)
from genlab.errors import GenlabError

SHARED_DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
MNIST_RAW = SHARED_DATA / "MNIST" / "raw"


def all_items(loader: DataLoader) -> tuple[Tensor, Tensor]:
    """Concatenate every batch of a loader into (images, labels)."""
    images, labels = zip(*loader)
    return torch.cat(images), torch.cat(labels)


# --- registry and options -------------------------------------------------------------------------


def test_registry_has_the_six_datasets() -> None:
    assert set(DATAMODULES) == {"digits", "mnist", "fashion_mnist", "cifar10", "image_folder", "celeba"}
    assert DATAMODULES["mnist"] is MNISTDataModule
    assert all(cls.name == key for key, cls in DATAMODULES.items())


@pytest.mark.parametrize(
    ("option", "value"),
    [("fit", "stretch"), ("channels", 2), ("resolution", 0), ("batch_size", 0), ("val_fraction", 1.0)],
)
def test_bad_options_raise_genlab_error_naming_the_option(option: str, value: object) -> None:
    with pytest.raises(GenlabError, match=f"data.{option}"):
        DigitsDataModule(**{option: value})


def test_properties_known_before_setup() -> None:
    dm = MNISTDataModule(root="/nonexistent", channels=3, resolution=64)
    assert (dm.name, dm.channels, dm.resolution, dm.num_classes) == ("mnist", 3, 64, 10)
    assert CIFAR10DataModule(root="/nonexistent").channels == 3
    assert dm.hparams["resolution"] == 64 and dm.hparams["fit"] == "pad"


# --- digits ---------------------------------------------------------------------------------------


def test_digits_batches_shapes_range_and_labels() -> None:
    dm = DigitsDataModule(batch_size=32)
    assert (dm.channels, dm.resolution, dm.num_classes) == (1, 16, 10)
    dm.setup("fit")
    assert len(dm.train_dataset) + len(dm.val_dataset) == 1797
    assert len(dm.val_dataset) == 180  # round(1797 * 0.1)
    images, labels = next(iter(dm.train_dataloader()))
    assert images.shape == (32, 1, 16, 16) and images.dtype == torch.float32
    assert labels.shape == (32,) and labels.dtype == torch.int64
    val_images, val_labels = all_items(dm.val_dataloader())
    assert val_images.shape == (180, 1, 16, 16)
    assert -1.0 <= val_images.min() < -0.9 and 0.9 < val_images.max() <= 1.0
    assert set(val_labels.tolist()) <= set(range(10)) and len(set(val_labels.tolist())) == 10


def test_digits_train_loader_drops_partial_batch_only_when_a_full_one_exists() -> None:
    dm = DigitsDataModule(batch_size=100)
    dm.setup()
    assert len(dm.train_dataloader()) == len(dm.train_dataset) // 100
    big = DigitsDataModule(batch_size=5000)
    big.setup()
    assert len(big.train_dataloader()) == 1  # smaller than one batch: keep the partial batch


def test_digits_split_reproducible_for_a_seed_and_different_across_seeds() -> None:
    def val_labels(seed: int) -> Tensor:
        dm = DigitsDataModule(seed=seed)
        dm.setup()
        return all_items(dm.val_dataloader())[1]

    torch.manual_seed(123)  # the split must not depend on the global RNG
    first = val_labels(0)
    torch.manual_seed(456)
    assert torch.equal(first, val_labels(0))
    assert not torch.equal(first, val_labels(1))


def test_digits_resolution_override_and_pad() -> None:
    dm = DigitsDataModule(resolution=32, channels=3)
    dm.setup()
    image, _ = dm.val_dataset[0]
    assert image.shape == (3, 32, 32)
    assert torch.equal(image[0], image[2])  # gray repeated into RGB

    padded = DigitsDataModule(fit="pad")
    padded.setup()
    image, _ = padded.val_dataset[0]
    assert image.shape == (1, 16, 16)
    assert (image[:, :4] == -1).all() and (image[:, -4:] == -1).all()  # 8 -> 16: 4 black rows each side


def test_digits_hflip_only_in_training() -> None:
    plain = DigitsDataModule()
    plain.setup()
    flipping = DigitsDataModule(hflip=True)
    flipping.setup()
    reference, _ = plain.train_dataset[0]
    assert not torch.equal(reference, reference.flip(-1))
    torch.manual_seed(0)
    draws = [flipping.train_dataset[0][0] for _ in range(40)]
    assert any(torch.equal(d, reference) for d in draws)
    assert any(torch.equal(d, reference.flip(-1)) for d in draws)
    for i in range(20):
        assert torch.equal(flipping.val_dataset[i][0], plain.val_dataset[i][0])


# --- MNIST and friends ----------------------------------------------------------------------------


@pytest.mark.skipif(not MNIST_RAW.is_dir(), reason=f"real MNIST not present at {MNIST_RAW}")
def test_mnist_padded_batches_and_official_test_split_for_val() -> None:
    dm = MNISTDataModule(root=str(SHARED_DATA), batch_size=16)
    assert dm.fit == "pad" and dm.resolution == 32
    dm.prepare_data()
    dm.setup("fit")
    assert len(dm.train_dataset) == 60_000 and len(dm.val_dataset) == 10_000
    images, labels = next(iter(dm.train_dataloader()))
    assert images.shape == (16, 1, 32, 32) and images.dtype == torch.float32
    assert labels.dtype == torch.int64 and ((labels >= 0) & (labels <= 9)).all()
    assert images.min() >= -1.0 and images.max() <= 1.0 and images.max() > 0.9
    border = torch.ones(32, 32, dtype=torch.bool)
    border[2:30, 2:30] = False
    assert (images[:, :, border] == -1).all()
    # Padding must keep the 28×28 digit unresampled: compare with the raw test image.
    raw = dm.val_dataset.images[0, 0].float() / 255 * 2 - 1
    image, label = dm.val_dataset[0]
    assert torch.allclose(image[0, 2:30, 2:30], raw, atol=1e-6)
    assert label.item() == 7  # the first MNIST test digit


def test_mnist_missing_root_names_the_expected_folder(tmp_path: Path) -> None:
    dm = MNISTDataModule(root=str(tmp_path))
    expected = str(tmp_path / "MNIST" / "raw")
    with pytest.raises(GenlabError, match="data.download=true") as err:
        dm.setup()
    assert expected in str(err.value) and "data.root=" in str(err.value)
    with pytest.raises(GenlabError, match="not found"):
        dm.prepare_data()


def test_cifar_and_fashion_missing_folders_are_named(tmp_path: Path) -> None:
    with pytest.raises(GenlabError) as err:
        CIFAR10DataModule(root=str(tmp_path)).setup()
    assert str(tmp_path / "cifar-10-batches-py") in str(err.value)
    with pytest.raises(GenlabError) as err:
        FashionMNISTDataModule(root=str(tmp_path)).setup()
    assert str(tmp_path / "FashionMNIST" / "raw") in str(err.value)


def test_failed_download_says_where_to_put_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(self: object) -> None:
        raise URLError("no network")

    monkeypatch.setattr(MNISTDataModule.dataset_cls, "download", offline)
    dm = MNISTDataModule(root=str(tmp_path), download=True)
    with pytest.raises(GenlabError, match="downloading mnist .* failed") as err:
        dm.prepare_data()
    assert str(tmp_path / "MNIST" / "raw") in str(err.value) and "by hand" in str(err.value)


def test_pad_smaller_than_native_size_is_rejected() -> None:
    with pytest.raises(GenlabError, match="data.fit=resize"):
        MNISTDataModule(resolution=16)
    assert MNISTDataModule(resolution=16, fit="resize").resolution == 16


# --- image folders --------------------------------------------------------------------------------


def save(path: Path, array: np.ndarray) -> None:
    """Write a uint8 H×W or H×W×3 array as an image file, creating folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def three_bands(height: int = 4) -> np.ndarray:
    """A 12-wide RGB image: red left third, green middle third, blue right third."""
    array = np.zeros((height, 12, 3), dtype=np.uint8)
    array[:, :4, 0] = array[:, 4:8, 1] = array[:, 8:, 2] = 255
    return array


@pytest.fixture
def class_folder(tmp_path: Path) -> Path:
    """cats/ holds 3 RGB pngs, dogs/ 2 grayscale (one jpg, one in a nested folder)."""
    root = tmp_path / "pets"
    for i in range(3):
        save(root / "cats" / f"c{i}.png", three_bands())
    save(root / "dogs" / "d0.JPG", np.full((10, 10), 200, dtype=np.uint8))
    save(root / "dogs" / "more" / "d1.bmp", np.full((6, 9), 30, dtype=np.uint8))
    (root / "dogs" / "notes.txt").write_text("not an image")
    return root


def test_image_folder_classes_labels_and_shapes(class_folder: Path) -> None:
    dm = ImageFolderDataModule(root=str(class_folder), resolution=8, batch_size=2, val_fraction=0.2)
    assert (dm.num_classes, dm.channels, dm.class_names) == (2, 3, ["cats", "dogs"])
    dm.setup()
    assert (len(dm.train_dataset), len(dm.val_dataset)) == (4, 1)
    images, labels = all_items(DataLoader(torch.utils.data.ConcatDataset([dm.train_dataset, dm.val_dataset])))
    assert images.shape == (5, 3, 8, 8) and images.dtype == torch.float32
    assert sorted(labels.tolist()) == [0, 0, 0, 1, 1] and labels.dtype == torch.int64
    assert images.min() >= -1.0 and images.max() <= 1.0
    gray = images[labels == 1]
    assert torch.equal(gray[:, 0], gray[:, 1]) and torch.equal(gray[:, 1], gray[:, 2])
    # center_crop keeps only the green middle of the 4×12 cat images.
    cats = images[labels == 0]
    assert torch.allclose(cats[:, 1], torch.ones_like(cats[:, 1]))
    assert torch.allclose(cats[:, [0, 2]], -torch.ones_like(cats[:, [0, 2]]))
    train_images, _ = next(iter(dm.train_dataloader()))
    assert train_images.shape == (2, 3, 8, 8)


def test_image_folder_grayscale_and_fit_modes(class_folder: Path) -> None:
    gray = ImageFolderDataModule(root=str(class_folder), resolution=8, channels=1, fit="resize")
    gray.setup()
    image, _ = gray.train_dataset[0]
    assert image.shape == (1, 8, 8)

    padded = ImageFolderDataModule(root=str(class_folder), resolution=16, fit="pad", val_fraction=0.2)
    padded.setup()
    images, labels = all_items(DataLoader(padded.train_dataset, batch_size=8))
    cat = images[labels == 0][0]
    assert (cat[:, :6] == -1).all() and (cat[:, 10:] == -1).all()  # 4 rows centred in 16
    assert cat[1, 6:10, 6:10].eq(1).all()  # the green band stays unresampled

    too_small = ImageFolderDataModule(root=str(class_folder), resolution=4, fit="pad")
    too_small.setup()
    with pytest.raises(GenlabError, match="data.fit=pad"):
        too_small.train_dataset[0]


def test_flat_image_folder_is_unlabelled(tmp_path: Path) -> None:
    for i in range(4):
        save(tmp_path / f"img{i}.png", three_bands(height=12))
    dm = ImageFolderDataModule(root=str(tmp_path), resolution=6, val_fraction=0.25)
    assert dm.num_classes is None
    dm.setup()
    images, labels = all_items(dm.train_dataloader())
    assert images.shape == (3, 3, 6, 6)
    assert (labels == -1).all() and labels.dtype == torch.int64


def test_image_folder_hflip_only_in_training(tmp_path: Path) -> None:
    for i in range(2):
        save(tmp_path / f"img{i}.png", three_bands(height=12))  # red left, blue right: not symmetric
    dm = ImageFolderDataModule(root=str(tmp_path), resolution=12, fit="resize", hflip=True, val_fraction=0.5)
    dm.setup()
    torch.manual_seed(0)
    val_draws = [dm.val_dataset[0][0] for _ in range(20)]
    assert all(torch.equal(d, val_draws[0]) for d in val_draws)
    train_draws = [dm.train_dataset[0][0] for _ in range(40)]
    assert any(torch.equal(d, val_draws[0]) for d in train_draws)
    assert any(torch.equal(d, val_draws[0].flip(-1)) for d in train_draws)


def test_image_folder_errors_name_the_problem(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(GenlabError, match="does not exist") as err:
        ImageFolderDataModule(root=str(missing), resolution=8)
    assert str(missing) in str(err.value)

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(GenlabError, match="no images found"):
        ImageFolderDataModule(root=str(empty), resolution=8)

    classes = tmp_path / "classes"
    save(classes / "a" / "x.png", three_bands())
    (classes / "b_empty").mkdir()
    with pytest.raises(GenlabError, match="b_empty"):
        ImageFolderDataModule(root=str(classes), resolution=8)


def test_unreadable_image_is_named_before_training(tmp_path: Path) -> None:
    (tmp_path / "x.png").write_bytes(b"this is not a png")
    save(tmp_path / "y.png", three_bands())
    with pytest.raises(GenlabError, match=r"1 image\(s\) cannot be read: .*x.png"):
        ImageFolderDataModule(root=str(tmp_path), resolution=8)


@pytest.mark.parametrize("num_workers", [0, 1])
def test_image_broken_after_the_scan_names_the_file(tmp_path: Path, num_workers: int) -> None:
    save(tmp_path / "x.png", three_bands())
    save(tmp_path / "y.png", three_bands())
    dm = ImageFolderDataModule(root=str(tmp_path), resolution=8, num_workers=num_workers, val_fraction=0.5)
    dm.setup()
    (tmp_path / "x.png").write_bytes(b"this is not a png")  # damaged while the run goes on
    loaders = [dm.train_dataloader(), dm.val_dataloader()]
    # One of the two splits holds x.png; reading it must fail with a GenlabError that names it,
    # also when the error crosses from a worker process.
    with pytest.raises(GenlabError, match="x.png"):
        for loader in loaders:
            list(loader)


def test_mixed_channel_counts_are_converted_with_a_warning(class_folder: Path) -> None:
    with pytest.warns(UserWarning, match=r"mixes channel counts \(2 with 1 channel, 3 with 3 channels\)"):
        dm = ImageFolderDataModule(root=str(class_folder), resolution=8)
    dm.setup()
    assert {dm.train_dataset[i][0].shape[0] for i in range(len(dm.train_dataset))} == {3}
