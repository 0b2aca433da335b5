"""The families table: every 20-minute MNIST recipe (DDPM, flow matching, EDM, and the others that exist) trained for
the same wall-clock budget on this machine, then scored the same way.

    python benchmarks/families.py [--minutes 20] [--data-root ../shared/data] [--work runs/families]
        [--judge CKPT] [--families ddpm,flow,edm] [--samples 1000] [--out benchmarks/results] [--quick]

Stages, each skipped when its output is already in --work (an interrupted benchmark goes on where it stopped; a run
trained by hand with the same command line can be put there):
  1. the judge: the independent MNIST classifier of benchmarks/time_to_quality.py, or --judge;
  2. training: `genlab train experiment=<family>_mnist_20min trainer.max_time=MINUTES`, one run per family;
  3. sampling (timed, outside the budgets) and scoring with `genlab eval samples=DIR` in the judge's features: each
     family's recipe sampler at 5, 10 and 20 minutes (the quarter-budget checkpoints), with sample seeds 0, 1 and 2
     at the end, and with DPM-Solver++(2M) at 5, 10 and 20 NFE for the ODE families;
  4. the flow peer, side by side in the same budget: torchcfm's MNIST example at its defaults (examples/images/
     mnist_example.ipynb: `UNetModel(dim=(1, 28, 28), num_channels=32, num_res_blocks=1)`, Adam at torch's default lr
     1e-3, batch 128, `ExactOptimalTransportConditionalFlowMatcher(sigma=0)`, no EMA), sampled as the example does
     (torchdyn's `NeuralODE`, dopri5 with atol = rtol = 1e-4) or with `--peer-solver euler` at 20 NFE, as genlab's
     cells; --no-peer skips it;
  5. the report: benchmarks/results/families.{md,json}, FID against training minutes (families.png) and one grid of
     samples per family (families_grids.png).

Threads: the benchmark uses what torch is given (OMP_NUM_THREADS); its runs inherit it. The report names them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import torch

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from time_to_quality import (  # noqa: E402  (benchmarks/ is the script's folder)
    labelled,
    load_folder,
    mnist_train_loader,
    sample_genlab,
    score,
    side_by_side,
    timed,
    train_for_minutes,
    train_genlab,
    train_judge,
)

import genlab  # noqa: E402
from genlab.images import FIGURE_MARK, image_grid  # noqa: E402
from genlab.models import facts_of  # noqa: E402
from genlab.runs.provenance import describe_machine  # noqa: E402

FAMILIES = {  # name -> (experiment, what it is)
    "ddpm": ("ddpm_mnist_20min", "DDPM (VP, v-prediction)"),
    "flow": ("flow_mnist_20min", "flow matching (logit-normal t)"),
    "edm": ("edm_mnist_20min", "EDM (Karras et al. 2022)"),
    "gan": ("gan_mnist_20min", "GAN (R3GAN loss, R1 + R2)"),
}
SEEDS = (0, 1, 2)
NFES = (5, 10, 20)  # DPM-Solver++(2M): one network evaluation per step
QUARTERS = (5, 10)  # minutes of 20 at which the time checkpoints are scored (scaled to --minutes)


def minutes_at(quarter: int, minutes: float) -> float:
    """The minute of a `minutes` budget that the mark `quarter` (in minutes of 20) stands for."""
    return quarter * minutes / 20


def family_samples(name: str, run: Path, n: int, samples: Path) -> dict[str, object]:
    """Every folder of samples of one family, keyed by what it is."""
    last = run / "checkpoints" / "last.ckpt"
    module = genlab.load(last, device="cpu").module
    ode = facts_of(module).sampler  # a diffusion sampler, or G(z) in one evaluation
    label, nfe = "G(z)", 1
    if ode:
        settings, T = module.sampler_settings, module.diffusion.num_timesteps
        label, nfe = settings.label(T), settings.nfe(T)
    out = {}
    for seed in SEEDS:
        out[f"seed{seed}"] = timed(f"{name} {label}, seed {seed}", samples / f"{name}_seed{seed}", nfe, n,
                                   lambda seed=seed: sample_genlab(last, n, seed=seed))
    for nfe_ in NFES if ode else ():
        out[f"nfe{nfe_}"] = timed(f"{name} dpmpp_2m, {nfe_} NFE", samples / f"{name}_nfe{nfe_}", nfe_, n,
                                  lambda s=nfe_: sample_genlab(last, n, sampler="dpmpp_2m", steps=s))
    checkpoints = sorted((run / "checkpoints").glob("time-step*.ckpt"))[:len(QUARTERS)]
    for quarter, ckpt in zip(QUARTERS, checkpoints):
        out[f"at{quarter}"] = timed(f"{name} at {ckpt.stem}", samples / f"{name}_at{quarter}", nfe, n,
                                    lambda ckpt=ckpt: sample_genlab(ckpt, n))
    return out


def torchcfm_model() -> torch.nn.Module:
    from torchcfm.models.unet import UNetModel

    return UNetModel(dim=(1, 28, 28), num_channels=32, num_res_blocks=1)


def train_torchcfm(folder: Path, data_root: str, minutes: float, seed: int = 0) -> Path:
    """torchcfm's MNIST example (OT-CFM) trained for `minutes` of wall clock; its state at each quarter mark and at
    the end. Their data are MNIST in [-1, 1]; their t runs from noise (0) to data (1)."""
    from torchcfm.conditional_flow_matching import ExactOptimalTransportConditionalFlowMatcher

    final = folder / "final.pt"
    if final.is_file():
        return final
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model = torchcfm_model()
    optimizer = torch.optim.Adam(model.parameters())
    matcher = ExactOptimalTransportConditionalFlowMatcher(sigma=0.0)

    def step(images: torch.Tensor) -> float:
        x1 = images * 2 - 1
        t, xt, ut = matcher.sample_location_and_conditional_flow(torch.randn_like(x1), x1)
        loss = torch.mean((model(t, xt) - ut) ** 2)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss.item()

    return train_for_minutes("torchcfm", folder, mnist_train_loader(data_root, batch_size=128), step,
                             lambda: {"model": model.state_dict()}, minutes, [minutes_at(q, minutes) for q in QUARTERS])


@torch.no_grad()
def sample_torchcfm(path: Path, n: int, solver: str = "dopri5", steps: int = 2, batch: int = 250,
                    seed: int = 0) -> torch.Tensor:
    """Samples in [-1, 1] as the example draws them: NeuralODE from t = 0 to 1 (dopri5: the two ends; euler: `steps`
    points, steps - 1 steps)."""
    from torchdyn.core import NeuralODE

    model = torchcfm_model()
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True)["model"])
    node = NeuralODE(model.eval(), solver=solver, sensitivity="adjoint", atol=1e-4, rtol=1e-4)
    torch.manual_seed(seed)
    out = []
    for i in range(0, n, batch):
        x0 = torch.randn(min(batch, n - i), 1, 28, 28)
        out.append(node.trajectory(x0, t_span=torch.linspace(0, 1, steps))[-1].clamp(-1, 1))
    return torch.cat(out)


class CountCalls(torch.nn.Module):
    """The network evaluations of an adaptive solver."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model, self.calls = model, 0

    def forward(self, t: torch.Tensor, x: torch.Tensor, *args: object, **kwargs: object) -> torch.Tensor:
        self.calls += 1  # (t, x) by name: torchdyn reads the vector field's signature
        return self.model(t, x, *args, **kwargs)


def peer_samples(work: Path, n: int, samples: Path, solver: str, seeds: tuple[int, ...]) -> dict[str, object]:
    """torchcfm's folders of samples at the end of its budget: with its example's dopri5 (NFE counted on one batch)
    or Euler at 20 NFE, at each seed. (Its quarter-mark states are saved, not sampled: on a CPU its U-Net, with
    attention at full resolution, costs about 20 ms per image and evaluation.)"""
    from torchdyn.core import NeuralODE

    folder = work / "torchcfm"
    final = folder / "final.pt"
    nfe, points = 20, 21
    if solver == "dopri5":
        counted = CountCalls(torchcfm_model())
        counted.model.load_state_dict(torch.load(final, map_location="cpu", weights_only=True)["model"])
        with torch.no_grad():
            NeuralODE(counted.eval(), solver="dopri5", sensitivity="adjoint", atol=1e-4, rtol=1e-4).trajectory(
                torch.randn(8, 1, 28, 28, generator=torch.Generator().manual_seed(0)), t_span=torch.linspace(0, 1, 2))
        nfe, points = counted.calls, 2
    label = "dopri5 (atol 1e-4)" if solver == "dopri5" else "euler, 20 NFE"
    out = {f"seed{seed}": timed(f"torchcfm {label}, seed {seed}", samples / f"torchcfm_{solver}_seed{seed}", nfe, n,
                                lambda seed=seed: sample_torchcfm(final, n, solver=solver, steps=points, seed=seed))
           for seed in seeds}
    return out


def peer_training(work: Path) -> dict[str, float]:
    state = torch.load(work / "torchcfm" / "final.pt", map_location="cpu", weights_only=True)
    return {"steps": state["steps"], "images": state["images"], "seconds": state["seconds"]}


def training_of(run: Path) -> dict[str, float]:
    record = json.loads((run / "run.json").read_text())
    steps = int(record["steps"])
    return {"steps": steps, "images": steps * int(record["global_batch"]), "seconds": float(record["wall_seconds"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=20.0)
    parser.add_argument("--data-root", default="../shared/data", help="the folder that holds MNIST/raw/")
    parser.add_argument("--work", type=Path, default=Path("runs/families"))
    parser.add_argument("--judge", type=Path, default=None, help="a classifier_mnist checkpoint at 28x28")
    parser.add_argument("--families", default=",".join(FAMILIES), help="comma-separated: " + ", ".join(FAMILIES))
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--no-peer", action="store_true", help="skip torchcfm, the flow peer")
    parser.add_argument("--peer-solver", choices=("dopri5", "euler"), default="dopri5",
                        help="torchcfm's sampler: its example's dopri5, or Euler at 20 NFE (far cheaper on a CPU)")
    parser.add_argument("--peer-seeds", type=int, default=len(SEEDS), help="sample seeds for the peer (0, 1, ...)")
    parser.add_argument("--quick", action="store_true", help="tiny budgets and sample counts: checks the pipeline")
    args = parser.parse_args()
    if args.quick:
        args.minutes, args.samples = 0.2, 64
    names = args.families.split(",")
    unknown = sorted(set(names) - set(FAMILIES))
    if unknown:
        raise SystemExit(f"--families: unknown {', '.join(unknown)}; choose from {', '.join(FAMILIES)}")
    if not (Path(args.data_root) / "MNIST" / "raw").is_dir():
        raise SystemExit(f"--data-root {args.data_root}: no MNIST/raw/ there. Point it at the folder that holds MNIST.")
    work, n = args.work, args.samples
    work.mkdir(parents=True, exist_ok=True)
    judge = args.judge or train_judge(work, args.data_root, args.quick)
    runs = {name: work / name for name in names}
    for name, run in runs.items():  # one after the other: the budgets never overlap
        train_genlab(run, args.data_root, args.minutes, [], experiment=FAMILIES[name][0])
    if not args.no_peer:
        train_torchcfm(work / "torchcfm", args.data_root, args.minutes)
    samples = work / "samples"
    samples.mkdir(exist_ok=True)
    sampled = {name: family_samples(name, run, n, samples) for name, run in runs.items()}
    if not args.no_peer:
        sampled["torchcfm"] = peer_samples(work, n, samples, args.peer_solver, SEEDS[:args.peer_seeds])
    scores = {name: {key: score(s.folder, judge, args.data_root, n) for key, s in folders.items()}
              for name, folders in sampled.items()}
    write_report(args, judge, runs, sampled, scores)


def write_report(args: argparse.Namespace, judge: Path, runs: dict[str, Path], sampled: dict, scores: dict) -> None:
    stem = "families_quick" if args.quick else "families"
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    fid = {name: {key: m["fid_domain"] for key, m in s.items()} for name, s in scores.items()}
    training = {name: training_of(run) for name, run in runs.items()}
    if "torchcfm" in sampled:
        training["torchcfm"] = peer_training(args.work)
    shown = [*runs, *(["torchcfm"] if "torchcfm" in sampled else [])]

    figure, axes = plt.subplots(figsize=(7.5, 3.5))
    for name in shown:
        minutes = [minutes_at(q, args.minutes) for q in QUARTERS if f"at{q}" in fid[name]] + [args.minutes]
        values = [fid[name][f"at{q}"] for q in QUARTERS if f"at{q}" in fid[name]] + [fid[name]["seed0"]]
        label = f"genlab {name}_mnist_20min" if name in runs else "torchcfm MNIST example (peer)"
        axes.plot(minutes, values, marker="o", label=label, linestyle="-" if name in runs else "--")
    axes.set(xlabel="training minutes (one core)", ylabel="FID (judge features)", yscale="log",
             title="MNIST 28x28: FID against training time")
    axes.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    figure.tight_layout()
    figure.savefig(out / f"{stem}.png", dpi=120, metadata=FIGURE_MARK)
    plt.close(figure)
    side_by_side([[labelled(image_grid(load_folder(sampled[name]["seed0"].folder, 36), nrow=6),
                            f"{name}, {args.minutes:g} min: FID {fid[name]['seed0']:.2f}") for name in shown]],
                 out / f"{stem}_grids.png")

    machine = describe_machine()
    result = {"machine": machine, "command": " ".join(sys.argv), "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
              "minutes": args.minutes, "samples": args.samples, "judge": str(judge), "training": training,
              "sampling": {name: {key: {"label": s.name, "nfe": s.nfe, "images_per_second": s.images_per_second}
                                  for key, s in folders.items()} for name, folders in sampled.items()},
              "scores": scores}
    (out / f"{stem}.json").write_text(json.dumps(result, indent=2))

    def spread(name: str) -> str:
        values = [fid[name][f"seed{s}"] for s in SEEDS if f"seed{s}" in fid[name]]
        mean = sum(values) / len(values)
        return f"{mean:.2f} ({min(values):.2f}-{max(values):.2f})" if len(values) > 1 else f"{mean:.2f} (seed 0)"

    lines = [
        "# The families at equal compute: 20-minute MNIST recipes",
        "",
        f"Machine: {machine['cpu']}, {machine['cores']} cores, torch {machine['torch']} with "
        f"{machine['torch_threads']} thread(s); genlab commit {machine['genlab_commit']}.",
        f"Command: `{result['command']}` (OMP_NUM_THREADS={result['omp_num_threads']}).",
        f"Budget: {args.minutes:g} minutes of training each. {args.samples} samples per cell, scored in the features "
        "of an independent MNIST classifier (the judge) against the 10,000 test images.",
        "",
        "| family | recipe | steps | training images/s | FID at 5 min | FID at 10 min | FID at 20 min, seeds 0-2: "
        "mean (range) | precision | recall | sampling images/s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name in shown:
        t, m, s = training[name], scores[name]["seed0"], sampled[name]["seed0"]
        at = [f"{fid[name][f'at{q}']:.2f}" if f"at{q}" in fid[name] else "-" for q in QUARTERS]
        recipe, what = FAMILIES.get(name, ("torchcfm mnist_example", "flow peer: torchcfm, OT-CFM"))
        lines.append(f"| {what} | `{recipe}`: {s.name.split(', seed')[0]} | {t['steps']} | "
                     f"{t['images'] / t['seconds']:.0f} | {at[0]} | {at[1]} | {spread(name)} | "
                     f"{m['precision_domain']:.3f} | {m['recall_domain']:.3f} | {s.images_per_second:.1f} |")
    lines += ["", "FID at the end of the budget against the sampler's network evaluations (DPM-Solver++(2M), seed 0):",
              "", "| family | " + " | ".join(f"{k} NFE" for k in NFES) + " |", "|---|" + "---|" * len(NFES)]
    for name in runs:
        if f"nfe{NFES[0]}" in fid[name]:
            lines.append(f"| {name} | " + " | ".join(f"{fid[name][f'nfe{k}']:.2f}" for k in NFES) + " |")

    lines += precision_recall_lines(shown, scores, args.minutes)
    lines += ["", f"![FID against training time]({stem}.png)", "", f"![samples]({stem}_grids.png)"]
    (out / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def precision_recall_lines(shown: list[str], scores: dict, minutes: float) -> list[str]:
    """Precision and recall of the recipe sampler at each quarter-budget checkpoint and at the end (seed 0)."""
    keys = [(f"at{q}", minutes_at(q, minutes)) for q in QUARTERS] + [("seed0", minutes)]
    lines = ["", "Precision / recall over training (the recipe's sampler, seed 0):", "",
             "| family | " + " | ".join(f"{m:g} min" for _, m in keys) + " |", "|---|" + "---|" * len(keys)]
    for name in shown:
        cells = [f"{scores[name][k]['precision_domain']:.3f} / {scores[name][k]['recall_domain']:.3f}"
                 if k in scores[name] else "-" for k, _ in keys]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


if __name__ == "__main__":
    main()
