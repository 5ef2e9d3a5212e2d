"""What each stage needs before it starts, checked without torch: required keys, folders that
exist and hold images, index folders, checkpoints of the right kind.

Each check raises :class:`~sdaie.config.ConfigError` with one line naming the key, the value and
what to do; :func:`sdaie.stages.common.stage_main` prints it and exits with status 2 within a
second or two, before the stage imports torch. The stages call the same checks again at the top
of ``run``/``train``, so a caller of the Python functions gets the same messages.
"""

from __future__ import annotations

from pathlib import Path

from sdaie.checkpoint_kind import peek_kind
from sdaie.config import Config, ConfigError, LocalisationConfig, check_values
from sdaie.data import official
from sdaie.data.testsets import discover_sets, list_labelled
from sdaie.data.transforms import parse_perturbation
from sdaie.data.walk import scan_folder
from sdaie.exif.store import IndexFormatError, read_manifest


def required(key: str, value: object, what: str) -> None:
    if not value:
        raise ConfigError(f"{key} is not set: {what}")


def folder(key: str, value: str, what: str) -> Path:
    """``value`` as an existing folder (symbolic links followed)."""
    path = Path(value)
    if not path.exists():
        raise ConfigError(f"{key}={value}: no such folder; {what}")
    if not path.is_dir():
        raise ConfigError(f"{key}={value}: not a folder; {what}")
    return path


def image_folder(key: str, value: str, what: str) -> int:
    """An existing folder holding at least one image file; returns how many."""
    listing = scan_folder(folder(key, value, what))
    if not listing.images:
        extra = f" ({listing.ignored_text()})" if listing.ignored else ""
        raise ConfigError(f"{key}={value}: no image files in this folder{extra}; {what}")
    return len(listing.images)


def labelled_folder(key: str, value: str, split: str) -> None:
    """A folder with images under ``0_real``/``1_fake`` (or GenImage ``nature``/``ai``)."""
    folder(key, value, "give a folder with 0_real/ and 1_fake/ sub-folders")
    files = list_labelled(value, split)
    if not files.paths:
        found = len(files.unlabelled) + len(files.ambiguous)
        raise ConfigError(f"{key}={value}: no images under a 0_real/1_fake (or nature/ai) "
                          f"folder ({found} image files elsewhere); put real images in "
                          f"{value}/0_real and generated ones in {value}/1_fake")


def checkpoint(key: str, value: str, kind: str, what: str) -> None:
    """An existing checkpoint file of ``kind`` (when its kind can be read without torch)."""
    required(key, value, what)
    path = Path(value)
    if not path.is_file():
        raise ConfigError(f"{key}={value}: no such file; {what}")
    found = peek_kind(path)
    if found is not None and found != kind:
        raise ConfigError(f"{key}={value} is a {found} checkpoint, but this needs a {kind} one; "
                          f"{what}")


def testset_root(key: str, value: str, sets_key: str, names: list[str]) -> None:
    root = folder(key, value, "give the folder holding the test sets (<set>/0_real, <set>/1_fake)")
    try:
        found = discover_sets(root, names)
    except FileNotFoundError as exc:
        raise ConfigError(f"{sets_key}: {exc}") from None
    if not found:
        raise ConfigError(f"{key}={value}: no test set found (a set is a sub-folder with 0_real/ "
                          "and 1_fake/, or nature/ and ai/, somewhere below it)")


def protocol_cap(key: str, protocol: str, value: int, cap: int) -> None:
    """Under the official protocol the authors' patch cap, exactly."""
    problem = official.check_patch_cap(key, value, cap) if protocol == "official" else ""
    if problem:
        raise ConfigError(problem)


def test_sets_of(key: str, value: str, sets_key: str, names: list[str], protocol: str) -> None:
    """spec: sets with label folders; official: every sub-folder is a set (the authors' way)."""
    if protocol == "official":
        folder(key, value, "give the folder holding the test sets")
    else:
        testset_root(key, value, sets_key, names)


def perturbations(key: str, specs: list[str]) -> None:
    for spec in specs:
        try:
            parse_perturbation(spec)
        except ValueError as exc:
            raise ConfigError(f"{key}: {exc}") from None


def index_folder(key: str, value: str) -> None:
    """An index folder of the format this release reads (``docs/index-format.md``) with at least
    two usable photos (pairs need two)."""
    hint = f"build one with 'sdaie index PHOTOS --out IDX' and pass {key}=IDX"
    required(key, value, hint)
    directory = folder(key, value, hint)
    try:
        rows = int(read_manifest(directory)["rows"])
    except (IndexFormatError, KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"{key}: {exc}") from None
    if rows < 2:
        raise ConfigError(f"{key}={value} holds {rows} usable photo(s), and pairs need at "
                          f"least 2 (reasons in {directory / 'summary.json'}); index a folder "
                          "of camera photos")


def localisation(loc: LocalisationConfig) -> None:
    """The localisation folders (docs/heatmaps.md), when ``localisation.root`` is set (value
    ranges are :data:`sdaie.config.RULES`; whether the stride divides the patch size is known
    once the checkpoint is loaded)."""
    if not loc.root:
        return
    root = folder("localisation.root", loc.root, "give a folder with images/<set>/ and "
                  "masks/<set>/ (sdaie synth --spliced writes one)")
    testset_root("localisation.root", str(root / "images"), "localisation.sets", loc.sets)


def check_backbone_train(cfg: Config, resume: str | None = None) -> None:
    index_folder("data.index", cfg.data.index)
    path = resume or cfg.run.resume
    if path and path != "auto" and not Path(path).is_file():
        raise ConfigError(f"resume checkpoint {path}: no such file (use --resume to continue "
                          "from the newest checkpoint in run.out_dir)")


def check_oc_main(cfg: Config) -> None:
    check_values(cfg)  # a Config built in Python has not been through load_config
    oc = cfg.oneclass
    checkpoint("oneclass.checkpoint", oc.checkpoint, "pretext",
               "give the pretext backbone (backbone_train's checkpoints/last.pt or the official "
               "pretext file)")
    required("oneclass.train_dirs", oc.train_dirs,
             "give folders of real images to fit the GMM on, e.g. "
             "'oneclass.train_dirs=[data/imagenet_val]'")
    for i, d in enumerate(oc.train_dirs):
        image_folder(f"oneclass.train_dirs[{i}]", d, "give folders of real images")
    required("oneclass.test_root", oc.test_root,
             "give the folder holding the test sets, e.g. oneclass.test_root=data/test")
    test_sets_of("oneclass.test_root", oc.test_root, "oneclass.sets", oc.sets, oc.protocol)
    perturbations("oneclass.perturbations", oc.perturbations)
    protocol_cap("oneclass.max_patches", oc.protocol, oc.max_patches, official.ONE_CLASS_PATCH_CAP)
    localisation(cfg.localisation)


def check_bc_train(cfg: Config) -> None:
    bc = cfg.binary
    checkpoint("binary.pretext_checkpoint", bc.pretext_checkpoint, "pretext",
               "give the pretext backbone the binary detector is regularised towards")
    required("binary.train_root", bc.train_root,
             "give the training folder with 0_real/ and 1_fake/ (ProGAN in the paper)")
    labelled_folder("binary.train_root", bc.train_root, "train")
    if bc.val_root:
        labelled_folder("binary.val_root", bc.val_root, "val")


def check_bc_eval(cfg: Config) -> None:
    check_values(cfg)  # a Config built in Python has not been through load_config
    ev = cfg.eval
    checkpoint("eval.checkpoint", ev.checkpoint, "binary",
               "give a binary detector (bc_train's checkpoints/last.pt or the official file)")
    if not ev.test_root and not ev.wild_dirs:
        raise ConfigError("eval.test_root and eval.wild_dirs are both empty: give the folder of "
                          "test sets (eval.test_root=data/test) and/or eval.wild_dirs=[...]")
    if ev.test_root:
        test_sets_of("eval.test_root", ev.test_root, "eval.sets", ev.sets, ev.protocol)
    for i, d in enumerate(ev.wild_dirs):
        image_folder(f"eval.wild_dirs[{i}]", d, "give folders of images")
    perturbations("eval.perturbations", ev.perturbations)
    protocol_cap("eval.max_patches", ev.protocol, ev.max_patches, official.BINARY_PATCH_CAP)
    localisation(cfg.localisation)
