# Licensed under a 3-clause BSD style license - see LICENSE
"""
SEP's background of a frame on Dask: the bands of `ezbkg_ccd._sep.strips`
as Dask tasks, the maps as lazy Dask arrays.

A frame larger than memory, or spread over a cluster, is a Dask array
chunked in whole rows of meshes (`mesh_chunks`). Each chunk is a band:

1. one task per band reads the band and half the median filter on each
   side (slices of its neighbours, which Dask reads or sends alone) and
   returns its bad meshes and filtered mesh rows, a few kilobytes;
2. the grids are joined here, where the few bands whose bad meshes are
   filled from farther away are computed again from the rows they need;
3. the maps are `dask.array.map_blocks` of SEP's interpolation of the
   joined grid, chunk by chunk, never computed here.

Steps 1 and 2 run with ``dask.compute`` on whatever scheduler is in use
(threads by default, processes, or a `distributed.Client`); step 3 runs
when the caller computes or stores the maps. The maps are SEP's
single-call maps bit for bit, as for the strips.
"""

import dataclasses

import numpy as np

from ezbkg_ccd._dask import mesh_rows
from ezbkg_ccd._sep.binding import interpolate_rows
from ezbkg_ccd._sep.strips import (
    band_meshes,
    first_read,
    join_bands,
    pixel_rows,
)
from ezbkg_ccd.meshes import mesh_count

__all__ = ['LazyMaps', 'mesh_chunks', 'sep_maps']


def mesh_chunks(height, box_height, rows):
    """
    Row chunks of a frame ``height`` rows high: about ``rows`` rows each,
    rounded to whole meshes of ``box_height`` rows.

    Examples
    --------
    >>> from ezbkg_ccd._sep.lazy import mesh_chunks
    >>> mesh_chunks(1000, 64, 300)
    (320, 320, 320, 40)
    >>> mesh_chunks(100, 64, 10)
    (64, 36)
    """
    step = mesh_rows(rows, box_height)
    sizes = [step] * (height // step)
    if height % step:
        sizes.append(height % step)
    return tuple(sizes)


@dataclasses.dataclass(frozen=True)
class LazyMaps:
    """
    SEP's maps of a Dask frame.

    Attributes
    ----------
    back, rms : `dask.array.Array`
        The background and RMS maps, lazy, chunked as the frame.
    global_back, global_rms : float
        SEP's global values.
    grids : (back, dback, sigma, dsigma)
        The joined mesh grids and their spline coefficients.
    counts : tuple of int
        The number of `True` pixels of each array ``counted``.
    n_pixels : `~numpy.ndarray`
        The usable pixels of each mesh.
    """

    back: object
    rms: object
    global_back: float
    global_rms: float
    grids: tuple
    counts: tuple
    n_pixels: np.ndarray


def _band_task(data, mask, *counted, band, read, own, options):
    """`band_meshes` of a block, and the `True` pixels that the band
    owns in each of the ``counted`` blocks."""
    if mask is not None and not mask.any():
        mask = None  # SEP is faster without one, and its maps the same
    return (*band_meshes(np.ascontiguousarray(data), mask, band=band,
                         read=read, **options),
            tuple(int(np.count_nonzero(block[own])) for block in counted))


def _interpolate_block(grids, *, which, bw, bh, height, map_dtype,
                       block_info=None):
    """SEP's map ``which`` (``'back'`` or ``'rms'``) of a block of rows."""
    rows, _ = block_info[None]['array-location']
    out = np.empty(block_info[None]['chunk-shape'], map_dtype)
    targets = {'back': None, 'rms': None, which: out}
    interpolate_rows(grids, rows=slice(*rows), first_row=rows[0],
                     height=height, bw=bw, bh=bh, **targets)
    if which == 'rms':  # a noise level is never negative
        np.maximum(out, 0, out=out)
    return out


def sep_maps(data, mask, *, bw, bh, fw, fh, fthresh, counted=(),
             all_usable=False):
    """
    SEP's background and RMS maps of a Dask frame, lazily.

    Parameters
    ----------
    data : `dask.array.Array`
        2-D native float32 or float64 frame, chunked in whole rows of
        meshes (`mesh_chunks`): each chunk is a band, read with the rows
        of its neighbours that the median filter needs.
    mask : `dask.array.Array` of bool or None
        Pixels to exclude, chunked as ``data``.
    bw, bh, fw, fh, fthresh
        As for `sep.Background`.
    counted : tuple of `dask.array.Array`, optional
        Boolean arrays, chunked as ``data``, whose `True` pixels are
        counted on the way (`LazyMaps.counts`).
    all_usable : bool, optional
        Whether every pixel is known to be usable (``mask`` is `None`, no
        pixel is NaN or at or below -1e30), so that no mesh is bad.

    Returns
    -------
    maps : `LazyMaps`

    Raises
    ------
    ValueError
        If ``data`` is not chunked in whole rows of meshes, or no mesh has
        enough usable pixels.

    Examples
    --------
    >>> import dask.array as da
    >>> import numpy as np
    >>> import sep
    >>> from ezbkg_ccd._sep.lazy import sep_maps
    >>> image = np.random.default_rng(0).normal(5, 1, (512, 256)).astype('f4')
    >>> frame = da.from_array(image, chunks=(128, 256))
    >>> maps = sep_maps(frame, None, bw=32, bh=32, fw=3, fh=3, fthresh=0.0)
    >>> single = sep.Background(image, bw=32, bh=32)
    >>> bool((maps.back.compute() == single.back()).all())
    True
    >>> maps.global_rms == single.globalrms
    True
    """
    import dask
    import dask.array

    height, width = data.shape
    if len(data.chunks[1]) != 1 or any(size % bh
                                       for size in data.chunks[0][:-1]):
        msg = (f'data must be chunked in whole rows of meshes ({bh} rows), '
               f'got chunks {data.chunks}')
        raise ValueError(msg)
    edges = np.cumsum((0, *data.chunks[0])) // bh
    mesh_rows = mesh_count(height, bh)
    edges[-1] = mesh_rows
    bands = [(int(first), int(stop)) for first, stop in
             zip(edges[:-1], edges[1:], strict=True)]
    options = {'bw': bw, 'bh': bh, 'fw': fw, 'fh': fh, 'fthresh': fthresh,
               'all_usable': all_usable and mask is None}

    def tasks(items):
        made = []
        for band, read in items:
            rows = pixel_rows(read, bh, height)
            own = slice((band[0] - read[0]) * bh, (band[1] - read[0]) * bh)
            made.append(dask.delayed(_band_task, pure=True)(
                data[rows], None if mask is None else mask[rows],
                *(array[rows] for array in counted), band=band, read=read,
                own=own, options=options))
        return dask.compute(*made)

    reads = [first_read(band, mesh_rows, fh) for band in bands]
    results = tasks(zip(bands, reads, strict=True))
    counts = tuple(int(sum(column)) for column in zip(
        *(result[-1] for result in results), strict=True)) if counted else ()
    grids, (global_back, global_rms) = join_bands(
        bands, reads, [result[:-1] for result in results], filter_height=fh,
        recompute=lambda redo: {index: result[:-1] for index, result in zip(
            redo, tasks((bands[index], read) for index, read in redo.items()),
            strict=True)})
    shared = dask.delayed(grids, pure=True)
    back, rms = (dask.array.map_blocks(
        _interpolate_block, shared, which=which, bw=bw, bh=bh, height=height,
        map_dtype=data.dtype, dtype=data.dtype, chunks=data.chunks,
        meta=np.empty((0, 0), data.dtype)) for which in ('back', 'rms'))
    return LazyMaps(back, rms, global_back, global_rms, grids, counts,
                    np.concatenate([result[3] for result in results]))
