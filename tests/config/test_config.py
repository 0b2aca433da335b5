"""Config composition, overrides and the errors for bad keys, types and values."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from genlab.cli import main
from genlab.config import Config
from genlab.data import DataName
from genlab.config import from_container, load_config, parse_overrides, to_container
from genlab.errors import GenlabError


def test_experiment_composes_blocks_and_overrides() -> None:
    cfg = load_config({"experiment": "ddpm_digits"})
    assert cfg.experiment == "ddpm_digits"
    assert cfg.data.name == DataName.digits and cfg.data.resolution == 16  # from configs/data/digits.yaml
    assert cfg.unet.base_channels == 32  # from configs/unet/digits.yaml
    assert cfg.model.optim.lr == pytest.approx(2e-3)  # the experiment overrides the block's 2e-4
    assert cfg.sampler.name == "ddim" and cfg.sampler.steps == 50 and cfg.sampler.eta == 0.0


def test_command_line_overrides_and_block_selection() -> None:
    cfg = load_config(parse_overrides(["experiment=ddpm_digits", "sampler=ddpm", "trainer.max_steps=7", "unet.channel_mult=[1,2]"]))
    assert cfg.sampler.name == "ddpm"
    assert cfg.trainer.max_steps == 7
    assert list(cfg.unet.channel_mult) == [1, 2]


def test_default_experiment_is_ddpm_digits() -> None:
    assert load_config({}).experiment == "ddpm_digits"


def test_unknown_key_names_it_and_lists_valid_keys() -> None:
    with pytest.raises(GenlabError) as err:
        load_config({"data.rezolution": "32"})
    message = str(err.value)
    assert "data.rezolution" in message
    assert "resolution" in message and "batch_size" in message


def test_unknown_top_level_key() -> None:
    with pytest.raises(GenlabError, match="unknown config key 'sede'.*seed"):
        load_config({"sede": "1"})


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("trainer.max_steps", "many", "trainer.max_steps"),
        ("data.batch_size", "2.5", "data.batch_size"),
        ("data.name", "imagenet", "digits"),  # lists the valid choices
        ("sampler.name", "plms", "ddim"),
    ],
)
def test_wrong_type_or_choice(key: str, value: str, expected: str) -> None:
    with pytest.raises(GenlabError, match=expected):
        load_config({key: value})


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("trainer.max_steps", "-1"),
        ("sampler.eta", "-0.5"),
        ("sampler.steps", "2000"),  # more than T = 1000
        ("data.val_fraction", "1.5"),
        ("model.ema.decay", "1.0"),
        ("diffusion.loss_weights.vlb_magic", "1.0"),
    ],
)
def test_out_of_range_values(key: str, value: str) -> None:
    with pytest.raises(GenlabError, match="out of range"):
        load_config({key: value})


def test_the_loss_term_by_its_old_name_eps_mse_is_target_mse() -> None:
    cfg = load_config({"diffusion.loss_weights.eps_mse": "2.5"})
    assert dict(cfg.diffusion.loss_weights) == {"target_mse": 2.5}


def test_unknown_experiment_lists_available() -> None:
    with pytest.raises(GenlabError, match="ddpm_digits"):
        load_config({"experiment": "no_such_experiment"})


def test_unknown_block_lists_available() -> None:
    with pytest.raises(GenlabError, match="mnist"):
        load_config({"data": "imagenet21k"})


def test_malformed_argument() -> None:
    with pytest.raises(GenlabError, match="key=value"):
        parse_overrides(["trainer.max_steps"])


def test_container_round_trip_is_typed() -> None:
    cfg = load_config({"experiment": "ddpm_digits"})
    plain = to_container(cfg)
    assert plain["data"]["name"] == "digits"  # enums stored as strings in checkpoints
    again = from_container(plain)
    assert again == cfg
    assert OmegaConf.get_type(again) is Config


def test_config_command_prints_resolved_yaml(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "experiment=ddpm_digits", "seed=3"]) == 0
    printed = OmegaConf.create(capsys.readouterr().out)
    assert printed.seed == 3 and printed.data.name == "digits" and printed.unet.base_channels == 32


def test_config_command_bad_key_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "trainer.max_stepz=3"]) == 2
    err = capsys.readouterr().err
    assert "trainer.max_stepz" in err and "max_steps" in err
    assert "Traceback" not in err


def test_image_folder_needs_root() -> None:
    with pytest.raises(GenlabError, match="data.root"):
        load_config({"data": "image_folder"})


def test_network_shape_errors_are_config_errors(capsys: pytest.CaptureFixture[str], tmp_path) -> None:
    # attention at 5x5 does not exist in a 16 -> 8 -> 4 U-Net: caught when the model is built, exit 2
    assert main(["train", "unet.attention_resolutions=[5]", f"run_dir={tmp_path}"]) == 2
    err = capsys.readouterr().err
    assert "attention_resolutions" in err and "Traceback" not in err
