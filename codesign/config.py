"""Public training configuration API: :class:`Config` and the named presets.

>>> from codesign.config import get_preset
>>> cfg = get_preset("quickstart").replace(epochs=2)

The names are exactly ``codesign._config.__all__`` (one list, kept there).
"""

from codesign import _config
from codesign._config import *  # noqa: F401,F403 - exactly _config.__all__

__all__ = list(_config.__all__)
