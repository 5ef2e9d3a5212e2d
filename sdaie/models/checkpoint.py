"""Checkpoints: the authors' two formats and this project's versioned one; the one place that
knows the official key names.

Official (written by ``torch.save`` from DDP-wrapped modules; the ``module.`` prefix may be absent):
- pretext: ``{'state_net': {'module.backbone.<key>', 'module.fc1.weight', ...}}``
- binary:  ``{'state_net': {'module.diffusionextractor_random.<key>',
  'module.diffusionextractor_pretrained.<key>', 'module.fc.weight', 'module.fc.bias'},
  'state_optimizer', 'epoch'}``
Official weights are the paper configuration (``ModelConfig()`` architecture, the paper schema).
Extractor keys (``group1.hpf.weight``, ...) and the pretext model's (``backbone.``, ``fcN.``) are
ours as they are; the binary detector's two copies are ``trainable.`` (official
``diffusionextractor_random.``) and ``frozen.`` (official ``diffusionextractor_pretrained.``),
renamed on reading by :func:`official_to_ours`.

Ours: ``{'format': 'sdaie', 'version': 2, 'kind': 'pretext'|'binary', 'state_dict', 'config'
(the full run config as a plain dict), 'schema' (pretext heads as dicts, else None), ...extras}``.
Version 1 stored binary detectors under the official key names; it is read and renamed the same
way, so older checkpoints of ours still load.

Everything is read with ``weights_only=True`` and loaded strictly: a key or shape that does not fit
raises :class:`CheckpointError` listing every missing, unexpected and wrong-shape key. A checkpoint
whose architecture or schema differs from the one a caller asks for is refused by name.
"""

from __future__ import annotations

import copy
import dataclasses
import pickle
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

import sdaie
from sdaie.atomic import atomic_torch_save
from sdaie.config import Config, ConfigError, HeadConfig, ModelConfig, from_dict, to_dict
from sdaie.models.base import PatchExtractor
from sdaie.models.binary import BinaryDetector
from sdaie.models.heads import PretextModel
from sdaie.models.registry import build_extractor

FORMAT = "sdaie"
VERSION = 2  # 2: binary detector keys trainable./frozen. (1: the official names)
KINDS = ("pretext", "binary")
RESERVED = ("format", "version", "kind", "state_dict", "config", "schema", "source", "sdaie_version")
# ModelConfig fields that do not change the weights or the function they compute (how it is
# computed, a degenerate-input guard, an init-time file); every other field is architecture.
RUNTIME_FIELDS = ("implementation", "trace_eps", "resnet_weights")
EXTRACTOR_PREFIX = {"pretext": "backbone.", "binary": "trainable."}
# Official binary-detector prefix -> ours (pretext keys are the same in both).
OFFICIAL_BINARY_PREFIXES = {"diffusionextractor_random.": "trainable.",
                            "diffusionextractor_pretrained.": "frozen."}
MAX_LISTED = 25


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used as asked; the message says exactly why."""


# ---------------------------------------------------------------------------------------------
# Strict state-dict checks
# ---------------------------------------------------------------------------------------------


def _listing(title: str, items: Sequence[str]) -> str:
    shown = ", ".join(items[:MAX_LISTED])
    more = f" ... and {len(items) - MAX_LISTED} more" if len(items) > MAX_LISTED else ""
    return f"\n  {title} ({len(items)}): {shown}{more}"


def state_dict_mismatch(model: nn.Module, state: Mapping[str, torch.Tensor]) -> str:
    """Empty string if ``state`` fits ``model`` exactly, else a listing of what does not."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [f"{k} (checkpoint {list(state[k].shape)}, model {list(v.shape)})"
             for k, v in expected.items() if k in state and tuple(state[k].shape) != tuple(v.shape)]
    out = ""
    if missing:
        out += _listing("missing", missing)
    if unexpected:
        out += _listing("unexpected", unexpected)
    if wrong:
        out += _listing("wrong shape", wrong)
    return out


def load_state_strict(model: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    """``model.load_state_dict(state, strict=True)`` after a check whose error lists every misfit."""
    problems = state_dict_mismatch(model, state)
    if problems:
        raise CheckpointError(f"{source} does not fit the {type(model).__name__}:{problems}")
    model.load_state_dict(dict(state), strict=True)


def strip_module_prefix(state: Mapping[str, Any]) -> dict[str, Any]:
    """Drop the ``module.`` that DistributedDataParallel puts in front of every key."""
    return {k.removeprefix("module."): v for k, v in state.items()}


def sub_state(state: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The entries under ``prefix`` with the prefix removed."""
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


# ---------------------------------------------------------------------------------------------
# Config and schema bookkeeping
# ---------------------------------------------------------------------------------------------


def architecture(cfg: ModelConfig) -> dict[str, Any]:
    """The fields of ``cfg`` that define the network (everything but :data:`RUNTIME_FIELDS`)."""
    return {k: v for k, v in to_dict(cfg).items() if k not in RUNTIME_FIELDS}


def check_architecture(stored: ModelConfig, requested: ModelConfig, source: str) -> None:
    a, b = architecture(stored), architecture(requested)
    diff = [f"model.{k}: checkpoint {a[k]!r}, requested {b[k]!r}" for k in a if a[k] != b.get(k)]
    if diff:
        raise CheckpointError(f"{source} was built with a different model architecture:\n  "
                              + "\n  ".join(diff))


def check_schema(stored: Sequence[HeadConfig], requested: Sequence[HeadConfig], source: str) -> None:
    a = [to_dict(h) for h in stored]
    b = [to_dict(h) for h in requested]
    if a == b:
        return
    lines = [f"{len(a)} heads in the checkpoint, {len(b)} requested"] if len(a) != len(b) else []
    lines += [f"head {i}: checkpoint {x}, requested {y}" for i, (x, y) in enumerate(zip(a, b)) if x != y]
    raise CheckpointError(f"{source} was trained with a different EXIF schema:\n  " + "\n  ".join(lines))


def _merge_runtime(stored: ModelConfig, requested: ModelConfig | None) -> ModelConfig:
    """Stored architecture with the caller's runtime choices (and never an init-time weights file)."""
    out = copy.deepcopy(stored)
    if requested is not None:
        for name in RUNTIME_FIELDS:
            setattr(out, name, copy.deepcopy(getattr(requested, name)))
    return dataclasses.replace(out, resnet_weights=None)


def _model_cfg_of(module: nn.Module) -> ModelConfig:
    if isinstance(module, PretextModel):
        return module.backbone.cfg
    if isinstance(module, BinaryDetector):
        return module.trainable_extractor.cfg
    if isinstance(module, PatchExtractor):
        return module.cfg
    raise TypeError(f"cannot checkpoint a {type(module).__name__}")


# ---------------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------------


def detect_official_kind(state: Mapping[str, Any]) -> str:
    """``'binary'`` or ``'pretext'`` from the (prefix-free) key names of an official state_net."""
    if any(k.startswith(tuple(OFFICIAL_BINARY_PREFIXES)) for k in state):
        return "binary"
    if any(k.startswith("backbone.") for k in state):
        return "pretext"
    raise CheckpointError("not an SDAIE checkpoint: no 'backbone.*' or 'diffusionextractor_*' keys "
                          f"(first keys: {list(state)[:5]})")


def official_to_ours(state: Mapping[str, Any], kind: str) -> dict[str, Any]:
    """A (prefix-free) state dict under the official key names, under ours (same order)."""
    if kind != "binary":
        return dict(state)

    def rename(key: str) -> str:
        for official, ours in OFFICIAL_BINARY_PREFIXES.items():
            if key.startswith(official):
                return ours + key[len(official):]
        return key

    return {rename(k): v for k, v in state.items()}


def from_official(raw: Mapping[str, Any], kind: str = "auto", source: str = "checkpoint") -> dict:
    """An official checkpoint (or a bare state dict of that layout) as an in-memory dict of ours."""
    if "state_net" in raw:
        state = raw["state_net"]
    elif raw and all(isinstance(v, torch.Tensor) for v in raw.values()):
        state = raw
    else:
        raise CheckpointError(f"{source}: neither this project's format nor an official one "
                              f"(top-level keys: {sorted(raw)[:10]})")
    state = strip_module_prefix(state)
    found = detect_official_kind(state)
    if kind not in ("auto", found):
        raise CheckpointError(f"{source} is an official {found} checkpoint, not {kind}")
    out = {"format": FORMAT, "version": VERSION, "kind": found,
           "state_dict": official_to_ours(state, found),
           "config": to_dict(Config()), "schema": None, "source": "official"}
    if "epoch" in raw:
        out["epoch"] = raw["epoch"]
    return out


def _validate_ours(ckpt: Mapping[str, Any], source: str) -> None:
    version = ckpt.get("version")
    if not isinstance(version, int) or version > VERSION:
        raise CheckpointError(f"{source}: format version {version!r}; this sdaie reads up to {VERSION}")
    if ckpt.get("kind") not in KINDS:
        raise CheckpointError(f"{source}: kind {ckpt.get('kind')!r}; valid: {list(KINDS)}")
    for key in ("state_dict", "config"):
        if not isinstance(ckpt.get(key), dict):
            raise CheckpointError(f"{source}: '{key}' is missing or not a dict")


def load_checkpoint(path: str | Path, map_location: Any = "cpu") -> dict:
    """Read any supported checkpoint as a dict in this project's format (``source`` says which)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        raw = torch.load(path, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, OSError, EOFError, ValueError) as exc:
        # unpickling refused (not weights-only) or a corrupt file: say which file and why
        raise CheckpointError(f"{path}: cannot be read with torch.load(weights_only=True): {exc}") from exc
    if not isinstance(raw, dict):
        raise CheckpointError(f"{path}: expected a dict, found {type(raw).__name__}")
    if raw.get("format") == FORMAT:
        _validate_ours(raw, str(path))
        raw.setdefault("source", FORMAT)
        if raw["version"] < 2:  # version 1: official key names
            raw["state_dict"] = official_to_ours(raw["state_dict"], raw["kind"])
            raw["version"] = VERSION
        return raw
    return from_official(raw, source=str(path))


def checkpoint_model_cfg(ckpt: Mapping[str, Any]) -> ModelConfig:
    return from_dict(ModelConfig, ckpt["config"].get("model", {}), "model")


def checkpoint_heads(ckpt: Mapping[str, Any]) -> list[HeadConfig] | None:
    """The schema stored with the checkpoint (None for official ones: their tags are unnamed)."""
    if ckpt.get("schema") is None:
        return None
    return [from_dict(HeadConfig, h, f"schema[{i}]") for i, h in enumerate(ckpt["schema"])]


def _prepare(module: nn.Module, map_location: Any, train: bool = False) -> nn.Module:
    if isinstance(map_location, (str, torch.device)):
        module = module.to(map_location)
    return module.train(train)


def _resolved_cfg(ckpt: Mapping[str, Any], model_cfg: ModelConfig | None, source: str) -> ModelConfig:
    try:
        stored = checkpoint_model_cfg(ckpt)
    except ConfigError as exc:
        raise CheckpointError(f"{source}: stored model config is not readable: {exc}") from exc
    if model_cfg is not None:
        check_architecture(stored, model_cfg, source)
    return _merge_runtime(stored, model_cfg)


def extractor_from_checkpoint(ckpt: Mapping[str, Any], model_cfg: ModelConfig | None = None,
                              source: str = "checkpoint") -> PatchExtractor:
    """The extractor of a loaded checkpoint: the backbone (pretext) or trainable copy (binary)."""
    cfg = _resolved_cfg(ckpt, model_cfg, source)
    extractor = build_extractor(cfg)
    state = sub_state(ckpt["state_dict"], EXTRACTOR_PREFIX[ckpt["kind"]])
    load_state_strict(extractor, state, f"{source} ({ckpt['kind']} extractor)")
    return extractor


def load_extractor(path: str | Path, map_location: Any = "cpu",
                   model_cfg: ModelConfig | None = None) -> PatchExtractor:
    """Extractor in eval mode from an official pretext / binary checkpoint or ours.

    ``module(x)`` with ``x: [B, N, 3, 64, 64]`` returns the feature ``[B, 528]``. From a binary
    checkpoint this is the trainable copy (the one the classifier reads). ``model_cfg``, if given,
    must have the checkpoint's architecture; its runtime fields (``implementation``...) are used.
    """
    ckpt = load_checkpoint(path, map_location)
    return _prepare(extractor_from_checkpoint(ckpt, model_cfg, str(path)), map_location)


def load_binary_detector(path: str | Path, map_location: Any = "cpu",
                         model_cfg: ModelConfig | None = None) -> BinaryDetector:
    """Binary detector in eval mode; ``module(x)`` gives logits ``[B, 2]``, index 1 = AI-generated."""
    ckpt = load_checkpoint(path, map_location)
    if ckpt["kind"] != "binary":
        raise CheckpointError(f"{path} is a {ckpt['kind']} checkpoint, not a binary detector")
    detector = BinaryDetector(_resolved_cfg(ckpt, model_cfg, str(path)))
    load_state_strict(detector, ckpt["state_dict"], str(path))
    return _prepare(detector, map_location)


def load_pretext_model(path: str | Path, map_location: Any = "cpu",
                       model_cfg: ModelConfig | None = None,
                       heads: Sequence[HeadConfig] | None = None) -> PretextModel:
    """Pretext model (extractor + EXIF heads) in eval mode.

    The schema is the checkpoint's (ours) or the paper's (official); ``heads``, if given, must
    equal the stored schema (for official checkpoints only the head sizes can be checked).
    """
    ckpt = load_checkpoint(path, map_location)
    if ckpt["kind"] != "pretext":
        raise CheckpointError(f"{path} is a {ckpt['kind']} checkpoint, not a pretext model")
    stored = checkpoint_heads(ckpt)
    if stored is not None and heads is not None:
        check_schema(stored, heads, str(path))
    use = list(heads) if heads is not None else (stored or Config().schema.heads)
    model = PretextModel(_resolved_cfg(ckpt, model_cfg, str(path)), use)
    load_state_strict(model, ckpt["state_dict"], str(path))
    return _prepare(model, map_location)


def binary_from_pretext(path: str | Path, model_cfg: ModelConfig | None = None,
                        map_location: Any = "cpu") -> BinaryDetector:
    """A new binary detector (train mode) whose frozen copy holds the pretext checkpoint's extractor."""
    ckpt = load_checkpoint(path, map_location)
    extractor = extractor_from_checkpoint(ckpt, model_cfg, str(path))
    detector = BinaryDetector(extractor.cfg)
    detector.load_pretrained(extractor.state_dict())
    return _prepare(detector, map_location, train=True)


# ---------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------


def save_checkpoint(path: str | Path, kind: str, model: nn.Module, cfg: Config | ModelConfig,
                    **extra: Any) -> Path:
    """Write ``model`` (DDP wrapper unwrapped) in this project's format, atomically.

    ``cfg`` is the run config (its ``model`` section is replaced by the model's own); ``extra``
    (optimizer state, step, RNG states, ...) must be loadable with ``weights_only=True``.
    """
    if kind not in KINDS:
        raise ValueError(f"kind={kind!r}; valid: {list(KINDS)}")
    clash = sorted(set(extra) & set(RESERVED))
    if clash:
        raise ValueError(f"extra keys {clash} are reserved by the checkpoint format")
    model = getattr(model, "module", model)
    expected = PretextModel if kind == "pretext" else BinaryDetector
    if not isinstance(model, expected):
        raise TypeError(f"a {kind} checkpoint holds a {expected.__name__}, got {type(model).__name__}")
    run_cfg = copy.deepcopy(cfg) if isinstance(cfg, Config) else Config(model=copy.deepcopy(cfg))
    run_cfg.model = copy.deepcopy(_model_cfg_of(model))
    schema = [to_dict(h) for h in model.heads] if isinstance(model, PretextModel) else None
    payload = {
        "format": FORMAT, "version": VERSION, "kind": kind,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "config": to_dict(run_cfg), "schema": schema, "source": FORMAT,
        "sdaie_version": sdaie.__version__, **extra,
    }
    return atomic_torch_save(payload, path)
