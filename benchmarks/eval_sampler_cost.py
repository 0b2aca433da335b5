"""What one FID evaluation during training costs with each eval.sampler: the sampling time of eval.num_samples
images (the feature extraction is the same for every sampler). Prints a Markdown table.

    python benchmarks/eval_sampler_cost.py CKPT [--n 1000] [--batch 250]
"""

from __future__ import annotations

import argparse
import time

import torch

from genlab.diffusion import SamplerSettings
from genlab.runs.checkpoint import load_diffusion
from genlab.runs.provenance import cpu_model

CANDIDATES = [("ddim", 50), ("ddim", 10), ("dpmpp_2m", 10), ("unipc", 10), ("dpmpp_2m", 20)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ckpt")
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=250)
    args = parser.parse_args()
    module = load_diffusion(args.ckpt)
    T = module.diffusion.num_timesteps
    module.eval_samples(8, seed=0, batch_size=8, settings=SamplerSettings(steps=2))  # warm-up
    rows = []
    for name, steps in CANDIDATES:
        settings = module.sampler_settings.override(name=name, steps=steps)
        started = time.perf_counter()
        with torch.no_grad():
            module.eval_samples(args.n, seed=0, batch_size=args.batch, settings=settings)
        rows.append((settings.label(T), time.perf_counter() - started))
    base = rows[0][1]
    print(f"{args.n} samples of {args.ckpt} on {cpu_model()}, {torch.get_num_threads()} threads\n")
    print("| eval sampler | seconds | vs DDIM-50 |\n|---|---|---|")
    for label, seconds in rows:
        print(f"| {label} | {seconds:.1f} | {seconds / base:.2f}x |")


if __name__ == "__main__":
    main()
