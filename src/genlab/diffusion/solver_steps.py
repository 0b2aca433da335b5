"""ODE solver steps: pure math on tensors and grid points, no network and no hidden state.

Each step gets the sample, the model outputs it needs (the loop carries the earlier ones) and the `GridPoint`s
involved, and returns the next sample. Coefficients are float64 Python scalars, computed by a separate function so a
test can check them against closed forms; the tensor arithmetic then runs in the sample's dtype.

Papers and notation:
- DPM-Solver++ (Lu et al. 2022, "DPM-Solver++: Fast Solver for Guided Sampling of Diffusion Probabilistic Models"):
  data prediction x0 = D, lambda = log(alpha / sigma), h_i = lambda_{t_i} - lambda_{t_{i-1}}, Algorithm 2 (2M).
- UniPC (Zhao et al. 2023, "UniPC: A Unified Predictor-Corrector Framework for Fast Sampling of Diffusion Models"):
  UniC-p and UniP-p of sec. 3 in their data-prediction form, with B(h) = e^h - 1 ("B2", "bh2") and h -> -h.
- EDM (Karras et al. 2022, "Elucidating the Design Space of Diffusion-Based Generative Models"): Algorithm 1 with
  sigma(t) = t, s(t) = 1, on x~ = x / alpha (the VE variable) whose ODE is dx~/dsigma = (x~ - D(x~; sigma)) / sigma.
"""

from __future__ import annotations

import math

from torch import Tensor

from genlab.diffusion.time_grids import GridPoint


def _exp_neg_h(cur: GridPoint, nxt: GridPoint) -> float:
    # e^{-h} with h = lambda_next - lambda_cur, written as sigma_ve_next / sigma_ve_cur: 0 (not exp(-inf)) at CLEAN.
    return nxt.sigma_ve / cur.sigma_ve


# ---- DPM-Solver++(2M) ----


def dpmpp_2m_coefficients(prev: GridPoint | None, cur: GridPoint, nxt: GridPoint) -> tuple[float, float, float]:
    """(c_x, c_d, c_prev) with x_next = c_x x + c_d D_cur + c_prev D_prev; first order when prev is None.

    First order (DPM-Solver++(1), which is DDIM): x_next = (sigma_next / sigma) x - alpha_next (e^{-h} - 1) D.
    Second order (Algorithm 2, lines 5-6): D -> (1 + 1/(2r)) D_cur - 1/(2r) D_prev, r = h_{i-1} / h_i.
    """
    c_x = nxt.sigma / cur.sigma
    c_d = nxt.alpha * (1.0 - _exp_neg_h(cur, nxt))  # = -alpha_next (e^{-h} - 1)
    if prev is None:
        return c_x, c_d, 0.0
    if nxt.sigma == 0.0:
        raise ValueError("the step to sigma = 0 must be first order: h is infinite there")
    half_inv_r = (nxt.lam - cur.lam) / (2.0 * (cur.lam - prev.lam))  # 1 / (2 r_i)
    return c_x, c_d * (1.0 + half_inv_r), -c_d * half_inv_r


def dpmpp_2m_step(
    x: Tensor, d_cur: Tensor, d_prev: Tensor | None, prev: GridPoint | None, cur: GridPoint, nxt: GridPoint
) -> Tensor:
    """One DPM-Solver++(2M) step from `cur` to `nxt` (Algorithm 2); first order when d_prev is None.

    d_cur and d_prev are the data predictions x0 at `cur` and `prev`; the loop keeps d_cur for the next step.
    """
    c_x, c_d, c_prev = dpmpp_2m_coefficients(None if d_prev is None else prev, cur, nxt)
    out = c_x * x + c_d * d_cur
    return out if d_prev is None else out + c_prev * d_prev


# ---- UniPC (B(h) = e^h - 1, data prediction) ----


def _phi_2(z: float) -> float:
    # phi_2(z) = (e^z - 1 - z) / z^2, with expm1 for accuracy at small |z|.
    return (math.expm1(z) - z) / (z * z)


def _phi_3(z: float) -> float:
    # phi_3(z) = (e^z - 1 - z - z^2/2) / z^3.
    return (math.expm1(z) - z - 0.5 * z * z) / (z * z * z)


def unipc_predictor_coefficients(
    prev: GridPoint | None, cur: GridPoint, nxt: GridPoint
) -> tuple[float, float, float]:
    """(c_x, c_m, c_prev) of UniP-p: x_next = c_x x + c_m m_cur + c_prev m_prev; p = 1 when prev is None.

    x_next = (sigma_next / sigma) x - alpha_next (e^{-h} - 1) m_cur - alpha_next B(h) a_1 D_1 / r_1, with
    D_1 = m_prev - m_cur, r_1 = (lambda_prev - lambda_cur) / h and B(h) = e^{-h} - 1 in the data form. For p = 2 the
    1x1 system a_1 = g_1 / B(h) has the limit 1/2 as h -> 0, and UniPC takes a_1 = 1/2 (its reference code does too),
    which makes UniP-2 with B2 coincide with DPM-Solver++(2M). p = 1 is DDIM.
    """
    c_x = nxt.sigma / cur.sigma
    base = nxt.alpha * (1.0 - _exp_neg_h(cur, nxt))  # = -alpha_next B(h) = -alpha_next (e^{-h} - 1)
    if prev is None:
        return c_x, base, 0.0
    if nxt.sigma == 0.0:
        raise ValueError("the UniP step to sigma = 0 must be first order: h is infinite there")
    r1 = (prev.lam - cur.lam) / (nxt.lam - cur.lam)  # negative: prev lies behind cur
    a1 = 0.5
    return c_x, base * (1.0 - a1 / r1), base * a1 / r1


def unipc_corrector_coefficients(
    older: GridPoint | None, base: GridPoint, new: GridPoint
) -> tuple[float, float, float, float]:
    """(c_x, c_base, c_new, c_older) of UniC-p: x_new^c = c_x x_base + c_base m_base + c_new m_new + c_older m_older.

    x^c = (sigma_new / sigma_base) x_base - alpha_new (e^{-h} - 1) m_base
          - alpha_new B(h) (sum_{m < p} a_m D_m / r_m + a_p (m_new - m_base)),
    with D_m / r_m = (m_older - m_base) / r_1, r_1 = (lambda_older - lambda_base) / h, r_p = 1, and
    a = R_p^{-1} g_p / B(h), R_p the Vandermonde rows (r_1..r_p)^(k-1) and g_k = h k! phi_{k+1}(h) at h -> -h.
    p = 1 (older is None) uses a_1 = 1/2, the h -> 0 limit, as UniPC's reference code does: the trapezoidal rule.
    """
    if new.sigma == 0.0:
        raise ValueError("UniC needs a model evaluation at `new`; there is none at sigma = 0")
    c_x = new.sigma / base.sigma
    hh = -(new.lam - base.lam)  # the data-prediction form runs the noise form with h -> -h
    b_h = math.expm1(hh)  # B(h) = e^h - 1 at -h
    coef = -new.alpha * b_h  # multiplies each difference term; also the DDIM coefficient of m_base
    if older is None:
        a_new, a_older_over_r = 0.5, 0.0
    else:
        r1 = (older.lam - base.lam) / (new.lam - base.lam)
        g1, g2 = hh * _phi_2(hh), hh * 2.0 * _phi_3(hh)  # g_k = h k! phi_{k+1}(h)
        # Solve [[1, 1], [r1, 1]] [a1, a2] = [g1, g2] / B(h) in closed form (1 - r1 > 1 since r1 < 0).
        a1 = (g1 - g2) / (b_h * (1.0 - r1))
        a_new = g1 / b_h - a1
        a_older_over_r = a1 / r1
    c_new = coef * a_new
    c_older = coef * a_older_over_r
    return c_x, coef - c_new - c_older, c_new, c_older


def unipc_predictor_step(
    x: Tensor, m_cur: Tensor, m_prev: Tensor | None, prev: GridPoint | None, cur: GridPoint, nxt: GridPoint
) -> Tensor:
    """UniP-2 (UniP-1 when m_prev is None) from `cur` to `nxt`; m_* are data predictions x0."""
    c_x, c_m, c_prev = unipc_predictor_coefficients(None if m_prev is None else prev, cur, nxt)
    out = c_x * x + c_m * m_cur
    return out if m_prev is None else out + c_prev * m_prev


def unipc_corrector_step(
    x_base: Tensor,
    m_base: Tensor,
    m_new: Tensor,
    m_older: Tensor | None,
    older: GridPoint | None,
    base: GridPoint,
    new: GridPoint,
) -> Tensor:
    """UniC-2 (UniC-1 when m_older is None): the corrected sample at `new`, reusing the evaluation m_new.

    x_base is the (corrected) sample the predictor started from at `base`; m_new is the model's x0 at the predicted
    sample at `new`, which the loop keeps for the next predictor, so the corrector costs no extra evaluation.
    """
    c_x, c_base, c_new, c_older = unipc_corrector_coefficients(None if m_older is None else older, base, new)
    out = c_x * x_base + c_base * m_base + c_new * m_new
    return out if m_older is None else out + c_older * m_older


# ---- Karras et al. 2022, Algorithm 1, in sigma (VE) space ----


# Karras et al.'s Algorithm 1 runs on x~ = x / alpha with sigma = sigma_t / alpha_t. Where alpha is small (the first
# steps of a cosine or flow schedule: sigma up to 999) x~ is huge, and x~ + (sigma' - sigma) d cancels most of its
# float32 digits. The same steps written on the VP sample never form x~: with x~ = D + sigma d,
#   Euler (line 5):  x~' = x~ + (sigma' - sigma) d = D + sigma' d,       so  x' = alpha' D + sigma'_t d;
#   Heun (line 8):   x~' = x~_e + (sigma' - sigma)(d' - d) / 2,         so  x' = x_e + (sigma'_t - alpha' sigma)(d' - d) / 2,
# where sigma'_t = alpha' sigma' is the VP noise level and x_e the Euler point.


def euler_step(denoised: Tensor, d: Tensor, nxt: GridPoint) -> Tensor:
    """The Euler step to grid point `nxt` (Algorithm 1, line 5) on the VP sample: alpha' D + sigma'_t d, with D the
    data prediction and d = dx~/dsigma at the current point."""
    return nxt.alpha * denoised + nxt.sigma * d


def heun_step(x_euler: Tensor, d: Tensor, d_next: Tensor, cur: GridPoint, nxt: GridPoint) -> Tensor:
    """Heun's correction (Algorithm 1, line 8) of the Euler point x_euler on the VP sample: the trapezoid of d and
    d' = dx~/dsigma at the Euler point."""
    return x_euler + (0.5 * (nxt.sigma - nxt.alpha * cur.sigma_ve)) * (d_next - d)
