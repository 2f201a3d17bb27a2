# Licensed under a 3-clause BSD style license - see LICENSE
"""
SExtractor's mesh coverage rule, also SEP's: a mesh enters the
low-resolution map only if at least half its pixels are usable.
"""

import numpy as np

__all__ = ['MIN_MESH_COVERAGE', 'well_covered']

#: A mesh must have at least this fraction of usable pixels (SExtractor's
#: rule, also used by SEP) to enter the low-resolution map.
MIN_MESH_COVERAGE = 0.5


def well_covered(usable, width):
    """
    Whether each mesh of one row of meshes has enough usable pixels.

    Parameters
    ----------
    usable : `~numpy.ndarray` of bool
        The usable pixels of one row of meshes (the last mesh of the
        row, and the row itself, may be smaller).
    width : int
        Mesh width; meshes start at column 0.

    Returns
    -------
    `~numpy.ndarray` of bool
        One value per mesh.

    Examples
    --------
    >>> import numpy as np
    >>> from ezbkg_ccd._coverage import well_covered
    >>> usable = np.ones((4, 10), bool)
    >>> usable[:3, :4] = False  # the first mesh is 3/4 unusable
    >>> well_covered(usable, 4)
    array([False,  True,  True])
    """
    columns = np.arange(0, usable.shape[1], width)
    widths = np.diff(np.r_[columns, usable.shape[1]])
    counts = np.add.reduceat(np.count_nonzero(usable, axis=0), columns)
    return counts >= MIN_MESH_COVERAGE * usable.shape[0] * widths
