"""The sampler registry: every fact about a sampler is its one entry, so a new sampler is one `register` call and then
works from `genlab sample`, `genlab table`, `genlab eval` and the Python API with no other change."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from torch import Tensor

from genlab.cli import main
from genlab.diffusion import SAMPLERS, Denoiser, SamplerEntry, SamplerSettings, Spacing, register, sampler_entry
from genlab.diffusion.settings import OPTIONAL_SETTINGS
from genlab.errors import GenlabError

LEGACY = Path(__file__).resolve().parents[1] / "fixtures" / "legacy_ddpm" / "checkpoints" / "last.ckpt"


def one_shot(denoiser: Denoiser, x_T: Tensor, settings: SamplerSettings, *, generator: torch.Generator | None,
             progress: bool) -> Tensor:
    """A toy sampler: the data prediction at t = T-1, in one network evaluation."""
    calls.append(settings.steps)
    T = denoiser.diffusion.num_timesteps
    t = torch.full((x_T.shape[0],), T - 1, dtype=torch.long)
    x0, _ = denoiser.at(x_T, t, denoiser.schedule.point(T - 1))
    return x0.clamp(-1.0, 1.0) if settings.clip else x0


calls: list[int | None] = []
TOY = SamplerEntry("one_shot", one_shot, "x0 at t = T-1 (a test)", 1, Spacing.uniform, (Spacing.uniform,),
                   nfe=lambda steps: 1)


@pytest.fixture
def toy(monkeypatch: pytest.MonkeyPatch) -> SamplerEntry:
    monkeypatch.setitem(SAMPLERS, TOY.name, TOY)  # registered for this test only
    calls.clear()
    return TOY


def test_a_registered_sampler_works_from_sample_table_and_the_api(toy: SamplerEntry, tmp_path: Path) -> None:
    import genlab

    assert main(["sample", f"ckpt={LEGACY}", "sampler=one_shot", "n=4", f"out={tmp_path / 'g.png'}"]) == 0
    assert calls == [1] and (tmp_path / "g.png").is_file()  # its default steps, through its own function

    images = genlab.load(LEGACY).sample(3, sampler="one_shot", seed=1)
    assert images.shape == (3, 1, 16, 16) and calls == [1, 1]

    spec = tmp_path / "toy.yaml"
    spec.write_text(yaml.safe_dump({"name": "toy", "title": "t", "metrics": ["fid"], "n": 10,
                                    "rows": [{"label": "one shot", "sampler": "one_shot"}]}))
    assert main(["table", str(spec), f"ckpt={LEGACY}", "features=domain", f"domain_classifier={classifier(tmp_path)}",
                 f"cache_dir={tmp_path / 'cache'}", f"out={tmp_path / 'tables'}"]) == 0
    cell = json.loads(next((tmp_path / "tables" / "cells" / "toy").glob("*.json")).read_text())
    assert cell["sampler"]["name"] == "one_shot" and cell["nfe"] == 1


def classifier(tmp_path: Path) -> Path:
    """A 3-step noise-aware classifier of the digits, for domain features."""
    from conftest import TINY

    run = tmp_path / "clf"
    assert main(["train", "experiment=classifier_digits", *TINY, "trainer.max_steps=3", f"run_dir={run}"]) == 0
    return run / "checkpoints" / "last.ckpt"


def test_an_unknown_sampler_names_the_registrys_choices() -> None:
    with pytest.raises(ValueError, match="unknown sampler 'plms': use one of ddpm, ddim, dpmpp_2m"):
        sampler_entry("plms")
    with pytest.raises(GenlabError, match="sampler=plms is not a valid choice: use one of ddpm, ddim"):
        SamplerSettings().override(name="plms")


def test_every_entry_is_consistent() -> None:
    for name, entry in SAMPLERS.items():
        assert entry.name == name and entry.default_grid in entry.grids and entry.description
        assert entry.steps_for_nfe(entry.nfe(7)) == 7  # the NFE rule and its inverse agree
        settings = SamplerSettings().override(name=name)
        assert settings.steps == entry.default_steps and settings.grid == entry.default_grid
        assert set(entry.reads) <= set(OPTIONAL_SETTINGS)


def test_register_adds_an_entry_by_its_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("genlab.diffusion.sampler_registry.SAMPLERS", dict(SAMPLERS))
    from genlab.diffusion import sampler_registry

    assert register(TOY) is TOY and sampler_registry.SAMPLERS["one_shot"] is TOY
