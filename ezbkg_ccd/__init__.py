# Licensed under a 3-clause BSD style license - see LICENSE
"""
ezbkg-ccd: SExtractor-quality sky background estimation and subtraction
for astropy `~astropy.nddata.CCDData` and ccdproc reductions.

The modules form layers, each importing only from its own layer or lower
ones, with no import circle: see "Package layout" in the API reference
(``tests/test_layers.py`` keeps them so).
"""

import importlib
from importlib import metadata as _metadata

from ezbkg_ccd import (
    background,
    background_file,
    batch,
    estimators,  # noqa: F401  (registers the built-ins)
    masks,
    persistence,
    registry,
    steps,
    subtracted,
    workflow,
)
from ezbkg_ccd.background import *  # noqa: F403
from ezbkg_ccd.background_file import *  # noqa: F403
from ezbkg_ccd.batch import *  # noqa: F403
from ezbkg_ccd.masks import *  # noqa: F403
from ezbkg_ccd.persistence import *  # noqa: F403
from ezbkg_ccd.registry import *  # noqa: F403
from ezbkg_ccd.steps import *  # noqa: F403
from ezbkg_ccd.subtracted import *  # noqa: F403
from ezbkg_ccd.workflow import *  # noqa: F403

__all__ = [name for module in (steps, subtracted, background, persistence,
                               registry, workflow, background_file, masks,
                               batch)
           for name in module.__all__]

#: Module paths of earlier releases, kept for one release as aliases that
#: warn (`~astropy.utils.exceptions.AstropyDeprecationWarning`) on import.
_MOVED = ('generator', 'science_image', 'source_mask', 'edges', 'strips')


def __getattr__(name):
    if name in _MOVED:  # ezbkg_ccd.generator without importing it first
        return importlib.import_module(f'{__name__}.{name}')
    msg = f'module {__name__!r} has no attribute {name!r}'
    raise AttributeError(msg)


try:
    __version__ = _metadata.version('ezbkg-ccd')
except _metadata.PackageNotFoundError:  # pragma: no cover - source tree
    __version__ = 'unknown'
