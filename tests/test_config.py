import ast
import dataclasses
import functools
import re
import textwrap
import typing
from pathlib import Path

import pytest

from sdaie.config import BinaryConfig, Config, ConfigError, HeadConfig, load_config, read_yaml


def test_defaults_are_the_paper_values():
    cfg = load_config()
    assert [h.tag for h in cfg.schema.heads][:2] == ["FocalLength", "Make"]
    assert [h.classes for h in cfg.schema.heads] == [1, 7, 1, 1, 1, 6, 4, 1, 1, 6, 4, 2, 1, 5]
    assert cfg.pretext.lr == 1e-4 and cfg.binary.alpha == 0.05 and cfg.oneclass.components == 5


def test_yaml_base_chain_and_overrides(tmp_path: Path):
    (tmp_path / "base.yaml").write_text("pretext:\n  lr: 0.5\n  steps: 7\n")
    (tmp_path / "child.yaml").write_text("_base_: base.yaml\npretext:\n  steps: 9\n")
    cfg = load_config(tmp_path / "child.yaml", ["model.width=8", "oneclass.perturbations=[jpeg=95]"])
    assert cfg.pretext.lr == 0.5 and cfg.pretext.steps == 9
    assert cfg.model.width == 8
    assert cfg.oneclass.perturbations == ["jpeg=95"]


@pytest.mark.parametrize("override, message", [
    ("model.widht=8", "widht"),
    ("model.width=eight", "expected int"),
    ("nosection", "key.sub=value"),
])
def test_bad_overrides_name_the_problem(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


# --------------------------------------------------------------------------------------------
# Every config key takes effect: some code reads it
# --------------------------------------------------------------------------------------------

REPO = Path(__file__).resolve().parents[1]
SECTIONS = typing.get_type_hints(Config)  # section name -> its dataclass
CLASSES = {cls.__name__: cls for cls in [Config, HeadConfig, *SECTIONS.values()]}
ITERATORS = {"enumerate", "zip", "sorted", "reversed", "list", "tuple", "iter"}


def _annotated(node: ast.expr | None) -> set[type]:
    """Config dataclasses named anywhere in an annotation (``Sequence[HeadConfig]`` too)."""
    if node is None:
        return set()
    names = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
    names |= {n.attr for n in ast.walk(node) if isinstance(n, ast.Attribute)}
    names |= {n.value for n in ast.walk(node) if isinstance(n, ast.Constant)
              and isinstance(n.value, str)}  # "HeadConfig" as a string annotation
    return {CLASSES[n] for n in names if n in CLASSES}


class ConfigReads:
    """Which config dataclass fields the package reads, by attribute access.

    A read counts for a dataclass when the object it is read from can hold one: an expression
    ``...cfg.<section>``, a name or attribute bound from such an expression (``bc = cfg.binary``,
    ``self.bc = ...``, a loop over ``cfg.schema.heads``), or a parameter or variable annotated
    with the dataclass. Names are matched across the whole package, which errs towards finding a
    read; a field read under no such name is certainly never read.
    """

    def __init__(self, trees: list[ast.AST]) -> None:
        self.aliases: dict[str, set[type]] = {name: {cls} for name, cls in SECTIONS.items()}
        for _ in range(4):  # bindings through bindings
            for tree in trees:
                self._bind(tree)
        self.read: set[tuple[type, str]] = set()
        for tree in trees:
            for node in ast.walk(tree):
                if isinstance(node, ast.Attribute):
                    for cls in self.classes_of(node.value):
                        if node.attr in {f.name for f in dataclasses.fields(cls)}:
                            self.read.add((cls, node.attr))

    def classes_of(self, expr: ast.expr) -> set[type]:
        if isinstance(expr, ast.Name):
            return self.aliases.get(expr.id, set())
        if isinstance(expr, ast.Attribute):
            return self.aliases.get(expr.attr, set())
        if isinstance(expr, ast.Subscript):
            return self.classes_of(expr.value)
        if (isinstance(expr, ast.Call) and isinstance(expr.func, ast.Name)
                and expr.func.id in ITERATORS):
            return set().union(*(self.classes_of(a) for a in expr.args))
        return set()

    def _name(self, target: ast.expr, classes: set[type]) -> None:
        if isinstance(target, (ast.Tuple, ast.List)):
            for elt in target.elts:
                self._name(elt, classes)
        elif isinstance(target, (ast.Name, ast.Attribute)) and classes:
            key = target.id if isinstance(target, ast.Name) else target.attr
            self.aliases.setdefault(key, set()).update(classes)

    def _bind(self, tree: ast.AST) -> None:
        for node in ast.walk(tree):
            if isinstance(node, ast.arg):
                self._name(ast.Name(node.arg), _annotated(node.annotation))
            elif isinstance(node, ast.AnnAssign):
                self._name(node.target, _annotated(node.annotation))
            elif isinstance(node, ast.Assign):
                if isinstance(node.value, ast.Tuple) and all(
                        isinstance(t, ast.Tuple) and len(t.elts) == len(node.value.elts)
                        for t in node.targets):
                    for t in node.targets:
                        for elt, value in zip(t.elts, node.value.elts):
                            self._name(elt, self.classes_of(value))
                else:
                    for t in node.targets:
                        self._name(t, self.classes_of(node.value))
            elif isinstance(node, (ast.For, ast.comprehension)):
                self._name(node.target, self.classes_of(node.iter))


@functools.cache
def package_reads() -> ConfigReads:
    trees = [ast.parse(p.read_text(encoding="utf-8")) for p in (REPO / "sdaie").rglob("*.py")]
    return ConfigReads(trees)


def _all_fields() -> list[tuple[type, str]]:
    return [(cls, f.name) for cls in CLASSES.values() for f in dataclasses.fields(cls)]


def test_every_config_field_is_read_by_some_code():
    unread = [f"{cls.__name__}.{name}" for cls, name in _all_fields()
              if (cls, name) not in package_reads().read]
    assert unread == []


def _yaml_keys(data: dict, cls: type, where: str = "") -> list[tuple[type, str, str]]:
    """(dataclass, field, dotted key) of every key set in a YAML mapping for ``cls``."""
    out = []
    hints = typing.get_type_hints(cls)
    for key, value in data.items():
        out.append((cls, key, f"{where}{key}"))
        sub = hints.get(key)
        if dataclasses.is_dataclass(sub) and isinstance(value, dict):
            out += _yaml_keys(value, sub, f"{where}{key}.")
        elif typing.get_origin(sub) is list and typing.get_args(sub) == (HeadConfig,):
            for i, head in enumerate(value or []):
                out += _yaml_keys(head, HeadConfig, f"{where}{key}[{i}].")
    return out


@pytest.mark.parametrize("path", sorted((REPO / "configs").rglob("*.yaml")),
                         ids=lambda p: str(p.relative_to(REPO / "configs")))
def test_every_yaml_key_is_one_that_code_reads(path):
    load_config(path)  # unknown keys are refused by name
    keys = _yaml_keys(read_yaml(path), Config)
    assert keys, path
    assert [key for cls, name, key in keys if (cls, name) not in package_reads().read] == []


def test_the_scan_sees_reads_and_misses_what_is_not_read():
    """The reader of reads, on code written for it: it must find bound and annotated reads and
    must not credit a field that only shares a name with something else."""
    code = textwrap.dedent("""
        def stage(cfg: Config):
            bc = cfg.binary
            x = other.epochs            # not a config object
            for head in cfg.schema.heads:
                use(head.kind)
            return bc.lr, cfg.run.seed

        def model(m: ModelConfig, heads: list[HeadConfig]):
            return m.width, [h.codes for h in heads]
    """)
    reads = ConfigReads([ast.parse(code)])
    assert {(c.__name__, f) for c, f in reads.read} >= {
        ("BinaryConfig", "lr"), ("RunConfig", "seed"), ("HeadConfig", "kind"),
        ("ModelConfig", "width"), ("HeadConfig", "codes"), ("Config", "binary")}
    assert (BinaryConfig, "epochs") not in reads.read


# --------------------------------------------------------------------------------------------
# Mistakes in keys and values: the nearest key, the allowed range
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("override, message", [
    ("oneclass.train_dir=[x]", "unknown config key 'oneclass.train_dir': did you mean "
                               "'oneclass.train_dirs'?"),
    ("onclass.components=3", "unknown config key 'onclass': did you mean 'oneclass'?"),
    ("oneclass.steps=3", "did you mean 'pretext.steps'?"),  # a key of another section
    ("eval.zzzz=1", "valid keys in 'eval': batch_patches, checkpoint,"),
])
def test_unknown_keys_name_the_nearest_valid_one(override, message):
    with pytest.raises(ConfigError) as info:
        load_config(None, [override])
    assert message in str(info.value)


@pytest.mark.parametrize("override", [
    "eval.threshold=2", "eval.threshold=-0.1", "oneclass.quantile=1", "oneclass.components=0",
    "data.val_fraction=1.0", "binary.p_jpeg=1.5", "binary.jpeg_quality=[90, 101]",
    "binary.resize_range=[128, 64]", "pretext.lr=0", "run.device=gpu", "data.workers=-1",
    "oneclass.covariance_type=ful", "pretext.rank_loss=mse", "oneclass.reg_covar=0",
])
def test_values_out_of_range_are_refused_by_key(override):
    key, value = override.split("=", 1)
    with pytest.raises(ConfigError, match=rf"^{re.escape(key)}=.* is out of range: use "):
        load_config(None, [override])


@pytest.mark.parametrize("override", [
    "eval.threshold=0", "eval.threshold=1", "oneclass.quantile=0", "data.workers=0",
    "run.device=cuda:3", "binary.jpeg_quality=[100, 100]", "oneclass.covariance_type=diag",
])
def test_values_at_the_edges_are_accepted(override):
    load_config(None, [override])


def test_every_range_rule_names_a_config_key():
    from sdaie.config import RULES

    cfg = Config()
    for key in RULES:
        section, name = key.split(".")
        assert hasattr(getattr(cfg, section), name), key
    load_config()  # the defaults pass every rule
    for path in sorted((REPO / "configs").rglob("*.yaml")):
        load_config(path)  # and so does every shipped config


def test_floats_written_without_a_dot_are_numbers():
    """YAML 1.1 reads ``1e-6`` as a string; a float key takes it as the number it means."""
    assert load_config(None, ["oneclass.reg_covar=1e-6"]).oneclass.reg_covar == 1e-6
    with pytest.raises(ConfigError, match="expected float"):
        load_config(None, ["oneclass.reg_covar=small"])


def test_rank_loss_choices_are_the_losses_module_s():
    from sdaie.config import RULES
    from sdaie.models.losses import RANK_LOSS_ALIASES, RANK_LOSSES

    ok, _ = RULES["pretext.rank_loss"]
    for name in (*RANK_LOSSES, *RANK_LOSS_ALIASES):
        assert ok(name), name
    assert not ok("mse")
