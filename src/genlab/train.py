"""`genlab train`: build everything from the config, fit, and leave a complete run folder."""

from __future__ import annotations

import datetime
import time
from pathlib import Path
from typing import TYPE_CHECKING

import lightning as L
from lightning.pytorch.callbacks import EMAWeightAveraging, ModelCheckpoint
from omegaconf import DictConfig

from genlab.build import build_datamodule, is_conditional, resolve_data_keys
from genlab.callbacks import ClassAccuracy, FinalCheckpoint, LossCurve, ProgressBar, SampleGrid
from genlab.callbacks.class_accuracy import load_scorer
from genlab.callbacks.fid import FIDCallback
from genlab.callbacks.images import image_grid, save_png
from genlab.config_io import save_config, to_container
from genlab.errors import GenlabError
from genlab.loggers import build_loggers
from genlab.metrics.domain import check_domain_classifier
from genlab.metrics.extractors import extractor_spec
from genlab.models import DiffusionModule

if TYPE_CHECKING:
    from genlab.models.classifier import ClassifierModule


def make_run_dir(cfg: DictConfig) -> Path:
    """runs/<experiment>/<time>/, or the folder named by run_dir=PATH."""
    if cfg.run_dir:
        run_dir = Path(cfg.run_dir)
    else:
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        run_dir = Path(cfg.runs_root) / cfg.experiment / stamp
        suffix = 1
        while run_dir.exists():  # two runs started in the same second
            run_dir = run_dir.with_name(f"{stamp}-{suffix}")
            suffix += 1
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise GenlabError(f"cannot create the run folder {run_dir}: {exc.strerror}. Choose another with run_dir=PATH.")
    return run_dir


def build_callbacks(cfg: DictConfig, run_dir: Path, scorer: "ClassifierModule | None" = None) -> list[L.Callback]:
    """Sample grid, class accuracy, FID and loss curve first, then EMA (so they see its weights), then checkpoints."""
    cb = cfg.callbacks
    callbacks: list[L.Callback] = []
    if cb.sample_grid.enabled and cfg.model.kind.value == "ddpm":
        callbacks.append(SampleGrid(run_dir / "samples", num_images=cb.sample_grid.num_images, seed=cb.sample_grid.seed))
    if scorer is not None:
        callbacks.append(ClassAccuracy(scorer, per_class=cb.class_accuracy.per_class, seed=cb.class_accuracy.seed))
    if cfg.eval.enabled:
        callbacks.append(FIDCallback(cfg))
    if cb.loss_curve:
        callbacks.append(LossCurve(run_dir / "loss_curve.png", every_n_steps=cfg.trainer.log_every_n_steps))
    ema = cfg.model.ema
    if ema.enabled:
        callbacks.append(
            EMAWeightAveraging(
                decay=ema.decay, update_every_n_steps=ema.every_n_steps, update_starting_at_step=ema.start_step
            )
        )
    ckpt_dir = run_dir / "checkpoints"
    # `last.ckpt` every N steps; the best by val/loss at each validation.
    callbacks.append(
        ModelCheckpoint(dirpath=ckpt_dir, save_last=True, save_top_k=0, every_n_train_steps=cb.checkpoint.every_n_steps)
    )
    callbacks.append(FinalCheckpoint(ckpt_dir / "last.ckpt", every_n_steps=cb.checkpoint.every_n_steps))
    if cb.checkpoint.save_top_k != 0:
        callbacks.append(
            ModelCheckpoint(
                dirpath=ckpt_dir,
                filename="best-step{step:07d}",
                monitor=cb.checkpoint.monitor,
                mode="min",
                save_top_k=cb.checkpoint.save_top_k,
                auto_insert_metric_name=False,
            )
        )
    if cfg.trainer.enable_progress_bar:
        callbacks.append(ProgressBar())
    return callbacks


def build_trainer(cfg: DictConfig, run_dir: Path, scorer: "ClassifierModule | None" = None) -> L.Trainer:
    """A Lightning Trainer from the `trainer` block, validating every `val_every_n_steps` steps."""
    t = cfg.trainer
    return L.Trainer(
        max_steps=t.max_steps,
        max_epochs=t.max_epochs,
        accelerator=t.accelerator,
        devices=t.devices,
        num_nodes=t.num_nodes,
        strategy=t.strategy,
        precision=t.precision,
        gradient_clip_val=t.gradient_clip_val,
        val_check_interval=min(t.val_every_n_steps, t.max_steps),  # a short run still validates once
        check_val_every_n_epoch=None,
        limit_val_batches=t.limit_val_batches,
        log_every_n_steps=t.log_every_n_steps,
        enable_progress_bar=t.enable_progress_bar,
        logger=build_loggers(cfg, run_dir),
        callbacks=build_callbacks(cfg, run_dir, scorer),
        default_root_dir=str(run_dir),
        num_sanity_val_steps=0,
    )


def build_module(cfg: DictConfig) -> L.LightningModule:
    """The LightningModule for `model.kind`, built from the plain config dict (so checkpoints rebuild it)."""
    if cfg.model.kind.value == "classifier":
        from genlab.models.classifier import ClassifierModule

        return ClassifierModule(to_container(cfg))
    return DiffusionModule(to_container(cfg))


def train(cfg: DictConfig) -> Path:
    """Train the configured model; return the run folder."""
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    datamodule = build_datamodule(cfg)
    resolve_data_keys(cfg, datamodule)
    needs_labels = cfg.model.conditional or cfg.model.kind.value == "classifier"
    if needs_labels and cfg.data.num_classes is None:
        raise GenlabError(
            f"this model needs class labels, but dataset {cfg.data.name.value!r} at {cfg.data.root} has none. "
            "Use a folder with one subfolder per class, or set model.conditional=false."
        )
    model = build_module(cfg)  # before the run folder: a bad network config leaves nothing behind
    scorer = None
    if cfg.callbacks.class_accuracy.classifier:
        scorer = load_scorer(cfg.callbacks.class_accuracy.classifier, cfg.data.num_classes, is_conditional(cfg))
    if cfg.eval.enabled:  # missing weights or classifier fail now, not after the first validation
        spec = extractor_spec(cfg.eval.features.value, cfg.eval.inception_weights, cfg.eval.domain_classifier)
        if spec.features == "domain":
            check_domain_classifier(spec.weights_path, cfg.data, "eval.domain_classifier")
    run_dir = make_run_dir(cfg)
    save_config(cfg, run_dir / "config.yaml")
    trainer = build_trainer(cfg, run_dir, scorer)
    print(f"genlab: run folder {run_dir}")
    started = time.time()
    trainer.fit(model, datamodule=datamodule)
    if not trainer.is_global_zero:
        return run_dir
    summary = f"genlab: trained {trainer.global_step} steps in {time.time() - started:.0f} s"
    metrics = trainer.callback_metrics
    shown = [k for k in ("train/loss", "val/loss", "val/acc_t0", "val/class_acc") if k in metrics]
    shown += [k for k in metrics if k.startswith("val/fid_")]
    if shown:
        summary += " (" + ", ".join(f"{k} {float(metrics[k]):.4f}" for k in shown) + ")"
    if isinstance(model, DiffusionModule):
        # After fit, EMAWeightAveraging has copied the averaged weights into the model.
        images, nrow = model.sample_grid(cfg.callbacks.sample_grid.num_images, seed=cfg.callbacks.sample_grid.seed)
        save_png(image_grid(images, nrow=nrow or None), run_dir / "samples" / "final.png")
        summary += f"; final sample grid {run_dir / 'samples' / 'final.png'}"
    print(summary)
    return run_dir
