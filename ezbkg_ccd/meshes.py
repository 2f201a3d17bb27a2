# Licensed under a 3-clause BSD style license - see LICENSE
"""
Contaminated-mesh rejection: meshes skewed by sources are not trusted.

Sky noise is symmetric; light from sources that no mask caught (the
wings of a bright star, a faint galaxy) skews a mesh's pixel values to
the bright side, so their mean moves above their median. A mesh whose
clipped ``(mean - median) / std`` exceeds what noise allows is excluded
whole, and the estimator fills it from its neighbours as it does a mesh
with too few usable pixels.
"""

import numpy as np

from ezbkg_ccd._coverage import MIN_MESH_COVERAGE

__all__ = ['skewed_meshes', 'SKEW_NOISE_FACTOR']

#: Variance of ``(mean - median) / sigma`` of n Gaussian samples, times n:
#: var(median) + var(mean) - 2 cov = pi/2 + 1 - 2.
SKEW_NOISE_FACTOR = np.pi / 2 - 1


def _band_skew(band, excluded, width):
    """``(skew, noise)`` of each mesh of one band of mesh rows."""
    height = band.shape[0]
    meshes = -(-band.shape[1] // width)
    values = np.full((height, meshes * width), np.nan, np.float64)
    values[:, :band.shape[1]] = np.where(excluded, np.nan, band)
    values = values.reshape(height, meshes, width).transpose(1, 0, 2)
    values = values.reshape(meshes, height * width)
    count = np.count_nonzero(np.isfinite(values), axis=1)
    skew, noise = np.full(meshes, np.nan), np.full(meshes, np.inf)
    # a mesh with fewer usable pixels is already bad for the estimator
    judged = count >= MIN_MESH_COVERAGE * values.shape[1]
    if not judged.any():
        return skew, noise
    values = values[judged]
    median = np.nanmedian(values, axis=1, keepdims=True)
    spread = 1.4826 * np.nanmedian(np.abs(values - median), axis=1,
                                   keepdims=True)
    values[np.abs(values - median) > 3 * spread] = np.nan  # SExtractor-like
    with np.errstate(invalid='ignore', divide='ignore'):
        skew[judged] = ((np.nanmean(values, axis=1)
                         - np.nanmedian(values, axis=1))
                        / np.nanstd(values, axis=1))
    noise[judged] = np.sqrt(SKEW_NOISE_FACTOR
                            / np.count_nonzero(np.isfinite(values), axis=1))
    return skew, noise


def skewed_meshes(data, excluded, box_size, *, threshold=5.0,
                  max_fraction=0.5):
    """
    Pixels of the meshes that sources skew.

    Each ``box_size`` mesh (on SEP's grid, from pixel (0, 0)) with at
    least half its pixels usable is judged on its usable pixels, clipped
    at 3 robust sigma around the median: it is rejected when ``(mean -
    median) / std`` exceeds ``threshold`` times its noise,
    ``sqrt((pi/2 - 1) / n)`` for ``n`` pixels. At most ``max_fraction``
    of the judged meshes are rejected, the most skewed first, so enough
    remain to fill them from (in a crowded field every mesh is skewed
    and rejecting does not help).

    Parameters
    ----------
    data : `~numpy.ndarray`
        2-D float image.
    excluded : `~numpy.ndarray` of bool
        Pixels not to use (invalid or masked sources).
    box_size : (int, int)
        Mesh size ``(ny, nx)``.
    threshold : float, optional
        Rejection threshold in units of the skew's noise (default 5).
    max_fraction : float, optional
        Largest fraction of judged meshes to reject (default 0.5).

    Returns
    -------
    rejected : `~numpy.ndarray` of bool
        The pixels of the rejected meshes.
    count : int
        The number of rejected meshes.

    Examples
    --------
    >>> import numpy as np
    >>> from ezbkg_ccd.meshes import skewed_meshes
    >>> rng = np.random.default_rng(0)
    >>> data = rng.normal(100.0, 5.0, (128, 128))
    >>> y, x = np.indices(data.shape)
    >>> data += 200.0 * np.exp(-np.hypot(y - 20, x - 20) / 8.0)  # wings
    >>> rejected, count = skewed_meshes(data, np.zeros(data.shape, bool),
    ...                                 (32, 32))
    >>> rejected[::32, ::32].astype(int)  # one row/column per mesh
    array([[1, 1, 0, 0],
           [1, 0, 0, 0],
           [0, 0, 0, 0],
           [0, 0, 0, 0]])
    >>> count
    3
    """
    height, width = box_size
    skews, noises = [], []
    for top in range(0, data.shape[0], height):
        rows = slice(top, top + height)
        skew, noise = _band_skew(data[rows], excluded[rows], width)
        skews.append(skew)
        noises.append(noise)
    skew, noise = np.array(skews), np.array(noises)
    significance = np.nan_to_num(skew / noise, nan=-np.inf)
    judged = np.count_nonzero(np.isfinite(skew))
    allowed = int(max_fraction * judged)
    candidates = np.flatnonzero(significance.ravel() > threshold)
    worst = candidates[np.argsort(significance.ravel()[candidates])[::-1]]
    bad = np.zeros(skew.size, bool)
    bad[worst[:allowed]] = True
    bad = bad.reshape(skew.shape)
    rejected = np.repeat(np.repeat(bad, height, axis=0), width, axis=1)
    return rejected[:data.shape[0], :data.shape[1]], int(bad.sum())
