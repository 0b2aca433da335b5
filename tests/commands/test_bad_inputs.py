"""Bad input, realistic misuse and numerical faults: each case ends with exit status 2 and a one-line message that
names the file or key and the fix, and nothing that was written before is lost.

Most cases are one command: add a row to CASES. Cases that need a process of their own (two trainings at once, a
lock held by another process) are functions below.
"""

from __future__ import annotations

import errno
import math
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from conftest import TINY, subprocess_env
from genlab.cli import main
from genlab.errors import GenlabError, mount_point
from genlab.images import to_8bit
from genlab.metrics.reference import drop_unreadable_cache
from genlab.models import DiffusionModule
from genlab.runs.checkpoint import AtomicCheckpointIO, read_checkpoint

LEGACY = Path(__file__).resolve().parents[1] / "fixtures" / "legacy_ddpm" / "checkpoints" / "last.ckpt"
SHORT = [*TINY, "trainer.max_steps=2", "trainer.val_every_n_steps=2", "trainer.limit_val_batches=1",
         "callbacks.checkpoint.every_n_steps=2", "sampler.steps=2"]


@pytest.fixture(scope="module")
def ddpm_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished 2-step ddpm_digits run."""
    run = tmp_path_factory.mktemp("ddpm") / "run"
    assert main(["train", "experiment=ddpm_digits", *SHORT, f"run_dir={run}"]) == 0
    return run


def spec_file(tmp: Path, text: str) -> Path:
    path = tmp / "spec.yaml"
    path.write_text(text)
    return path


# (name, command arguments with {tmp} and {run} and {legacy}, the start of the message after "error: ")
CASES = [
    ("override YAML typo", ["config", "experiment=ddpm_digits", "unet.channel_mult=[1,2"],
     "cannot read the override unet.channel_mult=[1,2"),
    ("argument YAML typo", ["sample", "ckpt={legacy}", "classes=[0,1", "out={tmp}/g.png"],
     "cannot read the argument classes=[0,1"),
    ("infinite guidance", ["sample", "ckpt={legacy}", "guidance=inf", "classes=0", "out={tmp}/g.png"],
     "guidance=inf must be a finite number"),
    ("infinite classifier scale", ["sample", "ckpt={legacy}", "classifier_scale=-inf", "classes=0",
                                   "out={tmp}/g.png"], "classifier_scale=-inf must be a finite number"),
    ("empty checkpoint", ["sample", "ckpt={tmp}/empty.ckpt", "out={tmp}/g.png"], "checkpoint {tmp}/empty.ckpt is empty"),
    ("spec YAML error", ["table", "{tmp}/bad_yaml.yaml", "ckpt={legacy}"], "cannot read the sweep spec"),
    ("negative eta in a spec row", ["table", "{tmp}/neg_eta.yaml", "ckpt={legacy}"],
     "{tmp}/neg_eta.yaml: rows[0] (x): eta=-0.5 is out of range"),
    ("infinite guidance in a spec row", ["table", "{tmp}/inf_w.yaml", "ckpt={legacy}"],
     "{tmp}/inf_w.yaml: rows[0] (x): guidance=inf must be a finite number"),
    ("reused run folder", ["train", "experiment=gan_digits", *SHORT, "callbacks.checkpoint.save_top_k=0",
                           "run_dir={run}"], "run folder {run} already holds a run (ddpm_digits, step 2"),
    ("edited config.yaml on resume", ["train", "experiment=ddpm_digits", *SHORT, "model.optim.lr=0.05",
                                      "resume=auto", "run_dir={run}"], "cannot resume from"),
    ("attention at no level, at config load", ["config", "experiment=ddpm_digits", "unet.attention_resolutions=[3]"],
     "invalid unet config for 16x16 data: attention_resolutions [3] are not level resolutions [16, 8, 4]"),
    ("heads that divide no width, at config load", ["config", "experiment=ddpm_digits", "unet.num_heads=3"],
     "invalid unet config for 16x16 data: num_heads=3 must be >= 1 and divide"),
    ("infinite time budget", ["config", "experiment=ddpm_digits", "trainer.max_time=inf"],
     "config key 'trainer.max_time' = inf is out of range: it must be a positive, finite number of minutes; leave it "
     "out (null) for no time budget"),
    ("eval of 1 image", ["eval", "samples={tmp}/one", "data=digits", "out={tmp}/e.json"],
     "samples={tmp}/one holds 1 image: score at least 10"),
    ("eval of 5 images", ["eval", "samples={tmp}/five", "data=digits", "out={tmp}/e.json"],
     "samples={tmp}/five holds 5 images: score at least 10"),
    ("eval of a missing folder", ["eval", "samples={tmp}/nowhere", "data=digits", "out={tmp}/e.json"],
     "samples={tmp}/nowhere: no such folder"),
    ("eval of a file as the folder", ["eval", "samples={tmp}/empty.ckpt", "data=digits", "out={tmp}/e.json"],
     "samples={tmp}/empty.ckpt is a file; give the folder"),
    ("a spec row of nfe 0", ["table", "{tmp}/nfe0.yaml", "ckpt={legacy}"],
     "{tmp}/nfe0.yaml: rows[0] (x): nfe=0 is out of range: it must be a positive number of network evaluations"),
]


@pytest.mark.parametrize("name, args, message", CASES, ids=[c[0] for c in CASES])
def test_bad_input_exits_2_with_one_line(name: str, args: list[str], message: str, tmp_path: Path,
                                         ddpm_run: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "empty.ckpt").write_bytes(b"")
    (tmp_path / "bad_yaml.yaml").write_text('name: x\ntitle: "unclosed\nrows: []\n')
    for count in ("one", "five"):  # too few images to score: 1 and 5 PNGs
        (tmp_path / count).mkdir()
        for i in range({"one": 1, "five": 5}[count]):
            Image.fromarray(np.full((16, 16), 40 * i, dtype=np.uint8)).save(tmp_path / count / f"{i}.png")
    rows = (("neg_eta", {"label": "x", "eta": -0.5}), ("inf_w", {"label": "x", "guidance": math.inf}),
            ("nfe0", {"label": "x", "sampler": "heun", "nfe": 0}))
    for name_, row in rows:
        (tmp_path / f"{name_}.yaml").write_text(yaml.safe_dump({"name": name_, "title": "t", "rows": [row], "metrics": ["fid"], "n": 10}))
    if name == "edited config.yaml on resume":  # the user edits the run's config to match the changed lr
        config = ddpm_run / "config.yaml"
        config.write_text(config.read_text().replace("lr: 0.002", "lr: 0.05"))
    fill = {"tmp": str(tmp_path), "run": str(ddpm_run), "legacy": str(LEGACY)}
    before = (ddpm_run / "checkpoints" / "last.ckpt").read_bytes()
    assert main([a.format(**fill) for a in args]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert err.split(": error: ", 1)[1].startswith(message.format(**fill)), err
    assert (ddpm_run / "checkpoints" / "last.ckpt").read_bytes() == before  # nothing of the old run was touched


def test_resume_is_checked_against_the_checkpoint_not_the_editable_config(tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert main(["train", "experiment=ddpm_digits", *SHORT, f"run_dir={run}"]) == 0
    (run / "config.yaml").write_text((run / "config.yaml").read_text().replace("lr: 0.002", "lr: 0.05"))
    with pytest.raises(GenlabError, match=r"model\.optim\.lr: 0\.002 -> 0\.05"):
        from genlab.config import load_config, parse_overrides
        from genlab.training.run import train
        overrides = parse_overrides(["experiment=ddpm_digits", *SHORT, "model.optim.lr=0.05", "resume=auto",
                                     f"run_dir={run}", "trainer.max_steps=4"])
        train(load_config(overrides), overrides)


def test_nan_samples_are_an_error_not_a_black_png(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setattr(DiffusionModule, "network_output", lambda self, x, t, y=None: torch.full_like(x, math.nan))
    for sampler in ("ddim", "dpmpp_2m", "heun"):
        assert main(["sample", f"ckpt={LEGACY}", f"sampler={sampler}", "steps=3", f"out={tmp_path}/g.png"]) == 2
        err = capsys.readouterr().err
        assert "gave non-finite values (NaN or inf)" in err
        # DDIM with clipping is what the hint would suggest: it says so only to the other samplers
        assert ("try sampler=ddim with clipping" in err) == (sampler != "ddim"), err
    assert not (tmp_path / "g.png").exists()
    for command in (["invert", "image=index:0"], ["interpolate", "a=0", "b=1", "n=3"]):
        args = [command[0], f"ckpt={LEGACY}", *command[1:], "steps=3", f"out={tmp_path}/{command[0]}.png"]
        assert main(args) == 2
        err = capsys.readouterr().err
        assert "gave non-finite values (NaN or inf); nothing was written" in err and len(err.strip().splitlines()) == 1
        assert not list(tmp_path.glob(f"{command[0]}*"))  # no PNG, no JSON with "mse": NaN


def test_the_api_refuses_a_number_of_samples_below_one() -> None:
    import genlab

    model = genlab.load(LEGACY)
    for n in (0, -1, 2.5, True):
        with pytest.raises(GenlabError, match=f"n={n!r}: n must be a positive integer"):
            model.sample(n)
    assert model.sample(1, steps=2).shape == (1, 1, 16, 16)


def test_a_reference_cache_of_the_wrong_content_is_named_deleted_and_recomputed(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    features, stats = tmp_path / "key-ext-features-pool.pt", tmp_path / "key-ext-stat-fid-pool.pt"
    torch.save({"x": 1}, features)  # a valid torch file, but not the [N, F] features torch-fidelity wrote
    torch.save({"mu": np.zeros(4), "sigma": np.eye(4)}, stats)  # derived from the old features: goes with them
    assert drop_unreadable_cache("key", tmp_path) == [features, stats]
    assert "are not a feature matrix [N, F]; deleted, they are computed again" in capsys.readouterr().out
    torch.save(torch.ones(5, 4), features)
    torch.save({"mu": np.zeros(4), "sigma": np.eye(4)}, stats)
    assert drop_unreadable_cache("key", tmp_path) == [] and features.is_file() and stats.is_file()
    torch.save({"mu": np.zeros(4)}, stats)
    assert drop_unreadable_cache("key", tmp_path) == [stats]


def test_resume_auto_skips_a_cut_short_last_ckpt_for_the_newest_intact_one(tmp_path: Path,
                                                                           capsys: pytest.CaptureFixture) -> None:
    run = tmp_path / "run"
    assert main(["train", "experiment=ddpm_digits", *SHORT, f"run_dir={run}"]) == 0
    last, best = run / "checkpoints" / "last.ckpt", next((run / "checkpoints").glob("best-*.ckpt"))
    for cut in (b"", last.read_bytes()[:5000]):  # 0 bytes, then truncated
        last.write_bytes(cut)
        os.utime(best, (time.time() - 60, time.time() - 60))  # older than the cut-short last.ckpt
        capsys.readouterr()
        assert main(["train", "experiment=ddpm_digits", *SHORT, "trainer.max_steps=3", "resume=auto",
                     f"run_dir={run}"]) == 0
        out = capsys.readouterr().out
        assert f"resume=auto skips {last}" in out and f"resuming {run} from {best} (step 2)" in out, out
        assert read_checkpoint(last)["global_step"] == 3  # the resumed run saved a whole last.ckpt again
    for path in (last, best):
        path.write_bytes(b"")
    assert main(["train", "experiment=ddpm_digits", *SHORT, "resume=auto", f"run_dir={run}"]) == 2
    assert "resume=auto found no intact checkpoint under" in capsys.readouterr().err


def test_a_table_that_sweeps_nfe_names_each_csv_column_once() -> None:
    from types import SimpleNamespace

    from genlab.tables.render import csv_rows

    entry = {"row": "heun", "column": "10", "settings": {"sampler": "heun", "nfe": 10}, "nfe": 9, "seeds": [0],
             "n": 10, "metrics": {}, "values": {}, "keys": ["k"]}
    header, rows = csv_rows(SimpleNamespace(name="t"), [entry])
    assert len(header) == len(set(header)), header
    assert rows[0][header.index("nfe_budget")] == 10 and rows[0][header.index("nfe")] == 9


def test_invert_draws_no_progress_bars_into_redirected_stderr(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["invert", f"ckpt={LEGACY}", "image=index:0", "steps=3", f"out={tmp_path}/r.png"]) == 0
    err = capsys.readouterr().err
    assert "DDIM inversion" not in err and "DDIM:" not in err and "it/s" not in err, err


@pytest.fixture
def small_tmpfs(tmp_path: Path):  # noqa: ANN201
    """A real 1.5 MiB file system: one checkpoint of the tiny run fits, a second beside it (the atomic save) does
    not. Mounting needs root (or CAP_SYS_ADMIN); elsewhere the test is skipped."""
    where = tmp_path / "tmpfs"
    where.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1500k", "tmpfs", str(where)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {mounted.stderr.decode().strip()[:100]}")
    try:
        yield where
    finally:
        subprocess.run(["umount", str(where)], capture_output=True)


def test_a_full_disk_during_training_exits_2_and_keeps_the_previous_checkpoint(
        small_tmpfs: Path, capsys: pytest.CaptureFixture) -> None:
    run = small_tmpfs / "run"
    args = ["train", "experiment=ddpm_digits", *TINY, "callbacks.checkpoint.save_top_k=0", f"run_dir={run}"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert err.split(": error: ", 1)[1].startswith(f"no space left on {small_tmpfs}"), err
    assert read_checkpoint(run / "checkpoints" / "last.ckpt")["global_step"] == 3  # the step-3 save, intact
    assert not [p for p in (run / "checkpoints").iterdir() if p.name != "last.ckpt"]  # no temporary left


def test_skipping_most_steps_ends_the_run_and_never_ranks_a_nan(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture) -> None:
    run = tmp_path / "run"
    args = ["train", "experiment=ddpm_digits", *TINY, "trainer.max_steps=8", "trainer.val_every_n_steps=4",
            "trainer.limit_val_batches=1", "callbacks.checkpoint.every_n_steps=4", "trainer.on_nonfinite=skip",
            "model.optim.lr=1e6", "trainer.gradient_clip_val=0", "model.optim.warmup_steps=0",
            "callbacks.sample_grid.enabled=false", f"run_dir={run}"]  # no grid: a NaN grid would stop it first
    assert main(args) == 2
    assert "trainer.on_nonfinite=skip skipped" in capsys.readouterr().err
    assert not list((run / "checkpoints").glob("best-*.ckpt"))  # val/loss was NaN: nothing is "best"
    assert read_checkpoint(run / "checkpoints" / "last.ckpt")  # the last checkpoint is there and loads
    assert '"status": "failed"' in (run / "run.json").read_text()


def test_a_full_disk_names_the_space_needed_and_keeps_the_old_checkpoint(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"w": torch.zeros(1000)}, path)
    good = path.read_bytes()

    def disk_full(obj: object, f: object, *args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    where = re.escape(str(mount_point(tmp_path)))
    with pytest.raises(GenlabError, match=rf"no space left on {where} to write the checkpoint .* needs about 0\.0 MiB"):
        io.save_checkpoint({"w": torch.zeros(1000)}, path)
    assert path.read_bytes() == good and sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]


def test_a_truncated_reference_cache_is_named_deleted_and_recomputed(tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture) -> None:
    good, cut = tmp_path / "key-ext-features-a.pt", tmp_path / "key-ext-features-b.pt"
    torch.save(torch.ones(3, 4), good)  # features [N, F], as torch-fidelity caches them
    torch.save(torch.ones(300, 4), cut)
    cut.write_bytes(cut.read_bytes()[:-40])
    assert drop_unreadable_cache("key", tmp_path) == [cut]
    assert good.is_file() and not cut.exists() and str(cut) in capsys.readouterr().out


def test_16_bit_pngs_are_scaled_not_clipped(tmp_path: Path) -> None:
    from genlab.data.image_folder import ImageFileDataset

    values = np.array([[0, 257, 32896, 65535]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "a.png")  # PIL mode I;16
    assert Image.open(tmp_path / "a.png").mode == "I;16"
    assert np.asarray(to_8bit(Image.open(tmp_path / "a.png"))).tolist() == [[0, 1, 128, 255]]
    dataset = ImageFileDataset([tmp_path / "a.png"], [0], 1, transform=lambda x: x)
    pixels, _ = dataset[0]
    assert pixels.tolist() == [[[0, 1, 128, 255]]]  # PIL's own convert("L") gives [0, 255, 255, 255]


def train_process(run: Path, seed: int) -> subprocess.Popen:
    args = [sys.executable, "-m", "genlab", "train", "experiment=ddpm_digits", *TINY, "trainer.max_steps=6",
            f"seed={seed}", f"run_dir={run}"]
    return subprocess.Popen(args, env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_two_trainings_into_one_folder_at_once_one_is_refused(tmp_path: Path) -> None:
    run = tmp_path / "run"
    first, second = train_process(run, 1), train_process(run, 2)
    results = [(p.wait(timeout=300), p.communicate()[1]) for p in (first, second)]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2], results
    refused = next(err for code, err in results if code == 2)
    assert "is in use by another genlab process" in refused or "already holds a run" in refused, refused
    winner_seed = next(s for (code, _), s in zip(results, (1, 2)) if code == 0)
    assert f"seed: {winner_seed}" in (run / "config.yaml").read_text()  # config, checkpoint and log are one run's
    assert read_checkpoint(run / "checkpoints" / "last.ckpt")["hyper_parameters"]["config"]["seed"] == winner_seed
    assert not (run / ".lock").exists()  # released at the end


def test_a_lock_of_a_live_process_refuses_and_a_dead_ones_is_taken_over(tmp_path: Path,
                                                                         capsys: pytest.CaptureFixture) -> None:
    import json
    import socket

    run = tmp_path / "run"
    run.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (run / ".lock").write_text(json.dumps({"host": socket.gethostname(), "pid": holder.pid, "since": "now"}))
        assert main(["train", "experiment=ddpm_digits", *SHORT, f"run_dir={run}"]) == 2
        assert f"is in use by another genlab process (pid {holder.pid}" in capsys.readouterr().err
    finally:
        holder.kill()
        holder.wait()
    time.sleep(0.1)
    assert main(["train", "experiment=ddpm_digits", *SHORT, f"run_dir={run}"]) == 0  # the stale lock is taken over
    assert not (run / ".lock").exists()


def test_a_run_being_written_by_another_process_is_named_as_such(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture) -> None:
    import json
    import socket

    run = tmp_path / "run"
    assert main(["train", "experiment=ddpm_digits", *SHORT, f"run_dir={run}"]) == 0
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:  # the folder holds a run and its lock is held: the loser of two trainings started together sees this
        (run / ".lock").write_text(json.dumps({"host": socket.gethostname(), "pid": holder.pid, "since": "now"}))
        assert main(["train", "experiment=ddpm_digits", *SHORT, f"run_dir={run}"]) == 2
        err = capsys.readouterr().err
        assert f"is in use by another genlab process (pid {holder.pid} on {socket.gethostname()}" in err, err
        assert "resume=auto" not in err
    finally:
        holder.kill()
        holder.wait()
        os.unlink(run / ".lock")


def test_a_requeued_slurm_job_takes_over_its_own_lock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    run = tmp_path / "run"
    run.mkdir()
    # The first allocation ran on another node and was killed; the requeued job has the same id.
    (run / ".lock").write_text(json.dumps({"host": "node-17", "pid": 1, "slurm_job_id": "4242"}))
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    assert main(["train", "experiment=ddpm_digits", *SHORT, "resume=auto", f"run_dir={run}"]) == 0
    monkeypatch.setenv("SLURM_JOB_ID", "4243")  # another job: its lock on another host cannot be judged, so it holds
    (run / ".lock").write_text(json.dumps({"host": "node-17", "pid": 1, "slurm_job_id": "4242"}))
    assert main(["train", "experiment=ddpm_digits", *SHORT, "resume=auto", "trainer.max_steps=4",
                 f"run_dir={run}"]) == 2
    os.unlink(run / ".lock")
