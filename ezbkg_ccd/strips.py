# Licensed under a 3-clause BSD style license - see LICENSE
"""
Deprecated alias of the threaded strips, now private
(``ezbkg_ccd._sep.strips``): pass ``n_threads`` to
`~ezbkg_ccd.estimate_background` instead. Removed in ezbkg-ccd 0.3.
"""

from ezbkg_ccd._moved import warn_moved
from ezbkg_ccd._sep import strips as _strips
from ezbkg_ccd._sep.strips import AVAILABLE, rows_read, usable

__all__ = ['AVAILABLE', 'sep_strips', 'mesh_bands', 'rows_read', 'usable']


def sep_strips(data, mask, *, n_jobs, **options):
    """`ezbkg_ccd._sep.strips.sep_strips` as 0.1 called it (``n_jobs``)."""
    return _strips.sep_strips(data, mask, n_threads=n_jobs, **options)


def mesh_bands(mesh_rows, n_jobs):
    """`ezbkg_ccd._sep.strips.mesh_bands` as 0.1 called it."""
    return _strips.mesh_bands(mesh_rows, n_jobs)


warn_moved('ezbkg_ccd.strips', 'use estimate_background(..., n_threads=N)')
