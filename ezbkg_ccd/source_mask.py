# Licensed under a 3-clause BSD style license - see LICENSE
"""
Deprecated alias of `ezbkg_ccd.masks`, removed in ezbkg-ccd 0.3.
"""

from ezbkg_ccd._moved import warn_moved
from ezbkg_ccd.masks import MAX_MASKED, make_source_mask

__all__ = ['make_source_mask', 'MAX_MASKED']

warn_moved('ezbkg_ccd.source_mask', 'import from ezbkg_ccd.masks (or ezbkg_ccd)')
