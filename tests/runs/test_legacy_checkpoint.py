"""A checkpoint written before the layout change (sampler.ddpm_steps, the old module paths) still loads and samples.

tests/fixtures/legacy_ddpm holds a 2-step ddpm_digits run made with the code of commit ecaca8b (T = 50, base 8,
sampler=ddpm sampler.ddpm_steps=5): its config has `ddpm_steps`, which is now `steps`.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from genlab.cli import main
from genlab.config import from_container, load_config, to_container
from genlab.images import load_png
from genlab.models import DiffusionModule
from genlab.runs.checkpoint import load_diffusion, read_checkpoint
from genlab.runs.resume import check_same_run, saved_config

LEGACY = Path(__file__).resolve().parents[1] / "fixtures" / "legacy_ddpm"
CKPT = LEGACY / "checkpoints" / "last.ckpt"


def test_old_checkpoint_loads_with_ddpm_steps_read_as_steps(capsys: pytest.CaptureFixture) -> None:
    assert "ddpm_steps" in read_checkpoint(CKPT)["hyper_parameters"]["config"]["sampler"]
    module = load_diffusion(CKPT)
    assert "sampler.ddpm_steps" in capsys.readouterr().out  # the one-line deprecation message
    settings = module.sampler_settings
    assert settings.name == "ddpm" and settings.steps == 5
    images = module.sample(3, seed=0)
    assert images.shape == (3, 1, 16, 16) and torch.isfinite(images).all()


def test_old_checkpoint_names_its_loss_term_eps_mse_and_loads_it_as_target_mse() -> None:
    config = read_checkpoint(CKPT)["hyper_parameters"]["config"]
    assert config["diffusion"]["loss_weights"] == {"eps_mse": 1.0}
    assert dict(from_container(config).diffusion.loss_weights) == {"target_mse": 1.0}


def test_old_checkpoint_without_ddpm_steps_means_all_steps() -> None:
    config = read_checkpoint(CKPT)["hyper_parameters"]["config"]
    config["sampler"] = {**config["sampler"], "ddpm_steps": None}
    assert from_container(config).sampler.steps is None  # all T, as DDPM sampling without ddpm_steps always ran


def test_old_run_folder_config_compares_equal_on_resume(tmp_path: Path) -> None:
    cfg = from_container(read_checkpoint(CKPT)["hyper_parameters"]["config"])
    check_same_run(to_container(cfg), saved_config(LEGACY), CKPT)  # no error: the old config.yaml reads as today's


def count_network_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    original = DiffusionModule.network_output  # the one way every sampler reaches the network

    def counted(self, x, t, y=None):  # noqa: ANN001, ANN202
        calls.append(int(t[0]))
        return original(self, x, t, y)

    monkeypatch.setattr(DiffusionModule, "network_output", counted)
    return calls


@pytest.mark.parametrize("args, expected", [(["sampler=ddpm", "steps=4"], 4), (["sampler=ddpm"], 5),
                                            (["sampler=ddpm", "steps=50"], 50), (["sampler=ddim", "steps=7"], 7),
                                            ([], 5), (["sampler=dpmpp_2m", "steps=10"], 10),
                                            (["sampler=unipc"], 10), (["sampler=heun", "steps=5"], 9),
                                            (["sampler=euler", "steps=4", "spacing=uniform"], 4)])
def test_sample_steps_count_network_evaluations_for_every_sampler(
        args: list[str], expected: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`genlab sample sampler=ddpm steps=S` runs S respaced steps (it ran the checkpoint's ddpm_steps or all T
    before, whatever S); without steps, DDPM takes the checkpoint's own (5 here), DDIM 50; without a sampler, the
    checkpoint's own sampler block (DDPM with 5 steps here), as eval, table and the API do."""
    calls = count_network_calls(monkeypatch)
    assert main(["sample", f"ckpt={CKPT}", "n=2", f"out={tmp_path / 'grid.png'}", *args]) == 0
    assert len(calls) == expected
    assert calls[0] == 49 and calls[-1] == 0  # from T - 1 down to 0


def test_eval_and_sample_read_steps_alike(tmp_path: Path) -> None:
    cfg = load_config({"experiment": "ddpm_digits", "sampler": "ddpm", "sampler.steps": "20"})
    assert cfg.sampler.name == "ddpm" and cfg.sampler.steps == 20


@pytest.mark.parametrize("args, message", [
    (["sampler=dpm"], "sampler=dpm is not a valid choice: use one of ddpm, ddim, dpmpp_2m, unipc, heun, euler"),
    (["sampler=euler", "eta=0.5"], "eta= applies to sampler=ddim, not to sampler=euler"),
    (["sampler=heun", "spacing=quadratic"], "spacing=quadratic does not apply to sampler=heun: use one of uniform, "
                                            "logsnr, karras"),
    (["sampler=ddpm", "steps=3,5"], "the sampler must be deterministic"),
    (["sampler=unipc", "steps=0"], "each number of steps must be a positive integer"),
])
def test_bad_sampler_settings_exit_2_with_the_choices(args: list[str], message: str, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture) -> None:
    assert main(["sample", f"ckpt={CKPT}", "n=2", f"out={tmp_path / 'grid.png'}", *args]) == 2
    assert message in capsys.readouterr().err


def test_several_step_counts_make_one_row_each_from_the_same_x_T(tmp_path: Path) -> None:
    out = tmp_path / "steps.png"
    assert main(["sample", f"ckpt={CKPT}", "n=3", f"out={out}", "sampler=dpmpp_2m", "steps=2,5,50"]) == 0
    grid = load_png(out)
    assert grid.shape == (1, 3 * 18 + 2, 3 * 18 + 2)  # 3 rows (step counts) x 3 columns (samples), 16 px + 2 padding
