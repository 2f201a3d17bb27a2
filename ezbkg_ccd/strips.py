# Licensed under a 3-clause BSD style license - see LICENSE
"""
Deprecated alias of the threaded strips, now private
(``ezbkg_ccd._sep.strips``): pass ``n_threads`` to
`~ezbkg_ccd.estimate_background` instead. Removed in ezbkg-ccd 0.3.
"""

from ezbkg_ccd._moved import warn_moved
from ezbkg_ccd._sep.strips import (
    AVAILABLE,
    mesh_bands,
    rows_read,
    sep_strips,
    usable,
)

__all__ = ['AVAILABLE', 'sep_strips', 'mesh_bands', 'rows_read', 'usable']

warn_moved('ezbkg_ccd.strips', 'use estimate_background(..., n_threads=N)')
