# Licensed under a 3-clause BSD style license - see LICENSE
"""
Deprecated alias of `ezbkg_ccd.workflow`, removed in ezbkg-ccd 0.3.
"""

from ezbkg_ccd._moved import warn_moved
from ezbkg_ccd.workflow import BackgroundGenerator

__all__ = ['BackgroundGenerator']

warn_moved('ezbkg_ccd.generator', 'import from ezbkg_ccd.workflow (or ezbkg_ccd)')
