"""Load, compose and override configs (validate.py checks them); every failure becomes a GenlabError."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Iterable

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException, ValidationError

from genlab.config.schema import CONFIG_GROUPS, Config, to_container
from genlab.config.validate import validate
from genlab.errors import GenlabError, first_line


def project_root() -> Path:
    """The folder holding `configs/` and `experiments/`: $GENLAB_HOME, the working directory, the source checkout, or
    the installed package data."""
    # $GENLAB_HOME, the working directory, the source checkout, then what a wheel installs (<prefix>/share/genlab)
    candidates = [os.environ.get("GENLAB_HOME"), os.getcwd(), str(Path(__file__).resolve().parents[3]),
                  str(Path(sys.prefix) / "share" / "genlab")]
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


def parse_dotlist(items: dict[str, str], what: str = "argument") -> DictConfig:
    """`key=value` pairs as an OmegaConf tree, values read as YAML; a value that is not valid YAML (an unclosed
    bracket or quote) fails naming its key."""
    try:
        return OmegaConf.from_dotlist([f"{key}={value}" for key, value in items.items()])
    except (OmegaConfBaseException, yaml.YAMLError):
        pass
    for key, value in items.items():  # find the one that does not parse
        try:
            OmegaConf.from_dotlist([f"{key}={value}"])
        except (OmegaConfBaseException, yaml.YAMLError) as exc:
            problem = getattr(exc, "problem", None) or first_line(exc)
            raise GenlabError(f"cannot read the {what} {key}={value}: {problem}. Values are YAML: close every "
                              "bracket and quote, e.g. unet.channel_mult=[1,2] or classes=[0,1].") from None
    raise GenlabError(f"cannot read the {what}s {' '.join(f'{k}={v}' for k, v in items.items())}.")


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


# Keys renamed since configs were first saved: (block, old name) -> new name. Checkpoints, saved run configs, YAML
# and overrides that use the old name load as the new one.
RENAMED = {("sampler", "clip_denoised"): "clip"}  # one name for the sampler fields everywhere (SamplerSettings)
# Loss terms by their old names: eps_mse was always the MSE of the network's target, whatever it predicts.
OLD_LOSS_TERMS = {"eps_mse": "target_mse"}


def migrate(data: Any, source: str) -> Any:
    """A config written by an older genlab, as today's: see _renamed, _loss_terms and _ddpm_steps."""
    return _loss_terms(_ddpm_steps(_renamed(data), source))


def _loss_terms(data: Any) -> Any:
    """`diffusion.loss_weights` that name a term by its old name (every config saved before target_mse: eps_mse),
    read with today's name; silently, since the term is the same."""
    diffusion = data.get("diffusion") if isinstance(data, (dict, DictConfig)) else None
    weights = diffusion.get("loss_weights") if isinstance(diffusion, (dict, DictConfig)) else None
    if not isinstance(weights, (dict, DictConfig)) or not any(k in OLD_LOSS_TERMS for k in weights):
        return data
    data = OmegaConf.to_container(data) if isinstance(data, DictConfig) else dict(data)
    diffusion = dict(data["diffusion"])
    diffusion["loss_weights"] = {OLD_LOSS_TERMS.get(k, k): w for k, w in diffusion["loss_weights"].items()}
    data["diffusion"] = diffusion
    return data


def _ddpm_steps(data: Any, source: str) -> Any:
    """Configs written before `sampler.steps` counted network evaluations for every sampler held
    `sampler.ddpm_steps` (DDPM's respaced steps; `steps` was DDIM's only): map it onto `steps`, with one line."""
    sampler = data.get("sampler") if isinstance(data, (dict, DictConfig)) else None
    if not isinstance(sampler, (dict, DictConfig)) or "ddpm_steps" not in sampler:
        return data
    data = OmegaConf.to_container(data) if isinstance(data, DictConfig) else dict(data)
    sampler = dict(data["sampler"])
    ddpm_steps = sampler.pop("ddpm_steps")
    if sampler.get("name", "ddim") == "ddpm":
        sampler["steps"] = ddpm_steps  # None: all T, as before
    print(f"genlab: sampler.ddpm_steps (from {source}) is deprecated: sampler.steps now counts the network "
          f"evaluations of every sampler; read as sampler.steps={sampler.get('steps')}.")
    data["sampler"] = sampler
    return data


def _renamed(data: Any) -> Any:
    """`data` with every key of RENAMED under its new name."""
    if not isinstance(data, (dict, DictConfig)):
        return data
    for (block, old), new in RENAMED.items():
        section = data.get(block)
        if isinstance(section, (dict, DictConfig)) and old in section:
            data = OmegaConf.to_container(data) if isinstance(data, DictConfig) else dict(data)
            section = dict(data[block])
            section[new] = section.pop(old)
            data[block] = section
    return data


def _merge(base: DictConfig, other: Any, source: str) -> DictConfig:
    """Merge `other` into the typed `base`, translating OmegaConf errors into GenlabError."""
    other = migrate(other, source)
    try:
        return OmegaConf.merge(base, other)  # type: ignore[return-value]
    except ConfigKeyError as exc:
        raise GenlabError(_unknown_key_message(exc, source)) from None
    except ValidationError as exc:
        # OmegaConf appends full_key/reference_type lines; the first line is the message.
        reason = first_line(exc).rstrip(".")
        raise GenlabError(f"bad value for config key {exc.full_key!r} (from {source}): {reason}.") from None
    except OmegaConfBaseException as exc:
        raise GenlabError(f"bad config (from {source}): {first_line(exc).rstrip('.')}.") from None


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
    cfg = _merge(cfg, parse_dotlist(overrides, "override"), "command line")
    validate(cfg)
    return cfg


def from_container(data: dict[str, Any]) -> DictConfig:
    """Rebuild a typed config from a plain dict saved in a checkpoint."""
    return _merge(OmegaConf.structured(Config), data, "checkpoint")


def save_config(cfg: DictConfig, path: Path) -> None:
    """Write the resolved config as YAML."""
    path.write_text(OmegaConf.to_yaml(to_container(cfg)))
