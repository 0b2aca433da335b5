"""MNIST at its native 28x28: the U-Net's levels 28 -> 14 -> 7 need no padding to 32."""

from __future__ import annotations

import pytest
import torch

from conftest import SHARED_DATA
from genlab.build import build_datamodule, build_unet
from genlab.config import load_config
from genlab.errors import GenlabError


def mnist28_config(**extra: str):  # noqa: ANN201
    return load_config({"experiment": "ddpm_mnist", "data": "mnist28", "unet": "mnist28", "data.channels": "1",
                        "unet.base_channels": "8", **extra})


def test_the_unet_runs_at_28_by_28_and_keeps_the_shape() -> None:
    cfg = mnist28_config()
    unet = build_unet(cfg)
    assert [r for r in (28, 14, 7)] == [28 // 2**i for i in range(len(cfg.unet.channel_mult))]
    x = torch.randn(3, 1, 28, 28)
    assert unet(x, torch.tensor([0, 500, 999])).shape == (3, 1, 28, 28)


def test_levels_that_28_cannot_halve_to_are_refused_when_the_model_is_built() -> None:
    with pytest.raises(GenlabError, match="28x28 data.*divisible by 2\\*\\*\\(len\\(channel_mult\\)-1\\)=8"):
        build_unet(mnist28_config(**{"unet.channel_mult": "[1,2,2,2]"}))


@pytest.mark.skipif(not (SHARED_DATA / "MNIST" / "raw" / "train-images-idx3-ubyte").is_file(),
                    reason="real MNIST not at ../shared/data/MNIST/raw/")
def test_mnist28_batches_are_the_unpadded_digits() -> None:
    cfg = mnist28_config(**{"data.root": str(SHARED_DATA), "data.batch_size": "4"})
    dm = build_datamodule(cfg)
    dm.setup("fit")
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (4, 1, 28, 28) and x.min() >= -1 and x.max() <= 1
    assert (x[:, :, 0, :] == -1).all()  # MNIST's own blank border, not added padding
