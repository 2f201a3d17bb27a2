# Licensed under a 3-clause BSD style license - see LICENSE
"""
Frames larger than memory: the background of a frame held as a Dask
array, estimated and subtracted lazily, chunk by chunk.

`~ezbkg_ccd.estimate_background` and `~ezbkg_ccd.subtract_background`
come here for a Dask frame (a `dask.array.Array`, a
`~astropy.nddata.CCDData` holding one) and for any input given with
``chunks=``. The frame is chunked in whole rows of meshes, then:

1. every chunk is surveyed: its range (SEP works in float32, so a frame
   that needs rescaling first is refused, never processed wrongly), a
   sample of its values, and its zeroed regions, which are joined across
   chunks so that the rule of `~ezbkg_ccd.invalid_pixel_mask` finds
   exactly the zeroed areas it finds in memory;
2. SEP's mesh grids are computed in bands (`ezbkg_ccd._sep.lazy`);
3. the maps, the invalid pixels, the residual and its uncertainty are
   Dask arrays, computed chunk by chunk when stored or computed.

Steps 1 and 2 read the frame once each, on the Dask scheduler in use;
step 3 when the result is computed or written. The maps are those of one
SEP call on the whole frame, bit for bit. Only SEP's map
(``method='sep'``, its spline) is computed this way, with a user source
mask or none.
"""

import dataclasses
import types

import numpy as np
from scipy import ndimage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from ezbkg_ccd import _engine
from ezbkg_ccd._conditioning import (
    SAMPLE_LEAST,
    SAMPLE_STEP,
    Conditioning,
    lazy_refusal,
    sentinel_limit,
    work_dtype,
)
from ezbkg_ccd._dask import chunk_rows, dask_array, is_dask
from ezbkg_ccd._sep.lazy import mesh_chunks, sep_maps
from ezbkg_ccd._uncertainty import subtracted_uncertainty
from ezbkg_ccd.background import Background, MeshValues
from ezbkg_ccd.estimators import check_sep_box, no_noise, single_pixel_rows
from ezbkg_ccd.masks import rule_saturation, zeros_are_sky
from ezbkg_ccd.registry import BackgroundEstimate

__all__ = ['is_lazy', 'lazy_estimate', 'lazy_subtract']

#: Every option of the ``'sep'`` estimator that a lazy estimate takes,
#: with the one value it can take.
_LAZY_OPTIONS = {'interpolation': 'spline', 'edge': 'spline'}

#: 8-neighbour connectivity of zeroed regions, as in memory.
_NEIGHBOURS = np.ones((3, 3), bool)


def is_lazy(ccd, chunks=None):
    """
    Whether ``ccd`` is to be processed lazily: ``chunks`` is given, or
    it is (or holds) a Dask array.

    Examples
    --------
    >>> import numpy as np
    >>> from ezbkg_ccd.lazy import is_lazy
    >>> is_lazy(np.zeros((4, 4))), is_lazy(np.zeros((4, 4)), chunks='auto')
    (False, True)
    """
    return chunks is not None or is_dask(getattr(ccd, 'data', ccd))


def _rows(chunks, width, itemsize):
    """Rows per chunk asked for by ``chunks`` (an int or ``'auto'``)."""
    if chunks is None or (isinstance(chunks, str) and chunks == 'auto'):
        return chunk_rows(width, itemsize)
    if isinstance(chunks, bool) or not isinstance(chunks, (int, np.integer)):
        msg = f"chunks must be a number of rows or 'auto', got {chunks!r}"
        raise TypeError(msg)
    if chunks < 1:
        msg = f'chunks must be a positive number of rows, got {chunks}'
        raise ValueError(msg)
    return int(chunks)


def _as_dask(array, chunks, *, name=None):
    """``array`` (NumPy or Dask) as a Dask array chunked as ``chunks``;
    with a ``name``, one that must have the image shape."""
    shape = tuple(sum(sizes) for sizes in chunks)
    if name is not None and np.shape(array) != shape:
        msg = (f'{name} must have the image shape {shape}, got '
               f'{np.shape(array)}')
        raise ValueError(msg)
    if not is_dask(array):  # name=False: no hash of a large array
        array = dask_array().from_array(np.asanyarray(array), chunks=chunks,
                                        name=False)
    return array if array.chunks == chunks else array.rechunk(chunks)


def lazy_data(data, *, box_height, chunks=None):
    """
    ``data`` (NumPy or Dask) as a Dask frame in its working dtype,
    chunked in whole rows of meshes ``box_height`` high, about ``chunks``
    rows each: each chunk is a band of SEP's statistics
    (`ezbkg_ccd._sep.lazy`).
    """
    dtype = work_dtype(data.dtype)
    rows = _rows(chunks, data.shape[1], dtype.itemsize)
    layout = (mesh_chunks(data.shape[0], box_height, rows), (data.shape[1],))
    return _as_dask(data, layout).astype(dtype)


def check_lazy(settings, source_mask):
    """Refuse what cannot be computed chunk by chunk, naming it."""
    where = 'for a frame processed in chunks (chunks=, or a Dask array)'
    if settings.method != 'sep':
        msg = f"method must be 'sep' {where}, got {settings.method!r}"
        raise ValueError(msg)
    check_sep_box(settings.box_size)
    for key, value in settings.options.items():
        if _LAZY_OPTIONS.get(key, ()) != value:
            msg = (f'{key}={value!r} is not available {where}: only '
                   "SEP's map with its spline is")
            raise ValueError(msg)
    if settings.reject_skewed is not None:
        msg = f'reject_skewed is not available {where}'
        raise ValueError(msg)
    if isinstance(source_mask, str):
        msg = (f'source_mask={source_mask!r} is not available {where}: '
               'detecting sources needs the whole frame in memory; pass a '
               'source mask array instead')
        raise ValueError(msg)


@dataclasses.dataclass(frozen=True)
class _Survey:
    """What `_survey` found in one chunk."""

    bounds: tuple  # of the valid values
    nonfinite: bool
    sentinels: bool
    saturated: bool
    finite: tuple  # the sampled finite values; all of them if few, or None
    valid: tuple  # the sampled valid values; all of them if few, or None
    zeros: tuple | None  # (count, sizes, first row, last row) of labels


#: A chunk with at most this many finite (or valid) values also gives
#: them all, for a frame whose sample would be too small.
_FEW = SAMPLE_STEP * SAMPLE_LEAST


def _sampled(values, keep, start):
    """The values ``keep`` keeps (all with `None`) among every
    `SAMPLE_STEP`-th (from ``start``), and all it keeps if they are few."""
    if keep is None:  # copies: a view would keep the whole chunk alive
        every = values.ravel().copy() if values.size <= _FEW else None
        return values.ravel()[start::SAMPLE_STEP].copy(), every
    every = values[keep] if np.count_nonzero(keep) <= _FEW else None
    return values.ravel()[start::SAMPLE_STEP][
        keep.ravel()[start::SAMPLE_STEP]], every


def _survey(block, *masks, start, limit, level, zero_area):
    """
    Survey one chunk of the working frame (see the module): what is
    invalid in it, the bounds of its valid values, the samples of
    ``zero_is_sky`` and ``float32_offset`` as in memory (every
    `SAMPLE_STEP`-th pixel of the frame: from ``start`` in this chunk),
    and its zeroed regions.
    """
    low = float(np.fmin.reduce(block, axis=None))
    high = float(np.fmax.reduce(block, axis=None))
    saturated = level is not None and high >= level
    finite = valid = None  # every pixel, in a clean chunk
    nonfinite = marked = False
    if (masks or saturated or not np.isfinite([low, high]).all()
            or low <= limit or np.isnan(block).any()):
        finite = np.isfinite(block)
        nonfinite = not finite.all()
        valid = finite.copy()
        for mask in masks:
            valid &= ~mask
        marked = valid & (block <= limit)  # SEP's markers of missing data
        valid &= ~marked
        marked = bool(marked.any())
        if level is not None:
            with np.errstate(invalid='ignore'):
                valid &= ~(block >= level)
        low = float(block.min(where=valid, initial=np.inf))
        high = float(block.max(where=valid, initial=-np.inf))
    zeros = None
    if zero_area is not None:
        zeroed = block == 0
        if zeroed.any():
            labels, count = ndimage.label(zeroed, structure=_NEIGHBOURS)
            zeros = (count, np.bincount(labels.ravel(), minlength=count + 1),
                     labels[0].copy(), labels[-1].copy())
    return _Survey((low, high), nonfinite, marked, saturated,
                   _sampled(block, finite, start),
                   _sampled(block, valid, start), zeros)


def _joined_sample(parts):
    """The frame's sample from its chunks' (as `_sampled` gives them)."""
    sample = np.concatenate([strided for strided, _ in parts])
    if sample.size < SAMPLE_LEAST and all(
            every is not None for _, every in parts):
        return np.concatenate([every for _, every in parts])
    return sample


def _touching(upper, lower):
    """The label pairs of zeroed regions that touch (8 neighbours) across
    the boundary between a chunk's last row and the next one's first."""
    width, pairs = len(upper), set()
    for shift in (-1, 0, 1):
        above = upper[max(0, -shift):width - max(0, shift)]
        below = lower[max(0, shift):width - max(0, -shift)]
        both = (above > 0) & (below > 0)
        pairs.update(zip(above[both].tolist(), below[both].tolist(),
                         strict=True))
    return pairs


def zero_area_tables(zeros, zero_area):
    """
    For each chunk, a table by label of its zeroed regions that belong to
    one of at least ``zero_area`` pixels, regions joined across chunks
    (`None` for a chunk without any).

    Parameters
    ----------
    zeros : list of (count, sizes, first row, last row) or None
        Each chunk's labelled zeroed regions (`_survey`).
    zero_area : int

    Examples
    --------
    A zeroed column of 6 pixels over two chunks of 3 rows:

    >>> import numpy as np
    >>> from ezbkg_ccd.lazy import zero_area_tables
    >>> row = np.array([0, 1, 0])
    >>> part = (1, np.array([6, 3]), row, row)
    >>> [table.tolist() for table in zero_area_tables([part, part], 5)]
    [[False, True], [False, True]]
    >>> zero_area_tables([part, part], 7)
    [None, None]
    """
    counts = [0 if found is None else found[0] for found in zeros]
    offsets = np.cumsum([0, *counts])
    sizes = np.zeros(offsets[-1] + 1)
    for offset, found in zip(offsets, zeros, strict=False):
        if found is not None:
            sizes[offset + 1:offset + 1 + found[0]] = found[1][1:]
    pairs = set()
    for index, (upper, lower) in enumerate(zip(zeros[:-1], zeros[1:],
                                               strict=True)):
        if upper is not None and lower is not None:
            pairs.update((first + offsets[index], second + offsets[index + 1])
                         for first, second in _touching(upper[3], lower[2]))
    edges = np.array(sorted(pairs), dtype=np.int64).reshape(-1, 2)
    touching = coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])),
                          shape=(sizes.size, sizes.size))
    _, regions = connected_components(touching, directed=False)
    large = np.bincount(regions, weights=sizes)[regions] >= zero_area
    large[0] = False
    tables = []
    for offset, count in zip(offsets, counts, strict=False):
        table = np.concatenate(([False], large[offset + 1:offset + 1 + count]))
        tables.append(table if table.any() else None)
    return tables


def _invalid_block(block, *extra, level, limit, sentinels, block_info=None):
    """The invalid pixels of one chunk: non-finite, masked (``extra``:
    the masks, then the zeroed-area tables), saturated, zeroed areas and
    SEP's markers."""
    *masks, tables = extra
    invalid = np.isfinite(block)
    np.logical_not(invalid, out=invalid)
    for mask in masks:
        invalid |= mask
    if level is not None:
        with np.errstate(invalid='ignore'):
            invalid |= block >= level
    if sentinels:
        invalid |= block <= limit
    table = None if tables is None else tables[
        block_info[0]['chunk-location'][0]]
    if table is not None:
        labels, _ = ndimage.label(block == 0, structure=_NEIGHBOURS)
        invalid |= table[labels]
    return invalid


def lazy_frame(ccd, mask, rule, *, box_height, chunks=None, target=None):
    """
    The `~ezbkg_ccd._engine.Frame` of a frame to process lazily (its
    ``work`` and ``invalid`` Dask arrays), after its survey.

    Raises
    ------
    ValueError
        If the frame needs rescaling before SEP can take it.
    """
    import dask

    work = lazy_data(ccd.data, box_height=box_height, chunks=chunks)
    limit = sentinel_limit(work.dtype)
    level = rule_saturation(ccd, rule)
    masks = [_as_dask(given, work.chunks, name=name).astype(bool)
             for name, given in (('ccd.mask', ccd.mask), ('mask', mask))
             if given is not None]
    starts = -np.cumsum((0, *work.chunks[0][:-1])) * work.shape[1]
    surveys = dask.compute(*(  # blocks, not to_delayed: each read alone
        dask.delayed(_survey, pure=True)(
            work.blocks[index], *(mask.blocks[index] for mask in masks),
            start=int(starts[index] % SAMPLE_STEP), limit=limit, level=level,
            zero_area=rule.zero_area)
        for index in range(work.numblocks[0])))
    bounds = (min(survey.bounds[0] for survey in surveys),
              max(survey.bounds[1] for survey in surveys))
    if bounds[0] > bounds[1]:
        msg = ('ccd has no valid pixels: every pixel is masked, non-finite '
               "or at or below -1e30 (SEP's marker of missing data)")
        raise ValueError(msg)
    sentinels = any(survey.sentinels for survey in surveys)
    why = lazy_refusal(bounds, _joined_sample([survey.valid
                                               for survey in surveys]),
                       work.dtype, markers=sentinels)
    if why:
        msg = (f'ccd cannot be processed in chunks: {why}; process it in '
               'memory (without chunks=)')
        raise ValueError(msg)
    tables = None
    if rule.zero_area is not None and not zeros_are_sky(
            _joined_sample([survey.finite for survey in surveys])):
        tables = zero_area_tables([survey.zeros for survey in surveys],
                                  rule.zero_area)
        if not any(table is not None for table in tables):
            tables = None
    sources = ['nonfinite'] if any(survey.nonfinite
                                   for survey in surveys) else []
    sources += [name for name, given in (('ccd.mask', ccd.mask),
                                         ('mask', mask)) if given is not None]
    if any(survey.saturated for survey in surveys):
        sources.append('saturated')
    if tables is not None:
        sources.append('zero-area')
    if sentinels:
        sources.append('sentinel')
    if sources:
        invalid = work.map_blocks(
            _invalid_block, *masks, dask.delayed(tables, pure=True),
            level=level, limit=limit, sentinels=sentinels, dtype=bool,
            meta=np.empty((0, 0), bool))
    else:  # nothing to compute, and SEP is faster without a mask
        invalid = dask_array().zeros(work.shape, dtype=bool,
                                     chunks=work.chunks)
    return _engine.Frame(work, invalid, tuple(sources), Conditioning({}),
                         ccd.unit, target, rule)


def lazy_estimate(ccd, settings, *, mask, rule, source_mask=None,
                  chunks=None, target=None):
    """
    The `~ezbkg_ccd.Background` of a frame processed lazily, its maps
    Dask arrays (see the module).

    Raises
    ------
    ValueError
        If the settings cannot be computed chunk by chunk
        (`check_lazy`), the frame needs rescaling, or no mesh has enough
        usable pixels.
    """
    check_lazy(settings, source_mask)
    frame = lazy_frame(ccd, mask, rule, box_height=settings.box_size[0],
                       chunks=chunks, target=target)
    work, counted = frame.work, []
    excluded = None
    if frame.invalid_sources:
        excluded = frame.invalid
        counted.append(frame.invalid)
    if source_mask is not None:
        source_mask = _as_dask(source_mask, work.chunks,
                               name='source_mask').astype(bool)
        excluded = (source_mask if excluded is None
                    else excluded | source_mask)
        counted.append(source_mask)
    rows = single_pixel_rows(work.shape, settings.box_size)
    if rows is not None:  # excluded in memory by the estimator too
        single = dask_array().zeros(work.shape, dtype=bool,
                                    chunks=work.chunks)
        single[rows, -1] = True
        excluded = single if excluded is None else excluded | single
    bh, bw = settings.box_size
    maps = sep_maps(work, excluded, bw=bw, bh=bh,
                    fw=settings.filter_size[1], fh=settings.filter_size[0],
                    fthresh=settings.filter_threshold,
                    counted=tuple(counted), all_usable=excluded is None)
    counts = list(maps.counts)
    invalid_count = counts.pop(0) if frame.invalid_sources else 0
    _, global_rms = no_noise(maps.grids[2], maps.global_rms)
    result = BackgroundEstimate(maps.back, maps.rms, maps.global_back,
                                global_rms, is_2d=True,
                                samples_per_estimate=bh * bw)
    header = _engine.provenance(frame, settings, result,
                                invalid_count=invalid_count,
                                source_count=counts[0] if counts else None)
    return Background(maps.back, maps.rms, header, source_mask=source_mask,
                      invalid_mask=frame.invalid, shape=frame.work.shape,
                      meshes=MeshValues(maps.grids[0], maps.grids[2],
                                        maps.n_pixels))


def _subtracted(residual, rms, *given, kind, unit, given_unit, scale, gain):
    """`~ezbkg_ccd._uncertainty.subtracted_uncertainty` of one chunk, the
    input uncertainty (if any) given as its array."""
    ccd = types.SimpleNamespace(unit=unit, uncertainty=None if not given
                                else kind(given[0], unit=given_unit,
                                          copy=False))
    background = types.SimpleNamespace(rms=rms, error_variance_scale=scale)
    return subtracted_uncertainty(ccd, residual, background, gain=gain)


def _uncertainty_block(*arrays, **options):
    """The array of `_subtracted`."""
    return np.asarray(_subtracted(*arrays, **options).array)


def _lazy_uncertainty(ccd, residual, background, gain):
    """The uncertainty of ``residual`` as a Dask array, of the type and
    unit that `subtract_background` gives in memory."""
    given = ccd.uncertainty
    options = {'kind': None if given is None else type(given),
               'unit': ccd.unit,
               'given_unit': None if given is None else given._unit,
               'scale': background.error_variance_scale, 'gain': gain}
    extra = () if given is None else (_as_dask(given.array, residual.chunks),)
    probe = _subtracted(np.zeros((1, 1), residual.dtype),
                        np.ones((1, 1), residual.dtype),
                        *(np.ones((1, 1), array.dtype) for array in extra),
                        **options)
    array = residual.map_blocks(
        _uncertainty_block, _as_dask(background.rms, residual.chunks),
        *extra, **options, dtype=probe.array.dtype,
        meta=np.empty((0, 0), probe.array.dtype))
    return type(probe)(array, unit=probe.unit, copy=False)


def lazy_subtract(ccd, background, *, estimated, gain, chunks=None):
    """
    ``ccd - background`` of a frame processed lazily: the residual, its
    mask and its uncertainty as Dask arrays, as `subtract_background`
    makes them in memory.
    """
    from ezbkg_ccd._validation import recorded_rule

    box_height = background.box_size[0]
    if estimated:
        invalid = background.invalid_mask
        work = lazy_data(ccd.data, box_height=box_height, chunks=chunks)
    else:
        frame = lazy_frame(ccd, None, recorded_rule(background.header),
                           box_height=box_height, chunks=chunks)
        invalid, work = frame.invalid, frame.work
    dtype = np.result_type(work.dtype, background.data.dtype)
    residual = work.astype(dtype) - _as_dask(background.data, work.chunks)
    if not estimated:
        if background.invalid_mask is not None:
            invalid = invalid | _as_dask(background.invalid_mask,
                                         work.chunks).astype(bool)
        invalid = invalid | ~dask_array().isfinite(residual)
    uncertainty = _lazy_uncertainty(ccd, residual, background, gain)
    return residual, invalid, uncertainty
