"""`genlab eval`: sample a checkpoint, score the samples against a dataset split, record every number and its source.

FID, KID, precision/recall and the Inception Score come from torch-fidelity's `calculate_metrics` on the
folder of sample PNGs and the split's images; the split's features are cached under the reference key
(metrics/reference.py). With `nll=true` a diffusion checkpoint also gets its variational bound in bits/dim.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch
import torch_fidelity
from omegaconf import DictConfig

from genlab.callbacks.images import save_png
from genlab.checkpoints import load_generator, read_checkpoint
from genlab.config import EvalArgs
from genlab.config_io import parse_command_args, validate_sampler
from genlab.errors import GenlabError
from genlab.metrics.extractors import ExtractorSpec, create_extractor, extractor_spec
from genlab.metrics.domain import check_domain_classifier
from genlab.metrics.inception import fc_is_zero
from genlab.metrics.reference import SplitImages, cache_dir_of, reference_features, reference_key
from genlab.sample import check_writable, pick_device
from genlab.sampling import to_uint8

MARKDOWN_COLUMNS = ("checkpoint", "weights", "sampler", "n", "FID", "KID x1e3", "IS", "precision", "recall", "NLL bpd")


def parse_eval_args(args: list[str]) -> EvalArgs:
    """Typed `genlab eval` arguments; unknown keys and wrong types fail with the valid keys listed."""
    parsed = parse_command_args(EvalArgs, args, "eval", {"ckpt": "the checkpoint to evaluate"})
    if parsed.n < 10:
        raise GenlabError(f"n={parsed.n}: evaluate at least 10 samples (the Inception Score uses up to 10 splits).")
    if parsed.batch_size <= 0:
        raise GenlabError(f"batch_size={parsed.batch_size} must be a positive integer.")
    if parsed.nll_images is not None and parsed.nll_images <= 0:
        raise GenlabError(f"nll_images={parsed.nll_images} must be a positive integer (or leave it out: all images).")
    if not parsed.out.endswith(".json"):
        raise GenlabError(f"out={parsed.out}: give a .json file; the samples go to a folder beside it.")
    return parsed


def apply_sampler_args(module: Any, a: EvalArgs) -> dict[str, Any]:
    """Write the sampler arguments given into the module's config; return the settings that will be used."""
    s = module.cfg.sampler
    if not hasattr(module, "diffusion"):  # a GAN: one generator pass, nothing to choose
        given = [k for k in ("sampler", "steps", "eta", "spacing", "guidance", "variance") if getattr(a, k) is not None]
        if given:
            raise GenlabError(f"{', '.join(given)}: sampler settings apply to diffusion models; a GAN samples G(z).")
        return {"name": "G(z)", "steps": None, "eta": None, "spacing": None, "guidance": None}
    if a.sampler is not None:
        s.name = a.sampler
    ddpm = s.name.value == "ddpm"
    if a.variance is not None and not ddpm:
        raise GenlabError("variance= applies to sampler=ddpm (DDIM's noise is set by eta).")
    for key in ("eta", "spacing", "guidance", "variance"):
        if getattr(a, key) is not None:
            setattr(s, key, getattr(a, key))
    if a.steps is not None:  # DDPM: respaced ancestral sampling over `steps` of the T steps
        setattr(s, "ddpm_steps" if ddpm else "steps", a.steps)
    T = module.diffusion.num_timesteps
    validate_sampler(s.steps, s.eta, T, ddpm_steps=s.ddpm_steps if ddpm else None)
    if s.guidance != 0 and not module.conditional:
        raise GenlabError("guidance needs a class-conditional (CFG) checkpoint; this one is unconditional.")
    if ddpm:
        variance = s.variance.value if s.variance is not None else module.diffusion.variance
        return {"name": "ddpm", "steps": s.ddpm_steps or T, "eta": None, "spacing": s.spacing.value,
                "guidance": s.guidance, "variance": variance}
    return {"name": s.name.value, "steps": s.steps, "eta": s.eta, "spacing": s.spacing.value, "guidance": s.guidance}


def write_samples(images: torch.Tensor, folder: Path) -> None:
    """One PNG per sample (grayscale stays 1-channel), replacing an earlier run's files."""
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.png"):
        old.unlink()
    for i, image in enumerate(to_uint8(images)):
        save_png(image, folder / f"{i:06d}.png")


def fidelity_metrics(spec: ExtractorSpec, samples: Path, real: SplitImages, key: str, n_real: int,
                     cache_dir: Path, batch_size: int, cuda: bool, seed: int) -> dict[str, float]:
    """torch-fidelity's FID, KID, IS and precision/recall, named with the extractor (fid_domain, ...)."""
    n = len(list(samples.glob("*.png")))
    raw = torch_fidelity.calculate_metrics(
        input1=str(samples),
        input2=real,
        input2_cache_name=key,  # the split's features are cached under the weights-aware key
        cache_root=str(cache_dir),
        feature_extractor=spec.name,  # explicit: otherwise precision/recall would build a VGG16
        feature_extractor_weights_path=str(spec.weights_path),
        feature_layer_isc=spec.isc_layer,
        fid=True, kid=True, prc=True, isc=True,
        kid_subset_size=min(1000, n, n_real),
        isc_splits=min(10, n),
        batch_size=batch_size,
        cuda=cuda,
        rng_seed=seed,
        save_cpu_ram=True,
        verbose=False,
    )
    f = spec.features
    names = {
        "frechet_inception_distance": f"fid_{f}",
        "kernel_inception_distance_mean": f"kid_{f}_mean",
        "kernel_inception_distance_std": f"kid_{f}_std",
        "inception_score_mean": f"isc_{f}_mean",
        "inception_score_std": f"isc_{f}_std",
        "precision": f"precision_{f}",
        "recall": f"recall_{f}",
        "f_score": f"f_score_{f}",
    }
    return {names[k]: float(v) for k, v in raw.items() if k in names}


def isc_note(spec: ExtractorSpec) -> tuple[bool, str]:
    """Whether the Inception Score means anything with these weights, and why."""
    if spec.features == "domain":
        return True, "domain IS: exp E KL(p(y|x) || p(y)) over the domain classifier's classes (at most their number)"
    if fc_is_zero(spec.weights_path):
        return False, "these Inception weights have no classification layer (pool3 only): IS is always 1, ignore it"
    return True, "Inception Score over the 1008 ImageNet logits"


def compute_nll(module: Any, cfg: DictConfig, split: str, batch_size: int, seed: int, device: torch.device,
                limit: int | None = None) -> tuple[float, int]:
    """Mean variational bound on -log p(x) in bits/dim over the split's first `limit` images (all by default),
    with the data quantised to 8 bits; and the number of images."""
    from genlab.diffusion.likelihood import nll_bpd, quantize_to_bins
    from genlab.metrics.reference import split_images

    if not hasattr(module, "diffusion"):
        raise GenlabError("nll=true needs a diffusion checkpoint: only diffusion models have a likelihood bound here.")
    images = split_images(cfg, split)[:limit, : int(cfg.data.channels)]  # [N, C, H, W] uint8, gray copies dropped
    generator = torch.Generator(device=device).manual_seed(seed)
    totals = []
    for batch in images.split(batch_size):
        x0 = quantize_to_bins(batch.float().to(device) / 127.5 - 1.0)
        kwargs = {}
        if module.conditional:  # the unconditional mode of a CFG model: the null label
            kwargs = {"y": torch.full((len(x0),), module.unet.null_class, device=device, dtype=torch.long)}
        totals.append(nll_bpd(module.diffusion, module.model_fn, x0, generator=generator, model_kwargs=kwargs)["total"])
    return float(torch.cat(totals).mean()), len(images)


def markdown_row(result: dict[str, Any]) -> str:
    """One row of the results table (columns: MARKDOWN_COLUMNS)."""
    m, f = result["metrics"], result["extractor"]["features"]
    s = result["sampler"]
    if s["name"] == "ddim":
        sampler = f"ddim {s['steps']} eta={s['eta']:g}"
    elif s["name"] == "ddpm":
        sampler = f"ddpm {s['steps']} {s['variance']}"
    else:
        sampler = s["name"]
    if s.get("guidance"):
        sampler += f" w={s['guidance']:g}"
    is_text = f"{m[f'isc_{f}_mean']:.3f}" + ("" if result["isc_valid"] else " (invalid)")
    nll = f"{m['nll_bpd']:.3f}" if "nll_bpd" in m else "-"
    cells = [Path(result["checkpoint"]).name, result["weights"], sampler, str(result["n"]),
             f"{m[f'fid_{f}']:.3f} ({f})", f"{1e3 * m[f'kid_{f}_mean']:.3f}", is_text,
             f"{m[f'precision_{f}']:.3f}", f"{m[f'recall_{f}']:.3f}", nll]
    return "| " + " | ".join(cells) + " |"


def weights_used(ckpt: dict[str, Any], ema: bool) -> str:
    """"ema" or "raw": what load_generator actually loaded (a run without EMA has raw weights only)."""
    return "ema" if ema and "current_model_state" in ckpt else "raw"


def provenance(a: EvalArgs, cfg: DictConfig, spec: ExtractorSpec, key: str, n_real: int, cache_dir: Path,
               samples_dir: Path, weights: str) -> dict[str, Any]:
    """Where every number came from: checkpoint, weights, samples, extractor, reference statistics."""
    return {
        "checkpoint": str(Path(a.ckpt).resolve()),
        "model_kind": cfg.model.kind.value,
        "weights": weights,
        "n": a.n,
        "seed": a.seed,
        "sample_seeds": f"one generator seeded with {a.seed}, batches of {a.batch_size} in order",
        "samples_dir": str(samples_dir.resolve()),
        "extractor": {"features": spec.features, "name": spec.name, "weights_path": str(spec.weights_path.resolve()),
                      "weights_sha256": spec.weights_sha256},
        "reference": {"key": key, "cache_dir": str(cache_dir.resolve()), "dataset": cfg.data.name.value,
                      "split": a.split.value, "num_images": n_real, "resolution": int(cfg.data.resolution),
                      "channels": int(cfg.data.channels)},
        "versions": {"torch": torch.__version__, "torch_fidelity": torch_fidelity.__version__},
        "markdown_columns": list(MARKDOWN_COLUMNS),
    }


def eval_command(args: list[str]) -> dict[str, Any]:
    """Run `genlab eval`; write the JSON, print a Markdown row and return the result."""
    a = parse_eval_args(args)
    out = Path(a.out)
    samples_dir = out.with_name(out.stem + "_samples")
    check_writable(f"{samples_dir}/")  # the folder beside the JSON: fails before sampling, not after
    spec = extractor_spec(a.features.value, a.inception_weights, a.domain_classifier, prefix="")
    ckpt = read_checkpoint(a.ckpt)
    module = load_generator(a.ckpt, ema=a.ema, ckpt=ckpt)
    weights = weights_used(ckpt, a.ema)
    del ckpt  # the module holds its weights now
    sampler = apply_sampler_args(module, a)
    if a.nll and not hasattr(module, "diffusion"):  # before sampling, not after
        raise GenlabError("nll=true: a GAN has no likelihood to bound; NLL is for diffusion checkpoints.")
    cfg = module.cfg
    if spec.features == "domain":
        check_domain_classifier(spec.weights_path, cfg.data, "domain_classifier")
    device = pick_device(a.device)
    module.to(device)
    started = time.time()
    write_samples(module.eval_samples(a.n, seed=a.seed, batch_size=a.batch_size), samples_dir)
    seconds = {"sampling": round(time.time() - started, 2)}

    cache_dir = cache_dir_of(a.cache_dir)
    key = reference_key(cfg.data, a.split.value, cfg.seed, spec)
    real_features = reference_features(cfg, a.split.value, create_extractor(spec, device), key, cache_dir,
                                       a.batch_size)
    n_real = int(real_features[spec.fid_layer].shape[0])
    metrics = fidelity_metrics(spec, samples_dir, SplitImages(cfg, a.split.value), key, n_real, cache_dir,
                               a.batch_size, device.type == "cuda", a.seed)
    if a.nll:
        metrics["nll_bpd"], nll_images = compute_nll(module, cfg, a.split.value, a.batch_size, a.seed, device,
                                                     a.nll_images)
        metrics["nll_images"] = nll_images
    seconds["total"] = round(time.time() - started, 2)
    isc_valid, note = isc_note(spec)
    result = {
        "metrics": metrics,
        "isc_valid": isc_valid,
        "isc_note": note,
        "sampler": sampler,
        **provenance(a, cfg, spec, key, n_real, cache_dir, samples_dir, weights),
        "device": str(device),
        "seconds": seconds,
    }
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"genlab: wrote {out} ({a.n} samples in {samples_dir}, reference {key})")
    print(markdown_row(result))
    return result
