"""`genlab eval samples=DIR data=NAME`: a folder of images from anywhere, scored against a genlab split."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import SHARED_DATA, TINY
from genlab.build import build_datamodule, resolve_data_keys
from genlab.cli import main
from genlab.commands.eval_folder import split_config
from genlab.config import load_config
from genlab.metrics.reference import split_images


@pytest.fixture(scope="module")
def classifier(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("clf") / "run"
    assert main(["train", "experiment=classifier_digits", *TINY, f"run_dir={run}"]) == 0
    return run / "checkpoints" / "last.ckpt"


def write_folder(folder: Path, images: torch.Tensor, size: int | None = None) -> None:
    folder.mkdir(parents=True)
    for i, x in enumerate(images):  # [3, H, W] uint8 extractor input: keep one channel
        img = Image.fromarray(x[0].numpy())
        (img.resize((size, size), Image.BILINEAR) if size else img).save(folder / f"{i:04d}.png")


def score(folder: Path, classifier: Path, tmp: Path, name: str) -> dict:
    assert main(["eval", f"samples={folder}", "data=digits", "features=domain", f"domain_classifier={classifier}",
                 f"cache_dir={tmp / 'cache'}", f"out={tmp / name}.json"]) == 0
    return json.loads((tmp / f"{name}.json").read_text())


def test_real_test_images_score_near_zero_and_noise_far(classifier: Path, tmp_path: Path) -> None:
    cfg = load_config({"data": "digits"})
    resolve_data_keys(cfg, build_datamodule(cfg))
    real = split_images(cfg, "test")  # [N, 3, 16, 16] uint8
    write_folder(tmp_path / "real", real)
    noise = torch.from_numpy(np.random.default_rng(0).integers(0, 256, real.shape, dtype=np.uint8))
    write_folder(tmp_path / "noise", noise)
    same, other = score(tmp_path / "real", classifier, tmp_path, "real"), score(tmp_path / "noise", classifier,
                                                                                tmp_path, "noise")
    assert same["metrics"]["fid_domain"] < 1e-3 * other["metrics"]["fid_domain"]
    assert same["samples"]["resized_to"] is None and same["reference"]["dataset"] == "digits"
    assert same["reference"]["key"] == other["reference"]["key"]  # one cached reference for both


def test_other_sizes_are_resized_and_the_json_says_so(classifier: Path, tmp_path: Path) -> None:
    cfg = load_config({"data": "digits"})
    resolve_data_keys(cfg, build_datamodule(cfg))
    write_folder(tmp_path / "big", split_images(cfg, "test")[:40], size=32)
    result = score(tmp_path / "big", classifier, tmp_path, "big")
    assert result["samples"]["resized_to"] == [16, 16] and result["samples"]["sizes_found"] == [[32, 32]]
    assert result["n"] == 40


def test_folder_scoring_needs_a_dataset_and_one_source(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["eval", f"samples={tmp_path}"]) == 2
    assert "needs the dataset to compare with: data=NAME" in capsys.readouterr().err
    assert main(["eval", f"samples={tmp_path}", "ckpt=x.ckpt"]) == 2
    assert "not both" in capsys.readouterr().err


@pytest.mark.skipif(not (SHARED_DATA / "MNIST" / "raw" / "train-images-idx3-ubyte").is_file(),
                    reason="real MNIST not at ../shared/data/MNIST/raw/")
def test_a_split_at_any_resolution_is_not_refused_for_the_default_networks_layout() -> None:
    """data=mnist28 with the default experiment's U-Net (attention at 8x8, which 28 px never reaches): the split's
    config is about the data only (benchmarks/time_to_quality.py and families.py score their samples this way)."""
    cfg = split_config({"data": "mnist28", "data.root": str(SHARED_DATA)})
    assert (cfg.data.resolution, cfg.data.channels) == (28, 1)
