"""Public training configuration API: :class:`Config` and the named presets.

>>> from codesign.config import get_preset
>>> cfg = get_preset("quickstart").replace(epochs=2)
"""

from codesign._config import (
    OPTIMIZERS,
    PRESETS,
    RUNTIME_FIELDS,
    SCHEDULES,
    Config,
    ConfigError,
    config_diff,
    get_preset,
    list_presets,
    validate_names,
)

__all__ = [
    "OPTIMIZERS",
    "PRESETS",
    "RUNTIME_FIELDS",
    "SCHEDULES",
    "Config",
    "ConfigError",
    "config_diff",
    "get_preset",
    "list_presets",
    "validate_names",
]
