# Licensed under a 3-clause BSD style license - see LICENSE
"""
ezbkg-ccd: SExtractor-quality sky background estimation and subtraction
for astropy `~astropy.nddata.CCDData` and ccdproc reductions.
"""

from importlib import metadata as _metadata

from ezbkg_ccd import (
    background,
    batch,
    estimators,  # noqa: F401  (registers the built-ins)
    generator,
    masks,
    persistence,
    registry,
    science_image,
    source_mask,
    steps,
)
from ezbkg_ccd.background import *  # noqa: F403
from ezbkg_ccd.batch import *  # noqa: F403
from ezbkg_ccd.generator import *  # noqa: F403
from ezbkg_ccd.masks import *  # noqa: F403
from ezbkg_ccd.persistence import *  # noqa: F403
from ezbkg_ccd.registry import *  # noqa: F403
from ezbkg_ccd.science_image import *  # noqa: F403
from ezbkg_ccd.source_mask import *  # noqa: F403
from ezbkg_ccd.steps import *  # noqa: F403

__all__ = [name for module in (steps, background, persistence, registry,
                               generator, science_image, masks, source_mask,
                               batch)
           for name in module.__all__]

try:
    __version__ = _metadata.version('ezbkg-ccd')
except _metadata.PackageNotFoundError:  # pragma: no cover - source tree
    __version__ = 'unknown'
