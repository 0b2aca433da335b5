"""Tests of the U-Net and its building blocks (tiny CPU configs, except the parameter count)."""
from __future__ import annotations

import math
from enum import Enum

import pytest
import torch
from torch import nn

from genlab.nn import (
    TIME_INJECTIONS,
    AttentionBlock,
    Downsample,
    ResBlock,
    UNet,
    UNetEncoder,
    Upsample,
    group_norm,
    sinusoidal_embedding,
)

TINY = dict(base_channels=16, channel_mult=(1, 2), num_res_blocks=1, dropout=0.0)


def perturb_zero_init(model: nn.Module) -> None:
    """Give every all-zero parameter random values, so outputs and gradients are non-trivial."""
    with torch.no_grad():
        for p in model.parameters():
            if torch.count_nonzero(p) == 0:
                p.normal_(0.0, 0.1)


def timesteps(batch: int) -> torch.Tensor:
    return torch.randint(0, 1000, (batch,))


# ---------------------------------------------------------------- sinusoidal embedding


def test_sinusoidal_embedding_shape_and_t0() -> None:
    emb = sinusoidal_embedding(torch.tensor([0, 5, 999]), 32)
    assert emb.shape == (3, 32)
    assert torch.equal(emb[0, :16], torch.zeros(16))  # sin(0) = 0
    assert torch.equal(emb[0, 16:], torch.ones(16))  # cos(0) = 1


def test_sinusoidal_embedding_frequencies_match_ddpm() -> None:
    # DDPM: freq_i = exp(-log(10000) * i / (half - 1)), so freq_0 = 1 and the last is 1e-4.
    emb = sinusoidal_embedding(torch.tensor([1.0]), 8)
    expected_sin = [math.sin(10000 ** (-i / 3)) for i in range(4)]
    expected_cos = [math.cos(10000 ** (-i / 3)) for i in range(4)]
    torch.testing.assert_close(emb[0], torch.tensor(expected_sin + expected_cos))


def test_sinusoidal_embedding_distinct_and_float_timesteps() -> None:
    t = torch.arange(1000)
    emb = sinusoidal_embedding(t, 64)
    assert torch.unique(emb, dim=0).shape[0] == 1000
    # Float timesteps (respaced or continuous time) interpolate between integers.
    mid = sinusoidal_embedding(torch.tensor([10.5]), 64)
    assert not torch.allclose(mid, emb[10:11]) and not torch.allclose(mid, emb[11:12])


def test_sinusoidal_embedding_odd_dim_is_padded() -> None:
    emb = sinusoidal_embedding(torch.tensor([3, 4]), 9)
    assert emb.shape == (2, 9)
    assert torch.equal(emb[:, -1], torch.zeros(2))


# ---------------------------------------------------------------- layers


@pytest.mark.parametrize(
    ("channels", "groups"), [(256, 32), (128, 32), (96, 24), (64, 16), (48, 12), (32, 8), (16, 4), (8, 2), (3, 1)]
)
def test_group_norm_groups(channels: int, groups: int) -> None:
    norm = group_norm(channels)
    assert norm.num_groups == groups
    assert norm.eps == 1e-6


@pytest.mark.parametrize("mode", TIME_INJECTIONS)
def test_resblock_starts_as_identity_or_skip(mode: str) -> None:
    x, emb = torch.randn(2, 16, 8, 8), torch.randn(2, 32)
    same = ResBlock(16, 16, 32, time_injection=mode)
    # The zero-initialised second conv makes the residual branch vanish.
    torch.testing.assert_close(same(x, emb), x)
    wider = ResBlock(16, 24, 32, time_injection=mode)
    torch.testing.assert_close(wider(x, emb), wider.skip(x))


@pytest.mark.parametrize("mode", TIME_INJECTIONS)
def test_resblock_uses_the_embedding(mode: str) -> None:
    block = ResBlock(8, 16, 32, time_injection=mode)
    perturb_zero_init(block)
    x = torch.randn(2, 8, 8, 8)
    out_a, out_b = block(x, torch.randn(2, 32)), block(x, torch.randn(2, 32))
    assert out_a.shape == (2, 16, 8, 8)
    assert not torch.allclose(out_a, out_b)


def test_resblock_rejects_unknown_time_injection() -> None:
    with pytest.raises(ValueError, match="scale_shift"):
        ResBlock(8, 8, 32, time_injection="multiply")


def test_resblock_accepts_str_enum_members() -> None:
    class Mode(str, Enum):
        scale_shift = "scale_shift"

    assert ResBlock(8, 8, 32, time_injection=Mode.scale_shift).time_injection == "scale_shift"


@pytest.mark.parametrize("num_heads", [1, 2, 4])
def test_attention_matches_naive_per_head_loop(num_heads: int) -> None:
    torch.manual_seed(0)
    block = AttentionBlock(16, num_heads)
    perturb_zero_init(block)
    x = torch.randn(2, 16, 4, 5)
    B, C, H, W = x.shape
    d = C // num_heads
    qkv = block.qkv(block.norm(x)).reshape(B, 3 * C, H * W)  # [B, 3C, HW]
    heads = []
    for i in range(num_heads):
        # Channel layout of the qkv conv is (q | k | v), each split into contiguous heads.
        q, k, v = (qkv[:, j * C + i * d : j * C + (i + 1) * d] for j in range(3))  # [B, d, HW]
        weights = torch.softmax(q.transpose(1, 2) @ k / math.sqrt(d), dim=-1)  # [B, HW, HW]
        heads.append(v @ weights.transpose(1, 2))  # [B, d, HW]
    naive = torch.cat(heads, dim=1).reshape(B, C, H, W)  # [B, C, HW] -> [B, C, H, W]
    torch.testing.assert_close(block(x), x + block.proj(naive), rtol=1e-4, atol=1e-5)


def test_attention_is_permutation_equivariant_over_positions() -> None:
    block = AttentionBlock(16, 2)
    perturb_zero_init(block)
    x = torch.randn(2, 16, 4, 4)
    perm = torch.randperm(16)
    permute = lambda z: z.flatten(2)[:, :, perm].reshape(z.shape)  # noqa: E731
    torch.testing.assert_close(block(permute(x)), permute(block(x)), rtol=1e-4, atol=1e-5)


def test_attention_rejects_heads_not_dividing_channels() -> None:
    with pytest.raises(ValueError, match="num_heads"):
        AttentionBlock(16, 3)


def test_down_and_upsample_shapes() -> None:
    x = torch.randn(2, 8, 16, 16)
    assert Downsample(8)(x).shape == (2, 8, 8, 8)
    assert Upsample(8)(x).shape == (2, 8, 32, 32)


# ---------------------------------------------------------------- U-Net


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(in_channels=1, resolution=16, attention_resolutions=(8,)),
        dict(in_channels=3, resolution=16, attention_resolutions=()),
        dict(in_channels=3, resolution=32, attention_resolutions=(32, 16), num_heads=2),
        dict(in_channels=1, resolution=16, time_injection="scale_shift", num_classes=10),
        dict(in_channels=3, resolution=16, time_injection="concat", attention_resolutions=(16,)),
        dict(in_channels=1, resolution=32, time_injection="concat", num_classes=3),
        dict(in_channels=3, out_channels=6, resolution=16, channel_mult=(1, 2, 2), num_res_blocks=2),
    ],
)
def test_unet_output_shape(kwargs: dict) -> None:
    config = {**TINY, **kwargs}
    model = UNet(**config)
    x = torch.randn(2, config["in_channels"], config["resolution"], config["resolution"])
    out = model(x, timesteps(2))
    assert out.shape == (2, config.get("out_channels", config["in_channels"]), *x.shape[2:])


def test_unet_starts_at_zero_output() -> None:
    model = UNet(in_channels=1, resolution=16, **TINY)
    out = model(torch.randn(2, 1, 16, 16), timesteps(2))
    assert torch.equal(out, torch.zeros_like(out))


def test_unet_cifar10_parameter_count() -> None:
    model = UNet(
        in_channels=3,
        resolution=32,
        base_channels=128,
        channel_mult=(1, 2, 2, 2),
        num_res_blocks=2,
        attention_resolutions=(16,),
        num_heads=1,
        time_injection="add",
    )
    n = sum(p.numel() for p in model.parameters())
    # Ho et al. 2020 report 35.7M; the TF model and its PyTorch ports have 35,746,307.
    assert abs(n - 35_746_307) / 35_746_307 < 0.005
    assert n == 35_746_307


def test_unet_float_timesteps_and_time_dependence() -> None:
    model = UNet(in_channels=1, resolution=16, **TINY)
    perturb_zero_init(model)
    x = torch.randn(2, 1, 16, 16)
    out_a = model(x, torch.tensor([10.0, 10.0]))
    out_b = model(x, torch.tensor([10.5, 10.5]))
    assert not torch.allclose(out_a, out_b)


def test_unet_rejects_timesteps_not_per_sample() -> None:
    model = UNet(in_channels=1, resolution=16, **TINY)
    with pytest.raises(ValueError, match="shape"):
        model(torch.randn(2, 1, 16, 16), torch.tensor(5))


def test_conditional_unet_labels() -> None:
    torch.manual_seed(0)
    model = UNet(in_channels=1, resolution=16, num_classes=10, **TINY).eval()
    assert model.null_class == 10
    assert model.encoder.class_embed.num_embeddings == 11  # 10 classes + null
    perturb_zero_init(model)
    x, t = torch.randn(3, 1, 16, 16), timesteps(3)
    out_0 = model(x, t, torch.tensor([0, 0, 0]))
    out_1 = model(x, t, torch.tensor([1, 1, 1]))
    assert not torch.allclose(out_0, out_1)
    torch.testing.assert_close(model(x, t), model(x, t, torch.full((3,), model.null_class)))


def test_unconditional_unet_rejects_labels() -> None:
    model = UNet(in_channels=1, resolution=16, **TINY)
    assert model.null_class is None
    with pytest.raises(ValueError, match="unconditional"):
        model(torch.randn(2, 1, 16, 16), timesteps(2), torch.tensor([0, 1]))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(time_injection="film"), "time_injection"),
        (dict(resolution=16, attention_resolutions=(4,)), "attention_resolutions"),
        (dict(resolution=18, channel_mult=(1, 2, 2)), "divisible"),
        (dict(channel_mult=()), "channel_mult"),
        (dict(num_classes=0), "num_classes"),
    ],
)
def test_unet_rejects_bad_config(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        UNet(**{**TINY, "resolution": 16, **kwargs})


def test_encoder_runs_standalone() -> None:
    encoder = UNetEncoder(
        in_channels=1, resolution=16, base_channels=16, channel_mult=(1, 2, 2), num_res_blocks=2
    )
    h, emb, skips = encoder(torch.randn(2, 1, 16, 16), timesteps(2))
    assert h.shape == (2, 32, 4, 4)  # base * mult[-1] channels, 16 / 2**2 pixels
    assert emb.shape == (2, 64)  # 4 * base_channels
    # Input conv + 2 blocks per level + a downsample after each level but the last.
    assert len(skips) == 1 + 3 * 2 + 2
    assert [s.shape[1] for s in skips] == encoder.skip_channels
    assert [s.shape[-1] for s in skips] == [16, 16, 16, 8, 8, 8, 4, 4, 4]


@pytest.mark.parametrize("mode", TIME_INJECTIONS)
def test_gradients_reach_every_parameter(mode: str) -> None:
    model = UNet(
        in_channels=1, resolution=16, attention_resolutions=(8,), num_classes=2, time_injection=mode, **TINY
    )
    perturb_zero_init(model)
    model(torch.randn(2, 1, 16, 16), timesteps(2), torch.tensor([0, 1])).sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert torch.count_nonzero(p.grad) > 0, name


@pytest.mark.parametrize(("base_channels", "min_change"), [(8, 1e-3), (32, 1e-2)])
def test_narrow_unet_with_add_injection_depends_on_t(base_channels: int, min_change: float) -> None:
    # Regression: with one channel per GroupNorm group, the added time embedding was normalised away
    # (before the fix the change below was under 1e-6 at base 8).
    torch.manual_seed(0)
    model = UNet(in_channels=1, resolution=16, base_channels=base_channels, channel_mult=(1, 2),
                 num_res_blocks=1, attention_resolutions=(8,), dropout=0.0, time_injection="add")
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.1)
    x = torch.randn(2, 1, 16, 16)
    with torch.no_grad():
        change = (model(x, torch.tensor([0, 0])) - model(x, torch.tensor([700, 700]))).abs().max()
    assert change > min_change
