"""The noise-aware classifier: output shapes, pool validation, gradient flow and time dependence."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from genlab.nn import AttentionPool2d, NoiseAwareClassifier

TINY = dict(base_channels=8, channel_mult=(1, 2), num_res_blocks=1, attention_resolutions=(8,))


def tiny(in_channels: int = 1, pool: str = "attention", **kw: object) -> NoiseAwareClassifier:
    return NoiseAwareClassifier(in_channels=in_channels, resolution=16, num_classes=5, pool=pool, **{**TINY, **kw})


def perturb(model: torch.nn.Module, seed: int = 0, std: float = 0.05) -> None:
    """Add noise to every parameter, so the zero-initialised convolutions stop hiding the time embedding."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(std * torch.randn(p.shape, generator=g))


@pytest.mark.parametrize("pool", ["attention", "avg"])
@pytest.mark.parametrize("in_channels", [1, 3])
def test_logits_shape(pool: str, in_channels: int) -> None:
    model = tiny(in_channels, pool)
    logits = model(torch.randn(3, in_channels, 16, 16), torch.tensor([0, 10, 999]))
    assert logits.shape == (3, 5)
    assert torch.isfinite(logits).all()


def test_avg_pool_has_no_attention_parameters() -> None:
    attn, avg = tiny(pool="attention"), tiny(pool="avg")
    assert avg.attn_pool is None and isinstance(attn.attn_pool, AttentionPool2d)
    c, n = 16, 8 * 8 + 1  # middle channels 8 * 2; the mean token plus the 8x8 middle map
    extra = n * c + (c * c + c) + (2 * c * c + 2 * c)  # positions, query, key-value
    assert sum(p.numel() for p in attn.parameters()) - sum(p.numel() for p in avg.parameters()) == extra


@pytest.mark.parametrize("bad", ["max", "", "Attention"])
def test_invalid_pool_raises(bad: str) -> None:
    with pytest.raises(ValueError, match=r"pool must be one of \['attention', 'avg'\]"):
        tiny(pool=bad)


def test_invalid_sizes_raise() -> None:
    with pytest.raises(ValueError, match="num_classes"):
        NoiseAwareClassifier(in_channels=1, resolution=16, num_classes=0, **TINY)
    with pytest.raises(ValueError, match="attention_resolutions"):
        NoiseAwareClassifier(in_channels=1, resolution=16, num_classes=3, **{**TINY, "attention_resolutions": (32,)})


@pytest.mark.parametrize("pool", ["attention", "avg"])
def test_gradient_reaches_every_parameter(pool: str) -> None:
    torch.manual_seed(0)
    model = tiny(pool=pool)
    perturb(model)
    logits = model(torch.randn(4, 1, 16, 16), torch.tensor([0, 5, 50, 500]))
    F.cross_entropy(logits, torch.tensor([0, 1, 2, 3])).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("pool", ["attention", "avg"])
@pytest.mark.parametrize("time_injection, base_channels", [("add", 64), ("add", 32), ("scale_shift", 8), ("concat", 8)])
def test_logits_depend_on_t(pool: str, time_injection: str, base_channels: int) -> None:
    torch.manual_seed(0)
    model = tiny(pool=pool, time_injection=time_injection, base_channels=base_channels).eval()
    perturb(model)
    x = torch.randn(2, 1, 16, 16)
    a = model(x, torch.tensor([0, 0]))
    b = model(x, torch.tensor([700, 700]))
    assert (a - b).abs().max() > 1e-4  # float32 round-off is ~1e-7
    # and the same t gives the same logits: eval mode is deterministic
    assert torch.equal(a, model(x, torch.tensor([0, 0])))


def test_samples_are_independent() -> None:
    """GroupNorm and pooling act per sample: a sample's logits do not depend on the rest of the batch."""
    torch.manual_seed(0)
    model = tiny().eval()
    perturb(model)
    x, t = torch.randn(3, 1, 16, 16), torch.tensor([1, 2, 3])
    torch.testing.assert_close(model(x, t)[1:2], model(x[1:2], t[1:2]), rtol=1e-5, atol=1e-5)


def test_attention_pool_matches_explicit_softmax() -> None:
    """One head, written out: softmax over tokens of q.k / sqrt(C), weighted sum of values."""
    torch.manual_seed(0)
    pool = AttentionPool2d(channels=4, spatial=2, num_heads=1)
    x = torch.randn(2, 4, 2, 2)
    tokens = x.flatten(2).transpose(1, 2)  # [B, 4, C]
    tokens = torch.cat([tokens.mean(1, keepdim=True), tokens], 1) + pool.pos_emb  # [B, 5, C]
    q = pool.q(tokens[:, 0])  # [B, C]
    k, v = pool.kv(tokens).chunk(2, dim=-1)  # each [B, 5, C]
    weights = torch.softmax(torch.einsum("bc,bnc->bn", q, k) / 2.0, dim=1)  # sqrt(C) = 2
    expected = torch.einsum("bn,bnc->bc", weights, v)
    torch.testing.assert_close(pool(x), expected, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="2x2"):
        pool(torch.randn(1, 4, 4, 4))
