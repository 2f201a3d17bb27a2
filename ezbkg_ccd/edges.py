# Licensed under a 3-clause BSD style license - see LICENSE
"""
Deprecated alias of `ezbkg_ccd.meshes` (`~ezbkg_ccd.meshes.fill_edges`),
removed in ezbkg-ccd 0.3.
"""

from ezbkg_ccd._moved import warn_moved
from ezbkg_ccd.meshes import fill_edges

__all__ = ['fill_edges']

warn_moved('ezbkg_ccd.edges', 'import fill_edges from ezbkg_ccd.meshes')
