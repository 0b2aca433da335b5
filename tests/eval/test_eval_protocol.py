"""The protocol beside every number, and a spread on it: seeds=[...] (mean ± std) or the bootstrap of one set."""

from __future__ import annotations

import hashlib
import json
import statistics
from pathlib import Path

import numpy as np
import pytest
import torch
from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric

from genlab.cli import main
from genlab.metrics.spread import _mean_cov, _psd_sqrt, bootstrap_spread, frechet_distance, seed_spread


def run_eval(ckpt: Path, classifier: Path, tmp: Path, name: str, *extra: str) -> dict:
    out = tmp / f"{name}.json"
    assert main(["eval", f"ckpt={ckpt}", "n=40", "steps=3", "features=domain", f"domain_classifier={classifier}",
                 f"cache_dir={tmp / 'cache'}", "log_to_run=false", f"out={out}", *extra]) == 0
    return json.loads(out.read_text())


def test_every_protocol_field_is_in_the_eval_json(fid_run: Path, classifier_ckpt: Path, tmp_path: Path) -> None:
    result = run_eval(fid_run / "checkpoints" / "last.ckpt", classifier_ckpt, tmp_path, "one", "bootstrap=5")
    p = result["protocol"]
    assert p["preset"] == "torch-fidelity"
    assert p["features"] == "domain" and p["extractor"] == "genlab-domain" and p["model"] is None
    assert p["weights_sha256"] == hashlib.sha256(classifier_ckpt.read_bytes()).hexdigest()
    assert p["resize"] == {"filter": "none: the domain classifier reads the images at the data's resolution",
                           "implementation": None, "size": 16}
    assert p["samples"] == 40
    assert p["reference"] == {"dataset": "digits", "split": "test", "images": result["reference"]["num_images"]}
    assert p["reference"]["images"] > 100
    assert p["sample_seeds"] == [0]
    assert p["sampler"] == {"name": result["sampler"]["name"], "steps": 3, "spacing": "uniform",
                            "nfe": result["sampler"]["nfe"]}
    assert p["ema"] == result["weights"] and "ema" in p["ema"]
    assert p["spread"].startswith("bootstrap over 5 resamples of the 40 samples")
    boot = result["spread"]["bootstrap"]
    assert set(boot) == {"fid_domain", "density_domain", "coverage_domain"}
    assert all(b["std"] >= 0 and b["low"] <= b["high"] for b in boot.values()), boot
    assert boot["fid_domain"]["std"] > 0  # (a 7-step model's noise lies in no real ball: density 0 every time)


def test_seeds_give_mean_and_std_of_every_metric(fid_run: Path, classifier_ckpt: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    result = run_eval(fid_run / "checkpoints" / "last.ckpt", classifier_ckpt, tmp_path, "three", "seeds=[0,1,2]")
    per_seed = result["spread"]["per_seed"]
    assert list(per_seed) == ["0", "1", "2"]
    for metric in ("fid_domain", "precision_domain", "density_domain", "coverage_domain", "kid_domain_mean"):
        values = [per_seed[s][metric] for s in per_seed]
        assert result["metrics"][metric] == pytest.approx(statistics.fmean(values))
        assert result["spread"]["std"][metric] == pytest.approx(statistics.stdev(values))
    assert len(set(per_seed[s]["fid_domain"] for s in per_seed)) == 3  # three different sample sets
    assert result["protocol"]["sample_seeds"] == [0, 1, 2]
    assert "mean and sample std (ddof 1) over the sample seeds [0, 1, 2]" == result["protocol"]["spread"]
    samples = Path(result["samples_dir"])
    assert sorted(p.name for p in samples.iterdir()) == ["seed0", "seed1", "seed2"]
    assert len(list((samples / "seed1").glob("*.png"))) == 40
    std = result["spread"]["std"]["fid_domain"]
    assert f"{result['metrics']['fid_domain']:.3f} ± {std:.3f} (domain)" in capsys.readouterr().out
    # the first seed alone equals an eval with seed=0
    alone = run_eval(fid_run / "checkpoints" / "last.ckpt", classifier_ckpt, tmp_path, "zero", "bootstrap=0")
    assert alone["metrics"]["fid_domain"] == pytest.approx(per_seed["0"]["fid_domain"], rel=1e-6)
    assert alone["spread"] == {} and alone["protocol"]["spread"] == "none: one sample seed and bootstrap=0"


@pytest.mark.parametrize("extra, message", [
    (["seeds=[1,1]"], "give distinct sample seeds"),
    (["bootstrap=-1"], "bootstrap=-1"),
    (["protocol=tf"], "protocol=tf: use torch-fidelity or clean"),
])
def test_bad_spread_settings_exit_2(fid_run: Path, classifier_ckpt: Path, tmp_path: Path, extra: list[str],
                                    message: str, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["eval", f"ckpt={fid_run / 'checkpoints' / 'last.ckpt'}", "n=12", "features=domain",
            f"domain_classifier={classifier_ckpt}", f"out={tmp_path / 'x.json'}", *extra]
    assert main(args) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x.json").exists()


def test_the_bootstraps_frechet_distance_is_torch_fidelitys_fid() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((300, 24)), rng.standard_normal((400, 24)) * 1.3 + 0.2
    expected = fid_statistics_to_metric(fid_features_to_statistics(torch.from_numpy(a)),
                                        fid_features_to_statistics(torch.from_numpy(b)), False)
    mu_a, cov_a = _mean_cov(torch.from_numpy(a))
    mu_b, cov_b = _mean_cov(torch.from_numpy(b))
    ours = frechet_distance(mu_a, cov_a, mu_b, _psd_sqrt(cov_b))
    assert ours == pytest.approx(expected["frechet_inception_distance"], rel=1e-6)


def test_bootstrap_spread_shrinks_with_more_samples() -> None:
    rng = np.random.default_rng(1)
    real = torch.from_numpy(rng.standard_normal((500, 8)))
    small = bootstrap_spread("x", torch.from_numpy(rng.standard_normal((50, 8))), real, 30, seed=0)
    large = bootstrap_spread("x", torch.from_numpy(rng.standard_normal((800, 8))), real, 30, seed=0)
    assert large["fid_x"]["std"] < small["fid_x"]["std"]
    assert bootstrap_spread("x", torch.from_numpy(rng.standard_normal((50, 8))), real, 30, seed=0) != small
    assert bootstrap_spread("x", real[:50], real, 30, seed=3) == bootstrap_spread("x", real[:50], real, 30, seed=3)


def test_seed_spread_is_mean_and_sample_std() -> None:
    mean, std = seed_spread([{"fid": 1.0, "a": 2.0}, {"fid": 3.0}])
    assert mean == {"fid": 2.0} and std == {"fid": pytest.approx(2**0.5)}
    assert seed_spread([{"fid": 1.0}]) == ({"fid": 1.0}, {})
