"""No command deletes or overwrites a file or folder that it did not write (genlab.outputs): each data-loss case of the
"nothing lost, round two" fuzz, with the md5 of the user's files before and after, and the own outputs that a
command may write again."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import TINY
from genlab.cli import main
from genlab.images import save_png
from genlab.outputs import FOLDER_MANIFEST, check_writable, owned_files

LEGACY = Path(__file__).resolve().parents[1] / "fixtures" / "legacy_ddpm" / "checkpoints" / "last.ckpt"


@pytest.fixture(scope="module")
def classifier(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("clf") / "run"
    assert main(["train", "experiment=classifier_digits", *TINY, f"run_dir={run}"]) == 0
    return run / "checkpoints" / "last.ckpt"


@pytest.fixture(scope="module")
def posthoc_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("posthoc") / "run"
    assert main(["train", "experiment=ddpm_digits", *TINY, "model.ema.posthoc=true",
                 "model.ema.posthoc_every_n_steps=2", f"run_dir={run}"]) == 0
    return run


def md5(path: Path) -> str:
    """One digest of a file, or of every file under a folder (names and bytes)."""
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    digest = hashlib.md5()
    for f in files:
        digest.update(str(f.relative_to(path) if path.is_dir() else f.name).encode())
        digest.update(f.read_bytes())
    return digest.hexdigest()


def user_pngs(folder: Path, n: int = 12) -> Path:
    """A user's folder of n 16x16 grayscale PNGs, named as genlab names its own (000000.png, ...)."""
    folder.mkdir(parents=True)
    for i in range(n):
        pixels = np.random.default_rng(i).integers(0, 256, (16, 16), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{i:06d}.png")
    return folder


def refused(args: list[str], capsys: pytest.CaptureFixture) -> str:
    """Run a command that must refuse: exit 2, one line, no traceback; return the message."""
    assert main(args) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    return err


def domain(classifier: Path, tmp: Path) -> list[str]:
    return ["features=domain", f"domain_classifier={classifier}", f"cache_dir={tmp / 'cache'}"]


def test_eval_never_writes_into_the_folder_it_scores(classifier: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture) -> None:
    images = user_pngs(tmp_path / "X_samples")
    before = md5(images)
    err = refused(["eval", f"samples={images}", "data=digits", *domain(classifier, tmp_path),
                   f"out={tmp_path / 'X.json'}"], capsys)
    assert f"which is samples={images} itself" in err and f"out={tmp_path / 'X-2.json'}" in err
    assert md5(images) == before and not (tmp_path / "X.json").exists()


def test_eval_of_a_checkpoint_never_replaces_a_users_folder_beside_its_json(classifier: Path, tmp_path: Path,
                                                                           capsys: pytest.CaptureFixture) -> None:
    images = user_pngs(tmp_path / "X_samples")
    before = md5(images)
    err = refused(["eval", f"ckpt={LEGACY}", "n=10", "steps=2", *domain(classifier, tmp_path),
                   f"out={tmp_path / 'X.json'}"], capsys)
    assert f"{images} holds files that genlab did not write" in err
    assert md5(images) == before and not (tmp_path / "X.json").exists()


def test_eval_never_overwrites_a_users_json_and_a_refusal_creates_no_folder(classifier: Path, tmp_path: Path,
                                                                           capsys: pytest.CaptureFixture) -> None:
    notes = tmp_path / "notes.json"
    notes.write_text('{"my": "notes"}\n')
    refused(["eval", f"ckpt={LEGACY}", "n=10", "steps=2", *domain(classifier, tmp_path), f"out={notes}"], capsys)
    assert notes.read_text() == '{"my": "notes"}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.json"]  # no notes_samples/, no cache yet


def test_eval_rewrites_its_own_results_and_only_its_own_files(classifier: Path, tmp_path: Path) -> None:
    out, folder = tmp_path / "r.json", tmp_path / "r_samples"
    common = ["eval", f"ckpt={LEGACY}", "steps=2", *domain(classifier, tmp_path), f"out={out}"]
    assert main([*common, "n=12"]) == 0
    assert json.loads(out.read_text())["written_by"] == "genlab eval"
    assert main([*common, "n=10"]) == 0  # its own JSON and folder: written again, the two extra PNGs removed
    assert sorted(p.name for p in folder.glob("*.png")) == [f"{i:06d}.png" for i in range(10)]
    (folder / "mine.txt").write_text("a user's file put there afterwards")
    assert main([*common, "n=10"]) == 2  # the folder now holds something genlab did not write
    assert (folder / "mine.txt").is_file() and len(list(folder.glob("*.png"))) == 10


def test_a_samples_folder_written_before_manifests_existed_is_still_genlabs(tmp_path: Path) -> None:
    out, folder = tmp_path / "old.json", tmp_path / "old_samples"
    folder.mkdir()
    for i in range(3):
        save_png(torch.zeros(1, 4, 4, dtype=torch.uint8), folder / f"{i:06d}.png")
    assert owned_files(folder) is None  # no manifest, no result naming it: the user's as far as genlab knows
    out.write_text(json.dumps({"metrics": {}, "extractor": {}, "samples_dir": str(folder.resolve())}))
    assert sorted(p.name for p in owned_files(folder, legacy_owner=out)) == ["000000.png", "000001.png", "000002.png"]
    (folder / "photo.jpg").write_bytes(b"x")
    assert owned_files(folder, legacy_owner=out) is None
    assert not (folder / FOLDER_MANIFEST).exists()


def test_ema_never_overwrites_the_checkpoint_it_reads_or_another_one(posthoc_run: Path, tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture) -> None:
    checkpoints = posthoc_run / "checkpoints"
    last, best = checkpoints / "last.ckpt", next(checkpoints.glob("best-*.ckpt"))
    before = {p: md5(p) for p in (last, best)}
    err = refused(["ema", f"ckpt={last}", "sigma_rel=0.07", f"out={last}"], capsys)
    assert "is the checkpoint being read" in err and f"out={checkpoints / 'posthoc-sigma0.070.ckpt'}" in err
    err = refused(["ema", f"ckpt={last}", "sigma_rel=0.07", f"out={best}"], capsys)
    assert f"{best} already exists and genlab did not write it" in err
    err = refused(["ema", f"ckpt={last}", "sigma_rel=0.07", f"out={tmp_path / 'ema.png'}"], capsys)
    assert "give a file name ending in .ckpt" in err and not (tmp_path / "ema.png").exists()
    assert {p: md5(p) for p in (last, best)} == before
    out = tmp_path / "e" / "ema.ckpt"
    assert main(["ema", f"ckpt={last}", "sigma_rel=0.07", f"out={out}"]) == 0
    assert main(["ema", f"ckpt={last}", "sigma_rel=0.10", f"out={out}"]) == 0  # its own output: written again
    assert torch.load(out, weights_only=True)["genlab_posthoc_ema"]["sigma_rel"] == 0.10
    refused(["ema", f"ckpt={out}", "sigma_rel=0.07", f"out={out}"], capsys)  # read and written: refused too


def test_sample_never_overwrites_a_users_image_or_folder(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    images = user_pngs(tmp_path / "mine")
    photo = tmp_path / "photo.png"
    Image.fromarray(np.zeros((8, 8), dtype=np.uint8)).save(photo)
    before = md5(images), md5(photo)
    for out in (f"{images}/", str(images), str(photo)):
        err = refused(["sample", f"ckpt={LEGACY}", "n=4", "steps=2", f"out={out}"], capsys)
        assert "genlab did not write" in err and "Choose another out=" in err
    assert (md5(images), md5(photo)) == before
    grid, folder = tmp_path / "grid.png", tmp_path / "each"
    for _ in range(2):  # its own grid and folder: written again
        assert main(["sample", f"ckpt={LEGACY}", "n=4", "steps=2", f"out={grid}"]) == 0
        assert main(["sample", f"ckpt={LEGACY}", "n=3", "steps=2", f"out={folder}/"]) == 0
    assert sorted(p.name for p in folder.glob("*.png")) == ["000000.png", "000001.png", "000002.png"]


def test_invert_compare_and_table_never_overwrite_a_users_file(tmp_path: Path, posthoc_run: Path,
                                                               capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "recon.json").write_text('{"mine": 1}')
    err = refused(["invert", f"ckpt={LEGACY}", "image=index:0", "steps=2", f"out={tmp_path / 'recon.png'}"], capsys)
    assert f"{tmp_path / 'recon.json'} already exists" in err and not (tmp_path / "recon.png").exists()
    (tmp_path / "compare.md").write_text("# my notes\n")
    err = refused(["compare", str(posthoc_run), f"out={tmp_path / 'compare.md'}"], capsys)
    assert (tmp_path / "compare.md").read_text() == "# my notes\n" and not (tmp_path / "compare.png").exists()
    assert main(["compare", str(posthoc_run), f"out={tmp_path / 'c.md'}"]) == 0
    assert main(["compare", str(posthoc_run), f"out={tmp_path / 'c.md'}"]) == 0  # its own: written again
    tables = tmp_path / "tables"
    tables.mkdir()
    (tables / "ddim_steps_eta.csv").write_text("a,b\n1,2\n")
    err = refused(["table", "ddim_steps_eta", f"ckpt={LEGACY}", f"out={tables}"], capsys)
    assert (tables / "ddim_steps_eta.csv").read_text() == "a,b\n1,2\n" and sorted(p.name for p in tables.iterdir()) == [
        "ddim_steps_eta.csv"]


def test_check_writable_creates_nothing(tmp_path: Path) -> None:
    check_writable(tmp_path / "a" / "b" / "c.json")
    check_writable(tmp_path / "d" / "e_samples")
    assert list(tmp_path.iterdir()) == []


def test_ema_names_a_truncated_snapshot(posthoc_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    import shutil

    run = tmp_path / "run"
    shutil.copytree(posthoc_run, run)
    snapshot = sorted((run / "ema_snapshots").glob("*.pt"))[2]
    snapshot.write_bytes(snapshot.read_bytes()[:500])
    err = refused(["ema", f"ckpt={run / 'checkpoints' / 'last.ckpt'}", "sigma_rel=0.07"], capsys)
    assert f"the post-hoc EMA snapshot {snapshot} cannot be read" in err and "Move it out of" in err
