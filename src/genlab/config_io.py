"""Load, compose, override and validate configs; every failure becomes a GenlabError."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable, TypeVar

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException, ValidationError

from genlab.config import CONFIG_GROUPS, Config, PerfConfig
from genlab.errors import GenlabError


def project_root() -> Path:
    """The folder holding `configs/` and `experiments/`: $GENLAB_HOME, the working directory, or the source checkout."""
    candidates = [os.environ.get("GENLAB_HOME"), os.getcwd(), str(Path(__file__).resolve().parents[2])]
    for candidate in candidates:
        if candidate and (Path(candidate) / "configs").is_dir() and (Path(candidate) / "experiments").is_dir():
            return Path(candidate)
    raise GenlabError(
        "cannot find the genlab `configs/` and `experiments/` folders. Run genlab from the repository "
        "root, or set GENLAB_HOME to the folder that contains them."
    )


def available(folder: Path) -> list[str]:
    """Names of the YAML files in a folder, without extension."""
    return sorted(p.stem for p in folder.glob("*.yaml"))


def parse_overrides(args: Iterable[str]) -> dict[str, str]:
    """Split `key=value` command-line arguments into a dict, keeping their order."""
    overrides: dict[str, str] = {}
    for arg in args:
        key, sep, value = arg.partition("=")
        if not sep or not key:
            raise GenlabError(f"cannot read argument {arg!r}: arguments are key=value, for example trainer.max_steps=200.")
        overrides[key.strip()] = value
    return overrides


def _read_yaml(path: Path) -> DictConfig:
    try:
        loaded = OmegaConf.load(path)
    except Exception as exc:  # yaml syntax errors come in several types
        raise GenlabError(f"cannot parse {path}: {exc}") from None
    if not isinstance(loaded, DictConfig):
        raise GenlabError(f"{path} must hold a mapping of keys to values.")
    return loaded


def _experiment_path(name: str, root: Path) -> Path:
    if name.endswith((".yaml", ".yml")):
        path = Path(name)
    else:
        path = root / "experiments" / f"{name}.yaml"
    if not path.is_file():
        raise GenlabError(
            f"unknown experiment {name!r}: no file {path}. "
            f"Available experiments: {', '.join(available(root / 'experiments'))}."
        )
    return path


def _block(group: str, name: str, root: Path) -> DictConfig:
    path = root / "configs" / group / f"{name}.yaml"
    if not path.is_file():
        raise GenlabError(
            f"unknown {group} block {name!r}: no file {path}. "
            f"Available {group} blocks: {', '.join(available(root / 'configs' / group))}."
        )
    return OmegaConf.create({group: _read_yaml(path)})


def _merge(base: DictConfig, other: Any, source: str) -> DictConfig:
    """Merge `other` into the typed `base`, translating OmegaConf errors into GenlabError."""
    try:
        return OmegaConf.merge(base, other)  # type: ignore[return-value]
    except ConfigKeyError as exc:
        raise GenlabError(_unknown_key_message(exc, source)) from None
    except ValidationError as exc:
        # OmegaConf appends full_key/reference_type lines; the first line is the message.
        reason = str(exc.msg).splitlines()[0].rstrip(".")
        raise GenlabError(f"bad value for config key {exc.full_key!r} (from {source}): {reason}.") from None
    except OmegaConfBaseException as exc:
        raise GenlabError(f"bad config (from {source}): {str(exc.msg).splitlines()[0].rstrip('.')}.") from None


def _unknown_key_message(exc: ConfigKeyError, source: str) -> str:
    full_key = str(exc.full_key)
    parent_path, _, leaf = full_key.rpartition(".")
    node: Any = OmegaConf.structured(Config)
    for part in parent_path.split(".") if parent_path else []:
        node = node.get(part) if isinstance(node, DictConfig) else None
    valid = ", ".join(node.keys()) if isinstance(node, DictConfig) else "(none)"
    where = f"under {parent_path!r}" if parent_path else "at the top level"
    return f"unknown config key {full_key!r} (from {source}). Valid keys {where}: {valid}."


def load_config(overrides: dict[str, str] | None = None, root: Path | None = None) -> DictConfig:
    """Compose the typed config of an experiment, apply overrides and validate it."""
    overrides = dict(overrides or {})
    root = root or project_root()
    experiment = overrides.pop("experiment", Config.experiment)
    exp_cfg = _read_yaml(_experiment_path(experiment, root))
    blocks = dict(exp_cfg.pop("defaults", None) or {})
    unknown_groups = set(blocks) - set(CONFIG_GROUPS)
    if unknown_groups:
        raise GenlabError(
            f"experiment {experiment!r} names unknown config groups {sorted(unknown_groups)} in `defaults`. "
            f"Valid groups: {', '.join(CONFIG_GROUPS)}."
        )
    # `group=name` on the command line picks another block for that group.
    for group in CONFIG_GROUPS:
        if group in overrides:
            blocks[group] = overrides.pop(group)

    cfg: DictConfig = OmegaConf.structured(Config)
    for group, name in blocks.items():
        cfg = _merge(cfg, _block(group, str(name), root), f"configs/{group}/{name}.yaml")
    cfg = _merge(cfg, exp_cfg, f"experiment {experiment}")
    cfg = _merge(cfg, {"experiment": Path(experiment).stem}, "experiment name")
    dotlist = [f"{key}={value}" for key, value in overrides.items()]
    try:
        cli_cfg = OmegaConf.from_dotlist(dotlist)
    except OmegaConfBaseException as exc:
        raise GenlabError(f"cannot read the command-line overrides {dotlist}: {exc.msg}.") from None
    cfg = _merge(cfg, cli_cfg, "command line")
    validate(cfg)
    return cfg


def _check(condition: bool, key: str, value: Any, requirement: str) -> None:
    if not condition:
        raise GenlabError(f"config key {key!r} = {value!r} is out of range: it must be {requirement}.")


def validate(cfg: DictConfig) -> None:
    """Range checks that a type cannot express."""
    from genlab.diffusion.gaussian import LOSS_TERMS

    if cfg.data.name.value == "image_folder" and not cfg.data.root:
        raise GenlabError("data=image_folder needs the folder of images: set data.root=PATH on the command line.")
    _check(cfg.data.resolution > 0, "data.resolution", cfg.data.resolution, "a positive integer")
    _check(cfg.data.batch_size > 0, "data.batch_size", cfg.data.batch_size, "a positive integer")
    _check(cfg.data.num_workers >= 0, "data.num_workers", cfg.data.num_workers, ">= 0")
    _check(0.0 < cfg.data.val_fraction < 1.0, "data.val_fraction", cfg.data.val_fraction, "in (0, 1)")
    if cfg.data.persistent_workers and cfg.data.num_workers == 0:
        raise GenlabError("data.persistent_workers=true keeps worker processes alive, but data.num_workers=0 starts "
                          "none: set data.num_workers > 0, or data.persistent_workers=null (automatic).")
    _check(cfg.data.channels in (None, 1, 3), "data.channels", cfg.data.channels, "1, 3 or null")
    _check(cfg.unet.base_channels > 0, "unet.base_channels", cfg.unet.base_channels, "a positive integer")
    _check(len(cfg.unet.channel_mult) > 0, "unet.channel_mult", list(cfg.unet.channel_mult), "a non-empty list")
    _check(cfg.unet.num_res_blocks > 0, "unet.num_res_blocks", cfg.unet.num_res_blocks, "a positive integer")
    _check(0.0 <= cfg.unet.dropout < 1.0, "unet.dropout", cfg.unet.dropout, "in [0, 1)")
    _check(cfg.diffusion.timesteps > 0, "diffusion.timesteps", cfg.diffusion.timesteps, "a positive integer")
    _check(
        0.0 < cfg.diffusion.beta_start < cfg.diffusion.beta_end < 1.0,
        "diffusion.beta_start/beta_end",
        (cfg.diffusion.beta_start, cfg.diffusion.beta_end),
        "0 < beta_start < beta_end < 1",
    )
    for term in cfg.diffusion.loss_weights:
        _check(term in LOSS_TERMS, f"diffusion.loss_weights.{term}", term, f"one of {sorted(LOSS_TERMS)}")
    _check(0.0 <= cfg.model.p_uncond <= 1.0, "model.p_uncond", cfg.model.p_uncond, "in [0, 1]")
    _check(cfg.model.optim.lr > 0, "model.optim.lr", cfg.model.optim.lr, "> 0")
    _check(len(cfg.model.optim.betas) == 2, "model.optim.betas", list(cfg.model.optim.betas), "two numbers")
    _check(cfg.model.optim.warmup_steps >= 0, "model.optim.warmup_steps", cfg.model.optim.warmup_steps, ">= 0")
    _check(0.0 < cfg.model.ema.decay < 1.0, "model.ema.decay", cfg.model.ema.decay, "in (0, 1)")
    validate_sampler(cfg.sampler.steps, cfg.sampler.eta, cfg.diffusion.timesteps, prefix="sampler.",
                     ddpm_steps=cfg.sampler.ddpm_steps)
    _check(cfg.trainer.max_steps > 0, "trainer.max_steps", cfg.trainer.max_steps, "a positive integer")
    _check(cfg.trainer.val_every_n_steps > 0, "trainer.val_every_n_steps", cfg.trainer.val_every_n_steps, "> 0")
    _check(cfg.trainer.log_every_n_steps > 0, "trainer.log_every_n_steps", cfg.trainer.log_every_n_steps, "> 0")
    _check(cfg.trainer.num_nodes > 0, "trainer.num_nodes", cfg.trainer.num_nodes, "a positive integer")
    _check(cfg.trainer.ddp_timeout_s > 0, "trainer.ddp_timeout_s", cfg.trainer.ddp_timeout_s, "a positive integer")
    ref = cfg.trainer.reference_batch_size
    _check(ref > 0, "trainer.reference_batch_size", ref, "a positive integer")
    grid = cfg.callbacks.sample_grid
    _check(grid.num_images > 0, "callbacks.sample_grid.num_images", grid.num_images, "a positive integer")
    validate_perf(cfg)
    validate_gan(cfg)
    per_class = cfg.callbacks.class_accuracy.per_class
    _check(per_class > 0, "callbacks.class_accuracy.per_class", per_class, "a positive integer")
    ckpt = cfg.callbacks.checkpoint
    _check(ckpt.every_n_steps > 0, "callbacks.checkpoint.every_n_steps", ckpt.every_n_steps, "a positive integer")
    validate_eval(cfg)


def validate_eval(cfg: DictConfig) -> None:
    """The `eval` block: FID during training runs at validation ends, where the EMA weights are swapped in."""
    ev = cfg.eval
    _check(ev.num_samples >= 2, "eval.num_samples", ev.num_samples, ">= 2 (FID needs a covariance)")
    _check(ev.batch_size > 0, "eval.batch_size", ev.batch_size, "a positive integer")
    _check(ev.every_n_steps >= 0, "eval.every_n_steps", ev.every_n_steps, ">= 0 (0: only at the end of training)")
    if not ev.enabled:
        return
    val_every = cfg.trainer.val_every_n_steps
    _check(
        ev.every_n_steps % val_every == 0,
        "eval.every_n_steps",
        ev.every_n_steps,
        f"a multiple of trainer.val_every_n_steps = {val_every} (FID runs at validation ends)",
    )
    if cfg.model.kind.value == "classifier":
        raise GenlabError(
            "eval.enabled=true needs a model that generates images; a classifier does not. Set eval.enabled=false."
        )
    if ev.features.value == "domain" and not ev.domain_classifier:
        raise GenlabError(
            "eval.features=domain needs the classifier whose features FID uses: set eval.domain_classifier=PATH to "
            "a checkpoint of experiment=classifier_* trained on the same dataset, or use eval.features=inception."
        )


def validate_perf(cfg: DictConfig) -> None:
    """Speed levers that cannot work with the rest of the config fail here, not at the first training step."""
    p = cfg.perf
    defaults = to_container(OmegaConf.structured(PerfConfig))
    changed = [k for k, v in to_container(p).items() if v != defaults[k]]
    if changed and cfg.model.kind.value != "ddpm":
        raise GenlabError(f"perf.{changed[0]} is a lever of the DDPM / CFG U-Net; model.kind="
                          f"{cfg.model.kind.value} does not use the perf block. Leave it at its defaults.")
    if p.compile_mode.value != "default" and not p.compile:
        raise GenlabError(f"perf.compile_mode={p.compile_mode.value} has no effect without perf.compile=true.")
    if p.compile_mode.value == "reduce_overhead" and cfg.trainer.accelerator == "cpu":
        raise GenlabError("perf.compile_mode=reduce_overhead uses CUDA graphs: it needs a GPU (trainer.accelerator).")


def validate_gan(cfg: DictConfig) -> None:
    """Ranges of the `gan` block, and the combinations that cannot train."""
    g = cfg.gan
    for key in ("latent_dim", "g_channels", "d_channels", "d_num_res_blocks", "r1_every", "d_steps"):
        _check(g[key] > 0, f"gan.{key}", g[key], "a positive integer")
    for key in ("lambda_gp", "lambda_r1", "lambda_pixel", "collapse_threshold"):
        _check(g[key] >= 0, f"gan.{key}", g[key], ">= 0")
    for name in ("g_optim", "d_optim"):
        optim = g[name]
        _check(optim.lr > 0, f"gan.{name}.lr", optim.lr, "> 0")
        ok = len(optim.betas) == 2 and all(0 <= b < 1 for b in optim.betas)
        _check(ok, f"gan.{name}.betas", list(optim.betas), "two numbers in [0, 1)")
    if cfg.model.kind.value != "gan":
        return
    if g.loss.value == "wasserstein" and g.lambda_gp == 0 and not g.spectral_norm:
        raise GenlabError(
            "gan.loss=wasserstein needs a Lipschitz critic: set gan.lambda_gp=10 (WGAN-GP) or gan.spectral_norm=true."
        )
    ckpt = cfg.callbacks.checkpoint
    if ckpt.save_top_k != 0 and ckpt.monitor == "val/loss":
        raise GenlabError(
            "a GAN logs no val/loss to rank checkpoints by: set callbacks.checkpoint.save_top_k=0 "
            "(last.ckpt is still saved) or callbacks.checkpoint.monitor to a logged metric."
        )


def validate_sampler(steps: int, eta: float, timesteps: int, prefix: str = "", ddpm_steps: int | None = None) -> None:
    """Sampler settings must fit the model's number of diffusion steps T."""
    _check(1 <= steps <= timesteps, f"{prefix}steps", steps, f"between 1 and the model's T = {timesteps}")
    _check(eta >= 0.0, f"{prefix}eta", eta, ">= 0")
    if ddpm_steps is not None:
        _check(2 <= ddpm_steps <= timesteps, f"{prefix}ddpm_steps", ddpm_steps,
               f"between 2 and the model's T = {timesteps} (or null: all T steps)")


def to_container(cfg: DictConfig) -> dict[str, Any]:
    """A plain dict (enums as strings) for checkpoints, hparams and loggers."""
    return OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)  # type: ignore[return-value]


def from_container(data: dict[str, Any]) -> DictConfig:
    """Rebuild a typed config from a plain dict saved in a checkpoint."""
    return _merge(OmegaConf.structured(Config), data, "checkpoint")


def save_config(cfg: DictConfig, path: Path) -> None:
    """Write the resolved config as YAML."""
    path.write_text(OmegaConf.to_yaml(to_container(cfg)))


ArgsT = TypeVar("ArgsT")


def parse_command_args(schema_type: type[ArgsT], args: list[str], command: str, required: dict[str, str]) -> ArgsT:
    """Typed `key=value` arguments of a command (sample, invert, ...) as an instance of a dataclass.

    Unknown keys, wrong types and missing required keys fail with a GenlabError that lists the valid keys.
    """
    schema = OmegaConf.structured(schema_type)
    try:
        merged = OmegaConf.merge(schema, OmegaConf.from_dotlist([f"{k}={v}" for k, v in parse_overrides(args).items()]))
    except ConfigKeyError as exc:
        raise GenlabError(f"unknown argument {exc.full_key!r}. Valid arguments: {', '.join(schema.keys())}.") from None
    except ValidationError as exc:
        raise GenlabError(f"bad value for {exc.full_key!r}: {exc.msg}.") from None
    except OmegaConfBaseException as exc:
        raise GenlabError(f"cannot read the arguments: {exc.msg}.") from None
    for key, meaning in required.items():
        if OmegaConf.is_missing(merged, key):
            raise GenlabError(f"{command} needs {key}=..., {meaning}.")
    return OmegaConf.to_object(merged)  # type: ignore[return-value]
