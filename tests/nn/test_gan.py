"""Shapes and wiring of the GAN networks, for every variant."""

from __future__ import annotations

import pytest
import torch

from genlab.nn.gan import DCGANDiscriminator, DCGANGenerator, UNetDiscriminator, spectral_norm

SIZES = [(16, (1, 2, 4)), (28, (1, 2, 2)), (32, (1, 2, 2, 2))]


@pytest.mark.parametrize(("resolution", "mult"), SIZES)
@pytest.mark.parametrize("num_classes", [None, 10])
@pytest.mark.parametrize("channels", [1, 3])
def test_generator_output_shape_and_range(resolution: int, mult: tuple, num_classes: int | None, channels: int) -> None:
    g = DCGANGenerator(latent_dim=16, out_channels=channels, resolution=resolution, base_channels=8,
                       channel_mult=mult, num_classes=num_classes)
    y = torch.tensor([0, 3, 9]) if num_classes else None
    x = g(torch.randn(3, 16), y)
    assert x.shape == (3, channels, resolution, resolution)
    assert x.abs().max() < 1


@pytest.mark.parametrize(("resolution", "mult"), SIZES)
@pytest.mark.parametrize("arch", [DCGANDiscriminator, UNetDiscriminator])
@pytest.mark.parametrize("num_classes", [None, 10])
@pytest.mark.parametrize("sn", [False, True])
def test_discriminator_outputs(resolution: int, mult: tuple, arch: type, num_classes: int | None, sn: bool) -> None:
    d = arch(in_channels=3, resolution=resolution, base_channels=8, channel_mult=mult, num_classes=num_classes)
    d = spectral_norm(d) if sn else d
    y = torch.tensor([1, 2]) if num_classes else None
    out = d(torch.randn(2, 3, resolution, resolution), y)
    assert out.logits.shape == (2,)
    assert out.features.shape[0] == 2 and out.features.ndim == 2
    assert torch.isfinite(out.logits).all()
    if arch is UNetDiscriminator:
        assert out.pixel_logits is not None and out.pixel_logits.shape == (2, 1, resolution, resolution)
        assert out.pixel_logits.std() > 0  # the U-Net's zero-initialised output layer was re-initialised
    else:
        assert out.pixel_logits is None


def test_projection_discriminator_depends_on_the_label() -> None:
    d = DCGANDiscriminator(in_channels=1, resolution=16, base_channels=8, num_classes=10)
    x = torch.randn(1, 1, 16, 16).expand(2, -1, -1, -1)
    out = d(x, torch.tensor([0, 1]))
    assert out.logits[0] != out.logits[1]


def test_conditional_generator_depends_on_the_label_and_requires_it() -> None:
    g = DCGANGenerator(latent_dim=8, out_channels=1, resolution=16, base_channels=8, num_classes=10)
    z = torch.randn(1, 8).expand(2, -1)
    x = g(z, torch.tensor([0, 1]))
    assert not torch.allclose(x[0], x[1])
    with pytest.raises(ValueError, match="labels"):
        g(z)


def test_spectral_norm_bounds_each_layer() -> None:
    d = spectral_norm(DCGANDiscriminator(in_channels=1, resolution=16, base_channels=8))
    d.train()
    for _ in range(30):  # power iterations run in train-mode forwards
        d(torch.randn(4, 1, 16, 16))
    d.eval()
    linear = d.head.linear
    assert torch.linalg.matrix_norm(linear.weight, ord=2).item() == pytest.approx(1.0, rel=1e-3)


def test_resolution_that_cannot_be_halved_is_rejected() -> None:
    with pytest.raises(ValueError, match="divisible"):
        DCGANGenerator(latent_dim=8, out_channels=1, resolution=18, channel_mult=(1, 2, 4))
