"""Few-step sampling of a trained flow model: FID against network evaluations for each timestep shift.

    python benchmarks/flow_few_steps.py --ckpt runs/fam/flow/checkpoints/last.ckpt --judge JUDGE.ckpt
        [--shifts 1,2,3,4] [--nfes 5,10,20] [--seeds 0] [--samples 1000] [--work runs/fam/nfe_sweep]
        [--out benchmarks/results]

SD3's timestep shift (diffusion.time_shift: t' = s t / (1 + (s - 1) t)) is a sampling choice: it moves every grid
point of a flow model towards the noise, and needs no retraining. Each cell samples the checkpoint with
DPM-Solver++(2M) on the uniform grid at one shift and one NFE, and scores the samples in the judge's features against
MNIST's test split (genlab eval samples=DIR), as benchmarks/families.py does. Cells already in --work are reused.
Writes <out>/flow_few_steps.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from time_to_quality import score  # noqa: E402  (benchmarks/ is the script's folder)

import genlab  # noqa: E402
from genlab.outputs import write_png_folder  # noqa: E402
from genlab.runs.provenance import describe_machine  # noqa: E402


def cell_folder(work: Path, nfe: int, shift: float, seed: int) -> Path:
    name = f"dpmpp_2m_uniform_{nfe}_{shift:g}".replace(".", "p")
    return work / (name if seed == 0 else f"{name}_seed{seed}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ckpt", type=Path, required=True)
    parser.add_argument("--judge", type=Path, required=True)
    parser.add_argument("--data-root", default="../shared/data")
    parser.add_argument("--shifts", default="1,2,3,4")
    parser.add_argument("--nfes", default="5,10,20")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--work", type=Path, default=Path("runs/fam/nfe_sweep"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    shifts = [float(s) for s in args.shifts.split(",")]
    nfes, seeds = [int(k) for k in args.nfes.split(",")], [int(s) for s in args.seeds.split(",")]
    args.work.mkdir(parents=True, exist_ok=True)
    model = genlab.load(args.ckpt, device="cpu")
    objective = model.module.diffusion
    if objective.process != "flow":
        raise SystemExit(f"{args.ckpt} is a {objective.process} model; the timestep shift applies to flow models")
    fid: dict[str, dict[str, list[float]]] = {}
    for shift in shifts:
        for nfe in nfes:
            for seed in seeds:
                folder = cell_folder(args.work, nfe, shift, seed)
                if not folder.with_name(folder.name + "_eval.json").is_file():
                    objective.shift, objective._schedule = shift, None  # diffusion.time_shift, as a config sets it
                    started = time.perf_counter()
                    images = model.sample(args.samples, sampler="dpmpp_2m", spacing="uniform", steps=nfe, seed=seed)
                    print(f"shift {shift:g}, {nfe} NFE, seed {seed}: {time.perf_counter() - started:.0f} s", flush=True)
                    write_png_folder(images, folder, "benchmarks/flow_few_steps.py")
                metrics = score(folder, args.judge, args.data_root, args.samples)
                fid.setdefault(f"{shift:g}", {}).setdefault(str(nfe), []).append(metrics["fid_domain"])
    write_report(args, shifts, nfes, seeds, fid)


def write_report(args: argparse.Namespace, shifts: list[float], nfes: list[int], seeds: list[int],
                 fid: dict[str, dict[str, list[float]]]) -> None:
    def mean(values: list[float]) -> float:
        return sum(values) / len(values)

    lines = ["# Few-step sampling of the flow recipe: FID against NFE for each timestep shift", "",
             "Machine: {cpu}, {cores} cores, torch {torch} with {torch_threads} thread(s); genlab commit "
             "{genlab_commit}.".format(**describe_machine()),
             f"Command: `benchmarks/flow_few_steps.py --ckpt {args.ckpt} --judge {args.judge} --shifts {args.shifts} "
             f"--nfes {args.nfes} --seeds {args.seeds} --samples {args.samples}`.",
             f"Sampler: DPM-Solver++(2M) on the uniform grid; {args.samples} samples per cell, sample seeds "
             f"{', '.join(map(str, seeds))} (mean shown), FID in the judge's features against MNIST's test split.", "",
             "| shift | " + " | ".join(f"{k} NFE" for k in nfes) + f" | {nfes[0]} NFE / {nfes[-1]} NFE |",
             "|---|" + "---|" * (len(nfes) + 1)]
    for shift in shifts:
        row = fid[f"{shift:g}"]
        ratio = mean(row[str(nfes[0])]) / mean(row[str(nfes[-1])])
        lines.append(f"| {shift:g} | " + " | ".join(f"{mean(row[str(k)]):.2f}" for k in nfes) + f" | {ratio:.2f} |")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "flow_few_steps.md").write_text("\n".join(lines) + "\n")
    (args.out / "flow_few_steps.json").write_text(json.dumps({"fid": fid, "seeds": seeds, "n": args.samples},
                                                             indent=1) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
