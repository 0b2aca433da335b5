"""Every command's argument schema (typed `key=value` dataclasses) and the checks shared by the commands."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, TypeVar

from omegaconf import MISSING, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException, ValidationError

from genlab.config import parse_overrides
from genlab.config.load import parse_dotlist
from genlab.config.schema import FeatureName, Split
from genlab.diffusion import SAMPLER_FIELDS, Spacing, Variance
from genlab.errors import GenlabError, first_line
from genlab.images import is_folder_target
from genlab.outputs import check_file_out, check_folder_out, check_writable, free_name


@dataclass
class TableArgs:
    """Arguments of `genlab table SPEC`; n, seeds and batch_size override the spec's."""

    ckpt: Optional[str] = None  # the checkpoint of every row that names none
    ckpts: Dict[str, str] = field(default_factory=dict)  # ckpts.NAME=PATH for rows with `ckpt: NAME`
    n: Optional[int] = None
    seeds: Optional[List[int]] = None
    values: Optional[List[Any]] = None  # replace the spec's column values, e.g. values=[10,20,50] (fewer DDIM steps)
    batch_size: Optional[int] = None
    features: FeatureName = FeatureName.inception
    domain_classifier: Optional[str] = None
    inception_weights: Optional[str] = None
    feature_model: Optional[str] = None  # dinov2: vit-s|b|l|g-14 (None: vit-l-14); clip: None: vit-l-14-336px
    feature_weights: Optional[str] = None  # dinov2 / clip weights file; None: torch hub's cache (downloaded online)
    protocol: str = "torch-fidelity"  # how images reach the extractor; clean: clean-fid's resize (features=inception)
    classifier: Optional[str] = None  # the noise-aware classifier of classifier_scale cells
    eval_classifier: Optional[str] = None  # scores class accuracy at t = 0; None: domain_classifier, else classifier
    cache_dir: Optional[str] = None  # reference statistics, as genlab eval
    split: Split = Split.test
    out: Optional[str] = None  # <out>/<name>.md, .csv, .png, cells in <out>/cells/<name>/; None: <run>/tables
    ema: bool = True
    device: str = "auto"
    wandb: Optional[bool] = None  # log a wandb.Table; None: when the checkpoint's run used logger=wandb



@dataclass
class SamplerArgs:
    """The sampler fields of `sample` and `eval`, named as the run's `sampler` block and SamplerSettings name them
    (`sampler` for the block's `name`). None: the checkpoint's own block (a newly named sampler: its own defaults)."""

    sampler: Optional[str] = None  # null: the checkpoint's own; a newly named one starts from its own defaults
    steps: Optional[int] = None  # network evaluations
    eta: Optional[float] = None  # ddim: sigma_t(eta)
    spacing: Optional[Spacing] = None  # the time grid
    rho: Optional[float] = None  # the karras grid's rho (eq. 5); null: the model's own
    sigma_max: Optional[float] = None  # sigma / alpha where a karras or logsnr grid starts; null: the model's top
    variance: Optional[Variance] = None  # ddpm: sigma_t^2 = beta or beta_tilde
    clip: Optional[bool] = None  # clamp the predicted x0 to [-1, 1] at every step
    guidance: Optional[float] = None  # CFG weight w of a conditional model: eps~ = (1 + w) eps(c) - w eps(null)
    guidance_sigma_min: Optional[float] = None  # the guidance interval: CFG where sigma / alpha lies in [min, max]
    guidance_sigma_max: Optional[float] = None
    guide: Optional[str] = None  # autoguidance: a weaker model of the same task (a .ckpt), or time-step:5min of the run
    guide_scale: Optional[float] = None  # its w: D_guide + w (D_main - D_guide); 1 is the main model alone
    s_churn: Optional[float] = None  # heun: Karras et al.'s Algorithm 2 when > 0, with s_tmin, s_tmax, s_noise
    s_tmin: Optional[float] = None
    s_tmax: Optional[float] = None
    s_noise: Optional[float] = None

    def sampler_fields(self) -> dict[str, Any]:
        """The sampler fields as given (None: not given), for resolve_settings."""
        return {k: getattr(self, k) for k in SAMPLER_FIELDS if hasattr(self, k)}


@dataclass
class SampleArgs(SamplerArgs):
    """Arguments of `genlab sample`."""

    ckpt: str = MISSING
    # a number, or a list such as 10,20,50,1000: one grid row per step count from the same x_T (deterministic
    # samplers)
    steps: Any = None
    n: int = 64
    seed: int = 0
    # a .png file for a grid, or a folder (ending in /) for one PNG per sample; None: a grid in the checkpoint's
    # run folder, <run>/samples/sample-<sampler><steps>-seed<seed>.png (samples.png outside a run folder)
    out: Optional[str] = None
    ema: bool = True  # use the EMA weights stored in the checkpoint
    batch_size: int = 256
    device: str = "auto"
    nrow: Optional[int] = None  # grid columns; None: about sqrt(n), or per_class with classes
    classes: Any = None  # "0,1,2" or [0,1,2]: per_class samples of each, one grid row per class
    per_class: int = 8
    guidance_scale: Optional[float] = None  # the same guidance as s = 1 + w (GLIDE / diffusers convention)
    classifier: Optional[str] = None  # noise-aware classifier checkpoint: classifier guidance
    classifier_scale: float = 0.0  # s in eps^ = eps - s sqrt(1 - abar_t) grad log p(y | x_t)
    eval_classifier: Optional[str] = None  # classifier checkpoint that scores class accuracy (default: classifier)


@dataclass
class EvalArgs(SamplerArgs):
    """Arguments of `genlab eval` (besides data=NAME and data.*=..., which name the split of samples=DIR)."""

    ckpt: Optional[str] = None  # the checkpoint to evaluate, or:
    samples: Optional[str] = None  # a folder of images from any code base, scored against data=NAME's split
    n: int = 10000
    features: FeatureName = FeatureName.inception
    domain_classifier: Optional[str] = None
    inception_weights: Optional[str] = None
    feature_model: Optional[str] = None  # dinov2: vit-s|b|l|g-14 (None: vit-l-14); clip: None: vit-l-14-336px
    feature_weights: Optional[str] = None  # dinov2 / clip weights file; None: torch hub's cache (downloaded online)
    protocol: str = "torch-fidelity"  # how images reach the extractor; clean: clean-fid's resize (features=inception)
    cache_dir: Optional[str] = None
    split: Split = Split.test
    nll: bool = False  # also -log p(x) in bits/dim over the split (diffusion models of any process)
    # bound: DDPM's variational bound (VP models; T network calls per batch) | ode: the probability-flow ODE's
    # likelihood (any process; 80 network calls and backward passes per batch). None: bound where there is one.
    nll_method: Optional[str] = None
    nll_images: Optional[int] = None  # the first N images of the split only; None: all
    # the JSON; samples go to <out without .json>_samples/. None: <run>/eval/<ckpt>-<sampler><steps>-n<n>-<features>.json
    # in the checkpoint's run folder (eval.json outside a run folder)
    out: Optional[str] = None
    seed: int = 0
    seeds: Optional[List[int]] = None  # several sample seeds, e.g. seeds=[0,1,2]: every metric as mean +- std over them
    bootstrap: int = 20  # one seed: resamples of the sample set for a spread of FID, density, coverage; 0: none
    batch_size: int = 250
    ema: bool = True
    device: str = "auto"
    log_to_run: bool = True  # also log the metrics and a sample grid into the checkpoint's W&B / TensorBoard run


@dataclass
class InvertArgs:
    """Arguments of `genlab invert`."""

    ckpt: str = MISSING
    image: str = MISSING  # index:N (or a bare N) into the training set, or a PNG/JPG path
    steps: int = MISSING  # diffusion: DDIM steps S, to encode and to decode; GAN: optimisation steps
    out: str = "recon.png"  # target | latent (GAN: start) | reconstruction; metrics in the same name with .json
    ema: bool = True
    device: str = "auto"
    spacing: Spacing = Spacing.uniform
    label: Optional[int] = None  # conditional models: the class to condition on; default the item's own label
    clip: bool = False  # clamp the predicted x0 to [-1, 1] while decoding (the inversion never clips)
    restarts: int = 4  # GAN: random restarts, optimised together; the lowest final error wins
    lr: float = 0.05  # GAN: Adam learning rate on z
    feature_weight: float = 0.0  # GAN: weight of the discriminator-feature distance added to the pixel MSE
    seed: int = 0  # GAN: seed of the restarts' initial latents


@dataclass
class InterpolateArgs:
    """Arguments of `genlab interpolate`."""

    ckpt: str = MISSING
    a: str = MISSING  # seed:N (or a bare N), index:N, or a PNG/JPG path
    b: str = MISSING
    n: int = 8  # images in the row, both endpoints included
    steps: int = 50  # DDIM steps S, to encode image endpoints and to decode every latent
    out: str = "interp.png"
    ema: bool = True
    device: str = "auto"
    spacing: Spacing = Spacing.uniform
    label: Optional[int] = None  # conditional models: the class to condition on; default the null class
    clip: bool = True  # clamp the predicted x0 to [-1, 1] while decoding (the inversion never clips)


@dataclass
class EMAArgs:
    """Arguments of `genlab ema`."""

    ckpt: str = MISSING  # a checkpoint of a run trained with model.ema.posthoc=true
    sigma_rel: float = MISSING  # the EMA length to rebuild, relative to the run (0.05: gamma = 16.97)
    out: Optional[str] = None  # None: <run>/checkpoints/posthoc-sigma<sigma_rel>.ckpt


@dataclass
class CompareArgs:
    """Arguments of `genlab compare` (besides the run folders)."""

    out: str = "compare.md"  # the Markdown table; the curves go beside it as .png (out=compare.png works too)


ArgsT = TypeVar("ArgsT")


def parse_command_args(schema_type: type[ArgsT], args: list[str], command: str, required: dict[str, str]) -> ArgsT:
    """Typed `key=value` arguments of a command (sample, invert, ...) as an instance of a dataclass.

    Unknown keys, wrong types and missing required keys fail with a GenlabError that lists the valid keys.
    """
    schema = OmegaConf.structured(schema_type)
    try:
        merged = OmegaConf.merge(schema, parse_dotlist(parse_overrides(args)))
    except ConfigKeyError as exc:
        raise GenlabError(f"unknown argument {exc.full_key!r}. Valid arguments: {', '.join(schema.keys())}.") from None
    except ValidationError as exc:
        raise GenlabError(f"bad value for {exc.full_key!r}: {first_line(exc)}.") from None
    except OmegaConfBaseException as exc:
        raise GenlabError(f"cannot read the arguments: {first_line(exc)}.") from None
    for key, meaning in required.items():
        if OmegaConf.is_missing(merged, key):
            raise GenlabError(f"{command} needs {key}=..., {meaning}.")
    return OmegaConf.to_object(merged)  # type: ignore[return-value]


def check_image_out(out: str, explicit: bool = True, companions: Callable[[Path], list[Path]] = lambda p: []) -> None:
    """Fail before any work, not after, when `out` (a .png grid, or a folder ending in / for one PNG per image) cannot
    be written or is a file or folder of the user's (outputs.py). `explicit`: out= was given, not genlab's default
    name in a run folder. `companions`: the other files written beside a .png (its JSON, ...), checked alike."""
    path = Path(out)
    if is_folder_target(out):
        check_folder_out(path, f"Choose another out=, e.g. out={free_name(path)}/.")
        return
    if path.suffix.lower() != ".png":
        raise GenlabError(f"out={out}: give a .png file for a grid, or a folder ending in / for one PNG per sample.")
    if not explicit:
        check_writable(path)
        return
    hint = f"Choose another out=, e.g. out={free_name(path, lambda p: any(q.exists() for q in [p, *companions(p)]))}."
    for target in (path, *companions(path)):
        check_file_out(target, hint)


def parse_steps(steps: Any) -> list[int] | None:
    """`steps=50`, `steps=10,20,50` (a string) or `steps=[10,20]` (a list) to checked positive ints; None: not given."""
    if steps is None or steps == "":
        return None
    if isinstance(steps, bool):
        raise GenlabError(f"steps={steps}: give a number of steps, e.g. steps=50.")
    items = list(steps) if isinstance(steps, (list, tuple)) else str(steps).strip("[]").split(",")
    try:
        parsed = [int(str(s).strip()) for s in items if str(s).strip() != ""]
    except ValueError:
        raise GenlabError(f"steps={steps}: give a number of steps, or several, e.g. steps=10,20,50.") from None
    if not parsed or any(s < 1 for s in parsed):
        raise GenlabError(f"steps={steps}: each number of steps must be a positive integer.")
    return parsed


def parse_classes(classes: Any, num_classes: int | None) -> list[int] | None:
    """`classes=0,1,2` (a string) or `classes=[0,1,2]` (a list) to checked ints."""
    if classes is None or classes == "":
        return None
    items = str(classes).strip("[]").split(",") if not isinstance(classes, (list, tuple)) else list(classes)
    try:
        parsed = [int(str(c).strip()) for c in items if str(c).strip() != ""]
    except ValueError:
        raise GenlabError(f"classes={classes}: give class indices, e.g. classes=0,1,2.") from None
    if num_classes is None:
        raise GenlabError("classes= needs a model trained on labelled data; this checkpoint's dataset has no classes.")
    bad = [c for c in parsed if not 0 <= c < num_classes]
    if bad or not parsed:
        raise GenlabError(f"classes={classes}: each class must be in 0..{num_classes - 1}.")
    return parsed
