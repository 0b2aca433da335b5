"""Class accuracy of guided samples: the one definition, used by `genlab sample`, tables and the training callback."""

from __future__ import annotations

from typing import Any

from torch import Tensor


def class_accuracy(classifier: Any, images: Tensor, labels: Tensor) -> float:
    """Share of samples that the classifier (on clean images, t = 0) assigns to their requested class."""
    predicted = classifier.predict(images.to(classifier.device)).cpu()
    return float((predicted == labels.cpu()).float().mean())
