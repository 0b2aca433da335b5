"""Evaluate every cell of a sweep with the code of `genlab eval`, skipping cells already finished.

One context per sweep holds what all cells share: the checkpoints (loaded once), the feature extractor and the
split's cached statistics, the guiding classifier and the classifier that scores class accuracy.
"""

from __future__ import annotations

import copy
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from torch import Tensor

from genlab.build import pick_device
from genlab.diffusion import NetworkCalls, SamplerSettings
from genlab.ema.posthoc import read_snapshots, reconstruct
from genlab.errors import GenlabError
from genlab.images import save_png_folder
from genlab.metrics.class_accuracy import class_accuracy
from genlab.metrics.domain import check_domain_classifier
from genlab.metrics.extractors import ExtractorSpec, extractor_spec, file_sha256
from genlab.metrics.fidelity import SplitScorer
from genlab.models import facts_of
from genlab.models.sample_shares import balanced_labels
from genlab.runs import RunDir
from genlab.runs.checkpoint import load_classifier, load_generator, read_checkpoint, weights_used
from genlab.runs.guide import resolve_guide
from genlab.tables.cells import CellStore, cell_hash
from genlab.tables.spec import SAMPLER_SETTINGS, Cell, TableSpec, cell_settings

DEFAULT_CKPT = "default"


def check_metrics_available(spec: TableSpec, extractor: ExtractorSpec) -> None:
    """A spec's metrics must be ones the extractor gives: IS needs class logits, CMMD CLIP embeddings."""
    missing = {"is": extractor.isc_layer is None, "cmmd": extractor.features != "clip"}
    wrong = [m for m in spec.metrics if missing.get(m)]
    if wrong:
        raise GenlabError(f"the spec {spec.name} shows {', '.join(wrong)}, which features={extractor.features} does "
                          "not give (IS needs class logits: inception or domain; CMMD needs features=clip). Remove "
                          "it from the spec's metrics, or choose other features.")


class SweepContext:
    """Checkpoints, extractor, reference statistics and classifiers shared by the cells of one sweep."""

    def __init__(self, spec: TableSpec, a: Any) -> None:
        """`a`: the `genlab table` arguments (commands/args.py's TableArgs)."""
        self.spec, self.args = spec, a
        self.n = a.n if a.n is not None else spec.n
        self.batch_size = a.batch_size if a.batch_size is not None else spec.batch_size
        self.device = pick_device(a.device)
        self.paths = self._checkpoint_paths()
        self.extractor = extractor_spec(a, prefix="")
        check_metrics_available(spec, self.extractor)
        self.modules: dict[str, Any] = {}  # every checkpoint is some row's: load each once, up front
        self.weights: dict[str, str] = {}
        self.posthoc: dict[tuple[str, float], Any] = {}  # (checkpoint, sigma_rel) -> its rebuilt generator
        self.snapshots: dict[str, tuple[dict[str, Any], list[dict[str, Any]]]] = {}  # checkpoint -> (ckpt, snapshots)
        for name, path in self.paths.items():
            ckpt = read_checkpoint(path)
            self.modules[name] = load_generator(path, ema=a.ema, ckpt=ckpt).to(self.device)
            self.weights[name] = weights_used(ckpt, a.ema)
        self.cfg = next(iter(self.modules.values())).cfg
        for name, module in self.modules.items():
            if module.cfg.data.name != self.cfg.data.name:
                raise GenlabError(f"checkpoint {self.paths[name]} was trained on {module.cfg.data.name}, the "
                                  f"others on {self.cfg.data.name}: one table scores one dataset.")
        if self.extractor.features == "domain":
            check_domain_classifier(self.extractor.weights_path, self.cfg.data, "domain_classifier")
        self.split_scorer = SplitScorer(self.cfg, str(a.split), self.extractor, a.cache_dir, self.batch_size,
                                        self.device)
        self.reference_key, self.n_real = self.split_scorer.key, self.split_scorer.n_real
        self.classifier = load_classifier(a.classifier).to(self.device) if a.classifier else None
        scorer = a.eval_classifier or (a.domain_classifier if a.features == "domain" else None) or a.classifier
        self.scorer_path = scorer
        self.scorer = load_classifier(scorer).to(self.device) if scorer else None

    def _checkpoint_paths(self) -> dict[str, str]:
        """Every checkpoint a row names (ckpts.NAME=PATH), and ckpt=PATH for rows that name none."""
        a, spec = self.args, self.spec
        named = {r.settings["ckpt"] for r in spec.rows if "ckpt" in r.settings} | (
            {spec.defaults["ckpt"]} if "ckpt" in spec.defaults else set())
        paths = {}
        for name in sorted(named):
            if name not in a.ckpts:
                raise GenlabError(f"the spec's rows use ckpt: {name}; pass ckpts.{name}=PATH.")
            paths[name] = a.ckpts[name]
        if any("ckpt" not in {**spec.defaults, **r.settings} for r in spec.rows):
            if a.ckpt is None:
                raise GenlabError("table needs ckpt=PATH, the checkpoint to evaluate (or ckpts.NAME=PATH per row).")
            paths[DEFAULT_CKPT] = a.ckpt
        for path in paths.values():
            if not Path(path).is_file():
                raise GenlabError(f"checkpoint {path} does not exist. Pass the .ckpt of a finished run.")
        return paths

    def module(self, settings: dict[str, Any]) -> Any:
        """The generator a cell samples, on the sweep's device: its checkpoint's (ckpt=PATH's when it names none),
        with the EMA of length sigma_rel rebuilt from the run's snapshots when the cell sets one."""
        name = settings.get("ckpt", DEFAULT_CKPT)
        if "sigma_rel" not in settings:
            return self.modules[name]
        key = (name, float(settings["sigma_rel"]))
        if key not in self.posthoc:
            path = Path(self.paths[name])
            if name not in self.snapshots:  # read once per checkpoint, whatever the number of lengths swept
                ckpt = read_checkpoint(path)
                snaps = read_snapshots(RunDir.of_checkpoint(path).ema_snapshots, int(ckpt.get("global_step", 0)))
                self.snapshots[name] = (ckpt, snaps)
            rebuilt = reconstruct(*self.snapshots[name], key[1])
            module = copy.deepcopy(self.modules[name])
            module.load_state_dict(rebuilt.state_dict)
            self.posthoc[key] = module
            print(f"genlab table: the EMA with sigma_rel={key[1]:g}, rebuilt from {len(rebuilt.snapshots)} snapshots "
                  f"of {path} (profile within {100 * rebuilt.profile_rel_error:.2f} % of the target's)", flush=True)
        return self.posthoc[key]

    def weights_of(self, settings: dict[str, Any]) -> str:
        """What a cell's weights are: ema, raw, or the post-hoc EMA of its sigma_rel."""
        if "sigma_rel" in settings:
            return f"posthoc ema sigma_rel={float(settings['sigma_rel']):g}"
        return self.weights[settings.get("ckpt", DEFAULT_CKPT)]

    def hash_context(self, cell: Cell) -> dict[str, Any]:
        """Everything besides the cell's settings and seed that decides its numbers."""
        a = self.args
        context = {
            "checkpoint_sha256": file_sha256(Path(self.paths[cell.settings.get("ckpt", DEFAULT_CKPT)])),
            "ema": a.ema, "n": self.n, "split": str(a.split), "extractor": self.extractor.weights_sha256,
            "features": self.extractor.features, "reference": self.reference_key,
            "scorer": file_sha256(Path(self.scorer_path)) if self.scorer_path else None,
        }
        if cell.settings.get("classifier_scale"):
            context["classifier"] = file_sha256(Path(a.classifier)) if a.classifier else None
        if cell.settings.get("guide"):  # the guide's weights decide the numbers as the model's do
            main = self.paths[cell.settings.get("ckpt", DEFAULT_CKPT)]
            every = self.module(cell.settings).cfg.callbacks.checkpoint.every_n_minutes
            context["guide"] = file_sha256(resolve_guide(str(cell.settings["guide"]), main, every))
        return context


def _labels(module: Any, n: int, wants_labels: bool) -> Tensor | None:
    """Class-balanced labels [0, 1, .., K-1, 0, ..] when a class steers sampling, as genlab eval uses."""
    if not wants_labels:
        return None
    num_classes = module.cfg.data.num_classes
    if not num_classes:
        raise GenlabError("guidance needs labelled data; this checkpoint's dataset has no classes.")
    return balanced_labels(n, num_classes)


def generate_cell(ctx: SweepContext, cell: Cell,
                  calls: NetworkCalls | None = None) -> tuple[Tensor, Tensor | None, SamplerSettings | None]:
    """The cell's n samples in [-1, 1], the class each was steered towards (None when unsteered), and the sampler
    (None for a GAN); `calls` counts the network evaluations."""
    s, module = cell.settings, ctx.module(cell.settings)
    if not facts_of(module).sampler:  # G(z): no sampler setting may be given (spacing may sit in the defaults)
        module.resolve_sampler({k: s.get(k) for k in SAMPLER_SETTINGS if k != "spacing"}, prefix=f"row {cell.row}: ")
        return module.eval_samples(ctx.n, seed=cell.seed, batch_size=ctx.batch_size), None, None
    # Settings a row leaves out come from the checkpoint's sampler block; guidance only from the row.
    base = module.sampler_settings.override(guidance=0.0)
    settings = cell_settings(s, base, module.diffusion.num_timesteps, prefix=f"row {cell.row}: ",
                             discrete=module.diffusion.discrete_samplers)
    if settings.classifier_scale != 0 and ctx.classifier is None:
        raise GenlabError(f"row {cell.row}: classifier_scale={settings.classifier_scale} needs classifier=PATH "
                          "(experiment=classifier_*).")
    # A row that names classifier_scale is steered, even at s = 0: its accuracy is the unguided baseline.
    labels = _labels(module, ctx.n, module.conditional or "classifier_scale" in s)
    try:
        images = module.sample(ctx.n, settings, labels=labels, classifier=ctx.classifier, seed=cell.seed,
                               batch_size=ctx.batch_size, progress=True, calls=calls)
    except GenlabError as exc:
        raise GenlabError(f"row {cell.row}: {exc}") from None
    return images, labels, settings


def evaluate_cell(ctx: SweepContext, cell: Cell) -> dict[str, Any]:
    """Sample the cell and score it: FID, KID, IS, precision/recall (torch-fidelity), class accuracy."""
    started = time.time()
    calls = NetworkCalls()
    images, labels, settings = generate_cell(ctx, cell, calls)
    sampled = time.time()
    with tempfile.TemporaryDirectory(prefix="genlab-table-") as folder:
        save_png_folder(images, Path(folder))
        raw = ctx.split_scorer.score(Path(folder), cell.seed).metrics
    metrics = table_metrics(raw, ctx.extractor.features)
    if labels is not None and ctx.scorer is not None:
        metrics["class_acc"] = class_accuracy(ctx.scorer, images, labels)
    sampler = sampler_record(ctx.module(cell.settings), settings, calls)
    metrics["nfe"] = float(sampler["nfe"])  # a column a spec may show (metrics: [..., nfe]) and plot against
    return {
        "row": cell.row, "column": cell.column, "seed": cell.seed, "settings": cell.settings,
        "metrics": metrics,
        # as the command named it: a resolved path would write this machine's folders into committed results
        "checkpoint": str(ctx.paths[cell.settings.get("ckpt", DEFAULT_CKPT)]),
        "weights": ctx.weights_of(cell.settings),
        "n": ctx.n, "features": ctx.extractor.features,
        **sampler,
        "seconds": {"sampling": round(sampled - started, 2), "total": round(time.time() - started, 2)},
    }


def table_metrics(raw: dict[str, float], f: str) -> dict[str, float]:
    """genlab eval's metric names (fid_dinov2, ...) as the spec names them (fid, ...); KID x 1e3."""
    metrics = {"fid": raw[f"fid_{f}"], "kid": 1e3 * raw[f"kid_{f}_mean"], "precision": raw[f"precision_{f}"],
               "recall": raw[f"recall_{f}"], "density": raw[f"density_{f}"], "coverage": raw[f"coverage_{f}"]}
    if f"isc_{f}_mean" in raw:  # extractors with class logits only
        metrics["is"] = raw[f"isc_{f}_mean"]
    if "cmmd_clip" in raw:
        metrics["cmmd"] = raw["cmmd_clip"]
    return metrics


def sampler_record(module: Any, settings: SamplerSettings | None, calls: NetworkCalls | None = None) -> dict[str, Any]:
    """The cell's sampler as used (steps resolved) and its network evaluations per sample, as counted by `calls`
    (CFG's unconditional pass and a guide's included; a GAN: one G pass)."""
    record = module.sampler_record(settings, calls)
    return {"sampler": record, "nfe": record["nfe"]}


Evaluator = Callable[[SweepContext, Cell], dict[str, Any]]


def run_cells(ctx: SweepContext, store: CellStore, evaluate: Evaluator | None = None) -> list[dict[str, Any]]:
    """Every cell's record in spec order: from the store when finished before, else evaluated and stored at once."""
    evaluate = evaluate or evaluate_cell
    cells = ctx.spec.cells()
    # Every key up front: a guide that names no file (guide=, time-step:...) fails before the first cell runs.
    keys = [cell_hash(cell.settings, cell.seed, ctx.hash_context(cell)) for cell in cells]
    records = []
    for i, (cell, key) in enumerate(zip(cells, keys), 1):
        where = f"[{i}/{len(cells)}] {cell.row}" + (f" | {cell.column}" if cell.column else "") + f" | seed {cell.seed}"
        record = store.get(key)
        if record is None:
            record = {**evaluate(ctx, cell), "key": key}
            store.put(key, record)
            print(f"genlab table: {where}: {_summary(record)} ({record['seconds']['total']:.0f} s)", flush=True)
        else:
            print(f"genlab table: {where}: cached ({store.path(key).name})", flush=True)
        records.append({**record, "row": cell.row, "column": cell.column})  # labels as the spec has them now
    return records


def _summary(record: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v:.3f}" for k, v in record["metrics"].items())
