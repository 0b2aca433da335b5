"""`genlab invert` and `genlab interpolate` on a tiny trained digits model, and DDIM inversion on a real network."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from conftest import TINY
from genlab.images import load_png, save_png
from genlab.runs.checkpoint import load_diffusion
from genlab.cli import main
from genlab.diffusion import ddim_invert, ddim_sample
from genlab.errors import GenlabError
from genlab.commands.invert import Source, dataset_item, parse_source, to_unit
from genlab.images import to_uint8

TRAIN_STEPS = 20
# 20 steps: the raw weights have learned enough that few-step DDIM no longer inverts exactly (measured MSE 9e-4 at
# S=2), while the EMA weights (decay 0.995) are still near the initialisation, whose eps barely depends on x (7e-7).
OVERRIDES = [
    *(o for o in TINY if not o.startswith(("trainer.max_steps", "trainer.val_every", "callbacks.checkpoint.every"))),
    f"trainer.max_steps={TRAIN_STEPS}",
    f"trainer.val_every_n_steps={TRAIN_STEPS}",
    f"callbacks.checkpoint.every_n_steps={TRAIN_STEPS}",
    "callbacks.sample_grid.enabled=false",
    "callbacks.loss_curve=false",
]
T = 50  # diffusion.timesteps in TINY
TILE = 16 + 2  # a 16x16 digit plus make_grid's padding


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tiny digits run shared by this file's tests (training is the slow part)."""
    run_dir = tmp_path_factory.mktemp("invert_run")
    assert main(["train", "experiment=ddpm_digits", *OVERRIDES, f"run_dir={run_dir}"]) == 0
    return run_dir / "checkpoints" / "last.ckpt"


def round_trip_mse(ckpt: Path, steps: int, indices: list[int]) -> float:
    """Invert -> decode MSE per dimension on [0, 1] pixels, raw weights, for some training images."""
    module = load_diffusion(ckpt, ema=False)
    x0 = torch.stack([dataset_item(module.cfg, i)[0] for i in indices])  # [B, 1, 16, 16]
    x_T = ddim_invert(module.diffusion, module.model_fn, x0, steps=steps)
    recon = ddim_sample(module.diffusion, module.model_fn, x0.shape, steps=steps, x_T=x_T, clip_denoised=False)
    return float(((to_unit(recon) - to_unit(x0)) ** 2).mean())


def test_many_step_inversion_reconstructs_a_training_image(ckpt: Path) -> None:
    mse_all = round_trip_mse(ckpt, T, [0, 5])
    mse_two = round_trip_mse(ckpt, 2, [0, 5])
    # Measured 4e-7 at S=T and 9e-4 at S=2, over 8 images (the DDIM paper: 1e-4 at S=1000 on CIFAR-10).
    assert mse_all < 1e-4
    assert mse_two > 10 * mse_all


def test_invert_writes_the_comparison_png_and_json(ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "recon.png"
    assert main(["invert", f"ckpt={ckpt}", "image=index:3", "steps=10", f"out={out}", "ema=false", "device=cpu"]) == 0
    assert load_png(out).shape == (1, 2 + TILE, 2 + 3 * TILE)  # target | x_T | reconstruction
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["ckpt"] == str(ckpt) and record["image"] == "index:3" and record["steps"] == 10
    assert record["clip"] is False  # invert decodes without clipping by default: the exact mirror of the encoder
    assert "paper_mse_cifar10" in record and record["paper_mse_cifar10"] == pytest.approx(0.014)
    assert record["mse"] == pytest.approx(round_trip_mse(ckpt, 10, [3]), rel=1e-4, abs=1e-12)
    assert "(DDIM paper, CIFAR-10, S=10: 0.014)" in capsys.readouterr().out
    # The first tile is the target itself, quantised.
    target = to_uint8(dataset_item(load_diffusion(ckpt).cfg, 3)[0])
    assert torch.equal(load_png(out)[:, 2:18, 2:18], target)


def test_invert_a_png_file_matches_its_dataset_index(ckpt: Path, tmp_path: Path) -> None:
    image = dataset_item(load_diffusion(ckpt).cfg, 3)[0]
    save_png(to_uint8(image), tmp_path / "digit.png")
    args = [f"ckpt={ckpt}", "steps=5", "ema=false"]
    assert main(["invert", *args, f"image={tmp_path / 'digit.png'}", f"out={tmp_path / 'a.png'}"]) == 0
    assert main(["invert", *args, "image=3", f"out={tmp_path / 'b.png'}"]) == 0  # a bare integer is an index
    from_file = json.loads((tmp_path / "a.json").read_text())["mse"]
    from_index = json.loads((tmp_path / "b.json").read_text())["mse"]
    assert "paper_mse_cifar10" not in json.loads((tmp_path / "a.json").read_text())  # no Table 2 value for S=5
    # Same image up to uint8 rounding of the PNG, so about the same error.
    assert from_file == pytest.approx(from_index, rel=0.5, abs=1e-6)


def test_interpolate_writes_a_row_from_seed_to_image(ckpt: Path, tmp_path: Path) -> None:
    out = tmp_path / "interp.png"
    assert main(["interpolate", f"ckpt={ckpt}", "a=seed:0", "b=index:3", "n=4", "steps=5", f"out={out}"]) == 0
    row = load_png(out)
    assert row.shape == (1, 2 + TILE, 2 + 4 * TILE)
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["n"] == 4 and record["clip"] is True and record["alphas"] == pytest.approx([0, 1 / 3, 2 / 3, 1])
    # The first tile decodes x_T = torch.randn(image_shape) drawn with seed 0, as documented (clip=true by default).
    module = load_diffusion(ckpt)
    x_T = torch.randn(module.image_shape, generator=torch.Generator().manual_seed(0)).unsqueeze(0)
    first = ddim_sample(module.diffusion, module.model_fn, x_T.shape, steps=5, x_T=x_T, clip_denoised=True)
    assert (row[:, 2:18, 2:18].int() - to_uint8(first[0]).int()).abs().max() <= 1
    assert not torch.equal(row[:, 2:18, 2:18], row[:, 2:18, 2 + 3 * TILE : 18 + 3 * TILE])  # the ends differ


def test_parse_source_syntax(tmp_path: Path) -> None:
    (tmp_path / "7").write_bytes(b"")
    assert parse_source("seed:3", "a", bare_int="seed", allow_seed=True) == Source("seed", 3)
    assert parse_source("12", "a", bare_int="seed", allow_seed=True).kind == "seed"
    assert parse_source("12", "image", bare_int="index", allow_seed=False) == Source("index", 12)
    assert parse_source("index:4", "a", bare_int="seed", allow_seed=True).value == 4
    assert parse_source(str(tmp_path / "7"), "a", bare_int="seed", allow_seed=True).kind == "path"
    with pytest.raises(GenlabError, match="non-negative integer"):
        parse_source("seed:x", "a", bare_int="seed", allow_seed=True)
    with pytest.raises(GenlabError, match="not an image to invert"):
        parse_source("seed:1", "image", bare_int="index", allow_seed=False)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["invert", "steps=5", "image=0", "colour=red"], "unknown argument 'colour'. Valid arguments: ckpt, image"),
        (["invert", "steps=5", "image=missing.png"], "image=missing.png: no such image file"),
        (["invert", "steps=51", "image=0"], "steps=51 is out of range: it must be between 1 and the model's T = 50"),
        (["invert", "image=0"], "invert needs steps="),
        (["invert", "steps=5", "image=index:99999"], "index:99999 is out of range"),
        (["invert", "steps=5", "image=0", "out=recon.jpg"], "give a .png file"),
        (["interpolate", "a=0", "b=1", "n=1"], "n >= 2"),
        (["interpolate", "a=0", "b=1", "steps=0"], "steps=0 is out of range"),
        (["interpolate", "a=0", "b=nope.png"], "b=nope.png: no such image file"),
    ],
)
def test_bad_input_exits_2_with_a_message(
    ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture, args: list[str], message: str
) -> None:
    args = [*args, f"ckpt={ckpt}"]
    if not any(a.startswith("out=") for a in args):
        args.append(f"out={tmp_path / 'x.png'}")
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "x.png").exists()


def test_unwritable_out_fails_before_any_work(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "file").write_text("")
    # The checkpoint does not exist either: the output is checked first.
    args = ["invert", "ckpt=none.ckpt", "image=0", "steps=5", f"out={tmp_path / 'file' / 'recon.png'}"]
    assert main(args) == 2
    assert "cannot write to" in capsys.readouterr().err


def test_invert_names_the_supported_model_kinds(ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data = torch.load(ckpt, map_location="cpu", weights_only=True)
    data["hyper_parameters"]["config"]["model"]["kind"] = "classifier"
    torch.save(data, tmp_path / "clf.ckpt")
    assert main(["invert", f"ckpt={tmp_path / 'clf.ckpt'}", "image=0", "steps=5", f"out={tmp_path / 'r.png'}"]) == 2
    assert "holds a 'classifier' model; invert supports ddpm, gan checkpoints" in capsys.readouterr().err
