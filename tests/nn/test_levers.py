"""Speed levers change how the U-Net computes, never what: each one against the plain network."""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from genlab.nn import UNet
from genlab.nn.layers import attention
from genlab.nn.levers import as_channels_last, compiled_call, set_levers

TINY = dict(in_channels=1, resolution=16, base_channels=8, channel_mult=(1, 2), num_res_blocks=1,
            attention_resolutions=(8,), num_heads=2)


def tiny_unet(dropout: float = 0.0) -> UNet:
    torch.manual_seed(0)
    net = UNet(**TINY, dropout=dropout)
    with torch.no_grad():  # the zero-initialised output layers would make every gradient but theirs zero
        for p in net.parameters():
            if torch.count_nonzero(p) == 0:
                p.normal_(0.0, 0.1)
    return net


def loss_and_grads(net: nn.Module, channels_last: bool = False, seed: int = 1) -> tuple[torch.Tensor, dict]:
    """The MSE loss of one batch and every parameter's gradient, with the RNG (dropout) seeded."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 1, 16, 16, generator=g)
    t = torch.randint(0, 1000, (4,), generator=g)
    target = torch.randn(4, 1, 16, 16, generator=g)
    torch.manual_seed(seed)
    net.zero_grad()
    out = net(as_channels_last(x) if channels_last else x, t)
    loss = ((out - target) ** 2).mean()
    loss.backward()
    return loss.detach(), {k: p.grad.clone() for k, p in net.named_parameters()}


def assert_same_training_step(plain: nn.Module, lever: nn.Module, channels_last: bool = False) -> None:
    loss_a, grads_a = loss_and_grads(plain)
    loss_b, grads_b = loss_and_grads(lever, channels_last)
    assert torch.allclose(loss_a, loss_b, rtol=1e-5, atol=1e-6)
    assert grads_a.keys() == grads_b.keys()
    for k in grads_a:
        assert torch.allclose(grads_a[k], grads_b[k], rtol=1e-4, atol=1e-5), k


def test_channels_last_gives_the_same_loss_and_gradients() -> None:
    plain = tiny_unet()
    lever = set_levers(copy.deepcopy(plain), channels_last=True)
    weight = lever.encoder.down[1].blocks[0].res.conv1.weight  # [16, 8, 3, 3]: the two layouts differ
    assert weight.is_contiguous(memory_format=torch.channels_last) and not weight.is_contiguous()
    assert_same_training_step(plain, lever, channels_last=True)
    assert lever.state_dict().keys() == plain.state_dict().keys()


def test_gradient_checkpointing_gives_the_same_loss_and_gradients_with_dropout() -> None:
    # dropout 0.3: the recomputed forward must replay the same dropout mask, or the gradients differ
    plain = tiny_unet(dropout=0.3)
    lever = set_levers(copy.deepcopy(plain), grad_checkpointing=True)
    assert_same_training_step(plain, lever)


def test_gradient_checkpointing_recomputes_only_in_training() -> None:
    net = set_levers(tiny_unet(), grad_checkpointing=True)
    calls = []
    # a pre-hook: the recomputation stops early, once it has rebuilt the tensors the backward needs
    net.encoder.down[0].blocks[0].res.register_forward_pre_hook(lambda *a: calls.append(1))
    x, t = torch.randn(2, 1, 16, 16), torch.zeros(2, dtype=torch.long)
    net(x, t).sum().backward()
    assert len(calls) == 2  # the forward, then its recomputation in the backward pass
    calls.clear()
    net.eval()
    net(x, t).sum().backward()
    assert len(calls) == 1


@pytest.mark.parametrize("kernel", ["math", "auto"])
def test_attention_kernels_equal_sdpa(kernel: str) -> None:
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 20, 8, generator=g) for _ in range(3))  # [B, heads, N, d]
    assert torch.allclose(attention(q, k, v, kernel), attention(q, k, v, "sdpa"), atol=1e-5)
    plain = set_levers(tiny_unet(), attention="sdpa")
    lever = set_levers(copy.deepcopy(plain), attention=kernel)
    assert all(b.kernel == kernel for b in lever.modules() if hasattr(b, "kernel"))
    assert_same_training_step(plain, lever)


def test_unknown_attention_kernel_is_rejected() -> None:
    with pytest.raises(ValueError, match="attention kernel"):
        set_levers(tiny_unet(), attention="flash")


@pytest.mark.slow  # inductor builds C++ kernels with gcc: about a minute on a 2-core CPU with a cold cache
def test_compiled_forward_equals_eager_and_keeps_the_keys() -> None:
    net = tiny_unet()
    keys = list(net.state_dict())
    fn = compiled_call(net)
    x, t = torch.randn(2, 1, 16, 16), torch.tensor([3, 500])
    with torch.no_grad():
        out = fn(x, t)
    with torch.no_grad():
        assert torch.allclose(out, net(x, t), atol=1e-5)
    assert list(net.state_dict()) == keys  # no `_orig_mod.` prefix
