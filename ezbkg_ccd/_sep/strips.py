# Licensed under a 3-clause BSD style license - see LICENSE
"""
One large frame in bands of mesh rows: SEP's background, computed band by
band, bit for bit the single call's.

This is the one implementation behind the threaded strips of a frame in
memory (`sep_strips`, which `~ezbkg_ccd.estimate_background` runs for
``n_threads``) and the lazy maps of a frame on Dask
(`ezbkg_ccd._sep.lazy`). SEP's Python API holds the GIL; its C library,
called through `ezbkg_ccd._sep.binding`, does not, so bands run in
threads as well as in processes. The maps are SEP's single-call maps,
not an approximation:

1. Each band has SEP compute its filtered mesh rows from a block of the
   frame that adds half the median filter on each side
   (`first_read`, `band_meshes`), and finds its bad meshes (under half
   their pixels usable).
2. The bands' bad meshes are joined; a band whose bad meshes are filled
   from usable meshes beyond the rows it read (`rows_read`) is computed
   again from those rows (`join_bands`), which is rare.
3. The bands' mesh rows are joined into the frame's grid, and SEP's
   spline along y is solved over the whole grid (it couples every mesh
   row of a column).
4. Any block of rows is then interpolated from the joined grid
   (`~ezbkg_ccd._sep.binding.interpolate_rows`), independently.

Only step 1 repeats work, by ``filter_size // 2`` mesh rows per side.
"""

import functools
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import sep

from ezbkg_ccd._conditioning import SEP_INVALID_BELOW
from ezbkg_ccd._sep.binding import (
    AVAILABLE,
    fill_map,
    filtered_meshes,
    interpolate_rows,
    spline_grids,
    subtract_maps,
)
from ezbkg_ccd.meshes import (
    mesh_count,
    mesh_sizes,
    poorly_covered,
    usable_counts,
)

__all__ = ['AVAILABLE', 'sep_grids', 'grid_map', 'sep_strips', 'mesh_bands',
           'mesh_usable', 'rows_read', 'global_levels', 'usable', 'first_read',
           'band_meshes', 'join_bands', 'pixel_rows']

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
    first, stop = first_read(band, len(bad), filter_height)
    lowest, end = _fill_reach(bad, first, stop)
    return min(first, lowest), max(stop, end)


def global_levels(back, sigma):
    """SEP's global background and RMS: medians of the filtered meshes."""
    global_rms = np.median(sigma)
    if global_rms <= 0:  # SEP's fallback: the median of the positive ones
        positive = sigma[sigma > 0]
        global_rms = np.median(positive) if positive.size else 1.0
    return float(np.median(back)), float(global_rms)


def pixel_rows(band, bh, height):
    """The pixel rows of the mesh rows ``band`` of a frame ``height``
    pixels high."""
    return slice(band[0] * bh, min(band[1] * bh, height))


def first_read(band, mesh_rows, filter_height):
    """
    The mesh rows a band is first computed from: its own and half the
    median filter on each side, within the frame's ``mesh_rows``.

    Examples
    --------
    >>> from ezbkg_ccd._sep.strips import first_read
    >>> first_read((0, 8), 32, 3), first_read((8, 16), 32, 5)
    ((0, 9), (6, 18))
    """
    half = filter_height // 2
    return max(band[0] - half, 0), min(band[1] + half, mesh_rows)


def band_meshes(data, mask, *, band, read, bw, bh, fw, fh, fthresh,
                all_usable=False):
    """
    The bad meshes and SEP's filtered mesh rows of the mesh rows
    ``band``, from a block of the frame holding the mesh rows ``read``.

    Parameters
    ----------
    data : `~numpy.ndarray`
        Native, C-contiguous float block: the pixel rows of the mesh
        rows ``read`` (`pixel_rows`).
    mask : `~numpy.ndarray` of bool or None
        Pixels of the block to exclude.
    band, read : (int, int)
        First and end mesh row of the band, and of the block.
    bw, bh, fw, fh, fthresh
        As for `sep.Background`.
    all_usable : bool, optional
        Whether every pixel is known to be usable (no mask, no NaN, none
        at or below -1e30), so that no mesh is bad, unchecked.

    Returns
    -------
    bad, back, sigma, counts : `~numpy.ndarray`
        The band's bad meshes (under half their pixels usable), its rows
        of SEP's filtered grids (exact when `rows_read` of the frame's bad
        meshes lies within ``read``) and the usable pixels of its meshes.
    """
    mask = None if mask is None else np.ascontiguousarray(mask, dtype=bool)
    own = slice((band[0] - read[0]) * bh, (band[1] - read[0]) * bh)
    shape = data[own].shape
    counts = (mesh_sizes(shape, (bh, bw)) if all_usable else
              usable_counts(mesh_usable(data, mask, own), (bh, bw)))
    grids = filtered_meshes(data, mask, rows=slice(0, data.shape[0]), bw=bw,
                            bh=bh, fw=fw, fh=fh, fthresh=fthresh)
    return (poorly_covered(counts, shape, (bh, bw)),
            *(grid[band[0] - read[0]:band[1] - read[0]] for grid in grids),
            counts)


def join_bands(bands, reads, results, *, filter_height, recompute):
    """
    The frame's grids, joined from its bands'.

    Parameters
    ----------
    bands, reads : list of (int, int)
        The bands, in order, and the mesh rows each was computed from.
    results : list of (bad, back, sigma, counts)
        `band_meshes` of each band.
    filter_height : int
        Height of the median filter, in meshes.
    recompute : callable
        Called once with ``{index: read}``, the bands whose meshes depend
        on rows beyond those they read, with the rows they need; returns
        ``{index: (bad, back, sigma, counts)}`` (`band_meshes` from those
        rows), in any way it likes (threads, Dask).

    Returns
    -------
    grids : (back, dback, sigma, dsigma)
        What `~ezbkg_ccd._sep.binding.interpolate_rows` takes.
    global_back, global_rms : float
        SEP's global values.

    Raises
    ------
    ValueError
        If no mesh of the frame has enough usable pixels.
    """
    bad = np.concatenate([result[0] for result in results])
    if bad.all():
        msg = ('too few valid pixels: no mesh of the frame has half its '
               'pixels usable; use a larger box_size or mask less')
        raise ValueError(msg)
    redo = {}
    for index, (band, read) in enumerate(zip(bands, reads, strict=True)):
        need = rows_read(bad, band, filter_height)
        if need[0] < read[0] or need[1] > read[1]:
            redo[index] = need
    results = list(results)
    for index, result in (recompute(redo) if redo else {}).items():
        results[index] = result
    back, sigma = (np.concatenate(part) for part in
                   list(zip(*results, strict=True))[1:3])
    return spline_grids(back, sigma), global_levels(back, sigma)


def sep_grids(data, mask, *, n_threads, bw, bh, fw, fh, fthresh):
    """
    SEP's filtered mesh grids of ``data`` and its global values, computed
    in ``n_threads`` bands (one C call for one thread).

    Needs `AVAILABLE` (a SEP version whose C library is bound).

    Parameters
    ----------
    data : `~numpy.ndarray`
        Native, C-contiguous float image.
    mask : `~numpy.ndarray` of bool or None
        Pixels to exclude.
    n_threads : int
        Number of bands, each computed in its own thread.
    bw, bh, fw, fh, fthresh
        As for `sep.Background`.

    Returns
    -------
    grids : (back, dback, sigma, dsigma)
        What `~ezbkg_ccd._sep.binding.interpolate_rows` takes.
    global_back, global_rms : float
        SEP's global values.
    """
    data = np.ascontiguousarray(data)
    mask = None if mask is None else np.ascontiguousarray(mask, dtype=bool)
    height = data.shape[0]
    mesh_rows = mesh_count(height, bh)
    options = {'bw': bw, 'bh': bh, 'fw': fw, 'fh': fh, 'fthresh': fthresh}
    bands = mesh_bands(mesh_rows, n_threads)
    if len(bands) == 1:
        back, sigma = filtered_meshes(data, mask, rows=slice(0, height),
                                      **options)
        return spline_grids(back, sigma), *global_levels(back, sigma)

    def meshes(band, read):
        rows = pixel_rows(read, bh, height)
        return band_meshes(data[rows], None if mask is None else mask[rows],
                           band=band, read=read, **options)

    reads = [first_read(band, mesh_rows, fh) for band in bands]
    with ThreadPoolExecutor(max_workers=len(bands)) as pool:
        grids, levels = join_bands(
            bands, reads, list(pool.map(meshes, bands, reads)),
            filter_height=fh, recompute=lambda redo: dict(zip(
                redo, pool.map(meshes, [bands[i] for i in redo],
                               redo.values()), strict=True)))
    return (grids, *levels)


def grid_map(grids, shape, dtype, *, which, bw, bh, n_threads=1):
    """
    SEP's full-size ``which`` map (``'back'`` or ``'rms'``) of the mesh
    ``grids``: a new array of ``dtype``, interpolated in ``n_threads``
    bands of rows.

    Examples
    --------
    >>> import numpy as np
    >>> import sep
    >>> from ezbkg_ccd._sep.strips import grid_map, sep_grids
    >>> data = np.random.default_rng(0).normal(5, 1, (256, 96)).astype('f4')
    >>> grids, *_ = sep_grids(data, None, n_threads=1, bw=32, bh=32, fw=3,
    ...                       fh=3, fthresh=0.0)
    >>> rms = grid_map(grids, data.shape, data.dtype, which='rms', bw=32,
    ...                bh=32, n_threads=2)
    >>> bool((rms == sep.Background(data, bw=32, bh=32).rms()).all())
    True
    """
    result = np.empty(shape, dtype)
    bands = mesh_bands(mesh_count(shape[0], bh), n_threads)
    if len(bands) == 1:
        fill_map(grids, result, which=which, bw=bw, bh=bh)
        return result
    maps = {'back': result, 'rms': None} if which == 'back' else {
        'back': None, 'rms': result}

    def interpolate(band):
        interpolate_rows(grids, rows=pixel_rows(band, bh, shape[0]), bw=bw,
                         bh=bh, **maps)

    with ThreadPoolExecutor(max_workers=len(bands)) as pool:
        for _ in pool.map(interpolate, bands):
            pass  # re-raises a band's exception here
    return result


def sep_strips(data, mask, *, n_threads, bw, bh, fw, fh, fthresh):
    """
    SEP's background and RMS maps of ``data``, computed in strips
    (`sep_grids`, then `grid_map`).

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
    grids, *levels = sep_grids(data, mask, n_threads=n_threads, bw=bw, bh=bh,
                               fw=fw, fh=fh, fthresh=fthresh)
    back, rms = (grid_map(grids, data.shape, data.dtype, which=which, bw=bw,
                          bh=bh, n_threads=n_threads)
                 for which in ('back', 'rms'))
    return (back, rms, *levels)


@functools.cache
def usable():
    """
    Whether strips can be used with the installed SEP.

    The C library must be bound (`AVAILABLE`: a SEP version whose struct
    layouts were checked), and on first use a self-check must pass: on a
    small frame with a NaN block, a sentinel pixel, a mask and a
    non-square mesh grid, one band and two strips must give
    `sep.Background`'s maps and global values, and `subtract_maps` its
    ``subfrom``, bit for bit. Any error or difference (a layout that
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
    single = sep.Background(data, mask=mask, **options)
    expected = (single.back(), single.rms(), single.globalback,
                single.globalrms)
    residual, subtracted = np.ones_like(data), np.ones_like(data)
    single.subfrom(subtracted)
    try:
        results = [sep_strips(data, mask, n_threads=n, **options)
                   for n in (1, 2)]
        grids, *_ = sep_grids(data, mask, n_threads=1, **options)
        subtract_maps(grids, residual, bw=16, bh=16)
    except (RuntimeError, ValueError, TypeError):
        return False
    return all(np.array_equal(value, wanted)
               for result in results
               for value, wanted in zip(result, expected, strict=True)
               ) and np.array_equal(residual, subtracted)
