"""Progress: one training bar over the run's steps (resumed runs start where they stopped), one sampling bar over
all images, both off when stderr is not a terminal."""

from __future__ import annotations

import sys
from types import SimpleNamespace

import pytest
from lightning.pytorch.callbacks.progress.tqdm_progress import Tqdm

from genlab.config import load_config
from genlab.diffusion import GaussianDiffusion, SamplerSettings, generate, linear_betas
from genlab.training.callbacks.progress import ProgressBar
from genlab.training.trainer import show_progress


def test_training_bar_counts_the_runs_steps_from_the_resumed_step() -> None:
    bar = ProgressBar()
    bar._train_progress_bar = Tqdm(total=25, disable=True)  # Lightning's per-epoch bar: 25 batches
    trainer = SimpleNamespace(max_steps=1500, global_step=600, current_epoch=24, callbacks=[])
    bar.on_train_epoch_start(trainer)
    assert (bar.train_progress_bar.total, bar.train_progress_bar.n, bar.train_progress_bar.initial) == (1500, 600, 600)
    trainer.global_step, trainer.current_epoch = 625, 25
    bar.train_progress_bar.n = 625
    bar.on_train_epoch_start(trainer)  # the next epoch keeps the one bar
    assert (bar.train_progress_bar.total, bar.train_progress_bar.n) == (1500, 625)


def test_with_a_time_budget_the_bar_counts_its_seconds() -> None:
    from lightning.pytorch.callbacks import Timer

    timer = Timer(duration={"minutes": 20})
    timer._offset = 300.0  # a resumed run that spent 5 of its 20 minutes before
    bar = ProgressBar()
    bar._train_progress_bar = Tqdm(total=25, disable=True)
    bar.on_train_epoch_start(SimpleNamespace(max_steps=10**6, global_step=900, current_epoch=3, callbacks=[timer]))
    assert (bar.train_progress_bar.total, bar.train_progress_bar.n) == (1200, 300)


def test_bars_are_off_without_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = load_config({"trainer.enable_progress_bar": "true"})
    monkeypatch.setattr("sys.stderr.isatty", lambda: False)
    assert not show_progress(cfg)
    monkeypatch.setattr("sys.stderr.isatty", lambda: True)
    assert show_progress(cfg) and not show_progress(load_config({"trainer.enable_progress_bar": "false"}))


def test_sampling_shows_one_bar_over_all_images(monkeypatch: pytest.MonkeyPatch) -> None:
    bars: list[dict] = []
    gen = sys.modules["genlab.diffusion.generate"]  # the module (genlab.diffusion.generate is also the function)

    class Recorded(gen.tqdm):  # type: ignore[misc, name-defined]  # noqa: D401
        def __init__(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003
            bars.append({"total": kwargs.get("total"), "updates": []})
            super().__init__(*args, **kwargs)

        def update(self, n: float = 1) -> bool | None:
            bars[-1]["updates"].append(n)
            return super().update(n)

    monkeypatch.setattr(gen, "tqdm", Recorded)
    generate(GaussianDiffusion(linear_betas(50)), lambda x, t: 0 * x, 10, (1, 2, 2), SamplerSettings(steps=3),
             batch_size=4, progress=True)
    assert bars == [{"total": 10, "updates": [4, 4, 2]}]
