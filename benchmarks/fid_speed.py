"""Section 4 of issue 9: FID feature extraction throughput of the Inception and the domain extractors."""

from __future__ import annotations

import contextlib
import io
import tempfile
from pathlib import Path
from unittest import mock

import torch

from bench_config import Bench
from report import Section
from timing import interleaved
from genlab.cli import main as genlab_main
from genlab.metrics.extractors import FeatureSettings, create_extractor, extractor_spec


def random_inception(path: Path) -> Path:
    """torch-fidelity's InceptionV3 with random weights (the real file may be offline): the same work per image."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    # Its constructor always loads weights: hand it an empty dict and skip the strict load.
    with mock.patch("torch_fidelity.feature_extractor_inceptionv3.load_state_dict_from_url", lambda *a, **k: {}), \
            mock.patch.object(FeatureExtractorInceptionV3, "load_state_dict", lambda *a, **k: None):
        torch.manual_seed(0)
        net = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])
    torch.save(net.state_dict(), path)
    return path


def tiny_classifier(folder: Path) -> Path:
    """A genlab classifier checkpoint of experiment=classifier_digits after two steps (its full size)."""
    args = ["train", "experiment=classifier_digits", f"run_dir={folder}", "trainer.max_steps=2",
            "trainer.val_every_n_steps=2", "trainer.limit_val_batches=1", "trainer.enable_progress_bar=false",
            "callbacks.checkpoint.every_n_steps=2", "callbacks.loss_curve=false"]
    with contextlib.redirect_stdout(io.StringIO()):
        if genlab_main(args) != 0:
            raise RuntimeError("training the stand-in domain classifier failed")
    return folder / "checkpoints" / "last.ckpt"


# The classifier that `make train`'s sibling run leaves behind; its size is what a real domain FID pays for.
TRAINED_CLASSIFIER = Path(__file__).resolve().parents[1] / "runs/classifier_digits/main/checkpoints/last.ckpt"


def run(b: Bench, domain_classifier: str | None) -> Section:
    section = Section("4. FID feature extraction throughput")
    if domain_classifier is None and TRAINED_CLASSIFIER.is_file():
        domain_classifier = str(TRAINED_CLASSIFIER)
    with tempfile.TemporaryDirectory() as tmp:
        inception = random_inception(Path(tmp) / "inception.pth")
        classifier = Path(domain_classifier) if domain_classifier else tiny_classifier(Path(tmp) / "classifier")
        batches = {"inception": 4 if b.quick else 32, "domain": 64 if b.quick else 500}
        specs = {"inception": extractor_spec(FeatureSettings("inception", inception_weights=str(inception))),
                 "domain": extractor_spec(FeatureSettings("domain", domain_classifier=str(classifier)))}
        g = torch.Generator().manual_seed(0)
        calls = {}
        for name, spec in specs.items():
            extractor = create_extractor(spec, b.device).eval()
            size = 32 if name == "inception" else 16  # CIFAR-like images are resized to 299 inside Inception
            images = torch.randint(0, 256, (batches[name], 3, size, size), generator=g, dtype=torch.uint8).to(b.device)

            def call(extractor=extractor, images=images):  # noqa: ANN001, ANN202
                with torch.no_grad():
                    return extractor(images)

            calls[name] = call
        timings = interleaved(calls, b.rounds, 1, b.device)
    section.lines += [f"uint8 images through torch-fidelity's extractors on {b.device}, medians of {b.rounds} "
                      "interleaved rounds. Inception: InceptionV3 (inception-v3-compat, random weights of the same "
                      "shapes), 32x32 inputs resized to 299x299 inside. Domain: the experiment=classifier_digits "
                      f"encoder at 16x16 ({domain_classifier or 'a 2-step stand-in of the same size'}).", ""]
    section.table(["extractor", "batch", "images/s"],
                  [[k, batches[k], f"{t.rate(batches[k]):.1f}"] for k, t in timings.items()])
    return section
