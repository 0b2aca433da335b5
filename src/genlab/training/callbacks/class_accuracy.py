"""Score how often a conditional model's samples are of the requested class, at every validation."""

from __future__ import annotations

import lightning as L
import torch

from genlab.metrics.class_accuracy import class_accuracy
from genlab.models import ClassifierModule


class ClassAccuracy(L.Callback):
    """At each validation end: `per_class` guided samples of every class, classified at t = 0 by a noise-aware
    classifier (so a clean-image classifier), logged as `val/class_acc`.

    Put it before Lightning's EMAWeightAveraging in the callback list, so it scores the EMA model, as the grid does.
    The samples use the configured sampler and CFG weight (sampler.guidance) and a fixed seed, so the metric moves
    only when the weights do.
    """

    def __init__(self, classifier: ClassifierModule, per_class: int = 10, seed: int = 0) -> None:
        self.classifier = classifier
        self.per_class = per_class
        self.seed = seed

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        # Every rank samples the same images (same seed), so the logged value needs no reduction.
        num_classes = int(pl_module.cfg.data.num_classes)
        labels = torch.arange(num_classes).repeat_interleave(self.per_class)
        images = pl_module.sample(len(labels), labels=labels, seed=self.seed)  # the run's sampler and CFG weight
        self.classifier.to(pl_module.device)
        accuracy = class_accuracy(self.classifier, images, labels)
        pl_module.log("val/class_acc", accuracy, on_epoch=True, batch_size=len(labels))
