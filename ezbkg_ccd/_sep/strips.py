# Licensed under a 3-clause BSD style license - see LICENSE
"""
One large frame on several cores: SEP's background in horizontal strips.

SEP's Python API holds the GIL; its C library, called through
`ezbkg_ccd._sep.binding`, does not, so strips of the frame run in threads
that read the frame in place and write the rows they own straight into the
result. The maps are SEP's single-call maps, not an approximation:

1. Each strip finds its meshes with too few usable pixels (SEP's "bad"
   meshes).
2. Each strip has SEP compute its mesh grid, reading only the rows that
   its own mesh rows depend on: those within half the median filter,
   and the nearest usable meshes from which SEP fills the bad ones.
3. The strips' mesh rows are joined into the frame's grid, and SEP's
   spline along y is solved over the whole grid (it couples every mesh
   row of a column).
4. Each strip has SEP interpolate its own rows from the joined grid.

Only step 2 repeats work, by ``filter_size // 2`` mesh rows per side
unless bad meshes need more.
"""

import functools
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import sep

from ezbkg_ccd._conditioning import SEP_INVALID_BELOW
from ezbkg_ccd._sep.binding import (
    AVAILABLE,
    filtered_meshes,
    interpolate_rows,
    spline_second_derivatives,
)
from ezbkg_ccd.meshes import mesh_count, well_covered

__all__ = ['AVAILABLE', 'sep_strips', 'mesh_bands', 'mesh_usable',
           'rows_read', 'global_levels', 'usable']

#: Bad meshes compared with every mesh row at once, per chunk.
_CHUNK = 4096


def mesh_bands(mesh_rows, n_threads):
    """
    Split ``mesh_rows`` rows of meshes into up to ``n_threads`` bands.

    Parameters
    ----------
    mesh_rows : int
        Number of mesh rows of the frame.
    n_threads : int
        Number of strips wanted; at most one per mesh row is made.

    Returns
    -------
    bands : list of (int, int)
        First and end mesh row of each strip, in order, near-equal in size.

    Examples
    --------
    >>> from ezbkg_ccd._sep.strips import mesh_bands
    >>> mesh_bands(16, 3)
    [(0, 5), (5, 11), (11, 16)]
    """
    edges = np.linspace(0, mesh_rows, min(n_threads, mesh_rows) + 1).round()
    edges = [int(edge) for edge in edges]
    return list(zip(edges[:-1], edges[1:], strict=True))


def mesh_usable(data, mask, rows):
    """The pixels of ``data[rows]`` that SEP uses (not NaN, not below
    ``-1e30``, not masked)."""
    with np.errstate(over='ignore'):  # compared in float32, as SEP does
        values = data[rows].astype(np.float32, copy=False)
    usable = values > SEP_INVALID_BELOW  # NaN is not
    if mask is not None:
        usable &= ~mask[rows]
    return usable


def _bad_meshes(data, mask, band, bw, bh):
    """SEP's bad meshes (under half their pixels usable) in a band."""
    bad = [~well_covered(mesh_usable(data, mask, slice(row * bh,
                                                       (row + 1) * bh)), bw)
           for row in range(*band)]
    return np.array(bad, dtype=bool).reshape(-1, mesh_count(data.shape[1], bw))


def _fill_reach(bad, first, stop):
    """
    Mesh rows holding the usable meshes from which SEP fills the bad
    meshes of rows ``first:stop``: for each, all usable meshes at the
    least distance.
    """
    rows, columns = np.nonzero(bad[first:stop])
    if not rows.size:
        return first, stop
    rows += first
    ny, nx = bad.shape
    far = 2 * (nx + ny)  # beyond any mesh of the grid
    index = np.arange(nx)
    left = np.maximum.accumulate(np.where(bad, -far, index), axis=1)
    right = np.minimum.accumulate(np.where(bad, nx + far, index)[:, ::-1],
                                  axis=1)[:, ::-1]
    # distance along each mesh row to its nearest usable mesh
    across = np.minimum(index - left, right - index)
    lowest, highest = first, stop - 1
    for start in range(0, rows.size, _CHUNK):
        row, column = rows[start:start + _CHUNK], columns[start:start + _CHUNK]
        distance2 = ((np.arange(ny) - row[:, None]) ** 2
                     + across[:, column].T ** 2)
        nearest = distance2 == distance2.min(axis=1, keepdims=True)
        lowest = min(lowest, int(nearest.argmax(axis=1).min()))
        highest = max(highest,
                      ny - 1 - int(nearest[:, ::-1].argmax(axis=1).min()))
    return lowest, highest + 1


def rows_read(bad, band, filter_height):
    """
    Mesh rows that the mesh rows ``band`` depend on in SEP's grid.

    Parameters
    ----------
    bad : `~numpy.ndarray` of bool
        The frame's bad meshes.
    band : (int, int)
        First and end mesh row of a strip.
    filter_height : int
        Height of the median filter, in meshes.

    Returns
    -------
    first, stop : int
        The mesh rows to compute the strip with.

    Examples
    --------
    >>> import numpy as np
    >>> from ezbkg_ccd._sep.strips import rows_read
    >>> bad = np.zeros((16, 4), bool)
    >>> rows_read(bad, (8, 16), 3)
    (7, 16)
    >>> bad[6:10] = True  # row 7 is filled from row 5, 8 and 9 from 10
    >>> rows_read(bad, (8, 16), 3)
    (5, 16)
    """
    half = filter_height // 2
    first, stop = max(band[0] - half, 0), min(band[1] + half, len(bad))
    lowest, end = _fill_reach(bad, first, stop)
    return min(first, lowest), max(stop, end)


def global_levels(back, sigma):
    """SEP's global background and RMS: medians of the filtered meshes."""
    global_rms = np.median(sigma)
    if global_rms <= 0:  # SEP's fallback: the median of the positive ones
        positive = sigma[sigma > 0]
        global_rms = np.median(positive) if positive.size else 1.0
    return float(np.median(back)), float(global_rms)


def sep_strips(data, mask, *, n_threads, bw, bh, fw, fh, fthresh):
    """
    SEP's background and RMS maps of ``data``, computed in strips.

    Needs `AVAILABLE` (a SEP version whose C library is bound).

    Parameters
    ----------
    data : `~numpy.ndarray`
        Native, C-contiguous float image.
    mask : `~numpy.ndarray` of bool or None
        Pixels to exclude.
    n_threads : int
        Number of strips, each run in its own thread.
    bw, bh, fw, fh, fthresh
        As for `sep.Background`.

    Returns
    -------
    back, rms : `~numpy.ndarray`
        Full-size maps.
    global_back, global_rms : float
        SEP's global values.

    Examples
    --------
    >>> import numpy as np
    >>> import sep
    >>> from ezbkg_ccd._sep.strips import sep_strips
    >>> data = np.random.default_rng(0).normal(5, 1, (512, 256)).astype('f4')
    >>> back, rms, level, noise = sep_strips(data, None, n_threads=2, bw=32,
    ...                                      bh=32, fw=3, fh=3, fthresh=0.0)
    >>> single = sep.Background(data, bw=32, bh=32)
    >>> bool((back == single.back()).all()), level == single.globalback
    (True, True)
    """
    data = np.ascontiguousarray(data)
    mask = None if mask is None else np.ascontiguousarray(mask, dtype=bool)
    height = data.shape[0]
    bands = mesh_bands(mesh_count(height, bh), n_threads)

    def own_meshes(band):
        """The filtered mesh rows of ``band``, from the rows it reads."""
        first, stop = rows_read(bad, band, fh)
        grids = filtered_meshes(
            data, mask, rows=slice(first * bh, min(stop * bh, height)),
            bw=bw, bh=bh, fw=fw, fh=fh, fthresh=fthresh)
        return [grid[band[0] - first:band[1] - first] for grid in grids]

    back, rms = np.empty_like(data), np.empty_like(data)
    with ThreadPoolExecutor(max_workers=len(bands)) as pool:
        bad = np.concatenate(list(pool.map(
            lambda band: _bad_meshes(data, mask, band, bw, bh), bands)))
        back_grid, sigma_grid = (np.concatenate(part) for part in zip(
            *pool.map(own_meshes, bands), strict=True))
        grids = (back_grid, spline_second_derivatives(back_grid),
                 sigma_grid, spline_second_derivatives(sigma_grid))
        for _ in pool.map(lambda band: interpolate_rows(
                grids, rows=slice(band[0] * bh, min(band[1] * bh, height)),
                back=back, rms=rms, bw=bw, bh=bh), bands):
            pass  # re-raises a strip's exception here
    return (back, rms, *global_levels(back_grid, sigma_grid))


@functools.cache
def usable():
    """
    Whether strips can be used with the installed SEP.

    The C library must be bound (`AVAILABLE`: a SEP version whose struct
    layouts were checked), and on first use a self-check must pass: on a
    small frame with a NaN block, a sentinel pixel, a mask and a
    non-square mesh grid, two strips must give `sep.Background`'s maps
    and global values bit for bit. Any error or difference (a layout that
    changed in a patch release, say) makes this `False`, once per
    process.

    Examples
    --------
    >>> from ezbkg_ccd._sep.strips import usable
    >>> usable()
    True
    """
    if not AVAILABLE:
        return False
    data = np.random.default_rng(0).normal(10.0, 1.0, (96, 80))
    data = data.astype(np.float32)
    data[20:40, 8:30] = np.nan
    data[70, 5] = -1e31
    mask = np.zeros(data.shape, bool)
    mask[50:60, 40:75] = True
    options = {'bw': 16, 'bh': 16, 'fw': 3, 'fh': 3, 'fthresh': 0.0}
    try:
        back, rms, global_back, global_rms = sep_strips(
            data, mask, n_threads=2, **options)
    except (RuntimeError, ValueError, TypeError):
        return False
    single = sep.Background(data, mask=mask, **options)
    return bool(np.array_equal(back, single.back())
                and np.array_equal(rms, single.rms())
                and global_back == single.globalback
                and global_rms == single.globalrms)
