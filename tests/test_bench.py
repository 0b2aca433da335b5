"""The benchmark's own logic: the diffusers U-Net matches genlab's, targets read PASS/MISS, --quick runs."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))

from report import Target  # noqa: E402


@pytest.mark.parametrize("config, channels", [("mnist", 1), ("ddpm_cifar10", 3)])
def test_matched_diffusers_unet_has_genlab_parameter_count(config: str, channels: int) -> None:
    pytest.importorskip("diffusers", reason="the `bench` extra (pip install -e '.[bench]') is not installed")
    from unets import UNetSize, diffusers_unet, genlab_unet, parameter_count

    size = UNetSize(config, config, channels, 32, 2)
    assert parameter_count(diffusers_unet(size)) == parameter_count(genlab_unet(size))


def test_targets_pass_or_miss_by_how_much() -> None:
    assert Target("ratio", 1.3, 1.2).line().endswith("| PASS | |")
    assert "MISS by 0.2 (0.83x the goal) | same kernels |" in Target("ratio", 1.0, 1.2, "same kernels").line()
    assert "| <= 3 | PASS |" in Target("overhead %", 2.0, 3.0, lower_is_better=True).line()
    assert "MISS by 3 (2.00x the goal)" in Target("overhead %", 6.0, 3.0, lower_is_better=True).line()


def test_quick_bench_writes_every_section(tmp_path: Path) -> None:
    # In the default suite (about 20 s) because the benchmarks call genlab's internals: a slow-only test let two
    # signature changes break `make bench` unnoticed.
    pytest.importorskip("diffusers", reason="the `bench` extra is not installed")
    import run

    text = run.main(["--quick", "--out", str(tmp_path)]).read_text()
    for title in ("## Targets", "## 1.", "## 2.", "## 3.", "## 4.", "## 5.", "DataLoader settings", "- command:"):
        assert title in text
    assert text.count("PASS") + text.count("MISS") == 6  # the five of issue 9 and the solvers' cost per NFE
