"""Autoguidance (Karras et al. 2024) from the command line and the API: a guide named by path or as the run's own
time-step checkpoint, w = 1 as the main model, the guide's evaluations counted, and every wrong guide refused."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path

import pytest
import torch

import genlab
from conftest import TINY
from genlab.cli import main
from genlab.diffusion import NetworkCalls
from genlab.errors import GenlabError
from genlab.models import build_module
from genlab.runs.checkpoint import load_generator


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A 6-step ddpm_digits run whose run folder also keeps a 3-step state as its 5-minute time-step checkpoint
    (trained apart: a real 5 minutes is too long for a test), and that 3-step checkpoint itself."""
    root = tmp_path_factory.mktemp("autoguidance")
    common = ["train", "experiment=ddpm_digits", *TINY, "callbacks.checkpoint.every_n_minutes=5"]
    assert main([*common, f"run_dir={root / 'main'}"]) == 0
    assert main([*common, "trainer.max_steps=3", f"run_dir={root / 'early'}"]) == 0
    guide = root / "early" / "checkpoints" / "last.ckpt"
    shutil.copy(guide, root / "main" / "checkpoints" / "time-step0000003.ckpt")
    return root / "main" / "checkpoints" / "last.ckpt", guide


def test_a_time_step_guide_steers_and_w_1_is_the_main_model(runs: tuple[Path, Path], tmp_path: Path) -> None:
    ckpt, guide = runs
    common = ["sample", f"ckpt={ckpt}", "sampler=dpmpp_2m", "steps=4", "n=4"]
    cases = {"plain": [], "w1": ["guide=time-step:5min", "guide_scale=1"],
             "w2": ["guide=time-step:5min", "guide_scale=2"], "w2_path": [f"guide={guide}", "guide_scale=2"]}
    for name, extra in cases.items():
        assert main([*common, *extra, f"out={tmp_path / name}.png"]) == 0
    png = {name: (tmp_path / f"{name}.png").read_bytes() for name in cases}
    assert png["w1"] == png["plain"] and png["w2"] == png["w2_path"] and png["w2"] != png["plain"]


def test_the_api_and_the_counted_network_evaluations(runs: tuple[Path, Path]) -> None:
    ckpt, guide = runs
    model = genlab.load(ckpt, device="cpu")
    images = model.sample(3, sampler="dpmpp_2m", steps=4, guide="time-step:5min", guide_scale=2.0)
    assert images.shape == (3, *model.module.image_shape) and torch.isfinite(images).all()
    module = model.module
    settings = module.resolve_sampler({"sampler": "dpmpp_2m", "steps": 4, "guide": str(guide), "guide_scale": 2.0})
    calls = NetworkCalls()
    module.sample(3, settings, calls=calls)
    record = module.sampler_record(settings, calls)
    assert record["nfe"] == 8 and record["solver_nfe"] == 4 and record["guide"] == str(guide)  # the guide counts


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (["guide=time-step:7min", "guide_scale=2"], "choose one of time-step:5min (time-step0000003.ckpt)"),
        (["guide=time-step:soon", "guide_scale=2"], "write the minutes of training as time-step:5min"),
        (["guide=nowhere.ckpt", "guide_scale=2"], "guide=nowhere.ckpt does not exist"),
        (["guide=RUN", "guide_scale=2"], "is a folder, not a checkpoint file"),
        (["guide_scale=2"], "guide_scale=2 needs guide=PATH"),
        (["guide=MAIN", "guide_scale=2"], "is the main checkpoint itself"),
    ],
)
def test_bad_guides_exit_2(runs: tuple[Path, Path], tmp_path: Path, extra: list[str], expected: str,
                           capsys: pytest.CaptureFixture[str]) -> None:
    ckpt, _ = runs
    extra = [e.replace("MAIN", str(ckpt)).replace("RUN", str(ckpt.parent.parent)) for e in extra]
    assert main(["sample", f"ckpt={ckpt}", "steps=3", *extra, f"out={tmp_path / 'x.png'}"]) == 2
    assert expected in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()


def changed(config: dict, **changes: object) -> dict:
    out = copy.deepcopy(config)
    for key, value in changes.items():
        block, name = key.split("__")
        out[block][name] = value
    return out


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"data__name": "mnist"}, "it was trained on mnist, this model on digits"),
        ({"data__resolution": 32, "unet__attention_resolutions": [16]}, "its images are 1x32x32 (C x H x W), this model's 1x16x16"),
        ({"data__channels": 3}, "its images are 3x16x16"),
        ({"diffusion__process": "flow"}, "its process is flow, this model's vp"),
        ({"diffusion__prediction": "v"}, "its prediction is v, this model's eps"),
        ({"diffusion__timesteps": 40}, "its num_timesteps is 40, this model's 50"),
        ({"diffusion__schedule": "cosine"}, "its noise schedule differs"),
        ({"model__conditional": True}, "it is 10 classes, this model unconditional"),
    ],
)
def test_a_guide_of_another_task_is_refused_with_the_reason(runs: tuple[Path, Path], changes: dict,
                                                            expected: str) -> None:
    ckpt, _ = runs
    module = load_generator(ckpt)
    other = build_module(changed(module.hparams["config"], **changes))
    module.guide_source = lambda spec: other
    with pytest.raises(GenlabError, match="cannot guide this model") as info:
        module.sample(2, module.resolve_sampler({"steps": 3, "guide": "other.ckpt", "guide_scale": 2.0}))
    assert expected in str(info.value)


def test_a_guide_that_is_not_a_diffusion_model_is_refused(runs: tuple[Path, Path], tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    ckpt, _ = runs
    gan = tmp_path / "gan"
    assert main(["train", "experiment=gan_digits", "trainer.max_steps=2", "trainer.enable_progress_bar=false",
                 "trainer.val_every_n_steps=2", "trainer.limit_val_batches=1", "callbacks.sample_grid.num_images=4",
                 f"run_dir={gan}"]) == 0
    assert main(["sample", f"ckpt={ckpt}", "steps=3", f"guide={gan / 'checkpoints' / 'last.ckpt'}", "guide_scale=2",
                 f"out={tmp_path / 'x.png'}"]) == 2
    assert "it is a GANModule, not a diffusion model" in capsys.readouterr().err


def test_a_table_sweeps_the_guide_and_counts_its_evaluations(runs: tuple[Path, Path], tmp_path: Path) -> None:
    """A table column can be the guide's scale, a row's setting the guide (here the run's own 5-minute state); the
    nfe column counts the guide's forwards, and w = 1 scores exactly what the unguided row scores."""
    import csv

    import yaml

    ckpt, guide = runs
    clf = tmp_path / "clf"
    assert main(["train", "experiment=classifier_digits", *TINY, "trainer.max_steps=2", f"run_dir={clf}"]) == 0
    spec = {"name": "guides", "title": "guides", "defaults": {"sampler": "dpmpp_2m", "steps": 3},
            "rows": [{"label": "own 5 min", "guide": "time-step:5min"}, {"label": "by path", "guide": str(guide)}],
            "columns": {"key": "guide_scale", "values": [1, 2], "label": "w = {value}"},
            "metrics": ["fid", "nfe"], "seeds": [0], "n": 12, "batch_size": 12}
    path = tmp_path / "guides.yaml"
    path.write_text(yaml.safe_dump(spec))
    assert main(["table", str(path), f"ckpt={ckpt}", f"domain_classifier={clf / 'checkpoints' / 'last.ckpt'}",
                 "features=domain", f"cache_dir={tmp_path / 'ref'}", f"out={tmp_path}"]) == 0
    with open(tmp_path / "guides.csv", newline="") as f:
        rows = {(r["row"], r["column"]): r for r in csv.DictReader(f)}
    assert {k: float(r["nfe_mean"]) for k, r in rows.items()} == {
        ("own 5 min", "w = 1"): 3, ("own 5 min", "w = 2"): 6, ("by path", "w = 1"): 3, ("by path", "w = 2"): 6}
    fid = {k: float(r["fid_mean"]) for k, r in rows.items()}
    assert fid[("own 5 min", "w = 2")] == fid[("by path", "w = 2")] != fid[("own 5 min", "w = 1")]
    assert fid[("own 5 min", "w = 1")] == fid[("by path", "w = 1")]  # the main model alone, guide unused


def test_a_run_guides_its_grids_with_a_guide_file_and_refuses_a_time_step_guide(
        runs: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The run config's sampler block takes the same names: its grids are autoguided by a checkpoint file; a
    time-step guide, which exists only once the run has trained, is refused before anything is written."""
    _, guide = runs
    common = ["train", "experiment=ddpm_digits", *TINY, "trainer.max_steps=3", "sampler.guide_scale=2"]
    assert main([*common, f"sampler.guide={guide}", f"run_dir={tmp_path / 'guided'}"]) == 0
    assert (tmp_path / "guided" / "samples" / "final.png").is_file()
    assert main([*common, "sampler.guide=time-step:5min", f"run_dir={tmp_path / 'early'}"]) == 2
    assert "time-step checkpoints exist only once it has trained" in capsys.readouterr().err
    assert not (tmp_path / "early").exists()
    assert main([*common, f"run_dir={tmp_path / 'unguided'}"]) == 2
    assert "guide_scale=2 needs guide=PATH" in capsys.readouterr().err


def test_eval_refuses_a_bad_guide_before_sampling(runs: tuple[Path, Path], tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    ckpt, _ = runs
    out = tmp_path / "e.json"
    assert main(["eval", f"ckpt={ckpt}", "guide=time-step:7min", "guide_scale=2", "n=10", "features=domain",
                 f"domain_classifier={ckpt}", f"out={out}"]) == 2
    assert "choose one of time-step:5min" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []  # no JSON, no samples folder
