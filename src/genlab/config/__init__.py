"""The run config: its typed schema, how it is composed from YAML and overrides, and its range checks."""

from genlab.config.load import (
    available,
    from_container,
    load_config,
    migrate,
    parse_overrides,
    project_root,
    save_config,
    to_container,
)
from genlab.config.kinds import KINDS, KindFacts, kind_facts, kinds_where
from genlab.config.schema import CONFIG_GROUPS, Config
from genlab.config.validate import validate

__all__ = [
    "CONFIG_GROUPS",
    "Config",
    "KINDS",
    "KindFacts",
    "kind_facts",
    "kinds_where",
    "available",
    "from_container",
    "load_config",
    "migrate",
    "parse_overrides",
    "project_root",
    "save_config",
    "to_container",
    "validate",
]
