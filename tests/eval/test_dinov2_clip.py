"""features=dinov2 and features=clip: FD-DINOv2, CLIP-FD and CMMD from local weights files, equal to torch-fidelity's
own computation on the same images and weights. Tiny random networks stand in for the real ones: nothing downloads.

The DINOv2 network genlab builds with timm was checked once against the facebookresearch/dinov2 hub code on random
ViT-S/14 and SwiGLU weights: the features agreed exactly (max difference 0.0); see metrics/dinov2.py.
"""

from __future__ import annotations

import json
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
import torch_fidelity
from PIL import Image
from torch import nn

import genlab.metrics.weights as weights_module
from conftest import random_dinov2
from genlab.cli import main
from genlab.commands.eval_folder import split_config
from genlab.metrics.dinov2 import build_dinov2, hub_grid_position_embedding
from genlab.metrics.feature_metrics import cmmd
from genlab.metrics.reference import SplitImages, split_images

pytest.importorskip("timm", reason="features=dinov2 builds the network with timm")


class TinyCLIP(nn.Module):
    """The keys OpenAI's CLIP archives hold that torch-fidelity reads: an image tower and the text projection."""

    def __init__(self) -> None:
        super().__init__()
        from torch_fidelity.feature_extractor_clip import VisionTransformer

        self.visual = VisionTransformer(input_resolution=28, patch_size=7, width=64, layers=2, heads=1, output_dim=32)
        self.text_projection = nn.Parameter(torch.randn(16, 32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.visual(x)


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("weights")
    torch.manual_seed(0)
    clip = folder / "tiny-clip.pt"
    with pytest.warns(FutureWarning):  # torch.jit is deprecated; OpenAI's CLIP files are TorchScript archives
        torch.jit.trace(TinyCLIP().eval(), torch.randn(1, 3, 28, 28)).save(str(clip))
    return {"dinov2": random_dinov2(folder / "dinov2_a.pth", 0), "dinov2_b": random_dinov2(folder / "dinov2_b.pth", 1),
            "clip": clip}


@pytest.fixture(scope="module")
def samples(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """60 digits-sized PNGs: test digits with noise, so that they differ from the reference split."""
    folder = tmp_path_factory.mktemp("samples")
    real = split_images(split_config({"data": "digits"}), "test")[:60, 0].numpy()
    noisy = np.clip(real.astype(int) + np.random.default_rng(0).integers(-60, 60, real.shape), 0, 255)
    for i, x in enumerate(noisy.astype(np.uint8)):
        Image.fromarray(x).save(folder / f"{i:03d}.png")
    return folder


def run_eval(samples: Path, tmp: Path, name: str, *extra: str) -> dict:
    out = tmp / f"{name}.json"
    assert main(["eval", f"samples={samples}", "data=digits", f"cache_dir={tmp / 'cache'}", f"out={out}",
                 *extra]) == 0
    return json.loads(out.read_text())


def torch_fidelity_metrics(scored: Path, extractor: str, weights: Path | None) -> dict:
    """torch-fidelity's own calculate_metrics on the same PNGs and the same split."""
    return torch_fidelity.calculate_metrics(
        input1=str(scored), input2=SplitImages(split_config({"data": "digits"}), "test"), fid=True, kid=True,
        prc=True, feature_extractor=extractor, cuda=False, kid_subset_size=60, rng_seed=0, verbose=False,
        save_cpu_ram=True, **({"feature_extractor_weights_path": str(weights)} if weights else {}))


def test_fd_dinov2_equals_torch_fidelity(weights: dict[str, Path], samples: Path, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    result = run_eval(samples, tmp_path, "dino", "features=dinov2", f"feature_weights={weights['dinov2']}")
    m = result["metrics"]
    # torch-fidelity's dinov2-vit-s-14 loads its network from torch hub: hand it the same network and weights.
    hub_net = build_dinov2(torch.load(weights["dinov2"], weights_only=True))
    monkeypatch.setattr(torch.hub, "load", lambda *a, **k: hub_net)
    theirs = torch_fidelity_metrics(Path(result["samples"]["scored_dir"]), "dinov2-vit-s-14", None)
    assert m["fid_dinov2"] == pytest.approx(theirs["frechet_inception_distance"], rel=1e-4)
    assert m["kid_dinov2_mean"] == pytest.approx(theirs["kernel_inception_distance_mean"], rel=1e-4)
    assert m["precision_dinov2"] == pytest.approx(theirs["precision"], abs=1e-6)
    assert m["fid_dinov2"] > 0 and 0 <= m["coverage_dinov2"] <= 1 and m["density_dinov2"] > 0
    assert "isc_dinov2_mean" not in m and result["isc_valid"] is False  # no class logits, no Inception Score
    assert result["extractor"]["model"] == "vit-l-14"  # the default variant; the file decides the shapes
    p = result["protocol"]  # a folder of images: no sampler, seeds or EMA to record
    assert (p["features"], p["model"], p["resize"]["size"], p["samples"], p["sampler"], p["ema"]) == (
        "dinov2", "vit-l-14", 224, 60, None, None)
    assert p["weights_sha256"] == result["extractor"]["weights_sha256"]
    assert p["spread"].startswith("bootstrap over 20 resamples of the 60 images")


def test_clip_fd_and_cmmd_equal_torch_fidelity(weights: dict[str, Path], samples: Path, tmp_path: Path) -> None:
    result = run_eval(samples, tmp_path, "clip", "features=clip", f"feature_weights={weights['clip']}")
    m = result["metrics"]
    scored = Path(result["samples"]["scored_dir"])
    theirs = torch_fidelity_metrics(scored, "clip-vit-l-14-336px", weights["clip"])
    assert m["fid_clip"] == pytest.approx(theirs["frechet_inception_distance"], rel=1e-4)
    assert m["recall_clip"] == pytest.approx(theirs["recall"], abs=1e-6)
    # CMMD from torch-fidelity's own CLIP embeddings of both sets
    extractor = torch_fidelity.utils.create_feature_extractor("clip-vit-l-14-336px", ["clip"], cuda=False,
                                                               feature_extractor_weights_path=str(weights["clip"]))
    embed = [torch_fidelity.utils.extract_featuresdict_from_input_id(
        1, extractor, input1=source, cuda=False, verbose=False, save_cpu_ram=True)["clip"]
        for source in (SplitImages(split_config({"data": "digits"}), "test"), str(scored))]
    assert m["cmmd_clip"] == pytest.approx(cmmd(*embed), rel=1e-6) and m["cmmd_clip"] > 0


def test_reference_statistics_are_keyed_by_the_weights(weights: dict[str, Path], samples: Path,
                                                       tmp_path: Path) -> None:
    a = run_eval(samples, tmp_path, "a", "features=dinov2", f"feature_weights={weights['dinov2']}")
    b = run_eval(samples, tmp_path, "b", "features=dinov2", f"feature_weights={weights['dinov2_b']}")
    assert a["reference"]["key"] != b["reference"]["key"]
    assert a["extractor"]["weights_sha256"] != b["extractor"]["weights_sha256"]
    assert a["metrics"]["fid_dinov2"] != b["metrics"]["fid_dinov2"]


def test_missing_dinov2_weights_offline_exit_2_naming_the_file(samples: Path, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    def offline(url: str, path: Path) -> None:
        raise urllib.error.URLError("no network (test)")

    monkeypatch.setattr(weights_module, "download", offline)
    base = ["eval", f"samples={samples}", "data=digits", f"out={tmp_path / 'x.json'}"]
    assert main([*base, "features=dinov2"]) == 2
    err = capsys.readouterr().err
    assert "dinov2_vitl14_pretrain.pth" in err and "feature_weights=PATH" in err and "Traceback" not in err
    assert main([*base, "features=dinov2", "feature_model=vit-h-14"]) == 2
    assert "vit-s-14, vit-b-14, vit-l-14, vit-g-14" in capsys.readouterr().err
    assert main([*base, "features=inception", "feature_model=vit-l-14"]) == 2
    (tmp_path / "junk.pth").write_bytes(b"not torch")
    assert main([*base, "features=dinov2", f"feature_weights={tmp_path / 'junk.pth'}"]) == 2
    assert "cannot read the DINOv2 weights" in capsys.readouterr().err
    assert main([*base, "features=clip", f"feature_weights={tmp_path / 'junk.pth'}"]) == 2
    assert "is not a CLIP TorchScript archive" in capsys.readouterr().err
    assert main([*base, "features=inception", f"feature_weights={tmp_path / 'none.pth'}"]) == 2
    assert "feature_weights=" in capsys.readouterr().err  # the key the user gave, not inception_weights
    assert not (tmp_path / "x.json").exists() and not (tmp_path / "x_samples").exists()


def test_the_hub_position_grid_is_resized_as_the_hub_model_does() -> None:
    """37 x 37 -> 16 x 16 with the hub's scale factor (16 + 0.1) / 37; a grid of the right size is kept as is."""
    pos = torch.randn(1, 1 + 37 * 37, 8)
    out = hub_grid_position_embedding(pos, 16)
    assert out.shape == (1, 1 + 16 * 16, 8) and torch.equal(out[:, 0], pos[:, 0])
    same = torch.randn(1, 1 + 16 * 16, 8)
    assert hub_grid_position_embedding(same, 16) is same


@pytest.mark.parametrize("features", ["dinov2", "clip"])
def test_training_logs_fd_of_the_new_features(features: str, weights: dict[str, Path], tmp_path: Path) -> None:
    """The FID callback takes any extractor: val/fid_dinov2 and val/fid_clip during a tiny run."""
    import csv

    from conftest import TINY

    run = tmp_path / "run"
    assert main(["train", "experiment=ddpm_digits", *TINY, "eval.enabled=true", f"eval.features={features}",
                 f"eval.feature_weights={weights[features]}", "eval.num_samples=12", f"eval.cache_dir={tmp_path}",
                 f"run_dir={run}"]) == 0
    with open(run / "logs" / "metrics.csv") as f:
        values = [float(r[f"val/fid_{features}"]) for r in csv.DictReader(f) if r.get(f"val/fid_{features}")]
    assert values and all(v > 0 for v in values)
