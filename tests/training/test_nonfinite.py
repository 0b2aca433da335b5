"""A NaN in the gradients is caught at its step: skipped and counted, or the run stops with the step named."""

from __future__ import annotations

import lightning as L
import pytest
import torch

from conftest import TINY
from genlab.build import build_datamodule, resolve_data_keys
from genlab.training.callbacks.nonfinite import NonFiniteGuard
from genlab.config import load_config, parse_overrides, to_container
from genlab.errors import GenlabError
from genlab.models import DiffusionModule

POISONED_STEP = 2  # the third optimizer step gets a NaN loss


def poisoned_run(policy: str) -> tuple[DiffusionModule, list[dict[str, torch.Tensor]], NonFiniteGuard]:
    cfg = load_config(parse_overrides(["experiment=ddpm_digits", *TINY, "trainer.max_steps=4"]))
    dm = build_datamodule(cfg)
    resolve_data_keys(cfg, dm)
    module = DiffusionModule(to_container(cfg))
    snapshots: list[dict[str, torch.Tensor]] = []
    training_step = module.training_step

    def step(batch: object, batch_idx: int) -> torch.Tensor:
        snapshots.append({k: v.detach().clone() for k, v in module.named_parameters()})
        loss = training_step(batch, batch_idx)
        return loss * float("nan") if batch_idx == POISONED_STEP else loss

    module.training_step = step  # type: ignore[method-assign]
    guard = NonFiniteGuard(policy)
    trainer = L.Trainer(accelerator="cpu", max_steps=4, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0, callbacks=[guard])
    trainer.fit(module, datamodule=dm)
    snapshots.append({k: v.detach().clone() for k, v in module.named_parameters()})
    return module, snapshots, guard


def test_skip_policy_leaves_the_weights_of_the_bad_step_unchanged() -> None:
    _, snapshots, guard = poisoned_run("skip")
    assert guard.skipped == 1
    before, after = snapshots[POISONED_STEP], snapshots[POISONED_STEP + 1]
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert any(not torch.equal(snapshots[0][k], snapshots[1][k]) for k in before)  # a good step does change them
    assert all(torch.isfinite(v).all() for v in snapshots[-1].values())


def test_stop_policy_names_the_step_and_the_loss_terms() -> None:
    with pytest.raises(GenlabError, match=rf"non-finite gradients at step {POISONED_STEP} \(logged terms: .*train/loss"):
        poisoned_run("stop")

