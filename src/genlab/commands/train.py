"""`genlab train` and `genlab config`: compose the run config from the command line, then train or print it."""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

from genlab.config import load_config, parse_overrides, to_container
from genlab.training.run import train


def train_command(args: list[str]) -> Path:
    """Run `genlab train key=value ...`; return the run folder."""
    overrides = parse_overrides(args)
    return train(load_config(overrides), overrides)


def config_command(args: list[str]) -> None:
    """Run `genlab config key=value ...`: print the resolved config."""
    print(OmegaConf.to_yaml(to_container(load_config(parse_overrides(args)))), end="")
