"""`genlab train experiment=cfg_digits` then guided `genlab sample` with one row per class."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import TINY
from genlab.images import load_png
from genlab.cli import main


@pytest.fixture(scope="module")
def cfg_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("cfg_run")
    assert main(["train", "experiment=cfg_digits", *TINY, f"run_dir={run_dir}"]) == 0
    return run_dir / "checkpoints" / "last.ckpt"


def test_guided_sample_grid_has_one_row_per_class(cfg_ckpt: Path, tmp_path: Path) -> None:
    out = tmp_path / "grid.png"
    args = ["sample", f"ckpt={cfg_ckpt}", "steps=3", "guidance=3.0", "classes=0,4,7", "per_class=5", f"out={out}"]
    assert main(args) == 0
    assert load_png(out).shape == (1, 2 + 3 * 18, 2 + 5 * 18)


def test_both_conventions_give_the_same_images(cfg_ckpt: Path, tmp_path: Path) -> None:
    common = ["sample", f"ckpt={cfg_ckpt}", "steps=3", "classes=[1,2]", "per_class=2"]
    assert main([*common, "guidance=2.0", f"out={tmp_path / 'w.png'}"]) == 0
    assert main([*common, "guidance_scale=3.0", f"out={tmp_path / 's.png'}"]) == 0
    assert (tmp_path / "w.png").read_bytes() == (tmp_path / "s.png").read_bytes()



def test_the_guidance_interval_from_the_command_line(cfg_ckpt: Path, tmp_path: Path) -> None:
    """guidance_sigma_min/max on `genlab sample`: an interval holding every step is plain CFG, one holding none the
    unguided model (the same PNG bytes)."""
    common = ["sample", f"ckpt={cfg_ckpt}", "sampler=dpmpp_2m", "steps=3", "classes=[1,2]", "per_class=2"]
    runs = {"cfg": ["guidance=2.0"], "plain": ["guidance=0"],
            "all": ["guidance=2.0", "guidance_sigma_min=1e-9", "guidance_sigma_max=1e9"],
            "none": ["guidance=2.0", "guidance_sigma_min=1e8", "guidance_sigma_max=1e9"]}
    for name, extra in runs.items():
        assert main([*common, *extra, f"out={tmp_path / name}.png"]) == 0
    png = {name: (tmp_path / f"{name}.png").read_bytes() for name in runs}
    assert png["all"] == png["cfg"] and png["none"] == png["plain"] and png["cfg"] != png["plain"]


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (["guidance=1.0"], "classes"),  # guidance without classes
        (["classes=0,12"], "0..9"),
        (["guidance=1", "guidance_scale=2", "classes=1"], "not both"),
        (["classifier_scale=2", "classes=1"], "classifier=PATH"),
        (["guidance=1", "classes=1", "guidance_sigma_min=3", "guidance_sigma_max=1"], "need 0 <= min <= max"),
    ],
)
def test_bad_guidance_arguments_exit_2(
    cfg_ckpt: Path, tmp_path: Path, extra: list[str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["sample", f"ckpt={cfg_ckpt}", *extra, f"out={tmp_path / 'x.png'}"]) == 2
    assert expected in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()


def test_p_uncond_outside_unit_interval_is_rejected(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "experiment=cfg_digits", "model.p_uncond=1.5"]) == 2
    assert "model.p_uncond" in capsys.readouterr().err


@pytest.fixture(scope="module")
def classifier_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("clf_run")
    assert main(["train", "experiment=classifier_digits", *TINY, f"run_dir={run_dir}"]) == 0
    return run_dir / "checkpoints" / "last.ckpt"


def test_classifier_guided_sample_reports_accuracy(
    cfg_ckpt: Path, classifier_ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "guided.png"
    args = ["sample", f"ckpt={cfg_ckpt}", f"classifier={classifier_ckpt}", "classifier_scale=2.0", "sampler=ddpm",
            "classes=3,5", "per_class=2", f"out={out}"]
    assert main(args) == 0
    assert load_png(out).shape == (1, 2 + 2 * 18, 2 + 2 * 18)
    assert "class accuracy" in capsys.readouterr().out


def test_checkpoint_of_the_wrong_kind_exits_2(
    cfg_ckpt: Path, classifier_ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # a diffusion checkpoint where a classifier is needed, and the reverse
    assert main(["sample", f"ckpt={cfg_ckpt}", f"classifier={cfg_ckpt}", "classes=1", f"out={tmp_path / 'a.png'}"]) == 2
    assert "'classifier' checkpoint" in capsys.readouterr().err
    assert main(["sample", f"ckpt={classifier_ckpt}", f"out={tmp_path / 'b.png'}"]) == 2
    assert "'ddpm' checkpoint" in capsys.readouterr().err


def test_training_logs_class_accuracy_of_guided_samples(classifier_ckpt: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    args = ["train", "experiment=cfg_digits", *TINY, f"callbacks.class_accuracy.classifier={classifier_ckpt}",
            "callbacks.class_accuracy.per_class=2", f"run_dir={run_dir}"]
    assert main(args) == 0
    metrics = (run_dir / "logs" / "metrics.csv").read_text().splitlines()
    column = metrics[0].split(",").index("val/class_acc")
    values = [float(row.split(",")[column]) for row in metrics[1:] if row.split(",")[column]]
    assert len(values) == 2  # validations at steps 3 and 6
    assert all(0.0 <= v <= 1.0 and abs(v * 20 - round(v * 20)) < 1e-4 for v in values)  # k correct of 20


def test_class_accuracy_of_an_unconditional_model_is_rejected(
    classifier_ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["train", "experiment=ddpm_digits", *TINY, f"callbacks.class_accuracy.classifier={classifier_ckpt}",
            f"run_dir={tmp_path / 'run'}"]
    assert main(args) == 2
    assert "unconditional" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
