"""`genlab train`: build everything from the config, fit, and leave a complete run folder."""

from __future__ import annotations

import datetime
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

import lightning as L
from lightning.pytorch.callbacks import EMAWeightAveraging, ModelCheckpoint
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.strategies import DDPStrategy
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig

from genlab.build import build_datamodule, is_conditional, resolve_data_keys
from genlab.callbacks import ClassAccuracy, FinalCheckpoint, LossCurve, ProgressBar, SampleGrid
from genlab.callbacks.class_accuracy import load_scorer
from genlab.callbacks.fid import FIDCallback
from genlab.callbacks.images import image_grid, save_png
from genlab.callbacks.interrupt import SaveOnSignal
from genlab.callbacks.nonfinite import NonFiniteGuard
from genlab.callbacks.resume_state import ResumeState
from genlab.checkpoint_io import AtomicCheckpointIO, remove_stale_temporaries
from genlab.checkpoints import checkpoint_kind, read_checkpoint
from genlab.config_io import save_config, to_container
from genlab.errors import GenlabError
from genlab.loggers import build_loggers, finish_wandb
from genlab.metrics.domain import check_domain_classifier
from genlab.metrics.extractors import extractor_spec
from genlab.models import DiffusionModule
from genlab.resume import (
    check_same_run,
    find_resume_checkpoint,
    read_metrics_before,
    restore_csv_log,
    run_folder_of,
    saved_config,
)
from genlab.run_record import read_record, record_end, record_start, write_record

if TYPE_CHECKING:
    from genlab.models.classifier import ClassifierModule


# Set by rank 0 while it trains: the processes that Lightning launches for the other devices inherit it, so that
# every rank writes to the same run folder instead of stamping one of its own.
RUN_DIR_ENV = "GENLAB_RUN_DIR"


def make_run_dir(cfg: DictConfig) -> Path:
    """runs/<experiment>/<time>/, or the folder named by run_dir=PATH (or by rank 0, in a launched DDP process)."""
    if cfg.run_dir or os.environ.get(RUN_DIR_ENV):
        run_dir = Path(cfg.run_dir or os.environ[RUN_DIR_ENV])
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
    if cb.sample_grid.enabled and cfg.model.kind.value in ("ddpm", "gan"):
        callbacks.append(SampleGrid(run_dir / "samples", num_images=cb.sample_grid.num_images, seed=cb.sample_grid.seed))
    if scorer is not None:
        callbacks.append(ClassAccuracy(scorer, per_class=cb.class_accuracy.per_class, seed=cb.class_accuracy.seed))
    if cfg.eval.enabled:
        callbacks.append(FIDCallback(cfg))
    if cb.loss_curve:
        every = cfg.trainer.log_every_n_steps
        callbacks.append(LossCurve(run_dir / "loss_curve.png", every_n_steps=every, kind=cfg.model.kind.value))
    ema = cfg.model.ema
    if ema.enabled:
        callbacks.append(
            EMAWeightAveraging(
                decay=ema.decay, update_every_n_steps=ema.every_n_steps, update_starting_at_step=ema.start_step
            )
        )
    ckpt_dir = run_dir / "checkpoints"
    callbacks.append(ResumeState(cfg.seed))
    callbacks.append(NonFiniteGuard(cfg.trainer.on_nonfinite.value))
    callbacks.append(SaveOnSignal(ckpt_dir / "last.ckpt"))
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


def build_strategy(cfg: DictConfig) -> str | DDPStrategy:
    """trainer.strategy, with trainer.ddp_timeout_s for DDP: a rank that crashed or hangs ends the run with an error
    after that long instead of leaving the others waiting in a collective."""
    name = cfg.trainer.strategy
    if name in ("ddp", "ddp_find_unused_parameters_true"):
        return DDPStrategy(
            timeout=datetime.timedelta(seconds=cfg.trainer.ddp_timeout_s),
            find_unused_parameters=name.endswith("true"),
        )
    return name


def lost_peer(exc: BaseException) -> bool:
    """A collective failed because another process died or stopped answering."""
    text = str(exc)
    return any(s in text for s in ("Connection closed by peer", "Connection reset by peer", "timed out", "Timed out",
                                   "NCCL communicator was aborted", "DistBackendError"))


def build_trainer(
    cfg: DictConfig, run_dir: Path, scorer: "ClassifierModule | None" = None, wandb_id: str | None = None
) -> L.Trainer:
    """A Lightning Trainer from the `trainer` block, validating every `val_every_n_steps` steps."""
    t = cfg.trainer
    gan = cfg.model.kind.value == "gan"
    # A GAN step is a generator step, taken every gan.d_steps batches; Lightning's validation interval counts batches.
    batches_per_step = cfg.gan.d_steps if gan else 1
    return L.Trainer(
        max_steps=t.max_steps,
        max_epochs=t.max_epochs,
        accelerator=t.accelerator,
        devices=t.devices,
        num_nodes=t.num_nodes,
        strategy=build_strategy(cfg),
        precision=t.precision,
        # Manual optimisation (the GAN) clips inside the module: Lightning refuses gradient_clip_val there.
        gradient_clip_val=None if gan else t.gradient_clip_val,
        val_check_interval=min(t.val_every_n_steps, t.max_steps) * batches_per_step,  # a short run validates once
        check_val_every_n_epoch=None,
        limit_val_batches=t.limit_val_batches,
        log_every_n_steps=t.log_every_n_steps,
        enable_progress_bar=t.enable_progress_bar,
        logger=build_loggers(cfg, run_dir, wandb_id),
        callbacks=build_callbacks(cfg, run_dir, scorer),
        default_root_dir=str(run_dir),
        num_sanity_val_steps=0,
        plugins=[AtomicCheckpointIO()],
        use_distributed_sampler=False,  # the DataModule shards by rank itself (genlab.data.sampler)
    )


def build_module(cfg: DictConfig) -> L.LightningModule:
    """The LightningModule for `model.kind`, built from the plain config dict (so checkpoints rebuild it)."""
    if cfg.model.kind.value == "classifier":
        from genlab.models.classifier import ClassifierModule

        return ClassifierModule(to_container(cfg))
    if cfg.model.kind.value == "gan":
        from genlab.models.gan import GANModule

        return GANModule(to_container(cfg))
    return DiffusionModule(to_container(cfg))


def check_resume_checkpoint(path: Path, cfg: DictConfig) -> int:
    """The checkpoint must be readable, of this model kind and from a run with the same settings; its step."""
    ckpt = read_checkpoint(path)
    kind = checkpoint_kind(ckpt)
    if kind != cfg.model.kind.value:
        raise GenlabError(f"resume: {path} holds a {kind!r} model, but this config trains a {cfg.model.kind.value!r}.")
    check_same_run(to_container(cfg), saved_config(run_folder_of(path)), path)
    return int(ckpt.get("global_step", 0))


def train(cfg: DictConfig, overrides: dict[str, str] | None = None) -> Path:
    """Train the configured model; return the run folder. `overrides` (the command line) go to run.json."""
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    datamodule = build_datamodule(cfg)
    datamodule.check_available()  # a missing dataset leaves no run folder behind
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
    resume_from = find_resume_checkpoint(cfg)
    kept_log: tuple[list[str], list[dict[str, str]]] = ([], [])
    resume_step = 0
    if resume_from is not None:
        resume_step = check_resume_checkpoint(resume_from, cfg)
        cfg.run_dir = str(run_folder_of(resume_from))
        kept_log = read_metrics_before(Path(cfg.run_dir) / "logs" / "metrics.csv", resume_step)
    run_dir = make_run_dir(cfg)
    remove_stale_temporaries(run_dir / "checkpoints")  # left by a process killed while saving
    save_config(cfg, run_dir / "config.yaml")
    wandb_id = read_record(run_dir).get("wandb_id") if resume_from is not None else None
    trainer = build_trainer(cfg, run_dir, scorer, wandb_id)
    if trainer.is_global_zero:  # other ranks' loggers are stand-ins that write nothing
        restore_csv_log(trainer.loggers[0], *kept_log)
    if resume_from is None:
        print(f"genlab: run folder {run_dir}")
    else:
        print(f"genlab: resuming {run_dir} from {resume_from} (step {resume_step})")
    rank_zero = trainer.is_global_zero
    started = time.time()
    global_batch = cfg.data.batch_size * trainer.world_size
    if rank_zero:
        record_start(run_dir, cfg.experiment, overrides or {}, str(resume_from) if resume_from else None)
        write_record(run_dir, global_batch=global_batch, world_size=trainer.world_size)
        scaling = f", learning rates x {global_batch / cfg.trainer.reference_batch_size:g}" if cfg.trainer.scale_lr else ""
        print(f"genlab: global batch {global_batch} = {cfg.data.batch_size} per device x {trainer.world_size}{scaling}")
        wandb = next((lg for lg in trainer.loggers if isinstance(lg, WandbLogger)), None)
        if wandb is not None:
            write_record(run_dir, wandb_id=wandb.experiment.id)  # so that resume=auto continues this W&B run
    os.environ[RUN_DIR_ENV] = str(run_dir.resolve())
    try:
        trainer.fit(model, datamodule=datamodule, ckpt_path=str(resume_from) if resume_from else None)
    except SIGTERMException:
        if rank_zero:
            record_end(run_dir, started, trainer.global_step, "stopped by SIGTERM", {})
        print(f"genlab: stopped by SIGTERM at step {trainer.global_step}; {run_dir / 'checkpoints' / 'last.ckpt'} "
              f"holds it. Continue with the same command and resume=auto run_dir={run_dir}.")
        return run_dir
    except BaseException as exc:
        if rank_zero:
            record_end(run_dir, started, trainer.global_step, "failed", {})
        if trainer.world_size > 1 and isinstance(exc, RuntimeError) and lost_peer(exc):
            raise GenlabError(
                f"another DDP process stopped answering at step {trainer.global_step} "
                f"({str(exc).splitlines()[0][:160]}); this one stopped too. See the other processes' logs. "
                f"The last checkpoint is {run_dir / 'checkpoints' / 'last.ckpt'}: continue with resume=auto "
                f"run_dir={run_dir}."
            ) from None
        raise
    finally:
        os.environ.pop(RUN_DIR_ENV, None)
        if rank_zero:
            finish_wandb(trainer.loggers)
    if not rank_zero:
        return run_dir
    final = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
    interrupted = next((cb for cb in trainer.callbacks if isinstance(cb, SaveOnSignal) and cb.received), None)
    if interrupted is not None:
        record_end(run_dir, started, trainer.global_step, f"stopped by {interrupted.received}", final)
        print(f"genlab: stopped by {interrupted.received} at step {trainer.global_step}; resume with resume=auto "
              f"run_dir={run_dir}.")
        return run_dir
    record_end(run_dir, started, trainer.global_step, "finished", final)
    summary = f"genlab: trained {trainer.global_step} steps in {time.time() - started:.0f} s"
    metrics = trainer.callback_metrics
    keys = ("train/loss", "val/loss", "val/acc_t0", "val/class_acc", "train/d_loss", "train/g_loss", "val/diversity")
    shown = [k for k in keys if k in metrics]
    shown += [k for k in metrics if k.startswith("val/fid_")]
    if shown:
        summary += " (" + ", ".join(f"{k} {float(metrics[k]):.4f}" for k in shown) + ")"
    if hasattr(model, "sample_grid"):
        # After fit, EMAWeightAveraging has copied the averaged weights into the model.
        images, nrow = model.sample_grid(cfg.callbacks.sample_grid.num_images, seed=cfg.callbacks.sample_grid.seed)
        save_png(image_grid(images, nrow=nrow or None), run_dir / "samples" / "final.png")
        summary += f"; final sample grid {run_dir / 'samples' / 'final.png'}"
    print(summary)
    return run_dir
