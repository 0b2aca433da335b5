"""A sampler's grid shape, rho and sigma_max, on every process: the grid's noise levels are Karras et al.'s eq. 5 (or
uniform in log sigma) between the process's lowest level and sigma_max, and what cannot apply is refused."""

from __future__ import annotations

import math

import pytest
import torch

from genlab.diffusion import EDM, FlowMatching, GaussianDiffusion, grid_points
from genlab.diffusion.flow import shifted
from genlab.diffusion.schedules import make_betas
from genlab.diffusion.time_grids import karras_sigmas

PROCESSES = {
    "vp": lambda: GaussianDiffusion(make_betas("linear", 1000)),
    "flow": lambda: FlowMatching(1000),
    "edm": lambda: EDM(1000),
}


def grid_sigmas(diffusion, steps: int, spacing: str, **shape: float) -> torch.Tensor:
    """sigma / alpha of the grid's points, before the clean endpoint."""
    return torch.tensor([p.sigma_ve for p in grid_points(diffusion.schedule(), steps, spacing, **shape)[:-1]],
                        dtype=torch.float64)


@pytest.mark.parametrize("process", list(PROCESSES))
@pytest.mark.parametrize("rho, sigma_max", [(2.0, 30.0), (1.0, 5.0), (3.0, None), (None, 20.0)])
def test_a_shaped_karras_grid_is_eq_5_between_the_lowest_level_and_sigma_max(process: str, rho: float | None,
                                                                               sigma_max: float | None) -> None:
    diffusion = PROCESSES[process]()
    low, high = diffusion.schedule().noise_range()
    expected = karras_sigmas(low, sigma_max or high, 6, 7.0 if rho is None else rho)
    got = grid_sigmas(diffusion, 6, "karras", rho=rho, sigma_max=sigma_max)
    torch.testing.assert_close(got, expected, rtol=1e-9, atol=0.0)  # VP: through the interpolated table, exactly
    if rho == 1.0:  # eq. 5 with rho = 1 is a uniform grid in sigma: a closed form
        torch.testing.assert_close(got, torch.linspace(sigma_max, low, 6, dtype=torch.float64), rtol=1e-9, atol=0.0)


@pytest.mark.parametrize("process", list(PROCESSES))
def test_sigma_max_starts_a_logsnr_grid_and_no_shape_is_the_processs_own_grid(process: str) -> None:
    diffusion = PROCESSES[process]()
    low, _ = diffusion.schedule().noise_range()
    got = grid_sigmas(diffusion, 5, "logsnr", sigma_max=12.0)
    expected = torch.exp(torch.linspace(math.log(12.0), math.log(low), 5, dtype=torch.float64))
    torch.testing.assert_close(got, expected, rtol=1e-9, atol=0.0)
    for spacing in ("uniform", "logsnr", "karras"):  # None, None: the grid as it was before the settings existed
        plain = [p.t for p in grid_points(diffusion.schedule(), 7, spacing)]
        assert [p.t for p in grid_points(diffusion.schedule(), 7, spacing, None, None)] == plain


def test_the_edm_default_rho_is_the_configs_and_the_flow_shift_moves_a_shaped_grid() -> None:
    edm = EDM(1000, rho=3.0)
    torch.testing.assert_close(grid_sigmas(edm, 5, "karras", sigma_max=30.0), karras_sigmas(0.002, 30.0, 5, 3.0))
    flow = FlowMatching(1000, shift=2.0)
    times = torch.tensor([p.t for p in grid_points(flow.schedule(), 5, "karras", rho=2.0, sigma_max=9.0)[:-1]],
                         dtype=torch.float64)
    unshifted = karras_sigmas(1 / 999, 9.0, 5, 2.0)
    torch.testing.assert_close(times, shifted(unshifted / (1 + unshifted), 2.0))  # shaped first, then shifted


@pytest.mark.parametrize("process", list(PROCESSES))
@pytest.mark.parametrize("spacing, shape, match", [
    ("uniform", {"rho": 2.0}, "rho=2.0 needs the karras grid"),
    ("logsnr", {"rho": 2.0}, "rho=2.0 needs the karras grid"),
    ("karras", {"rho": 0.0}, "rho=0.0 needs the karras grid .* a finite value > 0"),
    ("karras", {"rho": math.inf}, "a finite value > 0"),
    ("uniform", {"sigma_max": 5.0}, "sigma_max=5.0 needs the karras or logsnr grid"),
    ("karras", {"sigma_max": 1e6}, r"sigma_max=1000000.0 needs .* a value in \("),
    ("logsnr", {"sigma_max": 1e-4}, r"sigma_max=0.0001 needs .* a value in \("),
])
def test_a_shape_that_cannot_apply_is_refused(process: str, spacing: str, shape: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        grid_points(PROCESSES[process]().schedule(), 5, spacing, **shape)
