"""The config schema: one dataclass per YAML section, defaults = the paper's values.

Spec references are in the comments; where the spec is silent, the comment says so and why the
default was chosen.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

# Evaluation protocols (docs/reproducing.md): "spec" follows the paper as written; "official"
# repeats every step of the authors' evaluation code, quirks included (transposed centre crop,
# floored resize sizes, their file listing, labelling and in-the-wild runs), so their published
# numbers can be reproduced from their checkpoints and test sets.
PROTOCOLS = ("spec", "official")


class ConfigError(ValueError):
    """A configuration file or override that does not fit the schema."""


# --------------------------------------------------------------------------------------------
# EXIF tag schema (spec section 1)
# --------------------------------------------------------------------------------------------


@dataclass
class HeadConfig:
    """One EXIF head: which tag it reads and how the tag becomes a label."""

    tag: str
    kind: str  # "class" (cross-entropy) or "rank" (pairwise probit ranking)
    classes: int = 1  # output size; 1 for rank heads
    transform: str = "identity"  # rank heads: "log" or "identity" (order-preserving either way)
    binning: str = "codes"  # class heads: "codes" (explicit code lists) or "topk" (Make/Model)
    codes: list[list[int]] = field(default_factory=list)  # class i <- any code in codes[i]
    other: bool = False  # "codes": unlisted codes go to the last class (else they are masked)


def head_names(heads: Sequence[HeadConfig]) -> list[str]:
    """One unique name per head (the tag; ``tag#i`` if a tag repeats), for logs and metrics."""
    tags = [h.tag for h in heads]
    return [t if tags.count(t) == 1 else f"{t}#{i}" for i, t in enumerate(tags)]


def _paper_heads() -> list[HeadConfig]:
    # Slot order of the official checkpoint (fc1..fc14). The seven ordinal tags are unnamed in the
    # official code; this assignment is ours (README, "Tag schema").
    flash_off = [0, 8, 16, 20, 32, 48, 80]  # did not fire, flash off / absent
    flash_auto_nofire = [24, 88]  # auto mode, did not fire
    flash_fired = [1, 5, 7, 9, 13, 15, 65, 69, 71, 73, 77, 79]  # fired, compulsory or unknown mode
    flash_fired_auto = [25, 29, 31, 89, 93, 95]  # fired in auto mode
    return [
        HeadConfig("FocalLength", "rank", transform="log"),
        HeadConfig("Make", "class", classes=7, binning="topk"),
        HeadConfig("FNumber", "rank", transform="log"),
        HeadConfig("ExposureTime", "rank", transform="log"),
        HeadConfig("ISOSpeedRatings", "rank", transform="log"),
        HeadConfig("Model", "class", classes=6, binning="topk"),
        HeadConfig("Flash", "class", classes=4,
                   codes=[flash_off, flash_auto_nofire, flash_fired, flash_fired_auto]),
        HeadConfig("ExposureBiasValue", "rank"),
        HeadConfig("MaxApertureValue", "rank"),
        # 0 (unknown) and 255 (other) are masked: they say nothing about the camera.
        HeadConfig("MeteringMode", "class", classes=6, codes=[[1], [2], [3], [4], [5], [6]]),
        # EXIF defines 0 auto, 1 manual, 2 bracket; the 4th official class takes anything else.
        HeadConfig("ExposureMode", "class", classes=4, codes=[[0], [1], [2]], other=True),
        HeadConfig("WhiteBalance", "class", classes=2, codes=[[0], [1]]),
        HeadConfig("FocalLengthIn35mmFilm", "rank", transform="log"),
        HeadConfig("SceneCaptureType", "class", classes=5, codes=[[0], [1], [2], [3], [4]]),
    ]


@dataclass
class SchemaConfig:
    heads: list[HeadConfig] = field(default_factory=_paper_heads)


# --------------------------------------------------------------------------------------------
# Network (spec section 2)
# --------------------------------------------------------------------------------------------


@dataclass
class ModelConfig:
    backbone: str = "sdaie"  # "sdaie" (official architecture) or "resnet"
    implementation: str = "fast"  # "fast" (default) or "reference" (plain spec composition, the oracle)
    patch_size: int = 64
    width: int = 32  # CNN channels; feature = width*(width+1)/2 = 528
    depths: list[int] = field(default_factory=lambda: [4, 2, 2, 2])  # convs in group2..group5
    hardtanh: float = 5.0  # group1_b clamp
    isqrt_iters: int = 5  # iSQRT-COV Newton-Schulz iterations (Li et al. convention)
    trace_eps: float = 1e-8  # added to tr(Sigma) so a flat patch stays finite (official: NaN)
    transformer_depth: int = 2
    attn_heads: int = 4
    dim_head: int = 16
    mlp_dim: int = 128
    aggregate: str = "transformer"  # how patch tokens meet: "transformer" or "mean" (ResNet option)
    resnet_arch: str = "resnet50"  # resnet18 | resnet34 | resnet50
    resnet_weights: str | None = None  # optional local torchvision state dict (no hub downloads)


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------


@dataclass
class DataConfig:
    index: str = ""  # folder written by `sdaie index`
    patches: int = 16  # random patches per photo (spec: 16)
    # Where the pretext patches come from (docs/gpu-nodes.md, "Data sources"): "photo" = random
    # positions in the whole photograph (the paper's text); "shards" = in the index's centre crops
    # (`sdaie index --crops 512`: fast, but 2 % of a 12-MP frame, never its edges).
    source: str = "photo"
    # JPEG decoder of whole photos: "pil" (the reference, as every other stage) or "torchvision"
    # (torchvision.io.decode_jpeg: faster, identical pixels on the photos tested; gpu-check checks).
    decoder: str = "pil"
    workers: int = 4  # DataLoader workers
    prefetch: int = 2  # batches each worker loads ahead (DataLoader prefetch_factor)
    val_fraction: float = 0.0  # held-out photos (split by photo) for per-head validation
    pin_memory: bool = True  # only takes effect on CUDA
    # Train only on photos that have a label for every head (the authors' data holds only such
    # photos). false (default): any photo with one usable tag, missing tags masked in the loss.
    require_all_tags: bool = False


# --------------------------------------------------------------------------------------------
# Stages
# --------------------------------------------------------------------------------------------


@dataclass
class PretextConfig:
    batch_size: int = 64  # pairs per GPU (spec: 64 x 8 GPUs)
    lr: float = 1e-4
    weight_decay: float = 0.0
    # Spec silent on length. 100k steps x 512 pairs (64 per GPU x 8) / 900k photos ~ 57 epochs
    # (counting each step's first photos, as the official DistributedSampler does).
    steps: int = 100_000
    ckpt_every: int = 1000  # spec: every 1000 iterations
    log_every: int = 50
    # "exact": BCE of Phi(s1 - s2) computed as -log Phi(+-d) (finite at any gap); "official":
    # the authors' float32 nn.BCELoss on Phi, which saturates at a gap of ~5.35 (loss 100, a
    # gradient spike; docs/reproducing.md); "fidelity": the face predecessor's loss. "bce" is
    # read as "exact" (its name before the official variant existed).
    rank_loss: str = "exact"
    # auto: bf16 autocast on GPUs that support it, fp16 + GradScaler on older GPUs, fp32 on CPU;
    # or fp32 | bf16 | fp16 (true/false = auto/fp32). The spec is silent; sdaie gpu-check measures.
    amp: str | bool = "auto"
    tf32: bool = True  # TF32 matmuls on Ampere+ GPUs


@dataclass
class OneClassConfig:
    checkpoint: str = ""  # pretext checkpoint (official or ours)
    train_dirs: list[str] = field(default_factory=list)  # real-only folders (ImageNet, LSUN)
    per_dir: int = 5000  # first N of each after a seeded shuffle
    shuffle_seed: int = 42
    components: int = 5
    covariance_type: str = "full"
    init_params: str = "k-means++"
    random_state: int = 42
    quantile: float = 0.02  # threshold = sorted train log-likelihood at floor(q*N)
    # Added to the covariance diagonals (spec silent: scikit-learn's default). Raise it when the
    # GMM is fitted on few images for its dimension (configs/oc_small_cpu.yaml).
    reg_covar: float = 1e-6
    max_patches: int = 20_000
    batch_patches: int = 1024  # patches per forward (bounded memory for big images)
    test_root: str = ""
    sets: list[str] = field(default_factory=list)  # empty = registry order + discovered folders
    perturbations: list[str] = field(default_factory=list)  # e.g. ["jpeg=95", "blur=1.0", "resize=0.5"]
    cache_dir: str = ""  # feature cache; default <out_dir>/cache
    protocol: str = "spec"  # "spec" (paper as written) | "official" (authors' code, quirks included)


@dataclass
class BinaryConfig:
    pretext_checkpoint: str = ""
    train_root: str = ""  # ProGAN training set with 0_real / 1_fake folders
    val_root: str = ""
    epochs: int = 15
    batch_size: int = 100  # per GPU
    lr: float = 1e-3
    alpha: float = 0.05  # weight of the sum of MSE(f1..f5)
    p_resize: float = 0.3
    resize_range: list[int] = field(default_factory=lambda: [64, 128])
    p_blur: float = 0.1
    blur_sigma: list[float] = field(default_factory=lambda: [0.0, 1.0])
    p_jpeg: float = 0.25
    jpeg_quality: list[int] = field(default_factory=lambda: [90, 99])
    val_batches: int = 0  # quick random-patch validation batches per epoch (0 = whole val set)
    log_every: int = 50  # training steps per CSV log line
    amp: str | bool = "auto"  # as pretext.amp


@dataclass
class EvalConfig:
    checkpoint: str = ""  # binary checkpoint (official or ours)
    test_root: str = ""
    sets: list[str] = field(default_factory=list)
    max_patches: int = 40_000
    batch_patches: int = 1024
    threshold: float = 0.5
    perturbations: list[str] = field(default_factory=list)
    # spec: each folder is one pooled set, averaged with the test sets. official: each folder is
    # a root whose sub-folders are sets with their own table block and average (the authors run
    # bc_eval on the wild root separately).
    wild_dirs: list[str] = field(default_factory=list)
    protocol: str = "spec"  # "spec" (paper as written) | "official" (authors' code, quirks included)


PATCH_CONTEXTS = ("window", "alone", "image")  # how a heatmap scores a patch (models/patchwise.py)


@dataclass
class LocalisationConfig:
    """Heatmaps evaluated against ground-truth masks (docs/heatmaps.md); read by oc_main and
    bc_eval. The paper has no localisation: every value here is our choice."""

    # Spliced sets: <root>/images/<set>/{0_real,1_fake}/..., masks at <root>/masks/<set>/<same
    # relative path>.png (non-zero = generated); empty: no localisation evaluation.
    root: str = ""
    sets: list[str] = field(default_factory=list)  # empty = every set under <root>/images
    stride: int = 0  # patch lattice step in pixels; 0 = the patch size (the evaluation grid)
    contexts: list[str] = field(default_factory=list)  # alone|window|image; empty = all three
    window: int = 3  # side, in patches, of the "window" context
    min_cover: float = 0.5  # a patch counts as generated when this share of it is (by the mask)
    # One-class: real training images (spread over the GMM's training list) whose patch
    # log-likelihoods set the patch threshold at oneclass.quantile; 0 = the image threshold.
    calibration_images: int = 500


@dataclass
class RunConfig:
    out_dir: str = "runs/default"
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    strict: bool = False  # fail on the first unusable file instead of skipping it
    dist_timeout_s: int = 1800  # a stuck collective fails after this long instead of hanging
    # training stages: "" (fresh), "auto" (the checkpoint last.pt names, else the newest in
    # out_dir/checkpoints) or a checkpoint path
    resume: str = ""
    # training stages: run the model through torch.compile (its first steps compile for minutes;
    # `sdaie gpu-check` says whether it is correct and faster on your GPU). The spec is silent.
    compile: bool = False


@dataclass
class Config:
    run: RunConfig = field(default_factory=RunConfig)
    schema: SchemaConfig = field(default_factory=SchemaConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    pretext: PretextConfig = field(default_factory=PretextConfig)
    oneclass: OneClassConfig = field(default_factory=OneClassConfig)
    binary: BinaryConfig = field(default_factory=BinaryConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    localisation: LocalisationConfig = field(default_factory=LocalisationConfig)
