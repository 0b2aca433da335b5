"""`genlab eval samples=DIR data=NAME`: score a folder of images from any code base against a genlab dataset split,
with the same extractors, cached reference statistics and provenance JSON as a checkpoint's samples."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from PIL import Image, UnidentifiedImageError
from torch import Tensor

from genlab.build import build_datamodule, pick_device, resolve_data_keys
from genlab.commands.args import EvalArgs
from genlab.config import load_config
from genlab.data.image_folder import IMAGE_EXTENSIONS
from genlab.errors import GenlabError
from genlab.images import to_8bit
from genlab.metrics.domain import check_domain_classifier
from genlab.metrics.extractors import ExtractorSpec, extractor_spec
from genlab.metrics.fidelity import SplitScorer, extractor_record, isc_note, reference_record
from genlab.metrics.protocol import protocol_record
from genlab.outputs import check_eval_out, write_json, write_png_folder


def split_config(data: dict[str, str]) -> DictConfig:
    """The run config that names the split: data=NAME (a configs/data block) and any data.* keys."""
    if "data" not in data:
        raise GenlabError("samples=DIR needs the dataset to compare with: data=NAME (digits, mnist, cifar10, ...), "
                          "and data.root=PATH where it lives.")
    # Only the data block matters here: a one-level U-Net without attention fits any resolution, so the default
    # experiment's network never refuses a split (its layout is checked when the config loads).
    cfg = load_config({"unet.channel_mult": "[1]", "unet.attention_resolutions": "[]", **data})
    datamodule = build_datamodule(cfg)
    datamodule.check_available()
    resolve_data_keys(cfg, datamodule)
    return cfg


MIN_IMAGES = 10  # as eval of a checkpoint requires of n: FID needs a covariance, the Inception Score 10 splits


def image_files(folder: Path) -> list[Path]:
    """The image files of samples=DIR, checked before anything is loaded or written: an existing folder of at
    least MIN_IMAGES images."""
    if not folder.exists():
        raise GenlabError(f"samples={folder}: no such folder. Give the folder of images to score.")
    if not folder.is_dir():
        raise GenlabError(f"samples={folder} is a file; give the folder that holds the images to score.")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise GenlabError(f"samples={folder}: no images ({', '.join(IMAGE_EXTENSIONS)}) in that folder.")
    if len(files) < MIN_IMAGES:
        images = f"{len(files)} image" + ("s" if len(files) > 1 else "")
        raise GenlabError(f"samples={folder} holds {images}: score at least {MIN_IMAGES} (FID and precision/recall "
                          "need many more to mean anything; 10,000 is usual).")
    return files


def folder_images(files: list[Path], channels: int, resolution: int) -> tuple[Tensor, dict[str, Any]]:
    """The images as [-1, 1] floats [N, C, R, R], converted to the split's channels and resolution (bilinear with
    antialiasing, as torch-fidelity resizes), and a note of what was converted."""
    images, sizes, modes = [], set(), set()
    mode = "L" if channels == 1 else "RGB"
    for path in files:
        try:
            with Image.open(path) as img:
                sizes.add(img.size)
                modes.add(img.mode)
                pixels = torch.from_numpy(np.asarray(to_8bit(img).convert(mode)).copy())
        except (UnidentifiedImageError, OSError) as exc:
            raise GenlabError(f"samples: cannot read image {path} ({exc}); remove it from the folder.") from None
        x = pixels.unsqueeze(0) if pixels.ndim == 2 else pixels.permute(2, 0, 1)  # [C, H, W] uint8
        x = x.float().unsqueeze(0) / 127.5 - 1.0
        if x.shape[-2:] != (resolution, resolution):
            x = F.interpolate(x, size=(resolution, resolution), mode="bilinear", antialias=True, align_corners=False)
        images.append(x.clamp(-1, 1))
    note = {"files": len(files), "sizes_found": sorted(list(s) for s in sizes), "modes_found": sorted(modes),
            "resized_to": [resolution, resolution] if sizes != {(resolution, resolution)} else None,
            "converted_to": mode if modes != {mode} else None}
    return torch.cat(images), note


def eval_folder_command(a: EvalArgs, data: dict[str, str]) -> dict[str, Any]:
    """Score a.samples against the split of `data`; write the JSON and return the result."""
    if a.seeds:
        raise GenlabError(f"seeds={a.seeds}: a folder of images is one sample set; its spread is the bootstrap "
                          "(bootstrap=N resamples).")
    cfg = split_config(data)
    source = Path(a.samples)
    files = image_files(source)
    out = Path(a.out or "eval_folder.json")
    samples_dir = check_eval_out(out, source)
    spec: ExtractorSpec = extractor_spec(a, prefix="")
    if spec.features == "domain":
        check_domain_classifier(spec.weights_path, cfg.data, "domain_classifier")
    started = time.time()
    images, note = folder_images(files, int(cfg.data.channels), int(cfg.data.resolution))
    for what in ("resized_to", "converted_to"):
        if note[what]:
            print(f"genlab: samples {what.replace('_', ' ')} {note[what]} (found {note['sizes_found']}, "
                  f"{note['modes_found']}) to match the {cfg.data.name} split")
    write_png_folder(images, samples_dir, "genlab eval", legacy_owner=out)
    device = pick_device(a.device)
    scorer = SplitScorer(cfg, str(a.split), spec, a.cache_dir, a.batch_size, device)
    score = scorer.score(samples_dir, a.seed)
    key = score.key
    metrics, spread, spread_text = scorer.spread([score], [a.seed], a.bootstrap, "images")
    isc_valid, isc_text = isc_note(spec)
    protocol = protocol_record(spec, samples=len(images), seeds=[], dataset=str(cfg.data.name), split=str(a.split),
                               reference_images=score.n_real, resolution=int(cfg.data.resolution), sampler=None,
                               weights=None, spread=spread_text)
    result = {
        "metrics": metrics, "spread": spread, "protocol": protocol, "isc_valid": isc_valid, "isc_note": isc_text,
        "samples": {"source": str(a.samples), **note, "scored_dir": str(samples_dir)},  # as named
        "n": len(images),
        "extractor": extractor_record(spec),
        "reference": {**reference_record(score, cfg, str(a.split)), "data": data},
        "versions": {"torch": torch.__version__},
        "device": str(device), "seconds": {"total": round(time.time() - started, 2)},
    }
    write_json(out, result, "genlab eval")
    f = spec.features
    print(f"genlab: wrote {out}: {len(images)} images of {a.samples} against {cfg.data.name}/{a.split} ({key}): "
          f"FID {metrics[f'fid_{f}']:.3f}, precision {metrics[f'precision_{f}']:.3f}, "
          f"recall {metrics[f'recall_{f}']:.3f}")
    return result
