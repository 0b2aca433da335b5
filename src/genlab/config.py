"""Typed config schema (OmegaConf structured configs).

Every key a run can take is declared here, with its type and default. Loading a config merges,
in order: these defaults, the building blocks in `configs/<group>/<name>.yaml` chosen by the
experiment's `defaults:` (or by `group=name` on the command line), the experiment's own keys,
then `key=value` overrides. An unknown key or a wrong type fails in `load_config`, before any
work starts. Option strings are Enums so that an invalid choice fails at load time too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Dict, List, Optional

from omegaconf import MISSING


class DataName(str, Enum):
    digits = "digits"
    mnist = "mnist"
    fashion_mnist = "fashion_mnist"
    cifar10 = "cifar10"
    image_folder = "image_folder"
    celeba = "celeba"  # aligned CelebA faces, DDIM's 128x128 face box resized (torchvision folder layout)


class FitMode(str, Enum):
    resize = "resize"
    pad = "pad"
    center_crop = "center_crop"


class TimeInjection(str, Enum):
    add = "add"
    scale_shift = "scale_shift"
    concat = "concat"


class Schedule(str, Enum):
    linear = "linear"
    cosine = "cosine"


class Variance(str, Enum):
    beta_tilde = "beta_tilde"  # posterior variance, DDPM eq. 7
    beta = "beta"  # sigma^2 = beta_t; Ho et al.'s CIFAR-10 FID 3.17 used this


class SamplerName(str, Enum):
    ddpm = "ddpm"
    ddim = "ddim"


class Spacing(str, Enum):
    uniform = "uniform"
    quadratic = "quadratic"


class ModelKind(str, Enum):
    ddpm = "ddpm"  # also the CFG model: model.conditional=true
    classifier = "classifier"  # noise-aware classifier for classifier guidance
    gan = "gan"  # generator and discriminator from the `gan` block


class GeneratorArch(str, Enum):
    dcgan = "dcgan"


class DiscriminatorArch(str, Enum):
    dcgan = "dcgan"
    unet = "unet"  # the shared U-Net: global and per-pixel real/fake logits (Schönfeld et al. 2020)


class AdversarialLossName(str, Enum):
    non_saturating = "non_saturating"
    hinge = "hinge"
    wasserstein = "wasserstein"  # needs gan.lambda_gp > 0 (WGAN-GP) or gan.spectral_norm


class Pool(str, Enum):
    attention = "attention"
    avg = "avg"


class NonFinitePolicy(str, Enum):
    stop = "stop"  # raise an error naming the step and the loss terms; the last checkpoint stays
    skip = "skip"  # drop that update and count it (train/skipped_steps)


class FeatureName(str, Enum):
    inception = "inception"  # torch-fidelity's InceptionV3 (the FID of the literature); needs its weights file
    domain = "domain"  # a classifier trained in this project on the dataset itself (offline, any channels/size)


class Split(str, Enum):
    train = "train"
    test = "test"  # the held-out split: the official test set (MNIST, CIFAR-10, CelebA) or the seeded val_fraction split


class AttentionKernel(str, Enum):
    auto = "auto"  # math on a CPU (measured faster there), sdpa on a GPU
    sdpa = "sdpa"  # F.scaled_dot_product_attention: PyTorch picks its fused kernel (flash / memory-efficient / C++)
    math = "math"  # softmax(q k^T / sqrt(d)) v written out: the reference the fused kernels are compared with


class CompileMode(str, Enum):
    default = "default"
    reduce_overhead = "reduce_overhead"  # torch's "reduce-overhead": CUDA graphs, for small batches on a GPU
    max_autotune = "max_autotune"  # torch's "max-autotune": searches kernels at compile time (minutes)


class LoggerName(str, Enum):
    csv = "csv"
    wandb = "wandb"
    tensorboard = "tensorboard"


@dataclass
class DataConfig:
    name: DataName = DataName.digits
    root: Optional[str] = None  # folder with the dataset (torchvision layout) or the images; None: ./data
    download: bool = False  # torchvision datasets only
    resolution: int = 16
    channels: Optional[int] = None  # None: the dataset's own; filled in when the run starts
    num_classes: Optional[int] = None  # filled from the dataset when the run starts
    fit: Optional[FitMode] = None  # None: the dataset's default way to reach `resolution`
    hflip: bool = False
    batch_size: int = 128  # per device: the global batch is batch_size x devices x nodes
    num_workers: int = 0
    val_fraction: float = 0.1  # for datasets without an official validation/test split
    pin_memory: Optional[bool] = None  # page-locked batches for faster host-to-GPU copies; None: when CUDA is available
    persistent_workers: Optional[bool] = None  # keep worker processes across epochs; None: when num_workers > 0


@dataclass
class UNetConfig:
    base_channels: int = 64
    channel_mult: List[int] = field(default_factory=lambda: [1, 2, 2])
    num_res_blocks: int = 2
    attention_resolutions: List[int] = field(default_factory=lambda: [8])
    dropout: float = 0.1
    num_heads: int = 1
    time_injection: TimeInjection = TimeInjection.add


@dataclass
class PerfConfig:
    """Speed levers of the DDPM / CFG U-Net: none changes what is computed (beyond float rounding), so a run may
    resume with other levers. Mixed precision is trainer.precision (bf16-mixed, 16-mixed on a GPU).

    The defaults are what measured fastest on a CPU (benchmarks/results/); see README, Performance.
    """

    channels_last: bool = False  # NHWC U-Net weights and inputs (DDPM training step and sampling)
    compile: bool = False  # torch.compile the U-Net of the training step (checkpoint keys stay the same)
    compile_mode: CompileMode = CompileMode.default
    attention: AttentionKernel = AttentionKernel.auto
    grad_checkpointing: bool = False  # recompute each U-Net block in the backward pass: less memory, more compute


@dataclass
class DiffusionConfig:
    timesteps: int = 1000
    schedule: Schedule = Schedule.linear
    beta_start: float = 1e-4  # linear schedule only
    beta_end: float = 0.02  # linear schedule only
    variance: Variance = Variance.beta_tilde
    loss_weights: Dict[str, float] = field(default_factory=lambda: {"eps_mse": 1.0})


@dataclass
class OptimConfig:
    lr: float = 2e-4
    betas: List[float] = field(default_factory=lambda: [0.9, 0.999])
    weight_decay: float = 0.0
    warmup_steps: int = 0


@dataclass
class EMAConfig:
    enabled: bool = True
    decay: float = 0.9999
    start_step: int = 0
    every_n_steps: int = 1


@dataclass
class ModelConfig:
    kind: ModelKind = ModelKind.ddpm
    conditional: bool = False  # feed class labels to the U-Net
    p_uncond: float = 0.1  # CFG: probability of replacing the label by the null class (Ho & Salimans)
    classifier_pool: Pool = Pool.attention  # classifier head: attention pooling or global average pooling
    optim: OptimConfig = field(default_factory=OptimConfig)
    ema: EMAConfig = field(default_factory=EMAConfig)


@dataclass
class AdamConfig:
    lr: float = 2e-4
    betas: List[float] = field(default_factory=lambda: [0.0, 0.9])


@dataclass
class GANConfig:
    latent_dim: int = 128
    generator: GeneratorArch = GeneratorArch.dcgan
    discriminator: DiscriminatorArch = DiscriminatorArch.dcgan
    g_channels: int = 64  # generator width at full resolution; times channel_mult per level
    d_channels: int = 64
    channel_mult: List[int] = field(default_factory=lambda: [1, 2, 4])  # full resolution first, as in `unet`
    d_num_res_blocks: int = 1  # U-Net discriminator only
    spectral_norm: bool = True  # on every discriminator weight
    loss: AdversarialLossName = AdversarialLossName.hinge
    lambda_gp: float = 0.0  # WGAN-GP weight (10 in Gulrajani et al.)
    lambda_r1: float = 0.0  # R1 weight gamma: adds gamma / 2 * ||grad D(x)||^2 on reals
    r1_every: int = 16  # lazy R1 (StyleGAN2): every k discriminator steps, weighted by k
    lambda_pixel: float = 1.0  # U-Net discriminator: weight of the per-pixel adversarial terms
    d_steps: int = 1  # discriminator steps (batches) per generator step
    g_optim: AdamConfig = field(default_factory=AdamConfig)
    d_optim: AdamConfig = field(default_factory=AdamConfig)  # TTUR: give D its own (often larger) lr
    collapse_threshold: float = 0.1  # warn when the fakes' batch diversity falls below this share of the reals'


@dataclass
class SamplerConfig:
    name: SamplerName = SamplerName.ddim
    steps: int = 50  # DDIM only
    eta: float = 0.0  # DDIM only
    spacing: Spacing = Spacing.uniform  # DDIM, and DDPM with ddpm_steps
    ddpm_steps: Optional[int] = None  # DDPM only: ancestral sampling over this many respaced steps; None: all T
    variance: Optional[Variance] = None  # DDPM only: sigma_t^2 = beta or beta_tilde; None: diffusion.variance
    clip_denoised: bool = True
    guidance: float = 0.0  # CFG weight w for the grids of a conditional model (w = 0: plain conditional)


@dataclass
class TrainerConfig:
    max_steps: int = 5000
    max_epochs: int = -1
    accelerator: str = "auto"
    devices: Any = "auto"  # int, list of ints or "auto"
    num_nodes: int = 1
    strategy: str = "auto"
    precision: str = "32-true"
    gradient_clip_val: float = 1.0
    val_every_n_steps: int = 1000
    limit_val_batches: Any = 1.0  # float fraction or int number of batches
    log_every_n_steps: int = 50
    enable_progress_bar: bool = True
    on_nonfinite: NonFinitePolicy = NonFinitePolicy.stop  # a NaN or inf in the loss or gradients
    ddp_timeout_s: int = 1800  # strategy=ddp: a collective that a rank never reaches fails after this long
    scale_lr: bool = False  # linear scaling rule: every lr x global batch / reference_batch_size
    reference_batch_size: int = 128  # the global batch the configured learning rates were tuned for


@dataclass
class LoggerConfig:
    name: LoggerName = LoggerName.csv  # CSV is always written to the run folder as well
    project: str = "genlab"
    entity: Optional[str] = None
    group: Optional[str] = None
    tags: List[str] = field(default_factory=list)
    run_name: Optional[str] = None  # None: the experiment's name
    log_checkpoints: bool = False  # W&B: upload the run's checkpoints as artifacts (Lightning's log_model="all")


@dataclass
class SampleGridConfig:
    enabled: bool = True
    num_images: int = 64
    seed: int = 0  # fixed x_T so grids are comparable across validations


@dataclass
class CheckpointConfig:
    every_n_steps: int = 1000
    save_top_k: int = 1  # best checkpoints by `monitor`
    monitor: str = "val/loss"


@dataclass
class ClassAccuracyConfig:
    classifier: Optional[str] = None  # classifier checkpoint (experiment=classifier_*); None: not measured
    per_class: int = 10  # guided samples of each class at each validation
    seed: int = 0


@dataclass
class CallbacksConfig:
    sample_grid: SampleGridConfig = field(default_factory=SampleGridConfig)
    class_accuracy: ClassAccuracyConfig = field(default_factory=ClassAccuracyConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    loss_curve: bool = True


@dataclass
class EvalConfig:
    """FID during training (callbacks/fid.py); `genlab eval` reads the same feature settings from its arguments."""

    enabled: bool = False
    every_n_steps: int = 0  # a multiple of trainer.val_every_n_steps; 0: only at the end of training
    num_samples: int = 1000  # generated images per evaluation (split across DDP ranks)
    batch_size: int = 250
    features: FeatureName = FeatureName.inception
    inception_weights: Optional[str] = None  # None: torch hub's cache file (downloaded when online)
    domain_classifier: Optional[str] = None  # classifier checkpoint (experiment=classifier_*) for features=domain
    cache_dir: Optional[str] = None  # reference statistics; None: $TORCH_HOME/fidelity_cache
    split: Split = Split.test  # the real images the samples are compared with
    seed: int = 0  # fixed x_T, so FID moves only when the weights do


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
    classifier: Optional[str] = None  # the noise-aware classifier of classifier_scale cells
    eval_classifier: Optional[str] = None  # scores class accuracy at t = 0; None: domain_classifier, else classifier
    cache_dir: Optional[str] = None  # reference statistics, as genlab eval
    split: Split = Split.test
    out: str = "tables"  # <out>/<name>.md, .csv, .png, and finished cells in <out>/cells/<name>/
    ema: bool = True
    device: str = "auto"
    wandb: Optional[bool] = None  # log a wandb.Table; None: when the checkpoint's run used logger=wandb


@dataclass
class Config:
    experiment: str = "ddpm_digits"
    seed: int = 0
    run_dir: Optional[str] = None  # None: runs_root/<experiment>/<time>
    resume: Optional[str] = None  # "auto" (run_dir's or the experiment's newest last.ckpt) or a checkpoint path
    runs_root: str = "runs"
    data: DataConfig = field(default_factory=DataConfig)
    unet: UNetConfig = field(default_factory=UNetConfig)
    perf: PerfConfig = field(default_factory=PerfConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    gan: GANConfig = field(default_factory=GANConfig)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    callbacks: CallbacksConfig = field(default_factory=CallbacksConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


# Groups whose block can be chosen by name: `data=mnist` loads configs/data/mnist.yaml.
CONFIG_GROUPS = ("data", "unet", "perf", "diffusion", "model", "gan", "sampler", "trainer", "logger", "callbacks", "eval")


@dataclass
class SampleArgs:
    """Arguments of `genlab sample`."""

    ckpt: str = MISSING
    sampler: SamplerName = SamplerName.ddim
    steps: int = 50
    eta: float = 0.0
    spacing: Spacing = Spacing.uniform
    n: int = 64
    seed: int = 0
    out: str = "samples.png"  # a .png file for a grid, or a folder (ending in /) for one PNG per sample
    ema: bool = True  # use the EMA weights stored in the checkpoint
    batch_size: int = 256
    device: str = "auto"
    nrow: Optional[int] = None  # grid columns; None: about sqrt(n), or per_class with classes
    classes: Any = None  # "0,1,2" or [0,1,2]: per_class samples of each, one grid row per class
    per_class: int = 8
    guidance: Optional[float] = None  # CFG weight w: eps~ = (1 + w) eps(c) - w eps(null); w = 0 is conditional
    guidance_scale: Optional[float] = None  # the same guidance as s = 1 + w (GLIDE / diffusers convention)
    classifier: Optional[str] = None  # noise-aware classifier checkpoint: classifier guidance
    classifier_scale: float = 0.0  # s in eps^ = eps - s sqrt(1 - abar_t) grad log p(y | x_t)
    eval_classifier: Optional[str] = None  # classifier checkpoint that scores class accuracy (default: classifier)


@dataclass
class EvalArgs:
    """Arguments of `genlab eval`."""

    ckpt: str = MISSING
    n: int = 10000
    sampler: Optional[SamplerName] = None  # None: the checkpoint's own sampler settings
    steps: Optional[int] = None
    eta: Optional[float] = None
    spacing: Optional[Spacing] = None
    guidance: Optional[float] = None  # CFG weight w of a conditional model; None: the checkpoint's sampler.guidance
    variance: Optional[Variance] = None  # sampler=ddpm: sigma_t^2 = beta or beta_tilde; None: the checkpoint's
    features: FeatureName = FeatureName.inception
    domain_classifier: Optional[str] = None
    inception_weights: Optional[str] = None
    cache_dir: Optional[str] = None
    split: Split = Split.test
    nll: bool = False  # also the variational bound on -log p(x) in bits/dim over the split
    nll_images: Optional[int] = None  # the first N images of the split only (T network calls per batch); None: all
    out: str = "eval.json"  # samples go to <out without .json>_samples/
    seed: int = 0
    batch_size: int = 250
    ema: bool = True
    device: str = "auto"
