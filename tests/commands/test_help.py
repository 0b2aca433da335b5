"""`--help` and `--version`: generated from the argument dataclasses and the run schema, so every key is listed with
its type, default and comment."""

from __future__ import annotations

import dataclasses
import re
import tomllib
from pathlib import Path

import pytest

from genlab.cli import COMMANDS, main
from genlab.commands import args
from genlab.commands.help import COMMAND_HELP

REPO = Path(__file__).resolve().parents[2]


def test_version_is_the_packages(capsys: pytest.CaptureFixture) -> None:
    assert main(["--version"]) == 0
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    assert capsys.readouterr().out.strip() == f"genlab {version}"


def test_every_command_has_help() -> None:
    assert set(COMMAND_HELP) == set(COMMANDS)


@pytest.mark.parametrize("command", sorted(c for c, (_, a, _) in COMMAND_HELP.items() if a))
def test_command_help_lists_every_argument_with_its_default(command: str, capsys: pytest.CaptureFixture) -> None:
    assert main([command, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: genlab {command} ")
    for field in dataclasses.fields(getattr(args, COMMAND_HELP[command][1])):
        assert re.search(rf"^  {field.name} +\S", out, re.M), (command, field.name)


def test_sample_help_shows_types_defaults_choices_and_comments(capsys: pytest.CaptureFixture) -> None:
    assert main(["sample", "ckpt=x.ckpt", "-h"]) == 0  # --help anywhere wins over the other arguments
    out = capsys.readouterr().out
    # the registry's samplers; none given: the checkpoint's own
    assert re.search(r"^  sampler +ddpm\|ddim\|dpmpp_2m\|unipc\|heun\|euler\? = null", out, re.M)
    assert re.search(r"^  ckpt +str = \(required\)", out, re.M)
    assert re.search(r"^  out +str\? = null\n +a \.png file for a grid", out, re.M)


@pytest.mark.parametrize("command", ["train", "config"])
def test_train_help_lists_the_run_schema_groups_and_blocks(command: str, capsys: pytest.CaptureFixture) -> None:
    assert main([command, "--help"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^  model\.ema\.decay +float = 0\.9999", out, re.M)
    assert re.search(r"^  trainer\.on_nonfinite +stop\|skip = stop  # a NaN or inf", out, re.M)
    assert re.search(r"^  sampler +ddim50, ddim50_eta1, ddpm", out, re.M)  # the blocks of a group
    assert "ddpm_digits" in out.split("experiments (experiment=NAME):")[1].splitlines()[0]
