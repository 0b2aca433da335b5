"""The wheel installs a working genlab: configs/ and experiments/ ship as package data, so it trains outside the
checkout. The fresh environment reuses this one's site-packages for torch and the rest (no download)."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


# Not slow (about 40 s on 2 cores): the only check that the wheel ships configs/, experiments/ and every package.
def test_the_wheel_trains_outside_the_checkout(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("GENLAB_HOME", "PYTHONPATH")}
    env.update(WANDB_MODE="offline", OMP_NUM_THREADS="2")
    built = run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                 str(tmp_path / "dist"), str(REPO)], tmp_path, env)
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = (tmp_path / "dist").glob("genlab-*.whl")
    venv = tmp_path / "venv"
    assert run([sys.executable, "-m", "venv", str(venv)], tmp_path, env).returncode == 0
    python = venv / "bin" / "python"
    # The new environment's own pip: it sees only that environment, so nothing here is uninstalled or changed.
    installed = run([str(python), "-m", "pip", "install", "--no-deps", "--no-index", "-q", str(wheel)], tmp_path, env)
    assert installed.returncode == 0, installed.stderr[-2000:]
    site = Path(run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp_path,
                    env).stdout.strip())
    # torch, lightning, ... from this environment: a plain path entry, so its editable genlab hook is not loaded
    (site / "reuse_test_env.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    work = tmp_path / "elsewhere"
    work.mkdir()
    where = run([str(python), "-c", "import genlab.config as c; print(c.__file__); print(c.project_root())"], work, env)
    module_file, root = where.stdout.split()
    assert module_file.startswith(str(venv)) and root == str(venv / "share" / "genlab"), where.stdout + where.stderr
    config = run([str(python), "-m", "genlab", "config", "experiment=ddpm_digits"], work, env)
    assert config.returncode == 0 and "experiment: ddpm_digits" in config.stdout, config.stderr[-2000:]
    trained = run([str(python), "-m", "genlab", "train", "experiment=ddpm_digits", "trainer.max_steps=2",
                   "trainer.val_every_n_steps=2", "trainer.limit_val_batches=1", "unet.base_channels=8",
                   "callbacks.sample_grid.num_images=4", "sampler.steps=2", "run_dir=run"], work, env)
    assert trained.returncode == 0, trained.stderr[-2000:]
    assert (work / "run" / "checkpoints" / "last.ckpt").is_file()
