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
from genlab.diffusion import NetworkCalls, SamplerSettings
from genlab.errors import GenlabError
from genlab.images import image_grid
from genlab.metrics.domain import check_domain_classifier
from genlab.metrics.extractors import ExtractorSpec, extractor_spec
from genlab.metrics.fidelity import SplitScore, extractor_record, isc_note, reference_record, score_against_split
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
        sampler = f"{s['name']} {s['steps']} {s['spacing']} ({s['nfe']} NFE)"
    else:
        sampler = s["name"]
    if s.get("guidance"):
        sampler += f" w={s['guidance']:g}"
    is_text = "-" if f"isc_{f}_mean" not in m else f"{m[f'isc_{f}_mean']:.3f}" + (
        "" if result["isc_valid"] else " (invalid)")
    nll = f"{m['nll_bpd']:.3f}" if "nll_bpd" in m else "-"
    cells = [Path(result["checkpoint"]).name, result["weights"], sampler, str(result["n"]),
             f"{m[f'fid_{f}']:.3f} ({f})", f"{1e3 * m[f'kid_{f}_mean']:.3f}", is_text,
             f"{m[f'precision_{f}']:.3f}", f"{m[f'recall_{f}']:.3f}", nll]
    return "| " + " | ".join(cells) + " |"


def provenance(a: EvalArgs, cfg: DictConfig, spec: ExtractorSpec, score: SplitScore, samples_dir: Path,
               weights: str) -> dict[str, Any]:
    """Where every number came from: checkpoint, weights, samples, extractor, reference statistics."""
    return {
        "checkpoint": str(Path(a.ckpt).resolve()),
        "model_kind": str(cfg.model.kind),
        "weights": weights,
        "n": a.n,
        "seed": a.seed,
        "sample_seeds": f"one generator seeded with {a.seed}, batches of {a.batch_size} in order",
        "samples_dir": str(samples_dir.resolve()),
        "extractor": extractor_record(spec),
        "reference": reference_record(score, cfg, str(a.split)),
        "versions": {"torch": torch.__version__, "torch_fidelity": torch_fidelity.__version__},
        "markdown_columns": list(MARKDOWN_COLUMNS),
    }


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
    calls = NetworkCalls()
    images = module.eval_samples(a.n, seed=a.seed, batch_size=a.batch_size, settings=settings, progress=True,
                                 calls=calls)
    sampler = module.sampler_record(settings, calls)  # the network evaluations counted, guidance included
    write_png_folder(images, samples_dir, "genlab eval", legacy_owner=out)
    seconds = {"sampling": round(time.time() - started, 2)}

    score = score_against_split(cfg, str(a.split), spec, samples_dir, a.cache_dir, a.batch_size, device, a.seed)
    metrics = dict(score.metrics)
    if a.nll:
        metrics["nll_bpd"], nll_images = compute_nll(module, cfg, str(a.split), a.batch_size, a.seed, device,
                                                     a.nll_images, method)
        metrics["nll_images"] = nll_images
    seconds["total"] = round(time.time() - started, 2)
    isc_valid, note = isc_note(spec)
    result = {
        "metrics": metrics,
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
        where = log_eval_to_run(run, metrics, image_grid(images[:64]), name=out.stem)
        if where:
            print(f"genlab: logged the metrics and a grid of samples to {' and '.join(where)}")
    return result
