"""Each private Lightning API that genlab uses (models/lightning_compat.py) still exists and still does what genlab
relies on. One of these fails when a Lightning release changes the private name or its behaviour."""

from __future__ import annotations

import lightning as L
import torch
from lightning.pytorch.callbacks import EMAWeightAveraging
from lightning.pytorch.core.optimizer import LightningOptimizer
from lightning.pytorch.loggers import WandbLogger

from genlab.models.lightning_compat import swap_average_weights, trainer_of, uncounted, wandb_run_started


class Tiny(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(2, 1)

    def training_step(self, batch, batch_idx):  # noqa: ANN001, ANN201
        return self.layer(batch[0]).pow(2).mean()

    def configure_optimizers(self):  # noqa: ANN201
        return torch.optim.SGD(self.parameters(), lr=0.5)

    def train_dataloader(self):  # noqa: ANN201
        return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(8, 2)), batch_size=4)


def fit(module: L.LightningModule, callbacks: list, steps: int = 4) -> L.Trainer:
    trainer = L.Trainer(max_steps=steps, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, callbacks=callbacks, accelerator="cpu")
    trainer.fit(module)
    return trainer


def test_trainer_of_is_none_outside_a_trainer_and_the_trainer_inside() -> None:
    module = Tiny()
    assert trainer_of(module) is None
    trainer = fit(module, [])
    assert trainer_of(module) is trainer


def test_uncounted_hides_an_optimizer_step_from_the_step_hooks() -> None:
    counted: list[str] = []
    optimizer = LightningOptimizer(torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1))
    optimizer._on_before_step = lambda: counted.append("before")
    optimizer._on_after_step = lambda: counted.append("after")
    with uncounted(optimizer):
        optimizer._on_before_step()
        optimizer._on_after_step()
    assert counted == []
    optimizer._on_before_step()
    assert counted == ["before"]  # restored


def test_lightning_optimizer_step_calls_the_hooks_that_uncounted_silences() -> None:
    calls: list[str] = []
    param = torch.nn.Parameter(torch.ones(1))
    optimizer = LightningOptimizer(torch.optim.SGD([param], lr=0.1))
    optimizer._strategy = type("S", (), {"optimizer_step": staticmethod(lambda opt, closure, **kw: closure())})()
    optimizer._on_before_step = lambda: calls.append("before")
    optimizer._on_after_step = lambda: calls.append("after")
    optimizer.step(closure=lambda: None)
    assert calls == ["before", "after"]


def test_swap_average_weights_swaps_the_ema_in_and_back() -> None:
    module = Tiny()
    ema = EMAWeightAveraging(decay=0.5)
    fit(module, [ema])  # after fit the average is copied into the module: move the raw weights away from it
    with torch.no_grad():
        module.layer.weight.add_(1.0)
    before = module.layer.weight.detach().clone()
    swapped = swap_average_weights(module.trainer, module)
    assert swapped == [ema] and not torch.equal(module.layer.weight, before)
    swap_average_weights(module.trainer, module)
    assert torch.equal(module.layer.weight, before)


def test_wandb_run_started_reads_the_logger_without_starting_a_run(tmp_path) -> None:  # noqa: ANN001
    logger = WandbLogger(save_dir=str(tmp_path), offline=True)
    assert wandb_run_started(logger) is False  # and reading it did not create one
    assert logger._experiment is None
