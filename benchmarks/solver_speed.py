"""Sampling speed of the ODE solvers against DDIM at equal NFE, on one CPU thread; prints a Markdown table.

Two measurements per sampler: images/s with the digits U-Net (16x16, 1 channel, untrained: weights do not change the
speed), and the solver's own cost per network evaluation with a free stand-in network, which isolates the step math
from the U-Net. Heun's NFE is 2 steps - 1, so it runs the step count whose NFE is nearest and is compared per NFE.
The candidates take turns (A B C ... A B C ...) and the median is kept, so load from other processes hits all alike.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/solver_speed.py [--batch 64] [--rounds 3] [--nfe 10 50]
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable

import torch

from genlab.diffusion import SAMPLERS as REGISTRY
from genlab.diffusion import GaussianDiffusion, SamplerSettings, linear_betas, run_sampler, sampler_entry
from genlab.nn import UNet

SAMPLERS = [name for name in REGISTRY if SamplerSettings(name=name).deterministic]  # DDIM (eta 0) and the solvers


def steps_for(name: str, nfe: int) -> int:
    """The most steps whose NFE is within `nfe` (Heun: 2 steps - 1 <= nfe)."""
    return sampler_entry(name).steps_for_nfe(nfe)


def solver_nfe(name: str, steps: int) -> int:
    return sampler_entry(name).nfe(steps)


def sampler_call(
    name: str, diffusion: GaussianDiffusion, model_fn: Callable, shape: tuple[int, ...], nfe: int
) -> Callable[[], object]:
    """A no-argument call that samples `shape` with sampler `name` at (about) `nfe` network evaluations."""
    steps = steps_for(name, nfe)
    x_T = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    # Unclipped, so that only the update rule differs between DDIM and the solvers.
    return lambda: run_sampler(name, diffusion, model_fn, x_T, prediction="eps", steps=steps, clip=False)


def interleaved_medians(calls: dict[str, Callable[[], object]], rounds: int) -> dict[str, float]:
    """Median seconds per call, after one warm-up call each, with the candidates taking turns."""
    for fn in calls.values():
        fn()
    seconds: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(rounds):
        for name, fn in calls.items():
            start = time.perf_counter()
            fn()
            seconds[name].append(time.perf_counter() - start)
    return {name: statistics.median(s) for name, s in seconds.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--nfe", type=int, nargs="+", default=[10, 50])
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    # The digits U-Net (configs/unet/digits.yaml).
    unet = UNet(in_channels=1, resolution=16, base_channels=32, channel_mult=(1, 2, 2), num_res_blocks=1,
                attention_resolutions=(8,), dropout=0.0).eval()
    diffusion = GaussianDiffusion(linear_betas(1000))
    shape = (args.batch, 1, 16, 16)

    def free_model(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:  # a network that costs one multiply
        return 0.1 * x

    print(f"Batch {args.batch}, 16x16x1, torch {torch.__version__}, {torch.get_num_threads()} thread; "
          f"median of {args.rounds} interleaved rounds.\n")
    print("| sampler | NFE | images/s (U-Net) | s per NFE vs DDIM | solver math, ms per NFE | math / U-Net NFE |")
    print("|---|---|---|---|---|---|")
    with torch.inference_mode():
        for nfe in args.nfe:
            unet_s = interleaved_medians(
                {n: sampler_call(n, diffusion, unet, shape, nfe) for n in SAMPLERS}, args.rounds)
            math_s = interleaved_medians(
                {n: sampler_call(n, diffusion, free_model, shape, nfe) for n in SAMPLERS}, 5 * args.rounds)
            per_nfe = {n: unet_s[n] / solver_nfe(n, steps_for(n, nfe)) for n in SAMPLERS}
            for n in SAMPLERS:
                used = solver_nfe(n, steps_for(n, nfe))
                math_ms = 1e3 * math_s[n] / used
                print(f"| {n} | {used} | {args.batch / unet_s[n]:.1f} | {per_nfe[n] / per_nfe['ddim']:.3f} | "
                      f"{math_ms:.3f} | {math_ms / (1e3 * per_nfe['ddim']):.2%} |")


if __name__ == "__main__":
    main()
