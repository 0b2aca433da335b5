"""ClassifierModule: it learns on a fixed batch, logs its metrics, and round-trips through a checkpoint."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from genlab.config import load_config, to_container
from genlab.data import DATAMODULES
from genlab.models import ClassifierModule

STEPS = 30
EVAL_SEEDS = range(4)  # t and noise draws averaged for the fixed-batch loss


def tiny_config() -> dict:
    cfg = load_config(
        {
            "experiment": "ddpm_digits",
            "model.kind": "classifier",
            "unet.base_channels": "8",
            "unet.channel_mult": "[1,2]",
            "unet.num_res_blocks": "1",
            "unet.attention_resolutions": "[8]",
            "unet.time_injection": "scale_shift",  # FiLM, as the classifier recipes use
            "diffusion.timesteps": "50",
        }
    )
    cfg.data.channels = 1
    cfg.data.num_classes = 10
    cfg.model.optim.lr = 1e-3
    cfg.model.optim.warmup_steps = 0
    return to_container(cfg)


def fixed_loss(module: ClassifierModule, batch: tuple[torch.Tensor, torch.Tensor]) -> float:
    """Mean cross-entropy over a few fixed (t, noise) draws, in eval mode."""
    module.eval()
    with torch.no_grad():
        losses = [module.noised_terms(batch, torch.Generator().manual_seed(s))[0].mean() for s in EVAL_SEEDS]
    module.train()
    return float(torch.stack(losses).mean())


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Train once on one fixed batch of 32 digits, validating on 32 others; shared by the tests below."""
    torch.manual_seed(0)
    dm = DATAMODULES["digits"](resolution=16, batch_size=32)
    dm.setup("fit")
    train_batch = tuple(torch.stack(z) for z in zip(*(dm.train_dataset[i] for i in range(32))))
    val_batch = tuple(torch.stack(z) for z in zip(*(dm.val_dataset[i] for i in range(32))))
    module = ClassifierModule(tiny_config())
    loss_before = fixed_loss(module, train_batch)
    trainer = L.Trainer(
        max_steps=STEPS,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        check_val_every_n_epoch=STEPS // 3,  # one step per epoch: three validations
        num_sanity_val_steps=0,
    )
    trainer.fit(
        module,
        train_dataloaders=DataLoader(TensorDataset(*train_batch), batch_size=32),
        val_dataloaders=DataLoader(TensorDataset(*val_batch), batch_size=16),
    )
    path = tmp_path_factory.mktemp("ckpt") / "classifier.ckpt"
    trainer.save_checkpoint(path)
    return dict(
        module=module, trainer=trainer, path=path, train_batch=train_batch, val_batch=val_batch,
        loss_before=loss_before, loss_after=fixed_loss(module, train_batch),
    )


def test_fixed_batch_loss_decreases(trained: dict) -> None:
    assert trained["trainer"].global_step == STEPS
    assert trained["loss_before"] == pytest.approx(2.30, abs=0.3)  # about log(10) for an untrained head
    assert trained["loss_after"] < trained["loss_before"] - 0.1


def test_metrics_are_logged(trained: dict) -> None:
    metrics = trained["trainer"].callback_metrics
    for name in ("train/loss", "train/acc", "val/loss", "val/acc", "val/acc_t0"):
        assert name in metrics, name
    quarters = [f"val/acc_q{q}" for q in range(1, 5) if f"val/acc_q{q}" in metrics]
    assert quarters, "no per-quarter validation accuracy"
    for name in ("train/acc", "val/acc", "val/acc_t0", *quarters):
        assert 0.0 <= float(metrics[name]) <= 1.0, name


def test_val_acc_t0_is_clean_accuracy(trained: dict) -> None:
    module, (x0, y) = trained["module"], trained["val_batch"]
    expected = (module.predict(x0) == y).float().mean()
    assert float(trained["trainer"].callback_metrics["val/acc_t0"]) == pytest.approx(float(expected), abs=1e-6)


def test_log_prob_is_a_normalised_distribution(trained: dict) -> None:
    module, (x0, _) = trained["module"], trained["val_batch"]
    x, t = x0[:6], torch.tensor([0, 5, 10, 20, 30, 49])
    module.eval()
    with torch.no_grad():
        per_class = torch.stack([module.log_prob(x, t, torch.full((6,), c)) for c in range(10)], dim=1)  # [B, 10]
        logits = module(x, t)
    assert per_class.shape == (6, 10)
    assert (per_class <= 0).all()
    torch.testing.assert_close(per_class.exp().sum(dim=1), torch.ones(6))
    torch.testing.assert_close(per_class, torch.log_softmax(logits, dim=1))


def test_predict_uses_eval_mode_and_restores_it(trained: dict) -> None:
    module, (x0, _) = trained["module"], trained["val_batch"]
    module.train()
    pred = module.predict(x0)
    assert module.training
    assert pred.shape == (32,) and pred.dtype == torch.long
    assert ((pred >= 0) & (pred < 10)).all()


def test_checkpoint_round_trip(trained: dict) -> None:
    module, path = trained["module"], Path(trained["path"])
    loaded = ClassifierModule.load_from_checkpoint(path, map_location="cpu")
    assert loaded.cfg.data.num_classes == 10 and loaded.cfg.model.kind.value == "classifier"
    x, t = trained["val_batch"][0][:4], torch.tensor([0, 7, 25, 49])
    module.eval()
    loaded.eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(x, t), module(x, t))
