# Licensed under a 3-clause BSD style license - see LICENSE
"""
Edges without spline overshoot.

Between the image edge and the centres of the outermost meshes, a mesh
map is extrapolated; SEP's bicubic spline amplifies the noise of the
last meshes there. `fill_edges` replaces that border by an extrapolation
from the last two mesh centres that is linear where their difference is
significant (a real gradient) and flat where it is within the noise.
"""

import numpy as np

__all__ = ['fill_edges']


def _centre(back, axis, mesh, box):
    """The map on the centre line of mesh ``mesh`` along ``axis``."""
    position = mesh * box + (box - 1) / 2
    low, high = int(np.floor(position)), int(np.ceil(position))
    return 0.5 * (np.take(back, low, axis=axis)
                  + np.take(back, high, axis=axis)), position


def fill_edges(back, box_size, noise):
    """
    Re-extrapolate the border of a mesh map, in place.

    Parameters
    ----------
    back : `~numpy.ndarray`
        The full-resolution map; changed in place and returned.
    box_size : (int, int)
        The mesh size.
    noise : float
        Standard error of the difference of two adjacent mesh values.
        Along each edge line, the slope between the last two mesh
        centres is used with weight ``clip(|difference| / noise - 1, 0,
        1)``: none within the noise, fully beyond twice the noise.

    Returns
    -------
    back : `~numpy.ndarray`

    Examples
    --------
    >>> import numpy as np
    >>> from ezbkg_ccd.edges import fill_edges
    >>> ramp = np.tile(np.arange(8.0), (8, 1))      # a real gradient in x
    >>> bumpy = ramp.copy()
    >>> bumpy[:, 0] += 5.0                           # an edge overshoot
    >>> filled = fill_edges(bumpy, (4, 4), noise=0.1)
    >>> bool(np.allclose(filled, ramp))
    True
    """
    for axis, box in enumerate(box_size):
        size = back.shape[axis]
        meshes = -(-size // box)
        if meshes < 2:
            continue
        sides = [(0, 1)] + ([(meshes - 1, meshes - 2)] if size % box == 0
                            else [])
        for outer, inner in sides:
            value, position = _centre(back, axis, outer, box)
            neighbour, inner_position = _centre(back, axis, inner, box)
            slope = value - neighbour
            weight = np.clip(np.abs(slope) / noise - 1.0, 0.0, 1.0)
            if outer == 0:
                lines = range(0, int(np.floor(position)) + 1)
            else:
                lines = range(int(np.ceil(position)), size)
            for line in lines:
                step = (line - position) / (position - inner_position)
                index = [slice(None)] * back.ndim
                index[axis] = line
                back[tuple(index)] = value + slope * weight * step
    return back
