"""What each model kind is, as the config and the code that reads configs and checkpoints see it.

The model-kind registry has two halves, one per layer: these facts (plain data, which config validation, the trainer
and checkpoint loading read), and models/registry.py, which adds each kind's LightningModule and loss-curve panels.
Nothing else tests a kind's name: code asks what a kind does (`kind_facts(kind).sampler`), not what it is called.
"""

from __future__ import annotations

from dataclasses import dataclass

from genlab.errors import GenlabError


@dataclass(frozen=True)
class KindFacts:
    """The facts of one model kind."""

    description: str
    unet: bool  # built on the shared U-Net (the `unet` block); else on the `gan` block's G and D (adversarial)
    generates: bool  # makes images: validation grids, FID, `genlab sample` / `eval` / `table`
    sampler: bool  # samples through a diffusion sampler: SamplerSettings, guidance, a likelihood bound, DDIM inversion
    classifies: bool = False  # a noise-aware classifier: classifier guidance, class accuracy, domain features
    needs_labels: bool = False  # trains on class labels whatever model.conditional says
    adversarial: bool = False  # two optimisers stepped by hand; a training step is a generator step
    averaged: bool = True  # checkpoints hold EMA weights beside the raw ones (model.ema)
    perf_levers: bool = False  # the perf block's U-Net levers apply


KINDS: dict[str, KindFacts] = {
    "ddpm": KindFacts("a diffusion model (DDPM, or CFG with model.conditional=true)", unet=True, generates=True, sampler=True,
                      perf_levers=True),
    "gan": KindFacts("a GAN generator", unet=False, generates=True, sampler=False, adversarial=True),
    "classifier": KindFacts("a noise-aware classifier", unet=True, generates=False, sampler=False,
                            classifies=True, needs_labels=True, averaged=False),
}


def kind_facts(kind: str) -> KindFacts:
    """The facts of model kind `kind`, or a GenlabError listing the kinds."""
    if str(kind) not in KINDS:
        raise GenlabError(f"unknown model kind {kind!r}: genlab knows {', '.join(KINDS)}.")
    return KINDS[str(kind)]


def kinds_where(fact: str) -> list[str]:
    """The kinds for which boolean fact `fact` holds, e.g. kinds_where("sampler")."""
    return [kind for kind, facts in KINDS.items() if getattr(facts, fact)]
