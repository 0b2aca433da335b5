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
  4. the report: benchmarks/results/families.{md,json}, FID against training minutes (families.png) and one grid of
     samples per family (families_grids.png).

Threads: the benchmark uses what torch is given (OMP_NUM_THREADS); its runs inherit it. The report names them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from time_to_quality import (  # noqa: E402  (benchmarks/ is the script's folder)
    genlab_cli,
    labelled,
    load_folder,
    sample_genlab,
    score,
    side_by_side,
    timed,
    train_judge,
)

import genlab  # noqa: E402
from genlab.images import FIGURE_MARK, image_grid  # noqa: E402
from genlab.runs.provenance import describe_machine  # noqa: E402

FAMILIES = {  # name -> (experiment, what it is)
    "ddpm": ("ddpm_mnist_20min", "DDPM (VP, v-prediction)"),
    "flow": ("flow_mnist_20min", "flow matching (logit-normal t)"),
    "edm": ("edm_mnist_20min", "EDM (Karras et al. 2022)"),
}
SEEDS = (0, 1, 2)
NFES = (5, 10, 20)  # DPM-Solver++(2M): one network evaluation per step
QUARTERS = (5, 10)  # minutes of 20 at which the time checkpoints are scored (scaled to --minutes)


def train_family(run: Path, experiment: str, data_root: str, minutes: float) -> Path:
    """A time-budgeted run of one recipe; a finished run already there is kept."""
    last = run / "checkpoints" / "last.ckpt"
    record = run / "run.json"
    if last.is_file() and "status" not in json.loads(record.read_text()):
        raise SystemExit(f"{run} is still training (its run.json has no status yet); wait for it, or remove it.")
    if not last.is_file():
        genlab_cli(["train", f"experiment={experiment}", f"data.root={data_root}", f"trainer.max_time={minutes}",
                    f"callbacks.checkpoint.every_n_minutes={max(minutes / 4, 0.05)}",
                    "trainer.enable_progress_bar=false", f"run_dir={run}"])
    return last


def family_samples(name: str, run: Path, n: int, samples: Path) -> dict[str, object]:
    """Every folder of samples of one family, keyed by what it is."""
    last = run / "checkpoints" / "last.ckpt"
    module = genlab.load(last, device="cpu").module
    settings, T = module.sampler_settings, module.diffusion.num_timesteps
    label, nfe = settings.label(T), settings.nfe(T)
    out = {}
    for seed in SEEDS:
        out[f"seed{seed}"] = timed(f"{name} {label}, seed {seed}", samples / f"{name}_seed{seed}", nfe, n,
                                   lambda seed=seed: sample_genlab(last, n, seed=seed))
    for nfe_ in NFES:
        out[f"nfe{nfe_}"] = timed(f"{name} dpmpp_2m, {nfe_} NFE", samples / f"{name}_nfe{nfe_}", nfe_, n,
                                  lambda s=nfe_: sample_genlab(last, n, sampler="dpmpp_2m", steps=s))
    checkpoints = sorted((run / "checkpoints").glob("time-step*.ckpt"))[:len(QUARTERS)]
    for quarter, ckpt in zip(QUARTERS, checkpoints):
        out[f"at{quarter}"] = timed(f"{name} at {ckpt.stem}", samples / f"{name}_at{quarter}", nfe, n,
                                    lambda ckpt=ckpt: sample_genlab(ckpt, n))
    return out


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
        train_family(run, FAMILIES[name][0], args.data_root, args.minutes)
    samples = work / "samples"
    samples.mkdir(exist_ok=True)
    sampled = {name: family_samples(name, run, n, samples) for name, run in runs.items()}
    scores = {name: {key: score(s.folder, judge, args.data_root, n) for key, s in folders.items()}
              for name, folders in sampled.items()}
    write_report(args, judge, runs, sampled, scores)


def write_report(args: argparse.Namespace, judge: Path, runs: dict[str, Path], sampled: dict, scores: dict) -> None:
    stem = "families_quick" if args.quick else "families"
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    fid = {name: {key: m["fid_domain"] for key, m in s.items()} for name, s in scores.items()}
    training = {name: training_of(run) for name, run in runs.items()}

    figure, axes = plt.subplots(figsize=(5, 3.5))
    for name in runs:
        minutes = [q * args.minutes / 20 for q in QUARTERS if f"at{q}" in fid[name]] + [args.minutes]
        values = [fid[name][f"at{q}"] for q in QUARTERS if f"at{q}" in fid[name]] + [fid[name]["seed0"]]
        axes.plot(minutes, values, marker="o", label=f"{name}_mnist_20min")
    axes.set(xlabel="training minutes (one core)", ylabel="FID (judge features)", yscale="log",
             title="MNIST 28x28: FID against training time")
    axes.legend()
    figure.tight_layout()
    figure.savefig(out / f"{stem}.png", dpi=120, metadata=FIGURE_MARK)
    plt.close(figure)
    side_by_side([[labelled(image_grid(load_folder(sampled[name]["seed0"].folder, 36), nrow=6),
                            f"{name}, {args.minutes:g} min: FID {fid[name]['seed0']:.2f}") for name in runs]],
                 out / f"{stem}_grids.png")

    machine = describe_machine()
    result = {"machine": machine, "command": " ".join(sys.argv), "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
              "minutes": args.minutes, "samples": args.samples, "judge": str(judge), "training": training,
              "sampling": {name: {key: {"label": s.name, "nfe": s.nfe, "images_per_second": s.images_per_second}
                                  for key, s in folders.items()} for name, folders in sampled.items()},
              "scores": scores}
    (out / f"{stem}.json").write_text(json.dumps(result, indent=2))

    def spread(name: str) -> str:
        values = [fid[name][f"seed{s}"] for s in SEEDS]
        mean = sum(values) / len(values)
        return f"{mean:.2f} ({min(values):.2f}-{max(values):.2f})"

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
    for name in runs:
        t, m, s = training[name], scores[name]["seed0"], sampled[name]["seed0"]
        at = [f"{fid[name][f'at{q}']:.2f}" if f"at{q}" in fid[name] else "-" for q in QUARTERS]
        lines.append(f"| {FAMILIES[name][1]} | `{FAMILIES[name][0]}`: {s.name.split(', seed')[0]} | {t['steps']} | "
                     f"{t['images'] / t['seconds']:.0f} | {at[0]} | {at[1]} | {spread(name)} | "
                     f"{m['precision_domain']:.3f} | {m['recall_domain']:.3f} | {s.images_per_second:.1f} |")
    lines += ["", "FID at the end of the budget against the sampler's network evaluations (DPM-Solver++(2M), seed 0):",
              "", "| family | " + " | ".join(f"{k} NFE" for k in NFES) + " |", "|---|" + "---|" * len(NFES)]
    for name in runs:
        lines.append(f"| {name} | " + " | ".join(f"{fid[name][f'nfe{k}']:.2f}" for k in NFES) + " |")
    lines += ["", f"![FID against training time]({stem}.png)", "", f"![samples]({stem}_grids.png)"]
    (out / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
