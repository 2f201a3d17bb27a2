# Licensed under a 3-clause BSD style license - see LICENSE
"""
The mesh grid: its geometry, SExtractor's coverage rule, the edges of a
mesh map and the meshes that sources skew.

Meshes of ``box_size = (ny, nx)`` pixels tile the image from pixel
(0, 0), the last row and column of meshes cut short (`grid_shape`). A
mesh enters the low-resolution map only if at least half its pixels are
usable (`MIN_MESH_COVERAGE`, SExtractor's rule and SEP's;
`well_covered`, `require_usable_mesh`).

Between the image edge and the centres of the outermost meshes a mesh
map is extrapolated; SEP's bicubic spline amplifies the noise of the
last meshes there. `fill_edges` replaces that border by an extrapolation
from the last two mesh centres that is linear where their difference is
significant (a real gradient) and flat where it is within the noise.

Sky noise is symmetric; light from sources that no mask caught (the
wings of a bright star, a faint galaxy) skews a mesh's pixel values to
the bright side, so their mean moves above their median. A mesh whose
clipped ``(mean - median) / std`` exceeds what noise allows is excluded
whole by `skewed_meshes`, and the estimator fills it from its neighbours
as it does a mesh with too few usable pixels.
"""

import numpy as np
from astropy.stats import sigma_clip

__all__ = ['MIN_MESH_COVERAGE', 'SKEW_NOISE_FACTOR', 'mesh_count', 'grid_shape',
           'tiles', 'expand', 'mesh_sizes', 'usable_counts', 'poorly_covered',
           'well_covered', 'require_usable_mesh', 'fill_edges',
           'skewed_meshes']


def mesh_count(size, box):
    """The number of meshes of ``box`` pixels along ``size`` pixels."""
    return -(-size // box)


def grid_shape(shape, box_size):
    """
    The number of meshes ``(ny, nx)`` of an image of ``shape``.

    Examples
    --------
    >>> from ezbkg_ccd.meshes import grid_shape
    >>> grid_shape((100, 64), (32, 32))
    (4, 2)
    """
    return tuple(mesh_count(size, box)
                 for size, box in zip(shape, box_size, strict=True))


def tiles(values, box_size, fill=0):
    """
    ``values`` cut into meshes: an array of shape ``(ny, nx, bh, bw)``,
    the last meshes padded with ``fill`` where they are cut short (a view
    of ``values`` when its shape is a multiple of the box).

    Examples
    --------
    >>> import numpy as np
    >>> from ezbkg_ccd.meshes import tiles
    >>> cut = tiles(np.arange(15.0).reshape(3, 5), (2, 2), fill=np.nan)
    >>> cut.shape, np.nansum(cut, axis=(2, 3))[0].tolist()
    ((2, 3, 2, 2), [12.0, 20.0, 13.0])
    """
    (ny, nx), (bh, bw) = grid_shape(values.shape, box_size), box_size
    if values.shape != (ny * bh, nx * bw):
        padded = np.full((ny * bh, nx * bw), fill, values.dtype)
        padded[:values.shape[0], :values.shape[1]] = values
        values = padded
    return values.reshape(ny, bh, nx, bw).transpose(0, 2, 1, 3)


def expand(grid, box_size, shape):
    """
    Each mesh's value of ``grid`` on its pixels, for an image of
    ``shape`` (the inverse of `tiles` for one value per mesh).

    Examples
    --------
    >>> import numpy as np
    >>> from ezbkg_ccd.meshes import expand
    >>> expand(np.array([[1, 2]]), (2, 2), (1, 3)).tolist()
    [[1, 1, 2]]
    """
    full = np.repeat(np.repeat(grid, box_size[0], axis=0), box_size[1],
                     axis=1)
    return full[:shape[0], :shape[1]]


def mesh_sizes(shape, box_size):
    """
    The number of pixels of each mesh of an image of ``shape`` (the last
    meshes cut short).

    Examples
    --------
    >>> from ezbkg_ccd.meshes import mesh_sizes
    >>> mesh_sizes((5, 7), (4, 4)).tolist()
    [[16, 12], [4, 3]]
    """
    heights, widths = (np.diff(np.r_[0:size:box, size])
                       for size, box in zip(shape, box_size, strict=True))
    return np.outer(heights, widths)


def usable_counts(usable, box_size):
    """
    The number of ``usable`` (`True`) pixels of each mesh.

    Examples
    --------
    >>> import numpy as np
    >>> from ezbkg_ccd.meshes import usable_counts
    >>> usable = np.ones((5, 7), bool)
    >>> usable[0, :3] = False
    >>> usable_counts(usable, (4, 4)).tolist()
    [[13, 12], [4, 3]]
    """
    (height, width), (bh, bw) = usable.shape, box_size
    pixels = np.asarray(usable, dtype=bool).view(np.uint8)
    whole = height // bh * bh  # the rows of whole mesh rows
    rows = np.empty((mesh_count(height, bh), width), np.int64)
    rows[:height // bh] = pixels[:whole].reshape(-1, bh, width).sum(
        axis=1, dtype=np.uint32)  # adds whole rows at once: fast
    if whole < height:
        rows[-1] = pixels[whole:].sum(axis=0)
    return np.add.reduceat(rows, np.arange(0, width, bw), axis=1)


def poorly_covered(counts, shape, box_size):
    """
    The meshes with too few usable pixels (``counts``) to enter the map,
    by SExtractor's rule (`MIN_MESH_COVERAGE` of the mesh's own pixels):
    the meshes SEP fills from their neighbours.

    Examples
    --------
    >>> import numpy as np
    >>> from ezbkg_ccd.meshes import poorly_covered
    >>> poorly_covered(np.array([[8, 7], [2, 1]]), (5, 7), (4, 4)).tolist()
    [[False, False], [False, True]]
    """
    return counts < MIN_MESH_COVERAGE * mesh_sizes(shape, box_size)


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
    >>> from ezbkg_ccd.meshes import well_covered
    >>> usable = np.ones((4, 10), bool)
    >>> usable[:3, :4] = False  # the first mesh is 3/4 unusable
    >>> well_covered(usable, 4)
    array([False,  True,  True])
    """
    box = (usable.shape[0], width)  # the row of meshes as one mesh row
    return ~poorly_covered(usable_counts(usable, box), usable.shape, box)[0]


def require_usable_mesh(mask, box_size, *, hint=''):
    """
    Raise unless the box fits in the image and at least one mesh has
    enough usable pixels (``hint`` ends the message).

    SEP silently returns ``globalback=0, globalrms=1`` when no mesh is
    usable; this turns that case into a clear error.
    """
    if box_size[0] > mask.shape[0] or box_size[1] > mask.shape[1]:
        msg = (f'box_size {tuple(box_size)} is larger than the image '
               f'{mask.shape}; use a smaller box_size or method="constant"')
        raise ValueError(msg)
    excluded = np.count_nonzero(mask)
    if excluded <= (1 - MIN_MESH_COVERAGE) * mask.size:
        return  # some mesh is at least as usable as the whole image
    for top in range(0, mask.shape[0], box_size[0]):
        if well_covered(~mask[top:top + box_size[0]], box_size[1]).any():
            return
    msg = (f'ccd has too few valid pixels to estimate a background: no '
           f'{box_size[0]}x{box_size[1]} box is at least '
           f'{MIN_MESH_COVERAGE:.0%} unmasked ({mask.size - excluded} usable '
           f'of {mask.size} pixels); use a larger box_size, a smaller mask '
           f'or method="constant"{hint}')
    raise ValueError(msg)


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
    >>> from ezbkg_ccd.meshes import fill_edges
    >>> ramp = np.tile(np.arange(8.0), (8, 1))      # a real gradient in x
    >>> bumpy = ramp.copy()
    >>> bumpy[:, 0] += 5.0                           # an edge overshoot
    >>> filled = fill_edges(bumpy, (4, 4), noise=0.1)
    >>> bool(np.allclose(filled, ramp))
    True
    """
    for axis, box in enumerate(box_size):
        size = back.shape[axis]
        meshes = mesh_count(size, box)
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


#: Variance of ``(mean - median) / sigma`` of n Gaussian samples, times n:
#: var(median) + var(mean) - 2 cov = pi/2 + 1 - 2.
SKEW_NOISE_FACTOR = np.pi / 2 - 1


def _band_skew(band, excluded, width):
    """``(skew, noise)`` of each mesh of one band of mesh rows."""
    height = band.shape[0]
    meshes = mesh_count(band.shape[1], width)
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
    values = sigma_clip(np.ma.masked_invalid(values[judged]), sigma=3.0,
                        maxiters=1, axis=1, stdfunc='mad_std',
                        masked=False)  # SExtractor-like; NaN where clipped
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
    return expand(bad, (height, width), data.shape), int(bad.sum())
