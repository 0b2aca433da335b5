"""The post-hoc EMA's training side (Karras et al. 2024, sec. 3.2): two or more power EMAs kept during training and
snapshotted every N steps, from which `genlab ema` rebuilds the average of any length (genlab/ema/posthoc.py)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import lightning as L
import torch
from torch import Tensor

from genlab.ema.power import power_multi_avg_fn, sigma_rel_to_gamma


class PostHocEMA(L.Callback):
    """Two (or more) power EMAs of the module's parameters, snapshotted every `every_n_steps` steps into `folder`
    (one file per snapshot: step, sigma_rel, gamma and the averaged parameters). Its state goes into checkpoints, so
    a resumed run continues the same averages."""

    def __init__(self, folder: Path, sigma_rels: Sequence[float] = (0.05, 0.10), every_n_steps: int = 500) -> None:
        self.folder = Path(folder)
        self.sigma_rels = [float(s) for s in sigma_rels]
        self.gammas = [sigma_rel_to_gamma(s) for s in self.sigma_rels]
        self.updaters = [power_multi_avg_fn(g) for g in self.gammas]  # the power EMA's own update rule
        self.every_n_steps = int(every_n_steps)
        self.averages: list[dict[str, Tensor]] = []
        self.updates = 0

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        params = {k: p.detach() for k, p in pl_module.named_parameters()}
        if not self.averages:  # the first update copies: beta_1 = 0
            self.averages = [{k: p.clone() for k, p in params.items()} for _ in self.gammas]
        else:
            for average, update in zip(self.averages, self.updaters):
                update(list(average.values()), list(params.values()), self.updates)
        self.updates += 1
        step = trainer.global_step
        if trainer.is_global_zero and self.due(step, trainer.max_steps):
            self.save(step)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # A run that stops between snapshots (at its time budget, say) still leaves the averages of its last step.
        step = trainer.global_step
        if trainer.is_global_zero and self.averages and not self.due(step, trainer.max_steps):
            self.save(step)

    def due(self, step: int, max_steps: int) -> bool:
        """Whether on_train_batch_end snapshots at `step`: every N steps and at max_steps."""
        return step % self.every_n_steps == 0 or step == max_steps

    def save(self, step: int) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        for average, sigma_rel, gamma in zip(self.averages, self.sigma_rels, self.gammas):
            path = self.folder / f"step{step:07d}-sigma{sigma_rel:.3f}.pt"
            tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
            torch.save({"step": step, "updates": self.updates, "sigma_rel": sigma_rel, "gamma": gamma,
                        "params": {k: v.cpu() for k, v in average.items()}}, tmp)
            os.replace(tmp, path)  # whole or absent, as every genlab checkpoint

    def state_dict(self) -> dict[str, Any]:
        return {"updates": self.updates, "averages": [{k: v.cpu() for k, v in a.items()} for a in self.averages]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.updates = int(state_dict.get("updates", 0))
        self.averages = [dict(a) for a in state_dict.get("averages", [])]

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.averages = [{k: v.to(pl_module.device) for k, v in a.items()} for a in self.averages]
