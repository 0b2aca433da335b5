"""What one benchmark run measures with: device, sizes, repetitions; --quick shrinks everything."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from unets import UNetSize


@dataclass
class Bench:
    device: torch.device
    quick: bool
    compile: bool  # time torch.compile variants (each compiles for about a minute on a 2-core CPU)
    rounds: int  # timed calls per candidate, interleaved
    warmup: int

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    def sizes(self) -> list[UNetSize]:
        """The issue's two U-Nets: MNIST-size at 32x32 and DDPM's CIFAR-10 model (35.7M parameters)."""
        if self.quick:
            return [UNetSize("MNIST-size (configs/unet/mnist.yaml), 1x32x32", "mnist", 1, 32, 4)]
        cifar_batch = 64 if self.cuda else 8  # 8 keeps a CPU step near a second
        return [UNetSize("MNIST-size (configs/unet/mnist.yaml), 1x32x32", "mnist", 1, 32, 64 if not self.cuda else 128),
                UNetSize("DDPM CIFAR-10 (configs/unet/ddpm_cifar10.yaml), 3x32x32", "ddpm_cifar10", 3, 32, cifar_batch)]


def make_bench(device: str, quick: bool, compile: bool) -> Bench:
    dev = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                       ("cpu" if device == "auto" else device))
    if quick:
        return Bench(dev, True, compile, rounds=2, warmup=1)
    return Bench(dev, False, compile, rounds=5, warmup=1)
