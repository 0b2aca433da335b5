"""GAN math as plain torch: adversarial losses, gradient penalties, diversity, and inversion by optimisation."""
from genlab.adversarial.diffaugment import DiffAugmentOp, diff_augment
from genlab.adversarial.inversion import LatentFit, invert_generator
from genlab.adversarial.losses import (
    ADVERSARIAL_LOSSES,
    AdversarialLoss,
    batch_diversity,
    discriminator_loss,
    generator_loss,
    gradient_penalty,
    r1_penalty,
)

__all__ = [
    "ADVERSARIAL_LOSSES",
    "AdversarialLoss",
    "DiffAugmentOp",
    "LatentFit",
    "batch_diversity",
    "diff_augment",
    "discriminator_loss",
    "generator_loss",
    "gradient_penalty",
    "invert_generator",
    "r1_penalty",
]
