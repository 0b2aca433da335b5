"""ODE solvers and time grids: closed forms, convergence orders on an analytic toy, NFE, guidance and the interface."""

from __future__ import annotations

import math
import subprocess
import sys
from typing import Callable

import pytest
import torch

from genlab.diffusion import (
    CLEAN,
    SAMPLERS,
    TIME_GRIDS,
    GaussianDiffusion,
    GridPoint,
    VPSchedule,
    classifier_free_guidance,
    classifier_grad_fn,
    ddim_sample,
    ddim_step,
    ddim_timesteps,
    grid_points,
    linear_betas,
    make_betas,
    run_sampler,
    sampler_entry,
    time_grid,
)
from genlab.errors import GenlabError
from genlab.diffusion.solver_steps import (
    dpmpp_2m_coefficients,
    dpmpp_2m_step,
    unipc_corrector_coefficients,
    unipc_predictor_coefficients,
)

T = 1000
DIFFUSION = GaussianDiffusion(linear_betas(T))
SCHEDULE = VPSchedule.from_diffusion(DIFFUSION)
# abar in float64 from the diffusion's (float32) betas, as the solvers and respace.py take it; written out here so the
# checks below do not go through VPSchedule.
ABAR64 = torch.cumprod(1.0 - DIFFUSION.betas.double(), 0)
DATA_STD = 0.5  # the toy's data distribution: N(0, s^2 I)
ORDER = {"ddim": 1, "euler": 1, "dpmpp_2m": 2, "heun": 2, "unipc": 3}  # UniC-2 lifts UniP-2 to order 3
SOLVERS = [name for name in SAMPLERS if name not in ("ddpm", "ddim")]  # the registry's ODE solvers


def solver_nfe(name: str, steps: int) -> int:
    return sampler_entry(name).nfe(steps)


def gaussian_eps(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """The ideal eps for x0 ~ N(0, s^2 I): eps*(x_t, t) = sqrt(1 - abar) x_t / (abar s^2 + 1 - abar), at float t."""
    abar = SCHEDULE.alpha_bar(t.double()).to(x.dtype).view(-1, 1, 1, 1)  # [B] -> [B, 1, 1, 1]
    return (1 - abar).sqrt() * x / (abar * DATA_STD**2 + 1 - abar)


def wavy_eps(x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
    """A pure function of (x, t[, y]) standing in for a network, for the interface tests."""
    out = gaussian_eps(x, t) + 0.1 * torch.sin(3 * x) * torch.cos(t.to(x.dtype) / 300).view(-1, 1, 1, 1)
    return out if y is None else out + 0.05 * y.to(x.dtype).view(-1, 1, 1, 1)


def sample(name: str, steps: int, x_T: torch.Tensor, model: Callable = gaussian_eps, **kwargs: object) -> torch.Tensor:
    """Any sampler by name, DDIM included (deterministic, unclipped like the solvers)."""
    if name == "ddim":
        kwargs.setdefault("clip_denoised", False)
        return ddim_sample(DIFFUSION, model, x_T.shape, steps=steps, x_T=x_T, **kwargs)
    if name in ("dpmpp_2m", "unipc"):
        # The multistep solvers' orders are those of their papers' analysis in lambda, so the toy's accuracy checks
        # run on the log-SNR grid; genlab's default for them is uniform t (better on the MNIST model at few NFE).
        kwargs.setdefault("spacing", "logsnr")
    return solve(name, DIFFUSION, model, x_T, steps=steps, **kwargs)


def solve(name: str, diffusion: GaussianDiffusion, model: Callable, x_T: torch.Tensor, *, clip_denoised: bool = False,
          **kwargs: object) -> torch.Tensor:
    """A solver through its registry entry, unclipped unless asked (the solvers' own default)."""
    return run_sampler(name, diffusion, model, x_T, prediction="eps", clip=clip_denoised, **kwargs)


def x_T_fixed(dtype: torch.dtype = torch.float32, shape: tuple[int, ...] = (2, 1, 4, 4)) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(0), dtype=dtype)


def exact_toy_solution(x_T: torch.Tensor) -> torch.Tensor:
    """The probability-flow ODE solved exactly from t = T-1 to t = 0, then the shared final step to sigma = 0.

    In x~ = x / alpha the ODE is dx~/dsigma = eps* = sigma x~ / (s^2 + sigma^2), so x~ ~ sqrt(s^2 + sigma^2). Every
    sampler here (and diffusers with final_sigmas_type="zero") ends with the same step from sigma_min = sigma(0) to 0,
    x0 = D(x~; sigma_min) = x~ s^2 / (s^2 + sigma_min^2); that step, not the solver, costs sigma_min^2 / (2 s^2) ~ 2e-4
    against the ODE's own value at sigma = 0, so the reference includes it.
    """
    s2 = DATA_STD**2
    sig_max2 = float((1 - ABAR64[-1]) / ABAR64[-1])
    sig_min2 = float((1 - ABAR64[0]) / ABAR64[0])
    x_ve = x_T * math.sqrt(1 + sig_max2)  # x / alpha_{T-1}, alpha^2 = 1 / (1 + sigma^2)
    return x_ve * math.sqrt((s2 + sig_min2) / (s2 + sig_max2)) * s2 / (s2 + sig_min2)


# ---- convergence on the analytic toy ----


@pytest.mark.parametrize("name", list(ORDER))
def test_each_solver_converges_to_the_exact_ode_solution_at_its_order(name: str) -> None:
    x_T = x_T_fixed(torch.float64)
    ref = exact_toy_solution(x_T)
    errors = [(sample(name, s, x_T) - ref).abs().max().item() for s in (25, 50, 100, 200)]
    assert all(b < a for a, b in zip(errors, errors[1:])), errors
    # Halving the step divides the error by 2^order (measured: 0.99/1.00, 2.0, 3.0, 2.06/2.03, 0.99/1.00).
    orders = [math.log2(a / b) for a, b in zip(errors[1:], errors[2:])]
    assert all(abs(o - ORDER[name]) < 0.2 for o in orders), (orders, errors)
    assert errors[-1] < {1: 0.03, 2: 1e-3, 3: 3e-5}[ORDER[name]]


def test_the_toy_reference_is_the_ode_solution_up_to_the_final_step() -> None:
    x_T = x_T_fixed(torch.float64)
    sig_max2 = float((1 - ABAR64[-1]) / ABAR64[-1])
    at_zero = x_T * math.sqrt(1 + sig_max2) * DATA_STD / math.sqrt(DATA_STD**2 + sig_max2)
    rel = ((exact_toy_solution(x_T) - at_zero) / at_zero).abs().max().item()
    assert rel == pytest.approx(float((1 - ABAR64[0]) / ABAR64[0]) / (2 * DATA_STD**2), rel=1e-3)


@pytest.mark.parametrize("nfe", [10, 20, 50])
def test_multistep_solvers_beat_first_order_ones_at_equal_nfe(nfe: int) -> None:
    x_T = x_T_fixed(torch.float64)
    ref = exact_toy_solution(x_T)
    err = {name: (sample(name, nfe, x_T) - ref).abs().max().item() for name in ("ddim", "euler", "dpmpp_2m", "unipc")}
    first_order = min(err["ddim"], err["euler"])
    assert err["dpmpp_2m"] < first_order / 3 and err["unipc"] < first_order / 3, err


@pytest.mark.parametrize("heun_steps", [25, 50])
def test_heun_beats_first_order_ones_at_equal_nfe(heun_steps: int) -> None:
    # At equal NFE Heun only wins from about 30 NFE on this toy: on the Karras grid its few large early steps
    # overshoot (at 19 NFE its error is 0.40 against Euler's 0.23), as EDM's 35-NFE CIFAR setting suggests.
    x_T = x_T_fixed(torch.float64)
    ref = exact_toy_solution(x_T)
    nfe = solver_nfe("heun", heun_steps)
    heun = (sample("heun", heun_steps, x_T) - ref).abs().max().item()
    for name in ("ddim", "euler"):
        first_order = (sample(name, nfe, x_T) - ref).abs().max().item()
        assert heun < first_order / 1.5, (heun, name, first_order)  # measured: 1.9x at 49 NFE, 4.3x at 99


# ---- step functions against closed forms ----


def test_first_order_dpmpp_step_is_the_ddim_step() -> None:
    x = x_T_fixed()
    eps = wavy_eps(x, torch.full((2,), 700))
    cur, nxt = SCHEDULE.point(700), SCHEDULE.point(350)
    x0 = (x - cur.sigma * eps) / cur.alpha
    expected = ddim_step(x, eps, cur.alpha_bar, nxt.alpha_bar, 0.0, None, False)
    torch.testing.assert_close(dpmpp_2m_step(x, x0, None, None, cur, nxt), expected, rtol=1e-5, atol=1e-6)
    assert torch.allclose(dpmpp_2m_step(x, x0, None, None, cur, CLEAN), x0)  # the last step returns x0


def exact_data_ode(x_s: float, s: GridPoint, t: GridPoint, x0_of_lam: tuple[float, float, float]) -> float:
    """x_t = (sigma_t / sigma_s) x_s + sigma_t int_{lam_s}^{lam_t} e^lam x0(lam) dlam (DPM-Solver++ eq. 8).

    x0(lam) = a + b lam + c lam^2, integrated in closed form: int e^lam p(lam) = e^lam (p - p' + p'').
    """
    a, b, c = x0_of_lam

    def antiderivative(lam: float) -> float:
        return math.exp(lam) * (a + b * lam + c * lam * lam - (b + 2 * c * lam) + 2 * c)

    return t.sigma / s.sigma * x_s + t.sigma * (antiderivative(t.lam) - antiderivative(s.lam))


def apply(coefs: tuple[float, ...], values: tuple[float, ...]) -> float:
    return sum(c * v for c, v in zip(coefs, values))


def test_step_coefficients_are_exact_for_low_degree_data_predictions() -> None:
    prev, cur, nxt = (SCHEDULE.point(t) for t in (420.5, 300.0, 180.0))  # fractional t: between table rows
    x_s = 0.7
    const, linear, quad = (0.3, 0.0, 0.0), (0.3, -0.2, 0.0), (0.3, -0.2, 0.05)

    def m(p: GridPoint, poly: tuple[float, float, float]) -> float:
        return poly[0] + poly[1] * p.lam + poly[2] * p.lam**2

    # First order (DPM-Solver++(1) = UniP-1) integrates a constant x0 exactly.
    c = dpmpp_2m_coefficients(None, cur, nxt)
    assert apply(c, (x_s, m(cur, const))) == pytest.approx(exact_data_ode(x_s, cur, nxt, const), rel=1e-12)
    # UniC-2 (older, base, new) is exact for a quadratic x0(lambda): the a = R^{-1} g / B(h) moment conditions.
    c = unipc_corrector_coefficients(prev, cur, nxt)
    values = (x_s, m(cur, quad), m(nxt, quad), m(prev, quad))
    assert apply(c, values) == pytest.approx(exact_data_ode(x_s, cur, nxt, quad), rel=1e-12)
    # DPM-Solver++(2M) and UniP-2 are only second-order accurate for a linear x0 (not exact), and equal each other.
    assert unipc_predictor_coefficients(prev, cur, nxt) == pytest.approx(dpmpp_2m_coefficients(prev, cur, nxt))
    c = dpmpp_2m_coefficients(prev, cur, nxt)
    exact = exact_data_ode(x_s, cur, nxt, linear)
    assert apply(c, (x_s, m(cur, linear), m(prev, linear))) != pytest.approx(exact, rel=1e-6)
    assert apply(c, (x_s, m(cur, linear), m(prev, linear))) == pytest.approx(exact, rel=0.05)
    # UniC-1 is the trapezoidal rule in the data prediction: half weight on each end.
    c_x, c_base, c_new, c_older = unipc_corrector_coefficients(None, cur, nxt)
    assert c_base == pytest.approx(c_new) and c_older == 0.0
    assert c_base + c_new == pytest.approx(dpmpp_2m_coefficients(None, cur, nxt)[1])


def test_steps_refuse_second_order_into_sigma_zero() -> None:
    with pytest.raises(ValueError, match="first order"):
        dpmpp_2m_coefficients(SCHEDULE.point(50), SCHEDULE.point(0), CLEAN)
    with pytest.raises(ValueError, match="first order"):
        unipc_predictor_coefficients(SCHEDULE.point(50), SCHEDULE.point(0), CLEAN)
    with pytest.raises(ValueError, match="sigma = 0"):
        unipc_corrector_coefficients(None, SCHEDULE.point(0), CLEAN)


# ---- grids and the schedule view ----


def test_schedule_is_exact_at_integer_t_and_linear_in_lambda_between() -> None:
    t = torch.arange(T, dtype=torch.float64)
    assert torch.equal(SCHEDULE.alpha_bar(t), torch.sigmoid(torch.log(ABAR64) - torch.log1p(-ABAR64)))
    torch.testing.assert_close(SCHEDULE.alpha_bar(t), ABAR64, rtol=1e-13, atol=0)
    torch.testing.assert_close(SCHEDULE.sigma(t), (1 - ABAR64).sqrt(), rtol=1e-12, atol=0)
    lam = SCHEDULE.lambda_(t)
    torch.testing.assert_close(SCHEDULE.lambda_(t[:-1] + 0.25), 0.75 * lam[:-1] + 0.25 * lam[1:], rtol=1e-14, atol=0)
    torch.testing.assert_close(SCHEDULE.t_of_lambda(SCHEDULE.lambda_(t[:-1] + 0.3)), t[:-1] + 0.3, rtol=0, atol=1e-9)
    torch.testing.assert_close(SCHEDULE.sigma_ve(t), ((1 - ABAR64) / ABAR64).sqrt(), rtol=1e-12, atol=0)


@pytest.mark.parametrize("steps", [5, 18, 50])
def test_karras_grid_is_eq5(steps: int) -> None:
    sig_min = math.sqrt((1 - ABAR64[0].item()) / ABAR64[0].item())
    sig_max = math.sqrt((1 - ABAR64[-1].item()) / ABAR64[-1].item())
    rho = 7.0
    expected = [
        (sig_max ** (1 / rho) + i / (steps - 1) * (sig_min ** (1 / rho) - sig_max ** (1 / rho))) ** rho
        for i in range(steps)
    ]
    got = SCHEDULE.sigma_ve(time_grid(SCHEDULE, steps, "karras"))
    torch.testing.assert_close(got, torch.tensor(expected, dtype=torch.float64), rtol=1e-10, atol=0)
    points = grid_points(SCHEDULE, steps, "karras")
    assert points[-1] == CLEAN and points[-1].sigma_ve == 0.0  # eq. 5's sigma_N = 0


@pytest.mark.parametrize("steps", [2, 7, 50])
def test_logsnr_grid_is_uniform_in_lambda(steps: int) -> None:
    lam = SCHEDULE.lambda_(time_grid(SCHEDULE, steps, "logsnr"))
    gaps = lam[1:] - lam[:-1]
    torch.testing.assert_close(gaps, torch.full_like(gaps, gaps.mean().item()), rtol=1e-9, atol=0)
    half_log_snr = 0.5 * torch.log(ABAR64 / (1 - ABAR64))
    torch.testing.assert_close(lam[[0, -1]], half_log_snr[[-1, 0]], rtol=1e-12, atol=0)


@pytest.mark.parametrize("spacing", TIME_GRIDS)
@pytest.mark.parametrize("steps", [2, 3, 10, 1000])
def test_every_grid_runs_from_T_minus_1_to_0_strictly_decreasing(spacing: str, steps: int) -> None:
    t = time_grid(SCHEDULE, steps, spacing)
    assert t.shape == (steps,) and t[0] == T - 1 and t[-1] == 0 and bool((t[1:] < t[:-1]).all())
    if spacing == "uniform":
        assert t.tolist() == [float(v) for v in ddim_timesteps(T, steps, "uniform")]


def test_one_step_grids_and_invalid_arguments() -> None:
    assert time_grid(SCHEDULE, 1, "uniform").tolist() == [0.0]  # as ddim_timesteps
    assert time_grid(SCHEDULE, 1, "karras").tolist() == [T - 1] == time_grid(SCHEDULE, 1, "logsnr").tolist()
    with pytest.raises(ValueError, match="uniform, logsnr, karras"):
        time_grid(SCHEDULE, 5, "quadratic")
    for name in SOLVERS:
        with pytest.raises(GenlabError, match="spacing=cosine is not a valid choice"):
            sample(name, 5, x_T_fixed(), spacing="cosine")
        with pytest.raises(ValueError, match="num_timesteps=1000"):
            sample(name, 1001, x_T_fixed())
        entry = sampler_entry(name)
        assert entry.default_grid in entry.grids and set(entry.grids) == set(TIME_GRIDS)


# ---- NFE, model calls, guidance ----


@pytest.mark.parametrize("spacing", [None, *TIME_GRIDS])
@pytest.mark.parametrize("name", list(SOLVERS))
def test_model_calls_match_solver_nfe_and_see_grid_times(name: str, spacing: str | None) -> None:
    seen: list[torch.Tensor] = []

    def spy(x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        assert not torch.is_grad_enabled() and t.shape == (2,) and torch.equal(y, torch.tensor([3, 4]))
        seen.append(t)
        return wavy_eps(x, t)

    steps = 6
    sample(name, steps, x_T_fixed(), model=spy, spacing=spacing, model_kwargs={"y": torch.tensor([3, 4])})
    assert len(seen) == solver_nfe(name, steps)
    spacing = spacing or sampler_entry(name).default_grid
    grid = time_grid(SCHEDULE, steps, spacing)
    firsts = [float(t[0]) for t in seen]
    expected = grid.tolist() if name != "heun" else [grid[0].item()] + [v for v in grid[1:].tolist() for _ in (0, 1)]
    assert firsts == pytest.approx(expected, abs=1e-4)  # float32 t
    assert {t.dtype for t in seen} == {torch.long if spacing == "uniform" else torch.float32}


def test_solver_nfe_table() -> None:
    assert [solver_nfe(n, 10) for n in ("ddpm", "ddim", "euler", "dpmpp_2m", "unipc", "heun")] == [10] * 5 + [19]
    assert solver_nfe("heun", 1) == 1 and solver_nfe("heun", 18) == 35  # EDM's CIFAR-10 setting
    with pytest.raises(ValueError, match="unknown sampler 'plms'"):
        solver_nfe("plms", 10)
    assert [sampler_entry("heun").steps_for_nfe(b) for b in (1, 2, 9, 10, 35)] == [1, 1, 5, 5, 18]


@pytest.mark.parametrize("name", list(SOLVERS))
def test_classifier_guidance_is_the_eps_shift(name: str) -> None:
    x_T = x_T_fixed()
    plain = sample(name, 5, x_T, model=wavy_eps)

    def zeros(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(x)

    assert torch.equal(sample(name, 5, x_T, model=wavy_eps, cond_fn=zeros), plain)
    no_scale = classifier_grad_fn(lambda x, t, y: -(x**2).flatten(1).sum(1), torch.tensor([0, 1]), 0.0)
    assert torch.equal(sample(name, 5, x_T, model=wavy_eps, cond_fn=no_scale), plain)

    def grad(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return torch.cos(2 * x) * (0.5 + t.to(x.dtype) / 2000).view(-1, 1, 1, 1)

    def shifted(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:  # eps_hat = eps - sqrt(1 - abar_t) g, by hand
        sigma = SCHEDULE.sigma(t.double()).to(x.dtype).view(-1, 1, 1, 1)
        return wavy_eps(x, t) - sigma * grad(x, t)

    guided = sample(name, 5, x_T, model=wavy_eps, cond_fn=grad)
    assert (guided - plain).abs().max() > 0.05
    torch.testing.assert_close(guided, sample(name, 5, x_T, model=shifted), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", list(SOLVERS))
def test_cfg_with_w0_is_the_conditional_sample(name: str) -> None:
    x_T, y = x_T_fixed(), torch.tensor([1, 2])
    guided = classifier_free_guidance(wavy_eps, 0.0, null_class=10)
    cond = sample(name, 5, x_T, model=wavy_eps, model_kwargs={"y": y})
    assert torch.equal(sample(name, 5, x_T, model=guided, model_kwargs={"y": y}), cond)
    stronger = sample(name, 5, x_T, model=classifier_free_guidance(wavy_eps, 2.0, 10), model_kwargs={"y": y})
    assert not torch.allclose(stronger, cond)


# ---- interface ----


@pytest.mark.parametrize("name", list(SOLVERS))
def test_clip_denoised_bounds_the_sample_and_is_off_by_default(name: str) -> None:
    x_T = 3 * x_T_fixed()

    def loud(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:  # predicts x0 far outside [-1, 1]
        return -x

    assert sample(name, 4, x_T, model=loud).abs().max() > 1.5
    clipped = sample(name, 4, x_T, model=loud, clip_denoised=True)
    assert clipped.abs().max() <= 1.0 and clipped.abs().max() > 0.5


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
@pytest.mark.parametrize("spacing", TIME_GRIDS)
@pytest.mark.parametrize("name", list(SOLVERS))
def test_sweep_gives_finite_reproducible_samples(name: str, spacing: str, schedule: str) -> None:
    diffusion = GaussianDiffusion(make_betas(schedule, 20))
    for steps in (1, 2, 3, 20):
        g = torch.Generator().manual_seed(steps)
        out = solve(name, diffusion, wavy_eps, torch.randn(3, 2, 4, 4, generator=g), steps=steps, spacing=spacing)
        x_T = torch.randn(3, 2, 4, 4, generator=torch.Generator().manual_seed(steps))
        again = solve(name, diffusion, wavy_eps, x_T, steps=steps, spacing=spacing)
        assert out.shape == (3, 2, 4, 4) and torch.isfinite(out).all() and torch.equal(out, again)


def test_progress_bar(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    for name, label in [("dpmpp_2m", "DPM-Solver++(2M)"), ("unipc", "UniPC"), ("heun", "Heun"), ("euler", "Euler")]:
        sample(name, 3, x_T_fixed(), progress=True)
        assert label not in capsys.readouterr().err  # stderr redirected: no bar
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)  # a terminal
    for name, label in [("dpmpp_2m", "DPM-Solver++(2M)"), ("unipc", "UniPC"), ("heun", "Heun"), ("euler", "Euler")]:
        sample(name, 3, x_T_fixed(), progress=True)
        assert label in capsys.readouterr().err


def test_importing_the_solvers_does_not_import_lightning() -> None:
    code = (
        "import sys; import genlab.diffusion.solvers, genlab.diffusion.time_grids, genlab.diffusion; "
        "assert not any(m.startswith(('lightning', 'pytorch_lightning')) for m in sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
