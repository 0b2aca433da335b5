"""CelebA: the torchvision folder layout, official splits, DDIM's face box, lazy files and the missing-files error."""

from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image

from genlab.data import DATAMODULES, CelebADataModule
from genlab.data.celeba import FACE_BOX, read_partition
from genlab.data.image_folder import ImageFileDataset
from genlab.errors import GenlabError

# 3 train, 1 valid, 2 test: the codes of list_eval_partition.txt.
PARTITION = {"000001.jpg": 0, "000002.jpg": 0, "000003.jpg": 0, "000004.jpg": 1, "000005.jpg": 2, "000006.jpg": 2}


def fake_celeba(root: Path) -> Path:
    """root/celeba/ with 178×218 JPEGs: red outside DDIM's face box, green inside; and the partition file."""
    folder = root / "celeba"
    (folder / "img_align_celeba").mkdir(parents=True)
    top, left, side = FACE_BOX
    for name in PARTITION:
        array = np.zeros((218, 178, 3), dtype=np.uint8)
        array[..., 0] = 255
        array[top : top + side, left : left + side] = (0, 255, 0)
        Image.fromarray(array).save(folder / "img_align_celeba" / name, quality=95)
    lines = [f"{name} {code}" for name, code in PARTITION.items()]
    (folder / "list_eval_partition.txt").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture
def celeba_root(tmp_path: Path) -> Path:
    return fake_celeba(tmp_path / "data")


def test_registered_unconditional_rgb_64() -> None:
    assert DATAMODULES["celeba"] is CelebADataModule
    dm = CelebADataModule(root="/nonexistent")
    assert (dm.channels, dm.resolution, dm.num_classes) == (3, 64, None)


def test_official_splits_shapes_range_and_face_crop(celeba_root: Path) -> None:
    dm = CelebADataModule(root=str(celeba_root), batch_size=2)
    dm.setup("fit")
    assert (len(dm.train_dataset), len(dm.val_dataset)) == (3, 2)  # train split; test split validates
    assert isinstance(dm.train_dataset, ImageFileDataset)  # files on disk, decoded per item
    assert [p.name for p in dm.val_dataset.files] == ["000005.jpg", "000006.jpg"]
    images, labels = next(iter(dm.train_dataloader()))
    assert images.shape == (2, 3, 64, 64) and images.dtype == torch.float32
    assert (labels == -1).all() and labels.dtype == torch.int64
    assert images.min() >= -1.0 and images.max() <= 1.0
    # Only the green face box survives the crop (JPEG: approximately).
    assert images[:, 1].mean() > 0.95 and images[:, [0, 2]].mean() < -0.95


def test_valid_split_can_validate(celeba_root: Path) -> None:
    dm = CelebADataModule(root=str(celeba_root), val_split="valid")
    dm.setup()
    assert [p.name for p in dm.val_dataset.files] == ["000004.jpg"]
    with pytest.raises(GenlabError, match="'valid' or 'test'"):
        CelebADataModule(root=str(celeba_root), val_split="train")


def test_other_image_sizes_point_to_image_folder(celeba_root: Path) -> None:
    Image.new("RGB", (64, 64)).save(celeba_root / "celeba" / "img_align_celeba" / "000001.jpg")
    dm = CelebADataModule(root=str(celeba_root))
    dm.setup()
    with pytest.raises(GenlabError, match="data=image_folder"):
        dm.train_dataset[0]


def test_missing_files_name_the_folder_and_the_alternative(tmp_path: Path) -> None:
    dm = CelebADataModule(root=str(tmp_path))
    with pytest.raises(GenlabError) as err:
        dm.check_available()
    message = str(err.value)
    assert str(tmp_path / "celeba") in message
    assert "img_align_celeba/" in message and "list_eval_partition.txt" in message
    assert "data.root=" in message and "data=image_folder" in message
    with pytest.raises(GenlabError, match="not found"):
        dm.setup()


def test_failed_download_says_where_to_put_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def over_quota(self: object) -> None:
        raise RuntimeError("Too many users have viewed or downloaded this file recently")

    monkeypatch.setattr("torchvision.datasets.CelebA.download", over_quota)
    dm = CelebADataModule(root=str(tmp_path), download=True)
    dm.check_available()  # nothing to check yet: prepare_data downloads
    with pytest.raises(GenlabError, match="downloading celeba .* failed") as err:
        dm.prepare_data()
    assert str(tmp_path / "celeba") in str(err.value) and "by hand" in str(err.value)


def test_bad_partition_line_is_named(tmp_path: Path) -> None:
    path = tmp_path / "list_eval_partition.txt"
    path.write_text("000001.jpg 0\n000002.jpg x\n")
    with pytest.raises(GenlabError, match="line 2"):
        read_partition(path)


def test_ddpm_celeba64_trains_two_steps_on_the_fake_folder(celeba_root: Path, tmp_path: Path) -> None:
    from genlab.cli import main

    tiny = ["unet.base_channels=8", "unet.channel_mult=[1,2]", "unet.num_res_blocks=1", "unet.attention_resolutions=[8]",
            "data.resolution=16", "data.batch_size=2", "data.num_workers=0", "diffusion.timesteps=20",
            "trainer.accelerator=cpu", "trainer.max_steps=2", "trainer.val_every_n_steps=2",
            "trainer.limit_val_batches=1", "trainer.enable_progress_bar=false", "callbacks.checkpoint.every_n_steps=2",
            "callbacks.sample_grid.num_images=2", "sampler.steps=2", "eval.enabled=false"]
    run = tmp_path / "run"
    assert main(["train", "experiment=ddpm_celeba64", f"data.root={celeba_root}", *tiny, f"run_dir={run}"]) == 0
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["global_step"] == 2
    saved = OmegaConf.load(run / "config.yaml")
    assert (saved.data.name, saved.data.channels, saved.data.num_classes) == ("celeba", 3, None)
