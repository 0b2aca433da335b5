"""Training on real MNIST and with the W&B logger (offline), each a few steps."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from conftest import SHARED_DATA, TINY, subprocess_env
from genlab.cli import main
from genlab.runs.checkpoint import read_checkpoint

# Fewer steps than TINY: these runs only check the wiring.
SHORT = [*TINY, "trainer.max_steps=2", "trainer.val_every_n_steps=2", "trainer.limit_val_batches=1",
         "callbacks.checkpoint.every_n_steps=2", "sampler.steps=2"]


@pytest.mark.skipif(
    not (SHARED_DATA / "MNIST" / "raw" / "train-images-idx3-ubyte").is_file(),
    reason=f"real MNIST not found at {SHARED_DATA / 'MNIST' / 'raw'} (present on CI, not on a fresh machine)",
)
@pytest.mark.parametrize("experiment", ["ddpm_mnist", "cfg_mnist", "classifier_mnist", "gan_mnist"])
def test_train_on_real_mnist(tmp_path: Path, experiment: str) -> None:
    args = ["train", f"experiment={experiment}", f"data.root={SHARED_DATA}", *SHORT, "unet.attention_resolutions=[16]",
            "trainer.max_steps=3", "trainer.accelerator=cpu", f"run_dir={tmp_path}"]  # 3: not a checkpoint multiple
    assert main(args) == 0
    saved = OmegaConf.load(tmp_path / "config.yaml")
    assert saved.data.name == "mnist" and saved.data.resolution == 32 and saved.data.channels == 1
    ckpt = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["global_step"] == 3  # saved at the final step
    if experiment == "classifier_mnist":
        return  # no EMA and no samples for a classifier
    assert any(not torch.equal(ckpt["state_dict"][k], ckpt["current_model_state"][k]) for k in ckpt["state_dict"])
    assert (tmp_path / "samples" / "final.png").is_file()


def test_wandb_logger_runs_offline_without_credentials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # No key, no mode: genlab itself must choose offline (wandb would prompt on a TTY and hang).
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc, so no stored key either
    assert main(["train", "experiment=ddpm_digits", "logger=wandb", *SHORT, f"run_dir={tmp_path / 'run'}"]) == 0
    offline_runs = list((tmp_path / "run" / "wandb").glob("offline-run-*"))
    assert len(offline_runs) == 1
    assert list(offline_runs[0].glob("run-*.wandb"))
    # CSV is written alongside whichever logger is chosen
    assert (tmp_path / "run" / "logs" / "metrics.csv").is_file()


def test_resumed_run_keeps_its_wandb_run_id(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = tmp_path / "run"
    args = ["train", "experiment=ddpm_digits", "logger=wandb", *SHORT, f"run_dir={run_dir}"]
    assert main(args) == 0
    first_id = json.loads((run_dir / "run.json").read_text())["wandb_id"]
    assert main([*args, "resume=auto", "trainer.max_steps=4"]) == 0
    assert json.loads((run_dir / "run.json").read_text())["wandb_id"] == first_id
    assert torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 4


def test_hyperparameters_are_the_resolved_config(tmp_path: Path) -> None:
    assert main(["train", "experiment=ddpm_digits", *SHORT, f"run_dir={tmp_path}", "seed=11"]) == 0
    hparams = OmegaConf.load(tmp_path / "logs" / "hparams.yaml")
    assert hparams.config.seed == 11
    assert hparams.config.data.num_classes == 10
    assert hparams.config == OmegaConf.load(tmp_path / "config.yaml")


def test_two_process_ddp_on_cpu_writes_one_run_folder(tmp_path: Path) -> None:
    # Lightning launches rank 1 as a second `genlab train` process: it must find rank 0's folder, not stamp its own.
    args = [sys.executable, "-m", "genlab", "train", "experiment=ddpm_digits", *SHORT, "trainer.accelerator=cpu",
            "trainer.devices=2", "trainer.strategy=ddp", f"runs_root={tmp_path}"]
    done = subprocess.run(args, env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    runs = list((tmp_path / "ddpm_digits").iterdir())
    assert len(runs) == 1
    assert torch.load(runs[0] / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 2


def test_torchrun_launch_file_runs_unchanged_on_cpu(tmp_path: Path) -> None:
    script = Path(__file__).resolve().parents[2] / "experiments" / "launch" / "torchrun.sh"
    env = dict(subprocess_env(), GPUS="2", RUN_DIR=str(tmp_path / "run"))
    args = [str(script), "experiment=ddpm_digits", *SHORT, "trainer.accelerator=cpu"]
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 2
    # the same command again continues the run: resume=auto is part of the launch file
    done = subprocess.run([*args, "trainer.max_steps=3"], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "resuming" in done.stdout, done.stdout[-2000:] + done.stderr[-2000:]
    assert torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 3


def test_slurm_launch_file_is_valid_bash_and_resumable() -> None:
    script = Path(__file__).resolve().parents[2] / "experiments" / "launch" / "slurm_ddp.sbatch"
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    text = script.read_text()
    for needed in ("srun", 'trainer.num_nodes="${SLURM_NNODES}"', "resume=auto", "--signal=SIGUSR1", "--requeue"):
        assert needed in text, needed


def test_opt_in_learning_rate_scaling_with_the_global_batch(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    args = ["train", "experiment=ddpm_digits", *SHORT, "data.batch_size=16", "trainer.scale_lr=true",
            "trainer.reference_batch_size=8", "model.optim.lr=0.001", f"run_dir={run_dir}"]
    assert main(args) == 0
    record = json.loads((run_dir / "run.json").read_text())
    assert record["global_batch"] == 16 and record["world_size"] == 1
    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["optimizer_states"][0]["param_groups"][0]["initial_lr"] == pytest.approx(0.002)  # x 16 / 8


def test_offline_wandb_run_holds_the_metrics_config_and_grids(tmp_path: Path) -> None:
    from wandb_records import read_offline_run

    run_dir = tmp_path / "run"
    args = [sys.executable, "-m", "genlab", "train", "experiment=ddpm_digits", "logger=wandb", *SHORT,
            "trainer.max_steps=4", f"run_dir={run_dir}"]
    done = subprocess.run(args, env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    (run_file,) = run_dir.glob("wandb/offline-run-*/run-*.wandb")
    history, config = read_offline_run(run_file)
    logged = [(row["trainer/global_step"], row["train/loss"]) for row in history if "train/loss" in row]
    with open(run_dir / "logs" / "metrics.csv", newline="") as f:
        in_csv = [(int(r["step"]), float(r["train/loss"])) for r in csv.DictReader(f) if r.get("train/loss")]
    assert logged == in_csv and len(logged) == 4  # the same loss curve as the CSV
    assert config["config"]["experiment"] == "ddpm_digits" and config["config"]["trainer"]["max_steps"] == 4
    grids = [row for row in history if row.get("val/samples/_type") == "images/separated"]  # wandb.Image rows
    assert [row["trainer/global_step"] for row in grids] == [2, 4]
    assert len(list(run_file.parent.glob("files/media/images/val/samples_*.png"))) == 2


def test_a_crashed_ddp_rank_ends_the_run_with_an_error_not_a_hang(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    args = [sys.executable, "-m", "genlab", "train", "experiment=ddpm_digits", *SHORT, "trainer.max_steps=100000",
            "trainer.val_every_n_steps=100000", "callbacks.checkpoint.every_n_steps=5", "trainer.accelerator=cpu",
            "trainer.devices=2", "trainer.strategy=ddp", "trainer.ddp_timeout_s=60", f"run_dir={run_dir}"]
    proc = subprocess.Popen(args, env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    while not (run_dir / "checkpoints" / "last.ckpt").is_file():  # both ranks are training
        assert proc.poll() is None and time.time() < deadline
        time.sleep(0.2)
    children = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
    assert len(children) == 1  # Lightning's second process, rank 1
    os.kill(int(children[0]), signal.SIGKILL)
    out, err = proc.communicate(timeout=120)  # rank 0 must not wait forever
    # Who ends rank 0 is a race: genlab's error (its collective fails: exit 2) or Lightning's child-process watchdog,
    # which SIGKILLs the whole group. Either way the run ends, names the dead rank and keeps its checkpoint.
    if proc.returncode == 2:
        assert "another DDP process stopped answering" in err and "resume=auto" in err
    else:
        assert proc.returncode == -signal.SIGKILL, (proc.returncode, err[-2000:])
        assert f"PID {children[0]}" in out + err and "terminated" in out + err, err[-2000:]
    assert read_checkpoint(run_dir / "checkpoints" / "last.ckpt")["global_step"] >= 5  # intact and loadable


def test_wandb_checkpoint_artifacts_are_opt_in(tmp_path: Path) -> None:
    from genlab.config import load_config, parse_overrides
    from genlab.training.loggers import build_loggers

    for flag, expected in (("false", False), ("true", "all")):
        cfg = load_config(parse_overrides(["logger=wandb", f"logger.log_checkpoints={flag}", "logger.tags=[a,b]"]))
        wandb_logger = build_loggers(cfg, tmp_path)[1]
        assert wandb_logger._log_model == expected
        assert wandb_logger._wandb_init["tags"] == ["a", "b"] and wandb_logger._wandb_init["project"] == "genlab"
