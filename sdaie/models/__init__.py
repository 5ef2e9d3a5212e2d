"""Networks of SDAIE: extractors (SDAIE CNN or ResNet), EXIF heads, binary detector, checkpoints."""

from sdaie.config import head_names
from sdaie.models.base import PatchExtractor, feature_dim
from sdaie.models.binary import BinaryDetector
from sdaie.models.checkpoint import (
    CheckpointError,
    binary_from_pretext,
    load_binary_detector,
    load_checkpoint,
    load_extractor,
    load_pretext_model,
    save_checkpoint,
)
from sdaie.models.heads import PretextModel
from sdaie.models.registry import BACKBONES, build_extractor

__all__ = [
    "BACKBONES", "BinaryDetector", "CheckpointError", "PatchExtractor", "PretextModel",
    "binary_from_pretext", "build_extractor", "feature_dim", "head_names", "load_binary_detector",
    "load_checkpoint", "load_extractor", "load_pretext_model", "save_checkpoint",
]
