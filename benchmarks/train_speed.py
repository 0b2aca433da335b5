"""Sections 1 and 5 of issue 9: the training step of genlab's U-Net against diffusers' UNet2DModel, each speed
lever on and off, and the model FLOP utilisation of the step."""

from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode

from bench_config import Bench
from report import Section, Target
from timing import Timing, interleaved, timed_once
from unets import UNetSize, diffusers_unet, genlab_unet, parameter_count, saved_activation_bytes, train_step

# Every lever alone against "plain" (the config defaults: all off, attention=auto); the best combinations go into
# the genlab/diffusers ratio.
CPU_LEVERS = {
    "plain": {},
    "channels_last": {"channels_last": True},
    "attention=sdpa": {"attention": "sdpa"},
    "attention=math": {"attention": "math"},
    "grad_checkpointing": {"grad_checkpointing": True},
}
# One compiled variant per library: each compiles forward and backward for about a minute on a 2-core CPU.
COMPILE_LEVERS = {"compile": {"compile": True}}
GPU_AUTOCAST = {"bf16 autocast": torch.bfloat16, "fp16 autocast (16-mixed)": torch.float16}
CPU_AUTOCAST = {"bf16 autocast": torch.bfloat16}


def cpu_has_bf16() -> bool:
    """Whether the CPU computes bf16 natively (AVX512-BF16 or AMX): elsewhere bf16 autocast is emulated and slow."""
    return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()


# Levers both libraries have: the "best levers" of the genlab / diffusers ratio are chosen among these only, so
# that genlab's extra switches do not give it more draws of the timing noise.
SHARED = ("plain", "channels_last", "compile")


def candidates(b: Bench, size: UNetSize, genlab_levers: bool) -> dict[str, tuple[str, dict, torch.dtype | None]]:
    """name -> (library, levers, autocast dtype): every variant timed together for one U-Net size.

    On a CPU the 35.7M model is not compiled: two more compilations would take minutes of the 10-minute budget.
    """
    out = {}
    for lib in ("genlab", "diffusers"):
        levers = {k: v for k, v in CPU_LEVERS.items() if (lib == "genlab" and genlab_levers) or k in SHARED}
        if b.compile and (genlab_levers or b.cuda):
            levers.update(COMPILE_LEVERS)
        for name, lever in levers.items():
            out[f"{lib} {name}"] = (lib, lever, None)
        autocast = GPU_AUTOCAST if b.cuda else (CPU_AUTOCAST if cpu_has_bf16() else {})
        for name, dtype in autocast.items():
            out[f"{lib} {name}"] = (lib, {}, dtype)
    return out


def measure(b: Bench, size: UNetSize, genlab_levers: bool) -> tuple[dict[str, Timing], dict[str, float]]:
    """Interleaved step times of every candidate, and the compile seconds of the compiled ones."""
    steps, compile_s = {}, {}
    for name, (lib, levers, dtype) in candidates(b, size, genlab_levers).items():
        torch.manual_seed(0)
        net = genlab_unet(size) if lib == "genlab" else diffusers_unet(size)
        steps[name] = train_step(net, size, levers, b.device, autocast=dtype)
        if levers.get("compile"):
            compile_s[name] = timed_once(steps[name], b.device)  # the first call compiles forward and backward
    warmup = b.warmup + (1 if b.compile else 0)  # a compiled step's second call still specialises
    return interleaved(steps, b.rounds, warmup, b.device), compile_s


def step_flops(size: UNetSize, device: torch.device) -> int:
    """FLOPs of one genlab training step (forward and backward; the Adam update is not counted)."""
    torch.manual_seed(0)
    step = train_step(genlab_unet(size), size, {}, device)
    with FlopCounterMode(display=False) as counter:
        step()
    return counter.get_total_flops()


def matmul_peak(b: Bench) -> float:
    """FLOP/s of a large fp32 matmul on the same device and threads: the machine's practical peak."""
    n = 8192 if b.cuda else (1024 if b.quick else 2048)  # a GPU needs a larger product to reach its peak
    x, y = torch.randn(n, n, device=b.device), torch.randn(n, n, device=b.device)
    timing = interleaved({"mm": lambda: torch.mm(x, y)}, rounds=3 if b.quick else 10, warmup=2, device=b.device)
    return 2 * n**3 / timing["mm"].median


def best(timings: dict[str, Timing], lib: str) -> tuple[str, Timing]:
    """The fastest fp32 variant of a library among the shared levers (autocast changes the precision)."""
    mine = {k: v for k, v in timings.items() if k.removeprefix(lib + " ") in SHARED}
    name = min(mine, key=lambda k: mine[k].median)
    return name.removeprefix(lib + " "), mine[name]


def run(b: Bench) -> tuple[Section, Section, Section]:
    """Section 1 (genlab vs diffusers), the lever table, and section 5 (MFU)."""
    versus, levers, mfu = Section("1. Training step: genlab U-Net vs diffusers UNet2DModel"), \
        Section("Speed levers: the genlab training step with each lever on and off"), \
        Section("5. Model FLOP utilisation (training step)")
    rows, mnist = [], None
    for i, size in enumerate(b.sizes()):
        timings, compile_s = measure(b, size, genlab_levers=i == 0)
        g_name, g = best(timings, "genlab")
        d_name, d = best(timings, "diffusers")
        params = parameter_count(genlab_unet(size)), parameter_count(diffusers_unet(size))
        plain = timings["genlab plain"].median / timings["diffusers plain"].median
        rows.append([size.name, size.batch, f"{params[0]:,} / {params[1]:,}",
                     f"{timings['genlab plain'].rate(size.batch):.1f}",
                     f"{timings['diffusers plain'].rate(size.batch):.1f}", f"{1 / plain:.2f}",
                     f"{g.rate(size.batch):.1f} ({g_name})", f"{d.rate(size.batch):.1f} ({d_name})",
                     f"{d.median / g.median:.2f}"])
        if i == 0:
            mnist = size, timings, compile_s, d.median / g.median
    versus.lines += [f"Images/s of forward + backward + Adam step, medians of {b.rounds} interleaved rounds after "
                     f"warm-up; ratio = genlab / diffusers images/s. diffusers is built to genlab's layout "
                     f"(benchmarks/unets.py): same widths, res blocks, attention levels and heads; parameter counts "
                     f"genlab / diffusers below.", ""]
    versus.table(["U-Net", "batch", "parameters", "genlab plain", "diffusers plain", "ratio plain",
                  "genlab best levers", "diffusers best levers", "ratio best"], rows)
    size, timings, compile_s, ratio = mnist
    versus.targets.append(Target("genlab / diffusers training images/s, MNIST-size, best levers", ratio, 1.2,
                                 "both run the same PyTorch convolution, GroupNorm and attention kernels on the same "
                                 "architecture; only the Python glue between them differs, a small part of a step"))
    lever_table(levers, b, size, timings, compile_s)
    mfu_section(mfu, b, size, timings)
    return versus, levers, mfu


def lever_table(section: Section, b: Bench, size: UNetSize, timings: dict[str, Timing],
                compile_s: dict[str, float]) -> None:
    rows = []
    for name, t in timings.items():
        lib, _, lever = name.partition(" ")
        note = f"compiles in {compile_s[name]:.0f} s" if name in compile_s else ""
        if name in ("genlab plain", "genlab grad_checkpointing"):
            saved = saved_activation_bytes(genlab_unet(size), size, CPU_LEVERS[lever])
            note = f"{saved / 2**20:.0f} MiB of activations kept for the backward pass"
        rows.append([lib, lever, f"{t.rate(size.batch):.1f}", f"{t.median * 1000:.0f}",
                     f"{timings[f'{lib} plain'].median / t.median:.2f}", note])
    section.lines += [f"{size.name}, batch {size.batch}, on {b.device}. Speed-up = plain step time / lever step "
                      f"time of the same library (> 1: the lever helps).", ""]
    if not b.compile:
        section.lines += ["torch.compile was not timed in this run (--no-compile or --quick).", ""]
    if b.cuda:
        section.lines += ["fp16 autocast stands for Lightning's `16-mixed` without its gradient scaler; "
                          "bf16 autocast is `bf16-mixed`. Both are trainer.precision settings.", ""]
    elif cpu_has_bf16():
        section.lines += ["This CPU computes bf16 natively (AVX512-BF16 or AMX), so bf16 autocast "
                          "(trainer.precision=bf16-mixed) is timed too.", ""]
    else:
        section.lines += ["bf16 autocast is not timed: this CPU has no native bf16 (AVX512-BF16 or AMX).", ""]
    section.table(["library", "lever", "images/s", "ms/step", "speed-up vs plain", ""], rows)


def mfu_section(section: Section, b: Bench, size: UNetSize, timings: dict[str, Timing]) -> None:
    flops = step_flops(size, b.device)
    peak = matmul_peak(b)
    g_name, g = best(timings, "genlab")
    rows = []
    for name in ("plain", g_name):
        rate = flops / timings[f"genlab {name}"].median
        rows.append([name, f"{flops / 1e9:.2f}", f"{rate / 1e9:.1f}", f"{peak / 1e9:.1f}", f"{100 * rate / peak:.0f}%"])
    section.lines += [f"FLOPs of one training step of the genlab U-Net ({size.name}, batch {size.batch}) from "
                      "torch.utils.flop_counter (forward + backward), divided by the step time, against the FLOP/s "
                      "of a large fp32 torch.mm on the same device and threads.", ""]
    section.table(["levers", "GFLOP/step", "GFLOP/s", "matmul peak GFLOP/s", "MFU"], rows)
    section.targets.append(Target("training FLOP/s / matmul peak (MFU)", flops / g.median / peak, 0.7,
                                  "GroupNorm, SiLU, concatenations and the optimiser move memory without FLOPs, "
                                  "and 3x3 convolutions on narrow channels (32-64) reach a fraction of GEMM speed"))
