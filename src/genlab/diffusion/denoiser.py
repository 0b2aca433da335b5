"""The network as every sampler sees it: at (x_t, t), the noise eps and the data prediction x0, each computed straight
from the network's output in its own target (eps, x0 or v; prediction.py), with the guidance of one batch applied.

Classifier-free guidance combines the conditional and the null outputs of the network (guidance.py). That
combination is linear in the output, and every target is linear in eps at a given x_t, so guiding the network's own
output is the same as guiding its eps. Classifier guidance shifts eps by -sigma_t grad log p(y | x_t) (Dhariwal &
Nichol eq. 14), so x0 moves by +sigma_t^2 / alpha_t grad; DDPM and DDIM apply it themselves (samplers.py), the ODE
solvers through `at`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from genlab.diffusion.classifier_guidance import CondFn, guided_eps
from genlab.diffusion.gaussian import GaussianDiffusion, ModelFn
from genlab.diffusion.prediction import Prediction, to_eps
from genlab.diffusion.time_grids import GridPoint, Schedule


class Denoiser:
    """A network (`net(x_t, t, **model_kwargs)` -> its raw output in `prediction`'s target), the diffusion process it
    was trained on, and the guidance of one batch: what a sampler is given instead of the network."""

    def __init__(self, net: ModelFn, diffusion: GaussianDiffusion, *, prediction: str | None = None,
                 model_kwargs: dict | None = None, cond_fn: CondFn | None = None) -> None:
        self.net, self.diffusion = net, diffusion
        self.prediction = str(prediction if prediction is not None else diffusion.prediction)
        self.model_kwargs, self.cond_fn = model_kwargs or {}, cond_fn
        self._schedule: Schedule | None = None

    @property
    def schedule(self) -> Schedule:
        """The process in its VP view: alpha, sigma and lambda at any model time (float64), and its time grids;
        built once when first needed."""
        if self._schedule is None:
            self._schedule = self.diffusion.schedule()
        return self._schedule

    def output(self, x: Tensor, t: Tensor, **kwargs: object) -> Tensor:
        """The network's raw output at (x_t, t) with this batch's kwargs (labels), or those given."""
        return self.net(x, t, **{**self.model_kwargs, **kwargs})

    def eps(self, x: Tensor, t: Tensor, **kwargs: object) -> Tensor:
        """Unguided eps at [B] times t (`model_fn(x_t, t, **model_kwargs)` of DDPM, DDIM, inversion and the NLL).
        Integer t reads the process's abar table, fractional t the VP schedule."""
        out = self.output(x, t, **kwargs)
        if self.prediction == Prediction.eps:
            return out
        return to_eps(self.prediction, out, x, self.alpha_bar(t, x))

    def alpha_bar(self, t: Tensor, x: Tensor) -> Tensor:
        """abar_t shaped to broadcast against x; interpolated between timesteps for fractional t."""
        if not t.is_floating_point():
            return self.diffusion.extract(self.diffusion.alphas_cumprod, t, x)
        abar = self.schedule.alpha_bar(t.detach().double().cpu()).to(device=x.device, dtype=x.dtype)  # a VP process
        return abar.view(-1, *([1] * (x.ndim - 1)))  # [B] -> [B, 1, ..., 1]

    def at(self, x: Tensor, t: Tensor, p: GridPoint) -> tuple[Tensor, Tensor]:
        """(x0, eps) at the VP sample x and grid point p (t: p's time as the network takes it), classifier-guided."""
        x_in, t_in = self.diffusion.network_input(x, t, p)  # what the network of this process takes
        x0, eps = self.diffusion.denoised(self.output(x_in, t_in), x_in, p, self.prediction)
        if self.cond_fn is None:
            return x0, eps
        grad = self.cond_fn(x, t)
        # A float64 0-dim abar keeps 1 - abar exact; the result stays in x's dtype.
        guided = guided_eps(eps, torch.tensor(p.alpha_bar, dtype=torch.float64, device=x.device), grad)
        if self.prediction == Prediction.eps:  # x0 follows from eps as in the unguided case
            return (x - p.sigma * guided) / p.alpha, guided
        return x0 + (p.sigma * p.sigma / p.alpha) * grad, guided
