"""The installed distribution's version, in a module of its own.

It sits at the bottom of the import layers so that any stage can name the
version without importing the package's public facade (``neurocds/__init__``),
which re-exports the engine from the top.
"""

from __future__ import annotations

from neurocds.installed import version

# Read from the distribution's metadata folder (``importlib.metadata`` costs a fifth of a start).
__version__ = version("neurocds") or "0.0.0+unknown"  # unknown: running from a checkout without installing
