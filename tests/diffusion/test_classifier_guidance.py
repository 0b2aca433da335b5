"""Classifier guidance: cond_fn against analytic gradients, and the DDPM / DDIM updates against closed forms."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from genlab.diffusion import GaussianDiffusion, classifier_grad_fn, ddim_sample, ddpm_sample, linear_betas
from genlab.nn import NoiseAwareClassifier

SHAPE = (3, 1, 8, 8)
MU = torch.stack([torch.full(SHAPE[1:], -0.5), torch.zeros(SHAPE[1:]), torch.full(SHAPE[1:], 0.5)])  # [K, C, H, W]


def toy_log_prob(x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """log p(y | x) = -||x - mu_y||^2 (unnormalised), per sample [B]; t is ignored."""
    return -((x - MU[y]) ** 2).flatten(1).sum(dim=1)


def fake_eps(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """A pure function of (x, t) standing in for the diffusion network."""
    return torch.sin(3 * x) * ((t.to(x.dtype) + 1) / 10).view(-1, 1, 1, 1)  # [B] -> [B, 1, 1, 1]


def wavy_grad(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """A cond_fn that depends on both x and t, for the DDIM equivalence."""
    return torch.cos(2 * x) * (0.1 + t.to(x.dtype) / 20).view(-1, 1, 1, 1)  # [B] -> [B, 1, 1, 1]


def small_diffusion(T: int = 10, variance: str = "beta_tilde") -> GaussianDiffusion:
    return GaussianDiffusion(linear_betas(T, 0.05, 0.4), variance=variance)


def tiny_classifier() -> NoiseAwareClassifier:
    torch.manual_seed(0)
    model = NoiseAwareClassifier(
        in_channels=1, resolution=8, num_classes=3, base_channels=8, channel_mult=(1, 2), num_res_blocks=1,
        attention_resolutions=(4,), time_injection="scale_shift",
    )
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():  # perturb, so the zero-initialised convolutions contribute
        for p in model.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g))
    return model.eval()


def classifier_log_prob(model: NoiseAwareClassifier):
    def log_prob(x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.log_softmax(model(x, t), dim=1).gather(1, y[:, None]).squeeze(1)  # [B, 1] -> [B]

    return log_prob


# ---- (a) cond_fn is scale * the analytic gradient ----


@pytest.mark.parametrize("scale", [1.0, 2.5, -0.3])
def test_cond_fn_equals_scaled_analytic_gradient(scale: float) -> None:
    x = torch.randn(SHAPE, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([0, 2, 1])
    cond_fn = classifier_grad_fn(toy_log_prob, y, scale)
    grad = cond_fn(x, torch.tensor([3, 3, 3]))
    torch.testing.assert_close(grad, scale * -2 * (x - MU[y]))  # d/dx of -||x - mu_y||^2
    assert grad.grad_fn is None and not x.requires_grad  # nothing leaks into the caller's graph


def test_cond_fn_checks_shapes() -> None:
    x = torch.randn(SHAPE)
    with pytest.raises(ValueError, match="labels y"):
        classifier_grad_fn(toy_log_prob, torch.tensor([0, 1]), 1.0)(x, torch.zeros(3, dtype=torch.long))
    per_pixel = classifier_grad_fn(lambda x, t, y: -(x**2), torch.tensor([0, 1, 2]), 1.0)
    with pytest.raises(ValueError, match="one value per sample"):
        per_pixel(x, torch.zeros(3, dtype=torch.long))


# ---- (b) and (f): the real classifier, under no_grad ----


def test_guidance_gradient_increases_log_prob() -> None:
    model = tiny_classifier()
    log_prob = classifier_log_prob(model)
    x = torch.randn(SHAPE, generator=torch.Generator().manual_seed(0))
    t, y = torch.tensor([0, 4, 9]), torch.tensor([0, 1, 2])
    grad = classifier_grad_fn(log_prob, y, 1.0)(x, t)
    assert (grad.flatten(1).norm(dim=1) > 0).all()
    with torch.no_grad():
        before = log_prob(x, t, y)
        after = log_prob(x + 0.1 * grad, t, y)  # a step of norm ~2e-3: ||grad|| is ~0.02 here
        # First order: log p rises by delta * ||grad||^2 per sample.
        gain = 0.1 * grad.flatten(1).pow(2).sum(dim=1)
    assert (after > before).all()
    torch.testing.assert_close(after - before, gain, rtol=0.05, atol=0.0)


def test_gradient_is_computed_inside_no_grad() -> None:
    model = tiny_classifier()
    cond_fn = classifier_grad_fn(classifier_log_prob(model), torch.tensor([0, 1, 2]), 3.0)
    norms: list[float] = []

    def recording(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        grad = cond_fn(x, t)
        norms.append(float(grad.abs().max()))
        return grad

    x_T = torch.randn(SHAPE, generator=torch.Generator().manual_seed(0))
    diffusion = small_diffusion()
    with torch.no_grad():
        guided = ddim_sample(diffusion, fake_eps, SHAPE, steps=4, x_T=x_T, cond_fn=recording)
    plain = ddim_sample(diffusion, fake_eps, SHAPE, steps=4, x_T=x_T)
    assert len(norms) == 4 and min(norms) > 0
    assert not torch.allclose(guided, plain)
    assert not any(p.grad is not None for p in model.parameters())  # autograd.grad, not backward


# ---- (c) DDPM: the mean moves by Sigma * g ----


@pytest.mark.parametrize("variance", ["beta_tilde", "beta"])
def test_ddpm_shift_is_variance_times_gradient(variance: str) -> None:
    """T = 2, eps = k x, no clipping: every step is linear, so a constant g moves x_0 by a closed form."""
    k, T = 0.3, 2
    betas = [0.1, 0.3]
    diffusion = GaussianDiffusion(torch.tensor(betas), variance=variance)
    abar = [1 - betas[0], (1 - betas[0]) * (1 - betas[1])]
    abar_prev = [1.0, abar[0]]

    def slope(t: int) -> float:
        """d mean_t / d x_t for eps = k x: DDPM eq. 7 at x0_hat = (x - sqrt(1 - abar) k x) / sqrt(abar)."""
        x0_per_x = (1 - math.sqrt(1 - abar[t]) * k) / math.sqrt(abar[t])
        coef1 = math.sqrt(abar_prev[t]) * betas[t] / (1 - abar[t])
        coef2 = math.sqrt(1 - betas[t]) * (1 - abar_prev[t]) / (1 - abar[t])
        return coef1 * x0_per_x + coef2

    posterior = [betas[t] * (1 - abar_prev[t]) / (1 - abar[t]) for t in range(T)]  # beta_tilde, eq. 7
    sigma2 = posterior if variance == "beta_tilde" else [posterior[1], betas[1]]  # "beta" uses beta_tilde_1 at t=0
    g = torch.linspace(-1, 1, math.prod(SHAPE)).view(SHAPE)

    def run(cond_fn):
        x_T = torch.randn(SHAPE, generator=torch.Generator().manual_seed(0))
        gen = torch.Generator().manual_seed(1)
        return ddpm_sample(
            diffusion, lambda x, t: k * x, SHAPE, x_T=x_T, generator=gen, clip_denoised=False, cond_fn=cond_fn
        )

    shift = run(lambda x, t: g) - run(None)
    expected = (slope(0) * sigma2[1] + sigma2[0]) * g  # shifted at t=1, carried through t=0, shifted again
    torch.testing.assert_close(shift, expected, rtol=1e-4, atol=1e-6)


# ---- (d) DDIM: eps_hat = eps - sqrt(1 - abar_t) g ----


@pytest.mark.parametrize("eta", [0.0, 1.0])
@pytest.mark.parametrize("steps", [10, 3])
def test_ddim_guidance_equals_shifted_eps(eta: float, steps: int) -> None:
    diffusion = small_diffusion()
    seen: list[int] = []

    def shifted_eps(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        seen.append(int(t[0]))
        abar = diffusion.alphas_cumprod[t].view(-1, 1, 1, 1)  # [B] -> [B, 1, 1, 1]
        return fake_eps(x, t) - torch.sqrt(1 - abar) * wavy_grad(x, t)

    def run(model_fn, cond_fn):
        x_T = torch.randn(SHAPE, generator=torch.Generator().manual_seed(0)) * 1.5
        gen = torch.Generator().manual_seed(1)
        return ddim_sample(diffusion, model_fn, SHAPE, steps=steps, eta=eta, x_T=x_T, generator=gen, cond_fn=cond_fn)

    guided = run(fake_eps, wavy_grad)
    torch.testing.assert_close(guided, run(shifted_eps, None), rtol=1e-5, atol=1e-6)
    assert not torch.allclose(guided, run(fake_eps, None))
    assert seen[0] == 9 and seen[-1] == 0 and len(seen) == steps  # cond_fn sees original timesteps


# ---- (e) scale 0 is the unguided sampler, bit for bit ----


def test_scale_zero_gives_the_unguided_sample() -> None:
    model = tiny_classifier()
    cond_fn = classifier_grad_fn(classifier_log_prob(model), torch.tensor([0, 1, 2]), 0.0)
    diffusion = small_diffusion()
    x_T = torch.randn(SHAPE, generator=torch.Generator().manual_seed(0))
    for sample, kw in [(ddpm_sample, {}), (ddim_sample, {"steps": 5, "eta": 0.5})]:
        guided = sample(diffusion, fake_eps, SHAPE, x_T=x_T, generator=torch.Generator().manual_seed(1),
                        cond_fn=cond_fn, **kw)
        plain = sample(diffusion, fake_eps, SHAPE, x_T=x_T, generator=torch.Generator().manual_seed(1), **kw)
        assert torch.equal(guided, plain)


@pytest.mark.parametrize("process", ["flow", "edm"])
def test_another_process_reads_the_classifier_at_equal_log_snr(process: str) -> None:
    """A flow or EDM model's VP sample at time t is the classifier's x_t' at the t' of the same lambda, and guidance
    on it is Dhariwal & Nichol's eps shift on the VP view."""
    from genlab.diffusion import EDM, FlowMatching, make_betas, run_sampler
    from genlab.diffusion.classifier_guidance import at_matching_noise

    model = FlowMatching(1000) if process == "flow" else EDM(1000)
    classifier_vp = GaussianDiffusion(make_betas("linear", 1000)).schedule()
    seen: list[torch.Tensor] = []

    def log_prob(x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        seen.append(t)
        return (x.flatten(1) * (2.0 * y[:, None] - 1.0)).sum(1)  # class 1 prefers bright pixels, class 0 dark

    read = at_matching_noise(log_prob, model.schedule().lambda_, classifier_vp.t_of_lambda)
    times = model.schedule().grid_times(5, "uniform")
    read(torch.zeros(5, 2), times.float(), torch.zeros(5, dtype=torch.long))
    lam_model = model.schedule().lambda_(times)
    lam_classifier = classifier_vp.lambda_(seen[-1].double())
    inside = (lam_model < classifier_vp.lambda_(0.0)) & (lam_model > classifier_vp.lambda_(999.0))
    assert inside.any() and torch.allclose(lam_classifier[inside], lam_model[inside], atol=1e-3)
    clamped = torch.where(lam_model[~inside] > 0, 0.0, 999.0).to(torch.float64)
    assert torch.allclose(seen[-1][~inside].double(), clamped)  # outside its range: its end timesteps

    def net(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:  # any smooth field: guidance is what differs
        return 0.5 * x
    x_T = torch.randn(8, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([0, 1] * 4)
    plain = run_sampler("euler", model, net, x_T, steps=8, spacing="uniform" if process == "flow" else "karras")
    guided = run_sampler("euler", model, net, x_T, steps=8, spacing="uniform" if process == "flow" else "karras",
                         cond_fn=classifier_grad_fn(read, y, 0.5))
    shift = (guided - plain).flatten(1).mean(1)
    assert (shift[y == 1] > 0.01).all() and (shift[y == 0] < -0.01).all()
