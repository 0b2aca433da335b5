"""Turn `genlab sample` arguments into labels, guidance and a class-accuracy report."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from genlab.checkpoints import load_classifier
from genlab.config import SampleArgs
from genlab.diffusion import guidance_weight
from genlab.errors import GenlabError
from genlab.models.diffusion import DiffusionModule
from genlab.sampling import Guidance


def parse_classes(classes: Any, num_classes: int | None) -> list[int] | None:
    """`classes=0,1,2` (a string) or `classes=[0,1,2]` (a list) to checked ints."""
    if classes is None or classes == "":
        return None
    items = str(classes).strip("[]").split(",") if not isinstance(classes, (list, tuple)) else list(classes)
    try:
        parsed = [int(str(c).strip()) for c in items if str(c).strip() != ""]
    except ValueError:
        raise GenlabError(f"classes={classes}: give class indices, e.g. classes=0,1,2.") from None
    if num_classes is None:
        raise GenlabError("classes= needs a model trained on labelled data; this checkpoint's dataset has no classes.")
    bad = [c for c in parsed if not 0 <= c < num_classes]
    if bad or not parsed:
        raise GenlabError(f"classes={classes}: each class must be in 0..{num_classes - 1}.")
    return parsed


def build_guidance(a: SampleArgs, module: DiffusionModule) -> tuple[Guidance, Any]:
    """The Guidance for these arguments, and the classifier module used (or None)."""
    num_classes = module.cfg.data.num_classes
    classes = parse_classes(a.classes, num_classes)
    try:
        w = guidance_weight(a.guidance, a.guidance_scale)
    except ValueError as exc:
        raise GenlabError(f"{exc}.") from None
    if w != 0 and not module.conditional:
        raise GenlabError(
            "guidance needs a class-conditional (CFG) model; this checkpoint is unconditional. "
            "Train one with model.conditional=true (e.g. experiment=cfg_digits), or use classifier=PATH."
        )
    if (w != 0 or a.classifier_scale != 0) and classes is None:
        raise GenlabError("guidance needs the classes to steer towards: add classes=0,1,2,...")
    classifier = None
    if a.classifier is not None:
        classifier = load_classifier(a.classifier)
        if classifier.cfg.data.num_classes != num_classes:
            raise GenlabError(
                f"classifier {a.classifier} has {classifier.cfg.data.num_classes} classes but the diffusion model's "
                f"data has {num_classes}; use a classifier trained on the same dataset."
            )
    elif a.classifier_scale != 0:
        raise GenlabError("classifier_scale needs classifier=PATH, a checkpoint of experiment=classifier_*.")
    labels = torch.tensor(classes).repeat_interleave(a.per_class) if classes else None  # a row per class
    guidance = Guidance(
        labels=labels,
        cfg_weight=w,
        null_class=module.unet.null_class if module.conditional else None,
        classifier_log_prob=classifier.log_prob if classifier is not None else None,
        classifier_scale=a.classifier_scale,
    )
    return guidance, classifier


def class_accuracy(classifier: Any, images: Tensor, labels: Tensor) -> float:
    """Share of samples that the classifier (on clean images, t = 0) assigns to their requested class."""
    predicted = classifier.predict(images.to(classifier.device)).cpu()
    return float((predicted == labels.cpu()).float().mean())
