"""Results stay with the run: default outputs under the checkpoint's run folder, eval logged into the run's W&B run,
W&B runs named uniquely and grouped by experiment, the best FID as the summary."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import TINY, subprocess_env
from genlab.cli import main
from genlab.runs.folder import default_output
from wandb_records import read_offline_run, read_run_info

LEGACY = Path(__file__).resolve().parents[1] / "fixtures" / "legacy_ddpm"


def test_default_outputs_are_in_the_checkpoints_run_folder(tmp_path: Path) -> None:
    ckpt = LEGACY / "checkpoints" / "last.ckpt"
    assert default_output(ckpt, "eval", "x.json", "eval.json") == str(LEGACY.resolve() / "eval" / "x.json")
    loose = tmp_path / "loose.ckpt"
    loose.write_bytes(ckpt.read_bytes())
    assert default_output(loose, "eval", "x.json", "eval.json") == "eval.json"  # outside a run folder: as before


def test_sample_without_out_writes_into_the_run(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text((LEGACY / "config.yaml").read_text())
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "last.ckpt").write_bytes((LEGACY / "checkpoints" / "last.ckpt").read_bytes())
    assert main(["sample", f"ckpt={run / 'checkpoints' / 'last.ckpt'}", "sampler=heun", "steps=2", "n=2"]) == 0
    assert (run / "samples" / "sample-heun2-seed0.png").is_file()


@pytest.fixture(scope="module")
def wandb_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A classifier for domain features and a 4-step DDPM run logged to W&B (offline) with FID during training."""
    root = tmp_path_factory.mktemp("wandb")
    assert main(["train", "experiment=classifier_digits", *TINY, f"run_dir={root / 'clf'}"]) == 0
    clf = root / "clf" / "checkpoints" / "last.ckpt"
    args = [sys.executable, "-m", "genlab", "train", "experiment=ddpm_digits", "logger=wandb", *TINY,
            "trainer.max_steps=4", "trainer.val_every_n_steps=2", "callbacks.checkpoint.every_n_steps=2",
            "eval.enabled=true", "eval.features=domain", f"eval.domain_classifier={clf}", "eval.num_samples=12",
            f"eval.cache_dir={root / 'cache'}", f"run_dir={root / 'run'}"]
    done = subprocess.run(args, env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return root / "run", clf


def test_wandb_runs_are_named_per_run_grouped_and_keep_the_best_fid(wandb_run: tuple[Path, Path]) -> None:
    run, _ = wandb_run
    (run_file,) = run.glob("wandb/offline-run-*/run-*.wandb")
    info = read_run_info(run_file)
    assert info["name"] == f"ddpm_digits-{run.name}" and info["group"] == "ddpm_digits"
    assert info["metrics"].get("val/fid_domain") == ["min"]
    _, config = read_offline_run(run_file)
    assert "config" in config and not {"resolution", "batch_size", "val_fraction"} & set(config)  # logged once


def test_eval_logs_into_the_runs_wandb_run(wandb_run: tuple[Path, Path], capsys: pytest.CaptureFixture) -> None:
    run, clf = wandb_run
    wandb_id = json.loads((run / "run.json").read_text())["wandb_id"]
    before = set(run.glob("wandb/offline-run-*"))
    assert main(["eval", f"ckpt={run / 'checkpoints' / 'last.ckpt'}", "n=12", "features=domain",
                 f"domain_classifier={clf}", f"cache_dir={run.parent / 'cache'}", "sampler=ddim", "steps=3"]) == 0
    out = capsys.readouterr().out
    assert f"W&B run {wandb_id}" in out
    (result,) = run.glob("eval/last-ddim3-n12-domain.json")  # the default output, in the run folder
    fid = json.loads(result.read_text())["metrics"]["fid_domain"]
    (resumed,) = set(run.glob("wandb/offline-run-*")) - before
    (run_file,) = resumed.glob(f"run-{wandb_id}.wandb")  # the same W&B run, continued
    history, _ = read_offline_run(run_file)
    logged = [row for row in history if "eval/last-ddim3-n12-domain/fid_domain" in row]
    assert logged and logged[0]["eval/last-ddim3-n12-domain/fid_domain"] == pytest.approx(fid)
    assert any(row.get("eval/last-ddim3-n12-domain/samples/_type") == "image-file" for row in history)
    spread = json.loads(result.read_text())["spread"]["bootstrap"]["fid_domain"]["std"]  # the spread goes along
    assert logged[0]["eval/last-ddim3-n12-domain/fid_domain_bootstrap_std"] == pytest.approx(spread)


def test_eval_logs_into_the_runs_tensorboard(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard", reason="logger=tensorboard needs the tensorboard extra (pip install '.[tensorboard]')")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    assert main(["train", "experiment=classifier_digits", *TINY, f"run_dir={tmp_path / 'clf'}"]) == 0
    run = tmp_path / "run"
    assert main(["train", "experiment=ddpm_digits", "logger=tensorboard", *TINY, "trainer.max_steps=4",
                 f"run_dir={run}"]) == 0
    assert main(["eval", f"ckpt={run / 'checkpoints' / 'last.ckpt'}", "n=12", "features=domain", "steps=3",
                 f"domain_classifier={tmp_path / 'clf' / 'checkpoints' / 'last.ckpt'}",
                 f"cache_dir={tmp_path / 'cache'}"]) == 0
    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    assert "eval/last-ddim3-n12-domain/fid_domain" in events.Tags()["scalars"]
    assert "eval/last-ddim3-n12-domain/samples" in events.Tags()["images"]
