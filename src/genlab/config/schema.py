"""Typed config schema (OmegaConf structured configs).

Every key a run can take is declared here, with its type and default. Loading a config merges,
in order: these defaults, the building blocks in `configs/<group>/<name>.yaml` chosen by the
experiment's `defaults:` (or by `group=name` on the command line), the experiment's own keys,
then `key=value` overrides. An unknown key or a wrong type fails in `load_config`, before any
work starts. Option strings are Enums so that an invalid choice fails at load time too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Dict, List, Optional

from omegaconf import DictConfig, OmegaConf

from genlab.adversarial import AdversarialLoss, DiffAugmentOp
from genlab.data import DataName, FitMode
from genlab.diffusion import FlowTime, LossWeighting, Prediction, Process, Schedule, Spacing, Variance
from genlab.nn import AttentionKernel, CompileMode, DiscriminatorArch, GeneratorArch, Pool, TimeInjection









class ModelKind(StrEnum):
    ddpm = "ddpm"  # also the CFG model: model.conditional=true
    classifier = "classifier"  # noise-aware classifier for classifier guidance
    gan = "gan"  # generator and discriminator from the `gan` block






class NonFinitePolicy(StrEnum):
    stop = "stop"  # raise an error naming the step and the loss terms; the last checkpoint stays
    skip = "skip"  # drop that update and count it (train/skipped_steps)


class FeatureName(StrEnum):
    inception = "inception"  # torch-fidelity's InceptionV3 (the FID of the literature); needs its weights file
    domain = "domain"  # a classifier trained in this project on the dataset itself (offline, any channels/size)
    dinov2 = "dinov2"  # DINOv2 ViT-L/14 (FD-DINOv2, Stein et al. 2023); built with timm from its weights file
    clip = "clip"  # CLIP ViT-L/14@336px image embeddings (CLIP-FD, and CMMD of Jayasumana et al. 2024)


class Split(StrEnum):
    train = "train"
    test = "test"  # the held-out split: the official test set (MNIST, CIFAR-10, CelebA) or the seeded val_fraction split




class LoggerName(StrEnum):
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

    The defaults are what measured fastest on a CPU (benchmarks/results/); see docs/performance.md.
    """

    channels_last: bool = False  # NHWC U-Net weights and inputs (DDPM training step and sampling)
    compile: bool = False  # torch.compile the U-Net of the training step (checkpoint keys stay the same)
    compile_mode: CompileMode = CompileMode.default
    attention: AttentionKernel = AttentionKernel.auto
    grad_checkpointing: bool = False  # recompute each U-Net block in the backward pass: less memory, more compute


@dataclass
class DiffusionConfig:
    # the objective: vp (DDPM's process; eps, x0 or v targets) | flow (flow matching on the straight path
    # x_t = (1 - t) x0 + t eps, velocity target eps - x0) | edm (x = x0 + sigma n, EDM's preconditioned network);
    # flow and edm are sampled by the ODE solvers only
    process: Process = Process.vp
    timesteps: int = 1000  # vp: the discrete steps T; flow: the range [0, T) of the network's time input
    schedule: Schedule = Schedule.linear
    beta_start: float = 1e-4  # linear schedule only
    beta_end: float = 0.02  # linear schedule only
    variance: Variance = Variance.beta_tilde
    # target_mse: the MSE of the network's target (eps by default, x0 or v with `prediction`), weighted per timestep by
    # `loss_weighting`; logged as train/eps_mse, train/x0_mse or train/v_mse. Its old name eps_mse still loads.
    loss_weights: Dict[str, float] = field(default_factory=lambda: {"target_mse": 1.0})
    prediction: Prediction = Prediction.eps  # what the network outputs: eps | x0 | v (Salimans & Ho 2022)
    loss_weighting: LossWeighting = LossWeighting.uniform  # uniform | min_snr (Hang et al. 2023)
    min_snr_gamma: float = 5.0  # min_snr: the x0-MSE weight is min(SNR_t, gamma)
    flow_time: FlowTime = FlowTime.uniform  # flow: training t ~ U(0, 1), or logit_normal (SD3, Esser et al. 2024)
    logit_mean: float = 0.0  # flow_time=logit_normal: t = sigmoid(logit_mean + logit_std n), n ~ N(0, 1)
    logit_std: float = 1.0
    time_shift: float = 1.0  # flow sampling: SD3's timestep shift t' = shift t / (1 + (shift - 1) t) on every grid
    edm_sigma_min: float = 0.002  # edm: the noise levels sampled (Karras et al. 2022, Table 1)
    edm_sigma_max: float = 80.0
    edm_sigma_data: float = 0.5  # the data's standard deviation in the preconditioning
    edm_p_mean: float = -1.2  # training: ln sigma ~ N(p_mean, p_std^2)
    edm_p_std: float = 1.2
    edm_rho: float = 7.0  # the Karras grid's rho


class LRDecay(StrEnum):
    none = "none"  # constant after the warm-up
    linear = "linear"  # to zero over the budget's last decay_fraction (warmup-stable-decay, Hägele et al. 2024)
    cosine = "cosine"  # half a cosine to zero over the same share


@dataclass
class OptimConfig:
    lr: float = 2e-4
    betas: List[float] = field(default_factory=lambda: [0.9, 0.999])
    weight_decay: float = 0.0
    warmup_steps: int = 0
    decay: LRDecay = LRDecay.none  # the LR's fall at the end of the run's budget (steps or trainer.max_time)
    decay_fraction: float = 0.2  # the share of the budget it falls over; 1.0: from the first step


class EMAKind(StrEnum):
    ema = "ema"  # the classic EMA: decay per step (optionally from start_step)
    power = "power"  # Karras et al. 2024: a power-function profile of relative width sigma_rel, correct from step 0


@dataclass
class EMAConfig:
    enabled: bool = True
    kind: EMAKind = EMAKind.power  # power-function EMA; ema: exponential with `decay`
    decay: float = 0.9999  # kind=ema
    start_step: int = 0  # kind=ema
    every_n_steps: int = 1  # kind=ema
    sigma_rel: float = 0.05  # kind=power: the profile's width relative to the run (0.05: gamma = 16.97)
    posthoc: bool = False  # also snapshot power EMAs for `genlab ema` to rebuild any sigma_rel after training
    posthoc_sigma_rels: List[float] = field(default_factory=lambda: [0.05, 0.10])  # the EMAs snapshotted
    posthoc_every_n_steps: int = 500  # steps between snapshots (and at the last step)


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
    loss: AdversarialLoss = AdversarialLoss.hinge
    lambda_gp: float = 0.0  # WGAN-GP weight (10 in Gulrajani et al.)
    lambda_r1: float = 0.0  # R1 weight gamma: adds gamma / 2 * ||grad D(x)||^2 on reals
    lambda_r2: float = 0.0  # R2: the same on fakes (R3GAN: lambda_r1 = lambda_r2 with loss=relativistic)
    r1_every: int = 16  # lazy R1 (StyleGAN2): every k discriminator steps, weighted by k
    lambda_pixel: float = 1.0  # U-Net discriminator: weight of the per-pixel adversarial terms
    # DiffAugment (Zhao et al. 2020) on everything D sees, real and fake, in both steps: [color, translation, cutout]
    diffaugment: List[DiffAugmentOp] = field(default_factory=list)
    d_steps: int = 1  # discriminator steps (batches) per generator step
    # The generator step reuses the fakes of the discriminator step before it (PyTorch's DCGAN example): one generator
    # forward per step instead of two; the generator step then sees the z that D was just trained on
    reuse_fakes: bool = False
    g_optim: AdamConfig = field(default_factory=AdamConfig)
    d_optim: AdamConfig = field(default_factory=AdamConfig)  # TTUR: give D its own (often larger) lr
    collapse_threshold: float = 0.1  # warn when the fakes' batch diversity falls below this share of the reals'


@dataclass
class SamplerConfig:
    """How the run samples (validation grids, FID, and every command that does not name a sampler): the fields of
    diffusion.SamplerSettings, by the same names (the command lines say sampler= for name)."""

    name: str = "ddim"  # the grids', FID's and every command's that names no sampler (diffusion.SAMPLERS)
    steps: Optional[int] = 50  # network evaluations, for every sampler (DDPM: respaced steps); null: all T
    eta: float = 0.0  # DDIM only
    spacing: Optional[Spacing] = None  # the time grid; null: the sampler's own (uniform for ddim, ddpm, dpmpp_2m and
    # unipc, karras for heun and euler)
    rho: Optional[float] = None  # the karras grid's rho (eq. 5); null: 7, or diffusion.edm_rho for an EDM model
    sigma_max: Optional[float] = None  # sigma / alpha where a karras or logsnr grid starts; null: the model's top
    variance: Optional[Variance] = None  # DDPM only: sigma_t^2 = beta or beta_tilde; None: diffusion.variance
    clip: bool = True  # clamp the predicted x0 to [-1, 1] at every step
    guidance: float = 0.0  # CFG weight w for the grids of a conditional model (w = 0: plain conditional)
    guidance_sigma_min: float = 0.0  # CFG only where sigma / alpha lies in [min, max] (Kynkaanniemi et al. 2024)
    guidance_sigma_max: float = math.inf
    guide: Optional[str] = None  # autoguidance (Karras et al. 2024): a weaker model of the same task, or time-step:5min
    guide_scale: float = 1.0  # its w in D_guide + w (D_main - D_guide); 1: the main model alone
    s_churn: float = 0.0  # heun only: Karras et al.'s Algorithm 2 when > 0 (their ImageNet: 40, 0.05, 50, 1.003)
    s_tmin: float = 0.0
    s_tmax: float = math.inf
    s_noise: float = 1.0


@dataclass
class TrainerConfig:
    max_steps: int = 5000
    # minutes of training (Lightning's max_time), a finite number; null: no budget (inf is refused, say null). A
    # resumed run spends what is left
    max_time: Optional[float] = None
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
    nonfinite_window: int = 100  # on_nonfinite=skip: steps over which the share of skipped steps is measured
    nonfinite_max_share: float = 0.5  # on_nonfinite=skip: more skipped than this share of a window ends the run
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
    every_n_minutes: Optional[float] = None  # also keep checkpoints/time-step*.ckpt every N minutes (time-to-quality)


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
    feature_model: Optional[str] = None  # dinov2: vit-s|b|l|g-14 (None: vit-l-14); clip: vit-l-14-336px, vit-b-32, ...
    feature_weights: Optional[str] = None  # a local weights file of the features; None: torch hub's cache, downloaded
    protocol: str = "torch-fidelity"  # clean: clean-fid's resize before Inception (features=inception)
    cache_dir: Optional[str] = None  # reference statistics; None: $TORCH_HOME/fidelity_cache
    split: Split = Split.test  # the real images the samples are compared with
    seed: int = 0  # fixed x_T, so FID moves only when the weights do
    sampler: Optional[str] = None  # the FID samples' sampler (e.g. dpmpp_2m); null: the `sampler` block's
    steps: Optional[int] = None  # its steps; null: that sampler's default (or the block's, for the same sampler)


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


def to_container(cfg: DictConfig) -> dict[str, Any]:
    """A plain dict (enums as strings) for checkpoints, hparams and loggers."""
    return OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)  # type: ignore[return-value]
