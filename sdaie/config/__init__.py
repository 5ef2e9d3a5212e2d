"""Typed run configuration: YAML files under ``configs/`` plus ``key.sub=value`` overrides.

Every stage reads one :class:`Config`. Defaults are the paper's values (spec references in the
comments of :mod:`.sections`); a YAML file only lists what differs. A YAML file may start with
``_base_: other.yaml`` (relative to itself) to inherit another file, which is how
``configs/tiny/`` stays short. Values are checked against :data:`RULES` when loaded.
"""

from .loading import apply_override, from_dict, load_config, read_yaml, to_dict, unknown_key_message
from .rules import RULES, check_values
from .sections import (
    PATCH_CONTEXTS,
    PROTOCOLS,
    BinaryConfig,
    Config,
    ConfigError,
    DataConfig,
    EvalConfig,
    HeadConfig,
    LocalisationConfig,
    ModelConfig,
    OneClassConfig,
    PretextConfig,
    RunConfig,
    SchemaConfig,
    head_names,
)

__all__ = [
    "PATCH_CONTEXTS", "PROTOCOLS", "RULES", "BinaryConfig", "Config", "ConfigError", "DataConfig",
    "EvalConfig", "HeadConfig", "LocalisationConfig", "ModelConfig", "OneClassConfig",
    "PretextConfig", "RunConfig", "SchemaConfig", "apply_override", "check_values", "from_dict",
    "head_names", "load_config", "read_yaml", "to_dict", "unknown_key_message",
]
