"""Domain features end to end: the FID callback in a tiny training run, `genlab eval`, the reference cache."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import urllib.error
from pathlib import Path

import pytest
import torch
import torch_fidelity

import genlab.metrics.weights as weights_module
from conftest import TINY, subprocess_env
from genlab.images import load_png, save_png
from genlab.runs.checkpoint import load_generator, read_checkpoint
from genlab.cli import main
from genlab.commands.eval import markdown_row
from genlab.errors import GenlabError
from genlab.metrics.domain import DOMAIN_NAME, DomainFeatureExtractor
from genlab.metrics.extractors import FeatureLayer, FeatureSettings, create_extractor, extractor_spec
from genlab.metrics.fid import make_fid, set_reference
from genlab.metrics.images import to_extractor_uint8


def test_training_logs_fid_of_the_domain_features(fid_run: Path) -> None:
    with open(fid_run / "logs" / "metrics.csv") as f:
        rows = [r for r in csv.DictReader(f) if r.get("val/fid_domain")]
    # validations end at steps 3 and 6 (logged as 2 and 5), and the end of training at step 7
    assert [int(r["step"]) for r in rows] == [2, 5, 7]
    assert all(float(r["val/fid_domain"]) > 0 and float(r["val/eval_seconds"]) > 0 for r in rows)
    assert list((fid_run / "cache").glob("genlab-digits-test-16px-1ch-*-domain-*-genlab-domain-features-pooled.pt"))


def test_checkpoints_do_not_carry_the_metric(fid_run: Path) -> None:
    state = read_checkpoint(fid_run / "checkpoints" / "last.ckpt")["state_dict"]
    assert not [k for k in state if not k.startswith(("unet.", "diffusion."))]


def count_extractor_images(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Record the batch size of every call of the domain extractor."""
    calls: list[int] = []
    forward = DomainFeatureExtractor.forward

    def counted(self: DomainFeatureExtractor, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        calls.append(images.shape[0])
        return forward(self, images)

    monkeypatch.setattr(DomainFeatureExtractor, "forward", counted)
    return calls


def test_eval_writes_json_and_a_markdown_row_and_reuses_the_cache(
    fid_run: Path, classifier_ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls = count_extractor_images(monkeypatch)
    args = ["eval", f"ckpt={fid_run / 'checkpoints' / 'last.ckpt'}", "n=12", "steps=3", "features=domain",
            f"domain_classifier={classifier_ckpt}", f"cache_dir={tmp_path / 'cache'}", "batch_size=64"]
    assert main([*args, "nll=true", "nll_images=40", f"out={tmp_path / 'e.json'}"]) == 0
    first = sum(calls)
    result = json.loads((tmp_path / "e.json").read_text())
    for key in ("fid_domain", "kid_domain_mean", "kid_domain_std", "isc_domain_mean", "precision_domain",
                "recall_domain", "nll_bpd"):
        assert key in result["metrics"] and result["metrics"][key] == result["metrics"][key]  # present, not NaN
    assert result["metrics"]["fid_domain"] > 0 and 1.0 <= result["metrics"]["isc_domain_mean"] <= 10.0
    assert 0 < result["metrics"]["nll_bpd"] < 100 and result["metrics"]["nll_images"] == 40
    ref = result["reference"]
    assert ref["split"] == "test" and ref["num_images"] == 180 and ref["dataset"] == "digits"
    assert result["extractor"]["weights_sha256"][:12] in ref["key"]
    assert result["sampler"] == {"name": "ddim", "steps": 3, "eta": 0.0, "spacing": "uniform", "guidance": 0.0,
                                 "nfe": 3.0, "solver_nfe": 3}  # counted while sampling, and the solver's own
    assert result["weights"] == "ema" and result["n"] == 12 and result["isc_valid"]
    assert len(list(Path(result["samples_dir"]).glob("*.png"))) == 12
    assert load_png(Path(result["samples_dir"]) / "000000.png").shape == (1, 16, 16)
    row = capsys.readouterr().out.strip().splitlines()[-1]
    assert row.startswith("| last.ckpt | ema | ddim 3 eta=0 | 12 |") and row.count("|") == 11
    assert first == 180 + 12  # the split once, the samples once
    assert list((tmp_path / "cache").glob(f"{ref['key']}-{DOMAIN_NAME}-features-pooled.pt"))

    # Again from the output folder, with relative paths: the cache is found, and the result records each path as
    # the command named it (no machine's folders in a committed result); a rerun replaces its own samples.
    calls.clear()
    monkeypatch.chdir(tmp_path)
    ckpt = os.path.relpath(fid_run / "checkpoints" / "last.ckpt", tmp_path)
    relative = [f"ckpt={ckpt}" if a.startswith("ckpt=") else "cache_dir=cache" if a.startswith("cache_dir=") else a
                for a in args]
    assert main([*relative, "out=again.json"]) == 0
    assert sum(calls) == 12  # the reference features came from the cache
    again = json.loads((tmp_path / "again.json").read_text())
    assert again["metrics"]["fid_domain"] == pytest.approx(result["metrics"]["fid_domain"], rel=1e-9)
    assert (again["checkpoint"], again["samples_dir"], again["reference"]["cache_dir"]) == (
        ckpt, "again_samples", "cache")
    assert main([*relative, "out=again.json"]) == 0
    assert len(list((tmp_path / "again_samples").glob("*.png"))) == 12


def test_the_markdown_row_names_a_shaped_grid() -> None:
    """The row is the protocol of its number: an ODE solver's grid shape is part of it."""
    metrics = {"fid_domain": 3.6, "kid_domain_mean": 0.002, "precision_domain": 0.76, "recall_domain": 0.93}
    result = {"metrics": metrics, "extractor": {"features": "domain"}, "checkpoint": "runs/x/last.ckpt",
              "weights": "ema", "n": 1000, "isc_valid": True,
              "sampler": {"name": "dpmpp_2m", "steps": 5, "eta": None, "spacing": "karras", "guidance": 0.0,
                          "rho": 2.0, "sigma_max": 30.0, "nfe": 5}}
    assert "| dpmpp_2m 5 karras rho=2 sigma_max=30 (5 NFE) |" in markdown_row(result)
    del result["sampler"]["rho"], result["sampler"]["sigma_max"]
    assert "| dpmpp_2m 5 karras (5 NFE) |" in markdown_row(result)


def test_callback_fid_equals_torch_fidelity_on_two_folders(classifier_ckpt: Path, tmp_path: Path) -> None:
    g = torch.Generator().manual_seed(0)
    a = torch.rand(20, 1, 16, 16, generator=g) * 2 - 1
    b = (torch.rand(30, 1, 16, 16, generator=g) * 2 - 1).clamp(-1, 0.5)
    for name, images in (("a", a), ("b", b)):
        for i, image in enumerate(to_extractor_uint8(images)[:, :1]):
            save_png(image, tmp_path / name / f"{i:03d}.png")
    spec = extractor_spec(FeatureSettings("domain", domain_classifier=str(classifier_ckpt)))
    extractor = create_extractor(spec)
    metric = make_fid(FeatureLayer(extractor, spec.fid_layer))  # the FID callback's torchmetrics path
    read = lambda name: torch.stack([load_png(p) for p in sorted((tmp_path / name).glob("*.png"))])  # noqa: E731
    set_reference(metric, extractor(read("b").expand(-1, 3, -1, -1))[0])
    metric.update(read("a").expand(-1, 3, -1, -1), real=False)
    expected = torch_fidelity.calculate_metrics(
        input1=str(tmp_path / "a"), input2=str(tmp_path / "b"), fid=True, cuda=False, verbose=False,
        save_cpu_ram=True, feature_extractor=DOMAIN_NAME, feature_extractor_weights_path=str(classifier_ckpt),
    )["frechet_inception_distance"]
    assert expected > 0
    assert float(metric.compute()) == pytest.approx(expected, rel=1e-4)


def test_eval_offline_without_inception_weights_exits_2(
    fid_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))

    def offline(url: str, path: Path) -> None:
        raise urllib.error.URLError("no network (test)")

    monkeypatch.setattr(weights_module, "download", offline)
    args = ["eval", f"ckpt={fid_run / 'checkpoints' / 'last.ckpt'}", "n=10", f"out={tmp_path / 'e.json'}"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "weights-inception-2015-12-05-6726825d.pth" in err and "inception_weights=PATH" in err
    assert not (tmp_path / "e.json").exists()
    train = ["train", "experiment=ddpm_digits", *TINY, "eval.enabled=true", f"run_dir={tmp_path / 'run'}"]
    assert main(train) == 2
    assert not (tmp_path / "run").exists()  # failed before the run folder was made


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (["eval.features=domain"], "eval.domain_classifier=PATH"),
        (["eval.every_n_steps=4"], "multiple of trainer.val_every_n_steps"),
        (["eval.num_samples=1"], "eval.num_samples"),
        (["eval.features=vgg"], "eval.features"),
    ],
)
def test_bad_eval_config_exits_2(extra: list[str], expected: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "experiment=ddpm_digits", "eval.enabled=true", "trainer.val_every_n_steps=3", *extra]) == 2
    assert expected in capsys.readouterr().err


def test_eval_of_a_classifier_checkpoint_is_rejected(classifier_ckpt: Path) -> None:
    with pytest.raises(GenlabError, match="does not generate images"):
        load_generator(classifier_ckpt)


@pytest.mark.slow  # two CPU processes (gloo): about a minute on 2 cores
def test_fid_callback_under_ddp_splits_generation_and_syncs(classifier_ckpt: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "ddp"
    args = [sys.executable, "-m", "genlab", "train", "experiment=ddpm_digits", *TINY, "trainer.devices=2",
            "trainer.strategy=ddp", "trainer.accelerator=cpu", "eval.enabled=true", "eval.features=domain",
            f"eval.domain_classifier={classifier_ckpt}", "eval.num_samples=13", "eval.every_n_steps=3",
            f"eval.cache_dir={tmp_path / 'cache'}", f"run_dir={run_dir}"]
    done = subprocess.run(args, env=subprocess_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("genlab: FID reference") == 1  # rank 0 alone reads the reference
    with open(run_dir / "logs" / "metrics.csv") as f:
        values = [float(r["val/fid_domain"]) for r in csv.DictReader(f) if r.get("val/fid_domain")]
    assert len(values) == 2 and all(v > 0 for v in values)


def test_domain_classifier_of_other_data_is_rejected(fid_run: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    ddpm = fid_run / "checkpoints" / "last.ckpt"
    args = ["eval", f"ckpt={ddpm}", "n=10", "features=domain", f"domain_classifier={ddpm}",
            f"out={tmp_path / 'e.json'}"]
    assert main(args) == 2
    assert "must be a 'classifier' checkpoint" in capsys.readouterr().err


def test_gan_run_logs_fid_and_genlab_eval_scores_it(
    classifier_ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The same callback and command for a GAN: one comparison table for GANs and diffusion models.
    run_dir = tmp_path / "gan"
    gan = ["gan.latent_dim=8", "gan.g_channels=8", "gan.d_channels=8"]
    args = ["train", "experiment=gan_digits", *TINY, *gan, "eval.enabled=true", "eval.features=domain",
            f"eval.domain_classifier={classifier_ckpt}", "eval.num_samples=12", "eval.every_n_steps=3",
            f"eval.cache_dir={tmp_path / 'cache'}", f"run_dir={run_dir}"]
    assert main(args) == 0
    with open(run_dir / "logs" / "metrics.csv") as f:
        assert [r["val/fid_domain"] for r in csv.DictReader(f) if r.get("val/fid_domain")]
    capsys.readouterr()
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    common = [f"ckpt={ckpt}", "n=12", "features=domain", f"domain_classifier={classifier_ckpt}",
              f"cache_dir={tmp_path / 'cache'}", f"out={tmp_path / 'gan.json'}"]
    assert main(["eval", *common]) == 0
    result = json.loads((tmp_path / "gan.json").read_text())
    assert result["sampler"]["name"] == "G(z)" and result["metrics"]["fid_domain"] > 0
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("| last.ckpt | ema | G(z) | 12 |")
    assert main(["eval", *common, "steps=5"]) == 2  # no sampler to set
    assert main(["eval", *common, "nll=true"]) == 2  # no likelihood


def test_eval_with_respaced_ddpm_records_its_sampler(fid_run: Path, classifier_ckpt: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    base = ["eval", f"ckpt={fid_run / 'checkpoints' / 'last.ckpt'}", "n=12", "features=domain",
            f"domain_classifier={classifier_ckpt}", f"cache_dir={tmp_path / 'cache'}", f"out={tmp_path / 'e.json'}"]
    assert main([*base, "sampler=ddpm", "steps=4", "variance=beta"]) == 0
    result = json.loads((tmp_path / "e.json").read_text())
    assert result["sampler"] == {"name": "ddpm", "steps": 4, "eta": None, "spacing": "uniform", "guidance": 0.0,
                                 "variance": "beta", "nfe": 4.0, "solver_nfe": 4}
    assert "| ddpm 4 beta | 12 |" in capsys.readouterr().out
    assert main([*base, "sampler=ddim", "steps=4", "variance=beta"]) == 2
    assert "variance= applies to sampler=ddpm" in capsys.readouterr().err
    assert main([*base, "sampler=ddpm", "steps=1"]) == 2
    assert "steps=1 must lie in [2, T" in capsys.readouterr().err  # sampler.ddpm_steps is sampler.steps now


def test_a_truncated_cache_file_is_named_deleted_and_recomputed_by_eval(
    fid_run: Path, classifier_ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    args = ["eval", f"ckpt={fid_run / 'checkpoints' / 'last.ckpt'}", "n=12", "steps=3", "features=domain",
            f"domain_classifier={classifier_ckpt}", f"cache_dir={tmp_path / 'cache'}", "log_to_run=false"]
    assert main([*args, f"out={tmp_path / 'a.json'}"]) == 0
    (stat,) = (tmp_path / "cache").glob("*-features-pooled.pt")
    stat.write_bytes(stat.read_bytes()[: stat.stat().st_size // 2])  # a run killed while writing it
    capsys.readouterr()
    assert main([*args, f"out={tmp_path / 'b.json'}"]) == 0
    assert f"the cached reference statistics {stat} are unreadable" in capsys.readouterr().out
    first, second = (json.loads((tmp_path / f"{n}.json").read_text())["metrics"] for n in ("a", "b"))
    assert second["fid_domain"] == pytest.approx(first["fid_domain"], rel=1e-6)  # recomputed, the same number
