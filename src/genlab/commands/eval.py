"""`genlab eval`: sample a checkpoint, score the samples against a dataset split, record every number and its source.

FID, KID, precision/recall and the Inception Score come from torch-fidelity's `calculate_metrics` on the
folder of sample PNGs and the split's images; the split's features are cached under the reference key
(metrics/reference.py). With `nll=true` a diffusion checkpoint also gets -log p(x) in bits/dim (the variational bound or the ODE's).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
import torch_fidelity
from omegaconf import DictConfig

from genlab.build import pick_device
from genlab.commands.args import EvalArgs, parse_command_args
from genlab.commands.eval_folder import eval_folder_command
from genlab.config import parse_overrides
from genlab.diffusion import GRID_SETTINGS, NetworkCalls, SamplerSettings
from genlab.errors import GenlabError
from genlab.images import image_grid
from genlab.metrics.domain import check_domain_classifier
from genlab.metrics.extractors import ExtractorSpec, extractor_spec
from genlab.metrics.fidelity import SplitScore, SplitScorer, extractor_record, isc_note, reference_record
from genlab.metrics.protocol import protocol_record
from genlab.metrics.nll import NLL_METHODS, compute_nll, nll_method
from genlab.outputs import check_eval_out, write_json, write_png_folder
from genlab.runs.checkpoint import load_generator, read_checkpoint, weights_used
from genlab.runs.folder import default_output, run_of
from genlab.training.loggers import log_eval_to_run

MARKDOWN_COLUMNS = ("checkpoint", "weights", "sampler", "n", "FID", "KID x1e3", "IS", "precision", "recall", "NLL bpd")


def parse_eval_args(args: list[str]) -> EvalArgs:
    """Typed `genlab eval` arguments; unknown keys and wrong types fail with the valid keys listed."""
    parsed = parse_command_args(EvalArgs, args, "eval", {})
    if (parsed.ckpt is None) == (parsed.samples is None):
        raise GenlabError("eval needs ckpt=PATH (a checkpoint to sample) or samples=DIR (a folder of images to score, "
                          "with data=NAME), not both.")
    if parsed.n < 10:
        raise GenlabError(f"n={parsed.n}: evaluate at least 10 samples (the Inception Score uses up to 10 splits).")
    if parsed.batch_size <= 0:
        raise GenlabError(f"batch_size={parsed.batch_size} must be a positive integer.")
    if parsed.nll_images is not None and parsed.nll_images <= 0:
        raise GenlabError(f"nll_images={parsed.nll_images} must be a positive integer (or leave it out: all images).")
    if parsed.seeds is not None and (not parsed.seeds or len(set(parsed.seeds)) != len(parsed.seeds)):
        raise GenlabError(f"seeds={parsed.seeds}: give distinct sample seeds, e.g. seeds=[0,1,2].")
    if parsed.bootstrap < 0:
        raise GenlabError(f"bootstrap={parsed.bootstrap}: give the number of resamples (20 is usual), or 0 for none.")
    if parsed.out is not None and not parsed.out.endswith(".json"):
        raise GenlabError(f"out={parsed.out}: give a .json file; the samples go to a folder beside it.")
    return parsed


def eval_settings(module: Any, a: EvalArgs) -> tuple[SamplerSettings | None, dict[str, Any]]:
    """The checkpoint's own sampler with the settings given on the command line, and its description for the JSON.
    A GAN has no sampler: (None, its description)."""
    settings = module.resolve_sampler(a.sampler_fields())
    if settings is not None:  # eval_samples steers a conditional model with balanced labels, and no classifier
        module.check_guidance(settings, has_labels=module.conditional, has_classifier=False)
        if settings.autoguided:  # a missing or mismatched guide fails before anything is sampled or written
            module.guide_for(settings.guide)
    return settings, module.sampler_record(settings)


def markdown_row(result: dict[str, Any]) -> str:
    """One row of the results table (columns: MARKDOWN_COLUMNS)."""
    m, f = result["metrics"], result["extractor"]["features"]
    s = result["sampler"]
    if s.get("eta") is not None:  # a sampler with a noise knob (DDIM): its eta
        sampler = f"{s['name']} {s['steps']} eta={s['eta']:g}"
    elif s.get("variance") is not None:  # a sampler with a variance choice (DDPM): its variance
        sampler = f"{s['name']} {s['steps']} {s['variance']}"
    elif s.get("steps") is not None:  # an ODE solver: its steps, grid and network evaluations
        shape = "".join(f" {key}={s[key]:g}" for key in GRID_SETTINGS if s.get(key) is not None)
        sampler = f"{s['name']} {s['steps']} {s['spacing']}{shape} ({s['nfe']} NFE)"
    else:
        sampler = s["name"]
    if s.get("guidance"):
        sampler += f" w={s['guidance']:g}"
    is_text = "-" if f"isc_{f}_mean" not in m else f"{m[f'isc_{f}_mean']:.3f}" + (
        "" if result["isc_valid"] else " (invalid)")
    nll = f"{m['nll_bpd']:.3f}" if "nll_bpd" in m else "-"
    cells = [Path(result["checkpoint"]).name, result["weights"], sampler, str(result["n"]),
             f"{m[f'fid_{f}']:.3f}{spread_text(result, f'fid_{f}')} ({f})", f"{1e3 * m[f'kid_{f}_mean']:.3f}", is_text,
             f"{m[f'precision_{f}']:.3f}", f"{m[f'recall_{f}']:.3f}", nll]
    return "| " + " | ".join(cells) + " |"


def spread_text(result: dict[str, Any], metric: str) -> str:
    """' ± std' of a metric over seeds, or of its bootstrap; '' without a spread."""
    spread = result.get("spread") or {}
    std = spread.get("std", {}).get(metric)
    if std is None:
        std = spread.get("bootstrap", {}).get(metric, {}).get("std")
    return "" if std is None else f" ± {std:.3f}"


def provenance(a: EvalArgs, cfg: DictConfig, spec: ExtractorSpec, score: SplitScore, samples_dir: Path,
               weights: str) -> dict[str, Any]:
    """Where every number came from: checkpoint, weights, samples, extractor, reference statistics."""
    seeds = sample_seeds(a)
    return {
        "checkpoint": str(a.ckpt),  # as named: a result stays valid when its folder moves
        "model_kind": str(cfg.model.kind),
        "weights": weights,
        "n": a.n,
        "seed": seeds[0],
        "sample_seeds": f"per seed, one generator seeded with it, batches of {a.batch_size} in order: {seeds}",
        "samples_dir": str(samples_dir),
        "extractor": extractor_record(spec),
        "reference": reference_record(score, cfg, str(a.split)),
        "versions": {"torch": torch.__version__, "torch_fidelity": torch_fidelity.__version__},
        "markdown_columns": list(MARKDOWN_COLUMNS),
    }


def sample_seeds(a: EvalArgs) -> list[int]:
    """seeds=[...] when given, else [seed]."""
    return list(a.seeds) if a.seeds else [a.seed]


def eval_command(args: list[str]) -> dict[str, Any]:
    """Run `genlab eval`; write the JSON, print a Markdown row and return the result."""
    data = {k: v for k, v in parse_overrides(args).items() if k == "data" or k.startswith("data.")}
    a = parse_eval_args([arg for arg in args if arg.partition("=")[0] not in data])
    if a.samples is not None:
        return eval_folder_command(a, data)
    if data:
        raise GenlabError(f"{', '.join(data)}: the dataset of a checkpoint is its own; data= names the split of "
                          "samples=DIR.")
    spec = extractor_spec(a, prefix="")
    ckpt = read_checkpoint(a.ckpt)
    module = load_generator(a.ckpt, ema=a.ema, ckpt=ckpt)
    weights = weights_used(ckpt, a.ema)
    del ckpt  # the module holds its weights now
    settings, sampler = eval_settings(module, a)
    steps = f"{sampler['name']}{sampler['steps']}" if sampler.get("steps") else "G"
    out = Path(a.out or default_output(a.ckpt, "eval", f"{Path(a.ckpt).stem}-{steps}-n{a.n}-{spec.features}.json",
                                       "eval.json"))
    samples_dir = check_eval_out(out)  # before sampling, not after
    method = nll_method(module, a.nll_method) if a.nll else None  # a bad request fails before sampling
    cfg = module.cfg
    if spec.features == "domain":
        check_domain_classifier(spec.weights_path, cfg.data, "domain_classifier")
    device = pick_device(a.device)
    module.to(device)
    started = time.time()
    seeds = sample_seeds(a)
    scorer = SplitScorer(cfg, str(a.split), spec, a.cache_dir, a.batch_size, device)
    scores, seconds = [], {"sampling": 0.0}
    for seed in seeds:
        tick = time.time()
        calls = NetworkCalls()
        images = module.eval_samples(a.n, seed=seed, batch_size=a.batch_size, settings=settings, progress=True,
                                     calls=calls)
        sampler = module.sampler_record(settings, calls)  # the network evaluations counted, guidance included
        folder = samples_dir if len(seeds) == 1 else samples_dir / f"seed{seed}"
        write_png_folder(images, folder, "genlab eval", legacy_owner=out)
        seconds["sampling"] = round(seconds["sampling"] + time.time() - tick, 2)
        scores.append(scorer.score(folder, seed))
    score = scores[0]
    metrics, spread, spread_text = scorer.spread(scores, seeds, a.bootstrap, "samples")
    if a.nll:
        metrics["nll_bpd"], nll_images = compute_nll(module, cfg, str(a.split), a.batch_size, seeds[0], device,
                                                     a.nll_images, method)
        metrics["nll_images"] = nll_images
    seconds["total"] = round(time.time() - started, 2)
    protocol = protocol_record(spec, samples=a.n, seeds=seeds, dataset=str(cfg.data.name), split=str(a.split),
                               reference_images=score.n_real, resolution=int(cfg.data.resolution), sampler=sampler,
                               weights=weights, spread=spread_text)
    isc_valid, note = isc_note(spec)
    result = {
        "metrics": metrics,
        "spread": spread,
        "protocol": protocol,
        "isc_valid": isc_valid,
        "isc_note": note,
        "sampler": sampler,
        **({"nll_method": f"{method}: {NLL_METHODS[method]}"} if method else {}),
        **provenance(a, cfg, spec, score, samples_dir, weights),
        "device": str(device),
        "seconds": seconds,
    }
    write_json(out, result, "genlab eval")
    print(f"genlab: wrote {out} ({a.n} samples in {samples_dir}, reference {score.key})")
    print(markdown_row(result))
    run = run_of(a.ckpt)
    if a.log_to_run and run is not None:
        logged = {**metrics, **{f"{k}_std": v for k, v in spread.get("std", {}).items()},
                  **{f"{k}_bootstrap_std": v["std"] for k, v in spread.get("bootstrap", {}).items()}}
        where = log_eval_to_run(run, logged, image_grid(images[:64]), name=out.stem)
        if where:
            print(f"genlab: logged the metrics and a grid of samples to {' and '.join(where)}")
    return result
