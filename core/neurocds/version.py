"""The installed distribution's version, in a module of its own.

It sits at the bottom of the import layers so that any stage can name the
version without importing the package's public facade (``neurocds/__init__``),
which re-exports the engine from the top.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("neurocds")
except PackageNotFoundError:  # running from a checkout without installing
    __version__ = "0.0.0+unknown"
