# Licensed under a 3-clause BSD style license - see LICENSE
"""
SEP's mesh statistics with a noise-aware smooth fit in place of its
median filter (``interpolation='smooth'`` of the ``sep`` estimator).

1. SEP computes each mesh's clipped mode and sigma (no median filter);
   the grid is fitted by `ezbkg_ccd.smoothing.smooth_grid`, each mesh
   weighted by its usable pixels over a full mesh's (meshes under half
   usable, which SEP fills from neighbours, get weight 0 and are filled
   by the fit).
2. Twice, the mesh statistics are measured again on the data minus the
   fit (clipped means and spreads, meshes down to `MIN_REFINE_COVERAGE`
   usable) and added to the fit, which is fitted again: on a flattened
   sky they are unbiased even where it is steep or curved.
3. SEP's own bicubic interpolation takes the fitted grids to full
   resolution.
"""

import numpy as np

from ezbkg_ccd._sep.binding import fill_map, filtered_meshes, spline_grids
from ezbkg_ccd._sep.strips import global_levels, mesh_usable
from ezbkg_ccd.meshes import (
    MIN_MESH_COVERAGE,
    expand,
    grid_shape,
    mesh_sizes,
    tiles,
)
from ezbkg_ccd.smoothing import smooth_grid

__all__ = ['smooth_maps']

#: Passes over the residual from the fit: the mesh statistics of a sky
#: that the fit has flattened are unbiased, where those of a steep,
#: curved sky (vignetting) or of a mesh whose mask moves the centroid of
#: its pixels on a slope are not.
_REFINEMENTS = 2

#: In those passes a mesh with at least this fraction of usable pixels
#: has a value: the residual of a flattened sky needs no majority of
#: sky pixels to be unbiased, as SExtractor's mode of the raw pixels
#: does (`~ezbkg_ccd.meshes.MIN_MESH_COVERAGE`).
MIN_REFINE_COVERAGE = 0.005

#: Residual pixels beyond this many sigma from their mesh's level are
#: left out of the passes' statistics.
CLIP = 3.0


class _Meshes:
    """Per-mesh sums over a frame of ``shape`` cut into ``bh`` x ``bw``
    meshes."""

    def __init__(self, shape, bw, bh):
        self.box = (bh, bw)
        self.shape = shape

    def sum(self, values):
        """Each mesh's sum of ``values`` (float32 or bool)."""
        return tiles(values, self.box).sum(axis=(2, 3), dtype=np.float64)

    def area(self):
        """Each mesh's number of pixels."""
        return mesh_sizes(self.shape, self.box)

    def spread(self, grid):
        """Each mesh's value on its pixels."""
        return expand(grid.astype(np.float32), self.box, self.shape)


def _clipped_levels(residual, usable, meshes, sigma):
    """
    The mean and standard deviation of each mesh's ``usable`` residual
    pixels within `CLIP` sigma of its level (two passes, starting from 0
    and the global ``sigma``), and their number. Squares are summed in
    float64.
    """
    level = np.zeros(grid_shape(meshes.shape, meshes.box))
    spread = np.full(level.shape, float(sigma))
    for _ in range(2):
        offset = residual - meshes.spread(level)
        kept = usable & (np.abs(offset) <= CLIP * meshes.spread(spread))
        offset[~kept] = 0
        count = meshes.sum(kept)
        mean = meshes.sum(offset) / np.maximum(count, 1)
        square = meshes.sum(np.square(offset, dtype=np.float64))
        spread = np.where(count > 1, np.sqrt(np.maximum(
            square / np.maximum(count, 1) - mean**2, 0)), spread)
        level = level + mean
    return level, spread, count


def _interpolate(back_grid, sigma_grid, shape, dtype, bw, bh):
    """SEP's bicubic maps of two mesh grids (the RMS map `None` if
    ``sigma_grid`` is)."""
    grids = spline_grids(*(np.ascontiguousarray(grid, dtype=np.float32)
                           for grid in (back_grid, back_grid if sigma_grid
                                        is None else sigma_grid)))
    maps = {}
    for which in ('back',) if sigma_grid is None else ('back', 'rms'):
        maps[which] = np.empty(shape, dtype)
        fill_map(grids, maps[which], which=which, bw=bw, bh=bh)
    return maps['back'], maps.get('rms')


def smooth_maps(data, mask, *, bw, bh):
    """
    Background and RMS maps of ``data`` from smoothly fitted mesh grids.

    Needs the bound SEP library (`ezbkg_ccd._sep.strips.usable`).

    Parameters
    ----------
    data : `~numpy.ndarray`
        Native, C-contiguous float image.
    mask : `~numpy.ndarray` of bool or None
        Pixels to exclude.
    bw, bh : int
        Mesh width and height.

    Returns
    -------
    back, rms : `~numpy.ndarray`
        Full-size maps, in ``data``'s dtype.
    global_back, global_rms : float
        Medians of the fitted grids, as SEP's global values are of its
        filtered ones.
    grids : (back, sigma)
        The fitted mesh grids, float32.

    Examples
    --------
    On a flat sky the fit is a plane, far closer to the truth than the
    noise of the meshes:

    >>> import numpy as np
    >>> import sep
    >>> from ezbkg_ccd._sep.smooth import smooth_maps
    >>> data = np.random.default_rng(0).normal(100, 10, (512, 512))
    >>> data = data.astype(np.float32)
    >>> back, rms, level, noise, grids = smooth_maps(data, None, bw=64, bh=64)
    >>> error = np.abs(back - 100).max()
    >>> bool(error < 0.5 * np.abs(sep.Background(data).back() - 100).max())
    True
    """
    mask = None if mask is None else np.ascontiguousarray(mask, dtype=bool)
    back_grid, sigma_grid = filtered_meshes(
        data, mask, rows=slice(0, data.shape[0]), bw=bw, bh=bh, fw=1, fh=1,
        fthresh=0.0)
    meshes = _Meshes(data.shape, bw, bh)
    usable = mesh_usable(data, mask, slice(None))
    count = meshes.sum(usable)
    full = bw * bh  # a mesh cut short by the frame's edge weighs less
    weights = np.where(count >= MIN_MESH_COVERAGE * meshes.area(),
                       count / full, 0)
    fitted = smooth_grid(back_grid, weights)[0]
    spread = sigma_grid
    noise = float(np.median(sigma_grid[weights > 0]))
    for _ in range(_REFINEMENTS):
        model, _ = _interpolate(fitted, None, data.shape, data.dtype, bw, bh)
        np.subtract(data, model, out=model)
        level, spread, count = _clipped_levels(model, usable, meshes, noise)
        refined = np.where(count >= MIN_REFINE_COVERAGE * full, count / full,
                           0)
        if not refined.any():
            break
        weights = refined
        fitted = smooth_grid(fitted + level, weights, robust=False)[0]
    # SEP's sigma where the clipped one collapsed: data quantized in steps
    # wider than the noise keep only the pixels at their level
    spread = np.where(spread < 0.5 * sigma_grid, sigma_grid, spread)
    sigma = np.maximum(smooth_grid(spread, weights)[0], 0)
    back, rms = _interpolate(fitted, sigma, data.shape, data.dtype, bw, bh)
    np.maximum(rms, 0, out=rms)
    grids = fitted.astype(np.float32), sigma.astype(np.float32)
    return (back, rms, *global_levels(*grids), grids)
