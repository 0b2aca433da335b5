"""Flow-matching and EDM models through every command: training, the ODE samplers, CFG, inversion along their ODE, and
one-line refusals of what they do not have (DDPM/DDIM, classifier guidance, the NLL bound)."""

from __future__ import annotations

import csv
import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

import genlab
from conftest import TINY
from genlab.cli import main
from genlab.errors import GenlabError
from genlab.metrics.nll import compute_nll
from genlab.runs.checkpoint import load_classifier, load_diffusion

FLOW = [*TINY, "trainer.max_steps=4", "trainer.val_every_n_steps=2", "callbacks.checkpoint.every_n_steps=2"]


@pytest.fixture(scope="module")
def flow_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("flow") / "run"
    assert main(["train", "experiment=flow_digits", *FLOW, f"run_dir={run}"]) == 0
    return run


def test_a_flow_model_trains_on_the_velocity_and_logs_it(flow_run: Path) -> None:
    with open(flow_run / "logs" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    logged = {k for row in rows for k, v in row.items() if v}
    assert {"train/velocity_mse", "val/velocity_mse", "val/loss_q1"} <= logged and "train/eps_mse" not in logged
    module = load_diffusion(flow_run / "checkpoints" / "last.ckpt")
    assert module.diffusion.process == "flow" and module.cfg.diffusion.process == "flow"  # from the checkpoint
    assert (flow_run / "samples" / "final.png").is_file()


@pytest.mark.parametrize("sampler", ["euler", "heun", "dpmpp_2m", "unipc"])
def test_every_ode_solver_samples_a_flow_model(flow_run: Path, sampler: str, tmp_path: Path) -> None:
    module = load_diffusion(flow_run / "checkpoints" / "last.ckpt")
    images = module.sample(3, module.resolve_sampler({"sampler": sampler, "steps": 4}), seed=0)
    assert images.shape == (3, 1, 16, 16) and torch.isfinite(images).all()
    assert main(["sample", f"ckpt={flow_run / 'checkpoints' / 'last.ckpt'}", f"sampler={sampler}", "steps=3", "n=2",
                 f"out={tmp_path / 'g.png'}"]) == 0


def test_what_a_flow_model_lacks_is_refused_in_one_line(flow_run: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture) -> None:
    ckpt = flow_run / "checkpoints" / "last.ckpt"
    for args, message in (
        (["sample", f"ckpt={ckpt}", "sampler=ddim", f"out={tmp_path / 'g.png'}"],
         "sampler=ddim steps on a VP model's discrete timesteps; this model's process has none (a flow model): use "
         "one of dpmpp_2m, unipc, heun, euler"),
        (["sample", f"ckpt={ckpt}", "sampler=ddpm", f"out={tmp_path / 'g.png'}"], "sampler=ddpm steps on a VP model"),
        (["invert", f"ckpt={ckpt}", "image=index:0", "steps=3", "spacing=quadratic", f"out={tmp_path / 'r.png'}"],
         "spacing=quadratic is DDIM's, on a VP model's discrete timesteps; this flow model's ODE grids are uniform, "
         "logsnr, karras"),
        (["train", "experiment=flow_digits", *FLOW, "diffusion.prediction=v", f"run_dir={tmp_path / 'x'}"],
         "diffusion.prediction=v applies to diffusion.process=vp"),
        (["config", "experiment=flow_digits", "sampler.name=ddim"], "sampler.name=ddim steps on a VP model"),
        (["config", "experiment=flow_digits", "diffusion.time_shift=0"], "config key 'diffusion.time_shift' = 0.0"),
    ):
        assert main(args) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and message in err, err
    assert not (tmp_path / "g.png").exists() and not (tmp_path / "x").exists()
    module = load_diffusion(ckpt)
    with pytest.raises(GenlabError, match=r"nll_method=bound: this checkpoint's process \(flow\) has ode only"):
        compute_nll(module, module.cfg, "test", 8, 0, torch.device("cpu"), limit=4, method="bound")


def test_a_flow_models_nll_is_the_odes(flow_run: Path) -> None:
    """nll=true on a flow model: the probability-flow ODE's likelihood, finite and reproducible for a seed (the
    fixture is barely trained: about 8.6 bits/dim, where runs/flow_digits' 1,500 steps reach the numbers in
    experiments/results/digits/objectives.md)."""
    module = load_diffusion(flow_run / "checkpoints" / "last.ckpt")
    bpd, n = compute_nll(module, module.cfg, "test", 4, 0, torch.device("cpu"), limit=4)
    again, _ = compute_nll(module, module.cfg, "test", 4, 0, torch.device("cpu"), limit=4, method="ode")
    assert n == 4 and bpd == again and 0 < bpd < 20


def test_a_conditional_flow_model_takes_cfg_and_classifier_guidance(tmp_path: Path) -> None:
    run = tmp_path / "cfg"
    assert main(["train", "experiment=cfg_digits", *FLOW, "diffusion=flow", "sampler=euler50", "sampler.steps=3",
                 f"run_dir={run}"]) == 0
    module = load_diffusion(run / "checkpoints" / "last.ckpt")
    labels = torch.tensor([1, 7])
    plain = module.sample(2, module.resolve_sampler({"guidance": 0.0}), labels=labels, seed=0)
    guided = module.sample(2, module.resolve_sampler({"guidance": 3.0}), labels=labels, seed=0)
    assert torch.isfinite(guided).all() and (guided - plain).abs().max() > 1e-3  # the weight reaches the velocity
    # Classifier guidance too: a VP-trained noise-aware classifier read at the flow's log-SNR.
    classifier_run = tmp_path / "classifier"
    assert main(["train", "experiment=classifier_digits", *TINY, f"run_dir={classifier_run}"]) == 0
    classifier = load_classifier(classifier_run / "checkpoints" / "last.ckpt")
    steered = module.sample(2, module.resolve_sampler({"classifier_scale": 5.0}), labels=labels, seed=0,
                            classifier=classifier)
    assert torch.isfinite(steered).all() and (steered - plain).abs().max() > 1e-3


def test_a_flow_run_resumes_exactly(tmp_path: Path) -> None:
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    args = ["train", "experiment=flow_digits", *TINY, "trainer.val_every_n_steps=2",
            "callbacks.checkpoint.every_n_steps=2", "data.hflip=false"]
    assert main([*args, "trainer.max_steps=4", f"run_dir={whole}"]) == 0
    assert main([*args, "trainer.max_steps=2", f"run_dir={parts}"]) == 0
    assert main([*args, "trainer.max_steps=4", "resume=auto", f"run_dir={parts}"]) == 0
    a = torch.load(whole / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    b = torch.load(parts / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)  # the flow times are drawn from the resumed RNG as before


def test_an_edm_model_through_the_commands(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run = tmp_path / "edm"
    assert main(["train", "experiment=edm_digits", *FLOW, "sampler.steps=3", f"run_dir={run}"]) == 0
    with open(run / "logs" / "metrics.csv") as f:
        assert "train/preconditioned_mse" in f.readline()
    ckpt = run / "checkpoints" / "last.ckpt"
    module = load_diffusion(ckpt)
    assert module.diffusion.process == "edm" and module.sampler_settings.name == "heun"
    for args in (["s_churn=40", "s_tmin=0.05", "s_tmax=50", "s_noise=1.003"], ["sampler=dpmpp_2m", "steps=4"]):
        assert main(["sample", f"ckpt={ckpt}", "n=2", *args, f"out={tmp_path / 'g.png'}"]) == 0
    assert "churn 40" in capsys.readouterr().out  # Algorithm 2, named in the sampler line
    for args, message in ((["sampler=euler", "s_churn=40"], "s_churn= applies to sampler=heun, not to sampler=euler"),
                          (["sampler=ddim"], "sampler=ddim steps on a VP model's discrete timesteps"),
                          (["s_churn=-1"], "s_churn=-1.0 is out of range"),
                          (["rho=0"], "rho=0.0 is out of range: it must be a finite number > 0"),
                          (["rho=steep"], "rho"),
                          (["sigma_max=100"], "sigma_max=100 is outside this model's noise levels: give a value "
                                              "above 0.002 and at most 80"),
                          (["sampler=dpmpp_2m", "rho=2"], "rho=2 shapes the karras grid"),
                          (["spacing=uniform", "sigma_max=30"], "sigma_max=30 sets where a karras or logsnr grid")):
        assert main(["sample", f"ckpt={ckpt}", "n=2", *args, f"out={tmp_path / 'h.png'}"]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert not (tmp_path / "h.png").exists()


def test_an_edm_samplers_grid_takes_rho_and_sigma_max_everywhere(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture) -> None:
    """The 5-NFE grid of benchmarks/results/flow_few_steps.md (rho 2 from sigma 30) from the command line, the run
    config, the API and the model; refused in the config as on the command line."""
    run = tmp_path / "edm"
    assert main(["train", "experiment=edm_digits", *FLOW, "sampler.steps=3", "sampler.rho=2",
                 "sampler.sigma_max=30", f"run_dir={run}"]) == 0
    ckpt = run / "checkpoints" / "last.ckpt"
    module = load_diffusion(ckpt)
    shaped = module.sampler_settings
    assert (shaped.rho, shaped.sigma_max) == (2.0, 30.0)  # the run's block, from the checkpoint
    plain = module.sample(2, module.resolve_sampler({"rho": 7, "sigma_max": 80}), seed=0)
    assert torch.equal(plain, module.sample(2, replace(shaped, rho=None, sigma_max=None), seed=0))  # its own grid
    images = module.sample(2, seed=0)
    assert (images - plain).abs().max() > 1e-3  # the shape reaches the sampler
    model = genlab.load(ckpt)
    assert torch.equal(model.sample(2, seed=0), images)
    assert torch.equal(model.sample(2, rho=7, sigma_max=80, seed=0), plain)
    with pytest.raises(GenlabError, match="sigma_max=81 is outside this model's noise levels"):
        model.sample(2, sigma_max=81)
    assert main(["sample", f"ckpt={ckpt}", "n=2", "steps=2", f"out={tmp_path / 'g.png'}"]) == 0
    assert "heun, 2 steps on the karras grid, rho 2, from sigma 30, 3 NFE" in capsys.readouterr().out
    for args, message in ((["sampler.sigma_max=500"], "sampler.sigma_max=500 is outside this model's noise levels"),
                          (["sampler.rho=-1"], "sampler.rho=-1.0 is out of range"),
                          (["sampler.spacing=logsnr", "sampler.rho=2"], "sampler.rho=2 shapes the karras grid")):
        assert main(["config", "experiment=edm_digits", *args]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err


@pytest.mark.parametrize("experiment", ["flow_digits", "edm_digits"])
def test_invert_and_interpolate_run_along_the_ode_of_any_process(experiment: str, tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert main(["train", "experiment=" + experiment, *FLOW, "sampler.steps=3", f"run_dir={run}"]) == 0
    ckpt = run / "checkpoints" / "last.ckpt"
    errors = []
    for steps in (5, 40):
        out = tmp_path / f"r{steps}.png"
        assert main(["invert", f"ckpt={ckpt}", "image=index:0", f"steps={steps}", f"out={out}"]) == 0
        errors.append(json.loads(out.with_suffix(".json").read_text())["mse"])
    assert errors[1] < errors[0] / 4  # the Euler ODE's discretisation error falls with the steps
    assert main(["interpolate", f"ckpt={ckpt}", "a=0", "b=index:1", "n=3", "steps=5", f"out={tmp_path / 'i.png'}"]) == 0
