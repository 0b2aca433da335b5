"""Speed levers through the real CLI: a tiny run trains with them, and its checkpoint matches one trained without."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from conftest import TINY
from genlab.cli import main
from genlab.build import build_datamodule
from genlab.config import load_config

LEVERS = ["perf.channels_last=true", "perf.grad_checkpointing=true", "perf.attention=math",
          "data.pin_memory=false"]


def train(run_dir: Path, *extra: str) -> dict:
    assert main(["train", "experiment=ddpm_digits", *TINY, f"run_dir={run_dir}", *extra]) == 0
    return torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def plain_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return train(tmp_path_factory.mktemp("plain"))


def test_levers_train_to_a_checkpoint_with_the_same_keys(plain_checkpoint: dict, tmp_path: Path) -> None:
    ckpt = train(tmp_path, *LEVERS)
    assert ckpt["hyper_parameters"]["config"]["perf"]["attention"] == "math"
    assert list(ckpt["state_dict"]) == list(plain_checkpoint["state_dict"])
    assert list(ckpt["current_model_state"]) == list(plain_checkpoint["current_model_state"])
    # Same seed, same data: the levers change float rounding only, so the weights stay close after 6 steps.
    for key, value in plain_checkpoint["current_model_state"].items():
        assert torch.allclose(ckpt["current_model_state"][key], value, atol=1e-4), key


def test_a_run_resumes_with_other_levers(tmp_path: Path) -> None:
    train(tmp_path)
    ckpt = train(tmp_path, "resume=auto", "trainer.max_steps=9", *LEVERS)
    assert ckpt["global_step"] == 9


@pytest.mark.slow
def test_compiled_training_keeps_the_checkpoint_keys(plain_checkpoint: dict, tmp_path: Path) -> None:
    ckpt = train(tmp_path, "perf.compile=true")
    assert list(ckpt["state_dict"]) == list(plain_checkpoint["state_dict"])  # no `_orig_mod.` prefix


def test_levers_load_from_the_perf_block_and_the_command_line() -> None:
    cfg = load_config({"perf": "default", "perf.compile": "true", "perf.compile_mode": "max_autotune"})
    assert cfg.perf.compile and cfg.perf.compile_mode.value == "max_autotune" and cfg.perf.attention.value == "auto"
    assert cfg.data.pin_memory is None and cfg.data.persistent_workers is None  # automatic


@pytest.mark.parametrize(
    "overrides, pin, persistent",
    [
        ({}, torch.cuda.is_available(), False),  # automatic: pin for a GPU; no workers, nothing to keep
        ({"data.num_workers": "1"}, torch.cuda.is_available(), True),
        ({"data.num_workers": "1", "data.persistent_workers": "false", "data.pin_memory": "true"}, True, False),
    ],
)
def test_dataloader_flags_reach_the_dataloader(overrides: dict, pin: bool, persistent: bool) -> None:
    datamodule = build_datamodule(load_config({"experiment": "ddpm_digits", **overrides}))
    datamodule.setup("fit")
    loader = datamodule.train_dataloader()
    assert (loader.pin_memory, loader.persistent_workers) == (pin, persistent)


@pytest.mark.parametrize(
    "extra, expected",
    [
        (["perf.attention=flash"], "perf.attention"),
        (["perf.channels_lst=true"], "Valid keys under 'perf'"),
        (["perf.compile=maybe"], "perf.compile"),
        (["perf.compile_mode=max_autotune"], "without perf.compile=true"),
        (["perf.compile=true", "perf.compile_mode=reduce_overhead"], "needs a GPU"),
        (["data.persistent_workers=true", "data.num_workers=0"], "data.num_workers > 0"),
        (["perf=fastest"], "unknown perf block"),
        (["experiment=classifier_digits", "perf.channels_last=true"], "does not use the perf block"),
    ],
)
def test_bad_perf_settings_exit_2(extra: list[str], expected: str, capsys: pytest.CaptureFixture[str],
                                  tmp_path: Path) -> None:
    assert main(["train", "experiment=ddpm_digits", *TINY, f"run_dir={tmp_path}", *extra]) == 2
    assert expected in capsys.readouterr().err
