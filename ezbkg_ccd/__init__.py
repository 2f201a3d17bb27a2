# Licensed under a 3-clause BSD style license - see LICENSE
"""
ezbkg-ccd: SExtractor-quality sky background estimation and subtraction
for astropy `~astropy.nddata.CCDData` and ccdproc reductions.
"""

from importlib.metadata import PackageNotFoundError, version

from ezbkg_ccd import estimators  # noqa: F401  (registers the built-ins)
from ezbkg_ccd.background import *  # noqa: F403
from ezbkg_ccd.batch import *  # noqa: F403
from ezbkg_ccd.generator import *  # noqa: F403
from ezbkg_ccd.masks import *  # noqa: F403
from ezbkg_ccd.persistence import *  # noqa: F403
from ezbkg_ccd.registry import *  # noqa: F403
from ezbkg_ccd.science_image import *  # noqa: F403
from ezbkg_ccd.source_mask import *  # noqa: F403
from ezbkg_ccd.steps import *  # noqa: F403

try:
    __version__ = version('ezbkg-ccd')
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = 'unknown'
