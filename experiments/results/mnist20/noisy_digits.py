"""Real MNIST training digits with Gaussian pixel noise, as PNGs: how much does a feature space see the noise that
DDPM's sigma-hat sampler leaves at few steps? (README.md, "DDIM"). Score the folder with `genlab eval samples=`.

    python experiments/results/mnist20/noisy_digits.py OUT_FOLDER --std 0.36 [--n 1000] [--root ../shared/data]

The same n digits and the same unit noise for every --std (seed 0), so folders differ only by the noise's size;
--std 0 writes the clean digits. Pixels are on the [-1, 1] scale of the models, clamped after the noise.
"""

import argparse
import math
import sys
from pathlib import Path

import torch
from torchvision.datasets import MNIST
from torchvision.transforms.functional import pil_to_tensor
from torchvision.utils import save_image


def fail(message: str) -> None:
    print(f"noisy_digits.py: {message}", file=sys.stderr)
    sys.exit(2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="a new folder (or an empty one) for the PNGs")
    parser.add_argument("--std", type=float, required=True, help="noise std on the [-1, 1] scale")
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--root", default="../shared/data", help="the folder that holds MNIST/raw/")
    args = parser.parse_args()
    if not math.isfinite(args.std) or args.std < 0 or args.n < 1:
        fail(f"--std must be a finite number >= 0 and --n >= 1, got {args.std} and {args.n}")
    if args.out.exists() and (not args.out.is_dir() or any(args.out.iterdir())):
        fail(f"{args.out} exists and is not an empty folder; name a new one (nothing was written)")
    try:
        digits = MNIST(args.root, train=True, download=False)
    except RuntimeError:
        fail(f"no MNIST under {args.root}/MNIST/raw/; pass --root with the folder that holds it")
    generator = torch.Generator().manual_seed(0)
    chosen = torch.randperm(len(digits), generator=generator)[: args.n].tolist()
    noise = torch.randn((len(chosen), 1, 28, 28), generator=generator)
    args.out.mkdir(parents=True, exist_ok=True)
    for j, index in enumerate(chosen):
        x = pil_to_tensor(digits[index][0]).float() / 127.5 - 1.0
        x = (x + args.std * noise[j]).clamp(-1.0, 1.0)
        save_image((x + 1.0) / 2.0, args.out / f"{j:05d}.png")
    print(f"noisy_digits.py: wrote {len(chosen)} digits with noise std {args.std} to {args.out}")


if __name__ == "__main__":
    main()
