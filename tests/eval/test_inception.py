"""Inception features for small grayscale images, weights resolution offline, and agreement with torch-fidelity.

A random-weights Inception (BatchNorm-calibrated so its features are O(1)) stands in for the real weights,
which cannot be downloaded here; only a handful of images go through it (about 6 images/s on 2 cores).
"""

from __future__ import annotations

import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
import torch_fidelity
from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
from torchmetrics.image.fid import NoTrainInceptionV3

import genlab.metrics.inception as inception
import genlab.metrics.weights as weights_module
from genlab.images import save_png
from genlab.errors import GenlabError
from genlab.metrics.fidelity import isc_note
from genlab.metrics.extractors import FeatureLayer, FeatureSettings, create_extractor, extractor_spec
from genlab.metrics.fid import make_fid, set_reference
from genlab.metrics.images import from_extractor_uint8, to_extractor_uint8
from genlab.metrics.inception_clean import clean_resize


@pytest.fixture(scope="module")
def random_inception(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A state_dict of torch-fidelity's InceptionV3 with random weights and calibrated BatchNorm statistics."""
    mp = pytest.MonkeyPatch()
    # The constructor always loads weights: hand it an empty dict once and skip the strict load.
    mp.setattr("torch_fidelity.feature_extractor_inceptionv3.load_state_dict_from_url", lambda *a, **k: {})
    mp.setattr(FeatureExtractorInceptionV3, "load_state_dict", lambda self, state, *a, **k: None)
    torch.manual_seed(0)
    net = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])
    mp.undo()
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None  # cumulative average: one batch sets the statistics exactly
    net.train()
    with torch.no_grad():
        net(torch.randint(0, 256, (4, 3, 299, 299), dtype=torch.uint8))
    path = tmp_path_factory.mktemp("inception") / "random-inception.pth"
    torch.save(net.eval().state_dict(), path)
    return path


def digit_like(n: int, seed: int) -> torch.Tensor:
    """n gray 16 x 16 images in [-1, 1]: a bright blob on black, at random places."""
    g = torch.Generator().manual_seed(seed)
    images = -torch.ones(n, 1, 16, 16)
    for i in range(n):
        r, c = torch.randint(2, 10, (2,), generator=g).tolist()
        images[i, :, r : r + 5, c : c + 4] = torch.rand(1, 5, 4, generator=g) * 2 - 1
    return images


def test_grayscale_images_are_rounded_and_repeated_to_three_channels() -> None:
    x = torch.tensor([-1.0, -0.2, 0.0039, 1.0]).view(1, 1, 2, 2)  # 0.0039 -> 127.997 -> 128 (not 127)
    u = to_extractor_uint8(x)
    assert u.dtype == torch.uint8 and u.shape == (1, 3, 2, 2)
    assert u[0, :, 1, 0].tolist() == [128, 128, 128]
    assert u[0, 0, 0, 1] == 102  # (1 - 0.2) * 127.5 = 102.0
    assert torch.equal(u[:, 0], u[:, 1]) and torch.equal(u[:, 1], u[:, 2])
    assert torch.allclose(from_extractor_uint8(u, channels=1), x, atol=1 / 127.5)


def test_local_inception_file_gives_torch_fidelity_features_and_torchmetrics_needs_no_antialias(
    random_inception: Path,
) -> None:
    images = to_extractor_uint8(digit_like(2, seed=0))  # 16 x 16 gray, resized to 299 inside the network
    spec = extractor_spec(FeatureSettings("inception", str(random_inception)))
    assert spec.fid_layer == "2048" and len(spec.weights_sha256) == 64
    ours = FeatureLayer(create_extractor(spec), spec.fid_layer)(images)  # what the FID callback feeds torchmetrics
    assert ours.shape == (2, 2048) and ours.abs().mean() > 0.01  # calibrated: features are not vanishingly small
    builtin = NoTrainInceptionV3("inception-v3-compat", ["2048"], str(random_inception), antialias=False)
    plain = builtin(images)
    builtin.use_antialias = True  # torchmetrics' default
    antialiased = builtin(images)
    assert torch.allclose(plain, ours, rtol=1e-4, atol=1e-5)
    assert (antialiased - ours).abs().max() > 100 * (plain - ours).abs().max() + 1e-4


@pytest.mark.slow  # two 2048 x 2048 eigendecompositions: about a minute on a busy 2-core CPU
def test_fid_with_a_local_inception_file_equals_torch_fidelity(random_inception: Path, tmp_path: Path) -> None:
    a, b = digit_like(3, seed=1), digit_like(3, seed=2)
    for name, images in (("a", a), ("b", b)):
        for i, image in enumerate(to_extractor_uint8(images)[:, :1]):
            save_png(image, tmp_path / name / f"{i}.png")  # grayscale PNGs, as `genlab eval` writes them
    spec = extractor_spec(FeatureSettings("inception", str(random_inception)))
    extractor = create_extractor(spec)
    metric = make_fid(FeatureLayer(extractor, spec.fid_layer))
    set_reference(metric, extractor(to_extractor_uint8(b))[0])
    metric.update(to_extractor_uint8(a), real=False)
    expected = torch_fidelity.calculate_metrics(
        input1=str(tmp_path / "a"), input2=str(tmp_path / "b"), fid=True, cuda=False, verbose=False, save_cpu_ram=True,
        feature_extractor="inception-v3-compat", feature_extractor_weights_path=str(random_inception),
    )["frechet_inception_distance"]
    assert float(metric.compute()) == pytest.approx(expected, rel=1e-3)
    assert expected > 0


def test_pool3_only_weights_flag_the_inception_score(random_inception: Path, tmp_path: Path) -> None:
    assert isc_note(extractor_spec(FeatureSettings("inception", str(random_inception))))[0]
    state = torch.load(random_inception, weights_only=True)
    state["fc.weight"].zero_()
    state["fc.bias"].zero_()
    torch.save(state, tmp_path / "pool3.pth")
    valid, note = isc_note(extractor_spec(FeatureSettings("inception", str(tmp_path / "pool3.pth"))))
    assert not valid and "pool3" in note


def test_missing_weights_offline_give_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    def offline(url: str, path: Path) -> None:
        raise urllib.error.URLError("no network (test)")

    monkeypatch.setattr(weights_module, "download", offline)
    with pytest.raises(GenlabError) as err:
        extractor_spec(FeatureSettings("inception"))
    message = str(err.value)
    assert str(tmp_path / "torch" / "hub" / "checkpoints" / inception.HUB_FILE_NAME) in message
    assert "eval.inception_weights=PATH" in message and "no network" in message
    with pytest.raises(GenlabError, match="no such file"):
        extractor_spec(FeatureSettings("inception", str(tmp_path / "missing.pth")))


def test_the_hub_cache_file_is_used_without_a_download(random_inception: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    target = tmp_path / "hub" / "checkpoints" / inception.HUB_FILE_NAME
    target.parent.mkdir(parents=True)
    target.symlink_to(random_inception)
    monkeypatch.setattr(weights_module, "download", lambda *a: pytest.fail("must not download"))
    assert extractor_spec(FeatureSettings("inception")).weights_path == target


def test_clean_protocol_resizes_as_clean_fid() -> None:
    """clean_resize is clean-fid's own resizer for its "clean" mode: PIL bicubic per channel in float32, clipped."""
    resize = pytest.importorskip("cleanfid.resize", reason="the test extra installs clean-fid, the reference")
    images = to_extractor_uint8(digit_like(2, seed=3))  # [2, 3, 16, 16] uint8
    theirs = resize.make_resizer("PIL", False, "bicubic", (299, 299))
    for ours, image in zip(clean_resize(images), images):
        expected = theirs(image.permute(1, 2, 0).numpy())  # [299, 299, 3] float32
        assert np.array_equal(ours.permute(1, 2, 0).numpy(), expected)


def test_clean_protocol_runs_torch_fidelitys_inception_after_its_resize(random_inception: Path) -> None:
    """At 299 x 299 both resizes are the identity: the clean extractor then gives torch-fidelity's features exactly;
    at 16 x 16 they differ, which is the point of the protocol."""
    spec = extractor_spec(FeatureSettings("inception", str(random_inception), protocol="clean"))
    assert spec.name == "genlab-inception-clean" and spec.cache_tag == "inception-clean"
    clean = create_extractor(spec)
    plain = create_extractor(extractor_spec(FeatureSettings("inception", str(random_inception))))
    big = torch.randint(0, 256, (2, 3, 299, 299), dtype=torch.uint8)
    for a, b in zip(clean(big), plain(big)):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-5)
    small = to_extractor_uint8(digit_like(2, seed=4))
    assert (clean(small)[0] - plain(small)[0]).abs().max() > 1e-3
    with pytest.raises(GenlabError, match="protocol=clean .* needs features=inception"):
        extractor_spec(FeatureSettings("domain", domain_classifier="x.ckpt", protocol="clean"))
