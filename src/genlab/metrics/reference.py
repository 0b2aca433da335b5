"""Reference statistics: features of a dataset split, computed once per (data, split, extractor, weights), cached.

torch-fidelity caches features under `<cache_root>/<cache name>-<extractor>-features-<layer>.pt`, but its key is
only the name given to it: new weights under an old name would silently reuse stale features. genlab's cache
name therefore holds everything the features depend on:

    genlab-<dataset>-<split>-<R>px-<C>ch-<data id>-<features>[-clean]-<weights sha256[:12]>

where <data id> hashes the remaining data settings (root of an image folder, fit mode, seed and val_fraction
of a seeded split). `genlab eval` (torch-fidelity's `calculate_metrics`) and the FID callback (torchmetrics)
read and write the same files, so whichever runs first computes them.
"""

from __future__ import annotations

import hashlib
import json
import sys
import zipfile
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from torch import Tensor
from torch.utils.data import Dataset
from torch_fidelity.feature_extractor_base import FeatureExtractorBase
from torch_fidelity.utils import extract_featuresdict_from_input_id_cached

from genlab.build import build_datamodule
from genlab.metrics.extractors import ExtractorSpec
from genlab.metrics.images import UInt8Images, to_extractor_uint8


def default_cache_dir() -> Path:
    """$TORCH_HOME/fidelity_cache, torch-fidelity's own default."""
    return Path(torch.hub._get_torch_home()) / "fidelity_cache"


def cache_dir_of(cache_dir: str | None) -> Path:
    """The configured cache folder, or the default one."""
    return Path(cache_dir).expanduser() if cache_dir else default_cache_dir()


def reference_key(data: DictConfig, split: str, seed: int, spec: ExtractorSpec) -> str:
    """The cache name of a split's features: readable parts, then hashes of the rest (see the module doc)."""
    name = str(data.name)
    details = {
        "root": str(Path(data.root).resolve()) if name == "image_folder" and data.root else None,
        "fit": str(data.fit),
        "seed": seed if name in ("digits", "image_folder") else None,  # seeded splits only
        "val_fraction": float(data.val_fraction) if name in ("digits", "image_folder") else None,
    }
    data_id = hashlib.sha256(json.dumps(details, sort_keys=True).encode()).hexdigest()[:8]
    res, ch = int(data.resolution), int(data.channels)
    return f"genlab-{name}-{split}-{res}px-{ch}ch-{data_id}-{spec.cache_tag}-{spec.weights_id}"


def split_images(cfg: DictConfig, split: str) -> Tensor:
    """Every image of a split of the config's dataset, without augmentation, as extractor input [N, 3, H, W] uint8."""
    plain = OmegaConf.merge(cfg, {"data": {"hflip": False}})  # reference images are never flipped
    datamodule = build_datamodule(plain)
    datamodule.setup("fit")
    dataset = datamodule.train_dataset if split == "train" else datamodule.val_dataset
    loader = torch.utils.data.DataLoader(dataset, batch_size=500, shuffle=False)
    return torch.cat([to_extractor_uint8(x) for x, _ in loader])


class SplitImages(Dataset[Tensor]):
    """A torch-fidelity input that reads the split only when features must be computed (not on a cache hit)."""

    def __init__(self, cfg: DictConfig, split: str) -> None:
        self.cfg, self.split = cfg, split
        self._images: UInt8Images | None = None

    @property
    def images(self) -> UInt8Images:
        if self._images is None:
            self._images = UInt8Images(split_images(self.cfg, self.split))
        return self._images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> Tensor:
        return self.images[index]


def reference_features(
    cfg: DictConfig, split: str, extractor: FeatureExtractorBase, key: str, cache_dir: Path, batch_size: int = 250
) -> dict[str, Tensor]:
    """Features {layer: [N, F]} of a split: loaded from the cache, or computed once and written to it."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    drop_unreadable_cache(key, cache_dir)
    device = next(extractor.parameters()).device
    return extract_featuresdict_from_input_id_cached(
        1,
        extractor,
        input1=SplitImages(cfg, split),
        input1_cache_name=key,
        cache_root=str(cache_dir),
        batch_size=batch_size,
        cuda=device.type == "cuda",
        save_cpu_ram=True,  # no DataLoader worker processes
        verbose=sys.stderr.isatty(),  # torch-fidelity's feature-extraction bar, on a terminal only
    )


def drop_unreadable_cache(key: str, cache_dir: Path) -> list[Path]:
    """Delete (and name) every cache file of `key` that is not a complete torch.save archive of what torch-fidelity
    writes there, so that it is computed again rather than read: a run killed while writing it, or a full disk,
    leaves a truncated file; another program (or a hand) can leave a valid torch file of something else. The
    statistics derived from dropped features go too, so that nothing is computed from the old ones."""
    dropped = []
    for path in sorted(Path(cache_dir).glob(f"{key}-*.pt")):
        problem = cache_file_problem(path)
        if problem is not None:
            print(f"genlab: the cached reference statistics {path} are {problem}; deleted, they are computed again.")
            path.unlink(missing_ok=True)
            dropped.append(path)
    if any("-features-" in p.name for p in dropped):
        for path in sorted(Path(cache_dir).glob(f"{key}-*-stat-*.pt")):
            path.unlink(missing_ok=True)
            dropped.append(path)
    return dropped


# What torch-fidelity pickles into its FID statistics files ({"mu": ndarray, "sigma": ndarray}): allowed, nothing more.
NUMPY_GLOBALS = [np.dtype, np.ndarray, (getattr(np, "_core", None) or np.core).multiarray._reconstruct,
                 type(np.dtype(np.float64)), type(np.dtype(np.float32))]


def cache_file_problem(path: Path) -> str | None:
    """What is wrong with a reference cache file; None for an [N, F] feature tensor or FID statistics (mu [F],
    sigma [F, F]), as torch-fidelity writes them."""
    try:
        with zipfile.ZipFile(path) as archive:
            if archive.testzip() is not None:  # reads every member and checks its CRC
                return "unreadable (truncated?)"
        with torch.serialization.safe_globals(NUMPY_GLOBALS):
            content = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except (zipfile.BadZipFile, OSError, EOFError):
        return "unreadable (truncated?)"
    except Exception as exc:  # a torch file of other objects, or a corrupt pickle inside a whole archive
        return f"unreadable ({type(exc).__name__})"
    if "-stat-" in path.name:
        mu, sigma = (content.get(k) if isinstance(content, dict) else None for k in ("mu", "sigma"))
        if isinstance(mu, np.ndarray) and isinstance(sigma, np.ndarray) and sigma.shape == mu.shape * 2:
            return None
        return "not FID statistics (mu [F], sigma [F, F])"
    if isinstance(content, Tensor) and content.ndim == 2:
        return None
    return "not a feature matrix [N, F]"


def feature_files(key: str, extractor_name: str, layers: list[str], cache_dir: Path) -> list[Path]:
    """The files torch-fidelity writes for this key, one per layer."""
    return [cache_dir / f"{key}-{extractor_name}-features-{layer}.pt" for layer in layers]
