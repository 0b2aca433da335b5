"""Time to quality: genlab's 20-minute MNIST recipe against lucidrains' denoising-diffusion-pytorch, on the same
machine with the same wall-clock budget, one after the other; then what each of genlab's levers bought.

    python benchmarks/time_to_quality.py [--minutes 20] [--data-root ../shared/data] [--work runs/time_to_quality]
        [--judge CKPT] [--levers [all | NAME,NAME]] [--samples 1000] [--out benchmarks/results] [--quick]

Stages, each skipped when its output is already in --work (so an interrupted benchmark goes on where it stopped):
  1. the judge: an independent noise-aware classifier (experiment=classifier_mnist at 28x28, seed 1) whose features
     give FID, precision and recall in the MNIST domain; it is trained outside both budgets, or given with --judge;
  2. genlab: `genlab train experiment=ddpm_mnist_20min trainer.max_time=MINUTES`;
  3. lucidrains: `Unet(dim=32, dim_mults=(1, 2, 2), channels=1)` in `GaussianDiffusion(timesteps=1000,
     sampling_timesteps=100)` at its other defaults (v-prediction, sigmoid schedule), Adam 2e-4 with its Trainer's
     betas (0.9, 0.99) and gradient clipping at 1, batch 64, `ema_pytorch.EMA(beta=0.995, update_every=10)`, trained
     for MINUTES of wall clock on the same MNIST training images (no horizontal flips: they would turn digits round);
  4. with --levers: one more genlab run per lever, the recipe with that one choice changed;
  5. sampling (timed, outside the budgets) and scoring: --samples images from each, lucidrains with its DDIM-100 and
     genlab with its recommended sampler and with DDIM at lucidrains' 100 network evaluations; every folder of PNGs
     is scored by `genlab eval samples=DIR`, so both code bases go through the same path.

Threads: the benchmark uses what torch is given (OMP_NUM_THREADS); its runs inherit it. The report names them.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image, ImageDraw
from torchvision import datasets, transforms

import genlab
from genlab.cli import main as genlab_main
from genlab.images import image_grid, load_png
from genlab.outputs import write_png_folder
from genlab.runs.checkpoint import read_checkpoint
from genlab.runs.provenance import describe_machine

RECIPE = "ddpm_mnist_20min"
MARKS = (5, 10, 20)  # minutes at which both models' grids are shown (scaled to --minutes)
LUCIDRAINS_NFE = 100
SPREAD_SEEDS = (1, 2)  # sample seeds besides 0 for the recipe: how much FID moves with the samples alone
# The recipe with one choice changed: (run folder, what the row says, overrides). The EMA row needs no run: it
# scores the recipe's raw weights, which the same checkpoint holds.
LEVERS = [
    ("min_snr", "Min-SNR-5 loss weighting instead of uniform", ["diffusion.loss_weighting=min_snr"]),
    ("eps", "ε-prediction instead of v", ["diffusion.prediction=eps"]),
    ("lr1e-3", "learning rate 1e-3 instead of 2e-4", ["model.optim.lr=1.0e-3"]),
    ("width32", "U-Net width 32 instead of 16", ["unet.base_channels=32"]),
]


@dataclass
class Sampled:
    """A folder of samples and what it cost."""

    name: str
    folder: Path
    nfe: int
    seconds: float
    n: int

    @property
    def images_per_second(self) -> float:
        return self.n / self.seconds


def genlab_cli(args: list[str]) -> None:
    """Run a genlab command in a child process (its own Lightning state), failing loudly."""
    command = [sys.executable, "-m", "genlab", *args]
    print("+", " ".join(command), flush=True)
    subprocess.run(command, check=True)


def train_judge(work: Path, data_root: str, quick: bool) -> Path:
    run = work / "judge"
    if not (run / "checkpoints" / "last.ckpt").is_file():
        steps = 30 if quick else 1200
        genlab_cli(["train", "experiment=classifier_mnist", "data=mnist28", "unet=mnist28", f"data.root={data_root}",
                    "unet.base_channels=16", f"trainer.max_steps={steps}", f"trainer.val_every_n_steps={steps // 2}",
                    "seed=1", "trainer.enable_progress_bar=false", f"run_dir={run}"])
    return run / "checkpoints" / "last.ckpt"


def train_genlab(run: Path, data_root: str, minutes: float, overrides: list[str], experiment: str = RECIPE) -> Path:
    """A time-budgeted run of an experiment (the recipe by default); an existing finished run of it is kept."""
    last = run / "checkpoints" / "last.ckpt"
    record = run / "run.json"
    if last.is_file() and "status" not in json.loads(record.read_text()):
        raise SystemExit(f"{run} is still training (its run.json has no status yet); wait for it, or remove it.")
    if not last.is_file():
        every = max(minutes / 4, 0.05)  # the grids at 5, 10, 20 minutes of 20: a checkpoint every 5
        genlab_cli(["train", f"experiment={experiment}", f"data.root={data_root}", f"trainer.max_time={minutes}",
                    f"callbacks.checkpoint.every_n_minutes={every}", "trainer.enable_progress_bar=false",
                    f"run_dir={run}", *overrides])
    return last


def chosen_levers(levers: str | None) -> list[tuple[str, str, list[str]]]:
    """The LEVERS named by --levers (comma-separated, or all)."""
    if levers is None:
        return []
    names = [name for name, _, _ in LEVERS] if levers == "all" else levers.split(",")
    unknown = sorted(set(names) - {name for name, _, _ in LEVERS})
    if unknown:
        raise SystemExit(f"--levers: unknown {', '.join(unknown)}; choose from {', '.join(n for n, _, _ in LEVERS)}")
    return [lever for lever in LEVERS if lever[0] in names]


def mnist_train_loader(data_root: str, batch_size: int) -> torch.utils.data.DataLoader:
    images = datasets.MNIST(data_root, train=True, download=False, transform=transforms.ToTensor())  # [0, 1]
    return torch.utils.data.DataLoader(images, batch_size=batch_size, shuffle=True, drop_last=True, num_workers=0)


def lucidrains_model(sampling_timesteps: int = LUCIDRAINS_NFE) -> torch.nn.Module:
    from denoising_diffusion_pytorch import GaussianDiffusion, Unet

    unet = Unet(dim=32, dim_mults=(1, 2, 2), channels=1)
    return GaussianDiffusion(unet, image_size=28, timesteps=1000, sampling_timesteps=sampling_timesteps)


def train_for_minutes(name: str, folder: Path, loader: torch.utils.data.DataLoader, step, state, minutes: float,
                      marks: list[float]) -> Path:
    """A peer's own training loop for `minutes` of wall clock: `step(images)` takes one optimiser step and returns
    its loss; `state()` is what to save. Saves at_<m>min.pt at each of `marks` (minutes) and final.pt at the end,
    each with the steps, images seen and seconds."""
    final = folder / "final.pt"
    steps, started, marks = 0, time.monotonic(), list(marks)

    def save(path: Path, seconds: float) -> None:
        torch.save({**state(), "steps": steps, "images": steps * loader.batch_size, "seconds": seconds}, path)

    done = False
    while not done:
        for images, _ in loader:
            loss = step(images)
            steps += 1
            elapsed = time.monotonic() - started
            while marks and elapsed >= marks[0] * 60:
                save(folder / f"at_{marks.pop(0):g}min.pt", elapsed)
            if steps % 100 == 0:
                print(f"{name}: step {steps}, {elapsed:.0f} s, loss {loss:.4f}", flush=True)
            if elapsed >= minutes * 60:
                done = True
                break
    save(final, time.monotonic() - started)
    print(f"{name}: trained {steps} steps in {minutes} min", flush=True)
    return final


def train_lucidrains(folder: Path, data_root: str, minutes: float, seed: int = 0) -> Path:
    """lucidrains' GaussianDiffusion trained for `minutes` of wall clock, as its Trainer would (Adam, clipping, EMA);
    saves its state at each of MARKS and at the end."""
    from ema_pytorch import EMA

    final = folder / "final.pt"
    if final.is_file():
        return final
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    diffusion = lucidrains_model()
    ema = EMA(diffusion, beta=0.995, update_every=10)
    optimizer = torch.optim.Adam(diffusion.parameters(), lr=2e-4, betas=(0.9, 0.99))

    def step(images: torch.Tensor) -> float:
        loss = diffusion(images)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(diffusion.parameters(), 1.0)
        optimizer.step()
        ema.update()
        return loss.item()

    return train_for_minutes("lucidrains", folder, mnist_train_loader(data_root, batch_size=64), step,
                             lambda: {"ema": ema.ema_model.state_dict()}, minutes,
                             [m * minutes / MARKS[-1] for m in MARKS[:-1]])


def lucidrains_ema(path: Path) -> tuple[torch.nn.Module, dict]:
    state = torch.load(path, map_location="cpu", weights_only=True)
    diffusion = lucidrains_model()
    diffusion.load_state_dict(state["ema"])
    return diffusion.eval(), state


@torch.no_grad()
def sample_lucidrains(path: Path, n: int, batch: int = 250, seed: int = 0) -> torch.Tensor:
    diffusion, _ = lucidrains_ema(path)
    torch.manual_seed(seed)
    chunks = [diffusion.sample(batch_size=min(batch, n - i)) for i in range(0, n, batch)]
    return torch.cat(chunks) * 2 - 1  # its samples are in [0, 1]


def sample_genlab(ckpt: Path, n: int, ema: bool = True, sampler: str | None = None, steps: int | None = None,
                  seed: int = 0) -> torch.Tensor:
    return genlab.load(ckpt, ema=ema, device="cpu").sample(n, sampler=sampler, steps=steps, seed=seed)


def timed(name: str, folder: Path, nfe: int, n: int, draw) -> Sampled:
    """Sample with `draw()` into `folder` as PNGs, timing only the sampling; kept when already there."""
    record = folder.with_suffix(".json")
    if record.is_file():
        return Sampled(name, folder, **json.loads(record.read_text()))
    started = time.perf_counter()
    images = draw()
    seconds = time.perf_counter() - started
    write_png_folder(images, folder, "benchmarks/time_to_quality.py")
    record.write_text(json.dumps({"nfe": nfe, "seconds": seconds, "n": n}))
    return Sampled(name, folder, nfe, seconds, n)


def score(folder: Path, judge: Path, data_root: str, n: int) -> dict[str, float]:
    """Domain FID, precision and recall of a folder of PNGs against MNIST's test split (genlab eval samples=DIR)."""
    out = folder.with_name(folder.name + "_eval.json")
    if not out.is_file():
        code = genlab_main(["eval", f"samples={folder}", "data=mnist28", f"data.root={data_root}", "features=domain",
                            f"domain_classifier={judge}", f"n={n}", f"out={out}"])
        if code != 0:
            raise SystemExit(f"scoring {folder} failed")
    return json.loads(out.read_text())["metrics"]


def labelled(grid: torch.Tensor, text: str) -> Image.Image:
    """A uint8 (C, H, W) grid as an RGB picture with a caption strip above it."""
    array = grid.permute(1, 2, 0).numpy()
    picture = Image.fromarray(array.squeeze(-1) if array.shape[-1] == 1 else array).convert("RGB")
    out = Image.new("RGB", (picture.width, picture.height + 16), "white")
    out.paste(picture, (0, 16))
    ImageDraw.Draw(out).text((4, 2), text, fill="black")
    return out


def side_by_side(pictures: list[list[Image.Image]], path: Path) -> None:
    """Rows of captioned grids, pasted into one PNG."""
    width = max(sum(p.width for p in row) + 8 * (len(row) - 1) for row in pictures)
    height = sum(max(p.height for p in row) for row in pictures) + 8 * (len(pictures) - 1)
    canvas = Image.new("RGB", (width, height), "white")
    y = 0
    for row in pictures:
        x = 0
        for picture in row:
            canvas.paste(picture, (x, y))
            x += picture.width + 8
        y += max(p.height for p in row) + 8
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=20.0)
    parser.add_argument("--data-root", default="../shared/data", help="the folder that holds MNIST/raw/")
    parser.add_argument("--work", type=Path, default=Path("runs/time_to_quality"))
    parser.add_argument("--judge", type=Path, default=None, help="a classifier_mnist checkpoint at 28x28")
    parser.add_argument("--levers", nargs="?", const="all", default=None,
                        help="also train the recipe with each choice changed: all, or names from "
                             + ", ".join(name for name, _, _ in LEVERS))
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--quick", action="store_true", help="tiny budgets and sample counts: checks the pipeline")
    args = parser.parse_args()
    if args.quick:
        args.minutes, args.samples = 0.2, 64
    if not (Path(args.data_root) / "MNIST" / "raw").is_dir():
        raise SystemExit(f"--data-root {args.data_root}: no MNIST/raw/ there. Point it at the folder that holds MNIST.")
    work, n, minutes = args.work, args.samples, args.minutes
    work.mkdir(parents=True, exist_ok=True)
    judge = args.judge or train_judge(work, args.data_root, args.quick)

    # Training, one after the other: the budgets never overlap.
    recipe = train_genlab(work / "recipe", args.data_root, minutes, [])
    luc_final = train_lucidrains(work / "lucidrains", args.data_root, minutes)
    levers = [(name, said, train_genlab(work / name, args.data_root, minutes, overrides))
              for name, said, overrides in chosen_levers(args.levers)]

    # Sampling (timed) and scoring.
    samples = work / "samples"
    samples.mkdir(exist_ok=True)
    module = genlab.load(recipe, device="cpu").module
    T = module.diffusion.num_timesteps
    rec_label, rec_nfe = module.sampler_settings.label(T), module.sampler_settings.nfe(T)
    runs = {
        "lucidrains": timed("lucidrains DDIM-100 (EMA)", samples / "lucidrains", LUCIDRAINS_NFE, n,
                            lambda: sample_lucidrains(luc_final, n)),
        "genlab": timed(f"genlab {rec_label} (power EMA)", samples / "genlab", rec_nfe, n,
                        lambda: sample_genlab(recipe, n)),
        "genlab_ddim100": timed("genlab DDIM-100 (power EMA)", samples / "genlab_ddim100", LUCIDRAINS_NFE, n,
                                lambda: sample_genlab(recipe, n, sampler="ddim", steps=LUCIDRAINS_NFE)),
        "genlab_raw": timed(f"genlab {rec_label}, raw weights (no EMA)", samples / "genlab_raw", rec_nfe, n,
                            lambda: sample_genlab(recipe, n, ema=False)),
    }
    for name, _, ckpt in levers:
        runs[f"lever_{name}"] = timed(f"genlab with {name}", samples / f"lever_{name}", rec_nfe, n,
                                      lambda ckpt=ckpt: sample_genlab(ckpt, n))
    for seed in SPREAD_SEEDS:  # the noise of one FID: other sample seeds of the same model
        runs[f"genlab_seed{seed}"] = timed(f"genlab {rec_label}, sample seed {seed}", samples / f"genlab_seed{seed}",
                                           rec_nfe, n, lambda seed=seed: sample_genlab(recipe, n, seed=seed))
    # Every quarter of the budget: the first two are the 5- and 10-minute states of 20.
    checkpoints = sorted((work / "recipe" / "checkpoints").glob("time-step*.ckpt"))[:len(MARKS) - 1]
    for i, ckpt in enumerate(checkpoints):
        runs[f"genlab_at_{i}"] = timed(f"genlab at {ckpt.stem}", samples / f"genlab_at_{i}", rec_nfe, n,
                                       lambda ckpt=ckpt: sample_genlab(ckpt, n))
    scores = {name: score(s.folder, judge, args.data_root, n) for name, s in runs.items()}

    params = sum(p.numel() for p in module.unet.parameters())
    write_report(args, work, judge, recipe, params, luc_final, runs, scores, levers, checkpoints)


def training_record(recipe: Path, params: int, luc_final: Path) -> dict[str, dict]:
    run = json.loads((recipe.parent.parent / "run.json").read_text())
    ckpt = read_checkpoint(recipe)
    steps = int(ckpt["global_step"])
    batch = int(run["global_batch"])
    seconds = float(run["wall_seconds"])
    _, luc = lucidrains_ema(luc_final)
    return {
        "genlab": {"steps": steps, "images": steps * batch, "seconds": seconds,
                   "params": params},
        "lucidrains": {"steps": luc["steps"], "images": luc["images"], "seconds": luc["seconds"],
                       "params": sum(p.numel() for p in lucidrains_model().model.parameters())},
    }


def write_report(args, work: Path, judge: Path, recipe: Path, params: int, luc_final: Path,
                 runs: dict[str, Sampled], scores: dict[str, dict], levers: list, checkpoints: list[Path]) -> None:
    stem = "time_to_quality_quick" if args.quick else "time_to_quality"
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    train = training_record(recipe, params, luc_final)
    fid = {name: s["fid_domain"] for name, s in scores.items()}

    # Grids: the final samples side by side, then both models over time.
    grid = {name: image_grid(load_folder(runs[name].folder, 64), nrow=8) for name in ("lucidrains", "genlab")}
    side_by_side([[labelled(grid["lucidrains"], f"lucidrains, {args.minutes:g} min: FID {fid['lucidrains']:.1f}"),
                   labelled(grid["genlab"], f"genlab, {args.minutes:g} min: FID {fid['genlab']:.1f}")]],
                 out / f"{stem}.png")
    over_time = [[], []]
    luc_marks = sorted((work / "lucidrains").glob("at_*min.pt"), key=lambda p: float(p.stem[3:-3]))
    for i, mark in enumerate(MARKS[:-1]):
        at = mark * args.minutes / MARKS[-1]
        if i < len(checkpoints):
            over_time[1].append(labelled(image_grid(load_folder(runs[f"genlab_at_{i}"].folder, 36), nrow=6),
                                         f"genlab at {at:g} min: FID {fid[f'genlab_at_{i}']:.1f}"))
        if i < len(luc_marks):
            over_time[0].append(labelled(image_grid(sample_lucidrains(luc_marks[i], 36), nrow=6),
                                         f"lucidrains at {at:g} min"))
    over_time[0].append(labelled(image_grid(load_folder(runs["lucidrains"].folder, 36), nrow=6),
                                 f"lucidrains at {args.minutes:g} min: FID {fid['lucidrains']:.1f}"))
    over_time[1].append(labelled(image_grid(load_folder(runs["genlab"].folder, 36), nrow=6),
                                 f"genlab at {args.minutes:g} min: FID {fid['genlab']:.1f}"))
    side_by_side(over_time, out / f"{stem}_over_time.png")

    machine = describe_machine()
    result = {"machine": machine, "command": " ".join(sys.argv), "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
              "minutes": args.minutes, "samples": args.samples, "judge": str(judge), "training": train,
              "sampling": {name: {"label": s.name, "nfe": s.nfe, "seconds": s.seconds, "images_per_second":
                                  s.images_per_second} for name, s in runs.items()},
              "scores": scores}
    (out / f"{stem}.json").write_text(json.dumps(result, indent=2))

    def row(name: str) -> str:
        s, m = runs[name], scores[name]
        return (f"| {s.name} | {s.nfe} | {m['fid_domain']:.2f} | {m['precision_domain']:.3f} | "
                f"{m['recall_domain']:.3f} | {s.images_per_second:.1f} |")

    g, luc = train["genlab"], train["lucidrains"]
    speedup = runs["genlab_ddim100"].images_per_second / runs["lucidrains"].images_per_second
    spread = ", ".join(f"{fid[k]:.2f}" for k in ["genlab", *(f"genlab_seed{seed}" for seed in SPREAD_SEEDS)])
    lines = [
        f"# Time to quality: genlab `{RECIPE}` against lucidrains' denoising-diffusion-pytorch",
        "",
        f"Machine: {machine['cpu']}, {machine['cores']} cores, torch {machine['torch']} with "
        f"{machine['torch_threads']} thread(s); genlab commit {machine['genlab_commit']}.",
        f"Command: `{result['command']}` (OMP_NUM_THREADS={result['omp_num_threads']}).",
        f"Budget: {args.minutes:g} minutes of training each, one after the other. {args.samples} samples each, scored "
        "in the features of an independent MNIST classifier (the judge) against the 10,000 test images.",
        "",
        "| training | parameters | steps | images seen | images/s |",
        "|---|---|---|---|---|",
        f"| genlab `{RECIPE}` | {g['params'] / 1e6:.2f}M | {g['steps']} | {g['images']} | "
        f"{g['images'] / g['seconds']:.1f} |",
        f"| lucidrains `GaussianDiffusion` | {luc['params'] / 1e6:.2f}M | {luc['steps']} | {luc['images']} | "
        f"{luc['images'] / luc['seconds']:.1f} |",
        "",
        "| samples | NFE | FID (domain) | precision | recall | sampling images/s |",
        "|---|---|---|---|---|---|",
        row("lucidrains"), row("genlab"), row("genlab_ddim100"),
        "",
        f"FID ratio genlab / lucidrains: {fid['genlab'] / fid['lucidrains']:.3f}. Sampling speed at equal NFE "
        f"({LUCIDRAINS_NFE}): genlab {speedup:.1f}x lucidrains' images/s.",
        "",
        f"![side by side]({stem}.png)",
        "",
        f"![over time]({stem}_over_time.png)",
        "",
        "## What each lever bought (FID at the end of the budget, recommended sampler)",
        "",
        f"Each row is one more {args.minutes:g}-minute run: the recipe with one choice changed. The same recipe "
        f"scored with other sample seeds gives FID {spread}: differences inside that are noise.",
        "",
        "| change from the recipe | FID of the recipe | FID with the change |",
        "|---|---|---|",
        f"| raw weights instead of the power EMA (the same run) | {fid['genlab']:.2f} | {fid['genlab_raw']:.2f} |",
    ]
    for name, said, _ in levers:
        lines.append(f"| {said} | {fid['genlab']:.2f} | {fid[f'lever_{name}']:.2f} |")
    (out / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def load_folder(folder: Path, n: int) -> torch.Tensor:
    """The first n PNGs of a sample folder, in [-1, 1]."""
    return torch.stack([load_png(p) for p in sorted(folder.glob("*.png"))[:n]]).float() / 127.5 - 1


if __name__ == "__main__":
    main()
