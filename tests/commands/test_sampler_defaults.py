"""One default policy: a command that names no sampler samples with the checkpoint's own `sampler` block, and the
registry refactoring changed no sample of an eps-model for any sampler."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from conftest import TINY
from genlab.cli import main
from genlab.config import load_config, parse_overrides
from genlab.diffusion import SamplerSettings
from genlab.runs.checkpoint import load_diffusion

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "legacy_ddpm"
# Samples of the legacy checkpoint drawn by the code before the sampler registry and the Denoiser (commit c1481c5):
# 3 images, seed 7, batches of 2, 5 steps, for each sampler (DDIM also with eta 0.7).
BEFORE = FIXTURES / "samples_before_registry.pt"
CASES = {"ddim": ("ddim", {"eta": 0.0}), "ddim_eta": ("ddim", {"eta": 0.7}), "ddpm": ("ddpm", {}),
         "dpmpp_2m": ("dpmpp_2m", {}), "unipc": ("unipc", {}), "heun": ("heun", {}), "euler": ("euler", {})}


@pytest.mark.parametrize("case", list(CASES))
def test_every_sampler_draws_the_samples_it_drew_before_the_registry(case: str) -> None:
    module = load_diffusion(FIXTURES / "checkpoints" / "last.ckpt")
    name, extra = CASES[case]
    images = module.sample(3, SamplerSettings().override(name=name, steps=5, **extra), seed=7, batch_size=2)
    # The same arithmetic for an eps-network: bit for bit with the reference's one thread for DDPM, DDIM, DPM-Solver++
    # and UniPC on the CPU that recorded it (an AMD EPYC); other thread counts reorder the network's sums (2e-9 seen
    # on 2 threads) and another CPU's kernels (an Intel Xeon with AVX-512 and AMX) round differently: 1.8e-7, about
    # 1.5 float32 ulps at 1.0, so 4 ulps are allowed. Euler and Heun are now written on the VP sample instead of
    # x / alpha, which keeps float32 digits where alpha is small: 2.4e-7 here.
    atol = 1e-6 if name in ("euler", "heun") else 5e-7
    torch.testing.assert_close(images, torch.load(BEFORE)[case], rtol=0, atol=atol)


def test_sample_without_a_sampler_uses_the_checkpoints_own(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run = tmp_path / "run"
    assert main(["train", "experiment=ddpm_digits", *TINY, "trainer.max_steps=2", "sampler.name=dpmpp_2m",
                 "sampler.steps=20", f"run_dir={run}"]) == 0
    capsys.readouterr()
    assert main(["sample", f"ckpt={run / 'checkpoints' / 'last.ckpt'}", "n=2"]) == 0
    out = capsys.readouterr().out
    assert "sampling 2 with dpmpp_2m, 20 steps on the uniform grid, 20 NFE" in out, out
    assert (run / "samples" / "sample-dpmpp_2m-seed0.png").is_file()  # named after the sampler used
    assert main(["sample", f"ckpt={run / 'checkpoints' / 'last.ckpt'}", "n=2", "steps=4"]) == 0
    assert "sampling 2 with dpmpp_2m, 4 steps" in capsys.readouterr().out  # the block's sampler, the steps given


def test_the_20_minute_recipe_samples_with_dpm_solver_at_20_nfe() -> None:
    settings = SamplerSettings.from_config(load_config(parse_overrides(["experiment=ddpm_mnist_20min"])).sampler)
    assert (settings.name, settings.nfe(1000)) == ("dpmpp_2m", 20)  # what genlab sample of its checkpoints uses
