# Licensed under a 3-clause BSD style license - see LICENSE
"""
The ccdproc-style reduction steps: estimate and subtract the background.
"""

import os
from numbers import Real

import astropy.units as u
import numpy as np
from astropy.io import fits

from ezbkg_ccd import _engine
from ezbkg_ccd._conditioning import work_dtype
from ezbkg_ccd._dask import is_dask, with_mask
from ezbkg_ccd._reader import lazy_ccddata
from ezbkg_ccd._uncertainty import (
    UNCERTAINTY_COMMENTS,
    subtracted_uncertainty,
    uncertainty_cards,
)
from ezbkg_ccd._validation import (
    as_ccddata,
    as_gain,
    as_mask,
    as_rule,
    as_settings,
    recorded_rule,
)
from ezbkg_ccd.background import Background
from ezbkg_ccd.lazy import is_lazy, lazy_estimate, lazy_subtract
from ezbkg_ccd.masks import (
    SOURCE_MASK_OPTIONS,
    auto_source_mask,
    check_source_mask_options,
    invalid_pixels,
    prepare_frame,
    smoothed,
)
from ezbkg_ccd.persistence import REBUILD_KEYWORD
from ezbkg_ccd.provenance import (
    KEYWORDS,
    drop_keyword,
    log_entries,
    set_keyword,
)
from ezbkg_ccd.registry import check_options, keyword_names, refuse_unknown
from ezbkg_ccd.subtracted import SubtractedCCDData

__all__ = ['estimate_background', 'subtract_background', 'is_subtracted']

#: Keyword under which `subtract_background` logs its call (ccdproc style).
LOG_KEYWORD = 'SUBBKG'


def _target(ccd):
    """The absolute file name of a path input, or of the file an
    `~astropy.io.fits.HDUList` was opened from, else `None`."""
    if isinstance(ccd, fits.HDUList):
        ccd = ccd.filename()
    return os.path.abspath(ccd) if isinstance(ccd, (str, os.PathLike)) else None


def _input(ccd, hdu, chunks):
    """``ccd`` as a `~astropy.nddata.CCDData`; a FITS path read lazily
    (its data, ``MASK`` and ``UNCERT`` Dask arrays) when ``chunks`` is
    given."""
    if chunks is not None and isinstance(ccd, (str, os.PathLike)):
        return lazy_ccddata(ccd, hdu=hdu)
    return as_ccddata(ccd, hdu=hdu)


def check_keywords(method, options, source_mask_options=None, *,
                   public=None, function='estimate_background'):
    """
    Refuse a misspelt keyword before any work: one of ``options`` that
    neither ``function`` (its keywords ``public``; by default those of
    `estimate_background`) nor the estimator of ``method`` takes, or a
    key of ``source_mask_options`` that `make_source_mask` does not take.
    """
    check_options(method, options, function=function,
                  public=PUBLIC_OPTIONS if public is None else public)
    if source_mask_options:
        refuse_unknown(source_mask_options, SOURCE_MASK_OPTIONS,
                       context='source_mask_options')


def _estimate(ccd, *, coverage_mask=None, fill_value=0.0, **options):
    """
    `estimate_background` of a `~astropy.nddata.CCDData` whose keywords
    were checked (`check_keywords`), also returning the estimator's raw
    result (`None` for a frame processed lazily); ``target`` is the
    image's file, if any. Pixels of ``coverage_mask`` are left out as
    invalid, and given ``fill_value`` in the maps.
    """
    if coverage_mask is None:
        return _estimate_plain(ccd, **options)
    fill_value = _as_fill(fill_value)
    if np.shape(coverage_mask) != ccd.shape:
        msg = (f'coverage_mask must have the image shape {ccd.shape}, got '
               f'{np.shape(coverage_mask)}')
        raise ValueError(msg)
    if not is_dask(coverage_mask):
        coverage_mask = as_mask(coverage_mask, name='coverage_mask',
                                shape=ccd.shape)
    mask = options.pop('mask', None)
    background, raw = _estimate_plain(
        ccd, mask=coverage_mask if mask is None else coverage_mask | mask,
        **options)
    return _filled(background, coverage_mask, fill_value), raw


def _as_fill(value):
    """``fill_value`` checked: a real number, NaN included."""
    if not isinstance(value, Real) or isinstance(value, (bool, np.bool_)):
        msg = f'fill_value must be a number, got {value!r}'
        raise TypeError(msg)
    if np.isinf(value):
        msg = f'fill_value must be finite or NaN, got {value!r}'
        raise ValueError(msg)
    return float(value)


def _filled(background, coverage, fill_value):
    """``background`` with ``fill_value`` where ``coverage`` is `True`
    (no data), recorded as ``BKGNCOV`` and ``BKGFILL``."""
    filled = background.filled(coverage, fill_value)
    set_keyword(filled.header, 'BKGNCOV', int(coverage.sum()),
                KEYWORDS['BKGNCOV'])
    set_keyword(filled.header, 'BKGFILL', 'NaN' if np.isnan(fill_value)
                else fill_value, KEYWORDS['BKGFILL'])  # cards hold no NaN
    return filled


def _estimate_plain(ccd, *, target=None, method='sep', box_size=64,
                      filter_size=3, filter_threshold=0.0, mask=None,
                      source_mask=None, source_mask_options=None,
                      reject_skewed=False, saturation='header', zero_area=100,
                      chunks=None, **options):
    """`_estimate` of a frame without a coverage mask."""
    settings = as_settings(method, shape=ccd.shape, box_size=box_size,
                           filter_size=filter_size,
                           filter_threshold=filter_threshold,
                           reject_skewed=reject_skewed, options=options)
    detection = check_source_mask_options(source_mask_options or {})
    if is_lazy(ccd, chunks):
        if source_mask_options:
            msg = ("source_mask_options are only used with source_mask='auto'"
                   ', which a frame processed in chunks cannot use')
            raise ValueError(msg)
        return lazy_estimate(ccd, settings, mask=mask,
                             rule=as_rule(saturation, zero_area),
                             source_mask=source_mask, chunks=chunks,
                             target=target), None
    frame = prepare_frame(ccd, mask, as_rule(saturation, zero_area),
                          target=target)
    source_kind, report, raw = 'user', None, None
    if isinstance(source_mask, str):
        if source_mask != 'auto':
            msg = ("source_mask must be a boolean array, 'auto' or None, got "
                   f'{source_mask!r}')
            raise ValueError(msg)
        meshes = tuple(min(box, size) for box, size in  # for 'constant' too
                       zip(settings.box_size, ccd.shape, strict=True))
        source_mask, report, last = auto_source_mask(
            frame, {'box_size': meshes, 'filter_size': filter_size,
                    **(source_mask_options or {})}, detection)
        source_kind = 'auto'
        if source_mask is not None and not {'interpolation', 'edge'} & set(
                options):
            settings = smoothed(settings, ccd.shape)
        if last is not None and last[0] == settings:
            raw = last[1]  # the loop's last estimate is this one
    elif source_mask_options:
        msg = "source_mask_options are only used with source_mask='auto'"
        raise ValueError(msg)
    source_mask = as_mask(source_mask, name='source_mask', shape=ccd.shape)
    return _engine.estimate(frame, settings, source_mask=source_mask,
                            source_kind=source_kind,
                            source_mask_options=source_mask_options,
                            auto_report=report, raw=raw)


def estimate_background(ccd, *, method='sep', box_size=64, filter_size=3,
                        filter_threshold=0.0, mask=None, source_mask=None,
                        source_mask_options=None, reject_skewed=False,
                        saturation='header', zero_area=100,
                        coverage_mask=None, fill_value=0.0, hdu=None,
                        chunks=None, **options):
    """
    Estimate the sky background of an image.

    Parameters
    ----------
    ccd : `~astropy.nddata.CCDData`, `~astropy.nddata.NDData`, \
`~astropy.units.Quantity`, `~numpy.ndarray`, FITS HDU or path
        The 2-D image. Any numeric dtype and byte order is accepted
        (integers and big-endian FITS data are converted); a unitless
        input is taken to be in ``adu``; a path is read from FITS; an
        image HDU (`~astropy.io.fits.PrimaryHDU`,
        `~astropy.io.fits.ImageHDU`, `~astropy.io.fits.CompImageHDU`) or
        `~astropy.io.fits.HDUList` is read as the file would be.
    method : str, optional
        A registered estimator: ``'sep'`` (SExtractor mesh background,
        the default), ``'constant'`` (one sigma-clipped level),
        ``'photutils'`` (`~photutils.background.Background2D`) or any
        name added with `~ezbkg_ccd.register_estimator`.
    box_size : int or (int, int), optional
        Mesh size in pixels, ``(ny, nx)`` for a rectangle. The default
        is 64.
    filter_size : int or (int, int), optional
        Odd median-filter size in meshes. The default is 3.
    filter_threshold : float, optional
        Median-filter threshold (0, the default, filters every mesh).
    mask : array_like of bool, optional
        Invalid pixels (`True`) to exclude, on top of those of the rule
        of `~ezbkg_ccd.invalid_pixel_mask`: non-finite pixels,
        ``ccd.mask``, saturated pixels and large zeroed areas.
    source_mask : array_like of bool or 'auto', optional
        Source pixels (`True`) to exclude from the statistics without
        marking them invalid; ``'auto'`` detects them with
        `~ezbkg_ccd.make_source_mask`, and then maps the sky with the
        smooth fit of the mesh grid (``interpolation='smooth'``, unless
        ``interpolation`` or ``edge`` is given). It costs 0.15-0.8 s per
        megapixel on one core (see :doc:`/performance`); how it ended
        is recorded as ``BKGAITER``, ``BKGAKEPT``, ``BKGAFRAC`` and
        ``BKGASTOP``.
    source_mask_options : dict, optional
        Settings of `~ezbkg_ccd.make_source_mask` for ``'auto'``
        (threshold, min_area, dilate, wing_level, ...), recorded as
        ``BKGSMOPT``.
    reject_skewed : bool or float, optional
        Exclude the meshes that unmasked source light skews, to be filled
        from their neighbours (`~ezbkg_ccd.meshes.skewed_meshes`): `True`
        at 5 times the skew's noise, or that threshold. Off by default,
        which keeps SExtractor's map; recorded as ``BKGREJT`` and
        ``BKGNREJ``.
    saturation : float, 'header' or None, optional
        Pixels at or above this level are invalid; ``'header'`` (the
        default) reads it from ``SATURATE``, ``SATLEVEL`` or
        ``SATURATN`` (none if absent); `None` masks none.
    zero_area : int or None, optional
        Exact zeros in a connected region of at least this many pixels
        (chip gaps, dead columns; default 100) are invalid; `None` masks
        none.
    coverage_mask : array_like of bool, optional
        Areas with no data (`True`), as in photutils: left out of the
        statistics as invalid pixels, and given ``fill_value`` in both
        maps instead of an extrapolated sky (recorded as ``BKGNCOV`` and
        ``BKGFILL``). Any method.
    fill_value : float, optional
        The maps' value where ``coverage_mask`` is `True` (default 0,
        which leaves the data there as they are when subtracted; NaN
        blanks them).
    hdu : int, str or (str, int), optional
        The image HDU of a FITS path or `~astropy.io.fits.HDUList` ``ccd``
        (default: the first HDU with image data, tile-compressed ones
        included).
    chunks : int or 'auto', optional
        Process the frame lazily on Dask, in chunks of about this many
        rows (whole rows of meshes; ``'auto'``: about 64 MiB each), as a
        frame larger than memory must be: a FITS path is then read in
        chunks, not into memory. A Dask array, or a
        `~astropy.nddata.CCDData` holding one, is always processed so
        (its chunks made whole rows of meshes). The maps are then Dask
        arrays, SEP's single-call maps bit for bit; only ``method='sep'``
        with its spline and no ``source_mask='auto'`` can be computed
        this way (see :doc:`/scaling`).
    **options
        Further keywords for the estimator (recorded as ``BKGOPTS``).

    Returns
    -------
    background : `~ezbkg_ccd.Background`
        Float32 maps (float64 for float64 input) with provenance; Dask
        arrays for a frame processed in chunks.

    Raises
    ------
    TypeError
        If an argument has the wrong type.
    ValueError
        If the image is not 2-D or empty, a size is not a positive
        (odd, for ``filter_size``) int, the box is larger than the image,
        a mask has the wrong shape, ``method`` is unknown, or too few
        pixels are valid to estimate anything.

    Examples
    --------
    >>> import numpy as np
    >>> from ezbkg_ccd import estimate_background
    >>> rng = np.random.default_rng(1)
    >>> data = rng.normal(100.0, 5.0, (256, 256))
    >>> data[10, 10] = np.inf
    >>> bkg = estimate_background(data, box_size=64)
    >>> print(f'{bkg.global_back:.1f} {bkg.global_rms:.1f}')
    100.0 4.9
    >>> bool(np.isfinite(bkg.data).all()), bkg.header['BKGINVM']
    (True, 'nonfinite')
    """
    check_keywords(method, options, source_mask_options)
    target = _target(ccd)
    background, _ = _estimate(
        _input(ccd, hdu, chunks), target=target, method=method,
        box_size=box_size, filter_size=filter_size,
        filter_threshold=filter_threshold, mask=mask,
        source_mask=source_mask, source_mask_options=source_mask_options,
        reject_skewed=reject_skewed, saturation=saturation,
        zero_area=zero_area, coverage_mask=coverage_mask,
        fill_value=fill_value, chunks=chunks, **options)
    return background


def is_subtracted(meta):
    """
    Whether a header says its image is already background-subtracted.

    Examples
    --------
    >>> from ezbkg_ccd.steps import is_subtracted
    >>> is_subtracted({'BKGSUB': True}), is_subtracted({'bkgsub': 'Y'})
    (True, True)
    >>> is_subtracted({}), is_subtracted({'BKGSUB': 'F'})
    (False, False)
    """
    if isinstance(meta, fits.Header):  # reading other cards' values may fail
        values = [card.value for card in meta.cards if card.keyword == 'BKGSUB']
    else:
        values = [meta[key] for key in meta
                  if str(key).strip().upper() == 'BKGSUB']
    return any(_affirmative(value) for value in values)


def _affirmative(value):
    """A header value meaning yes: T, True, 1, 'Y', 'YES', ..."""
    if isinstance(value, str):
        return value.strip().upper() in ('T', 'TRUE', 'Y', 'YES', '1')
    try:
        return bool(value == 1)
    except (TypeError, ValueError):
        return False


#: The keywords of `estimate_background` (for messages on misspelt ones).
PUBLIC_OPTIONS = keyword_names(estimate_background)


def subtract_background(ccd, background=None, *, gain=None,
                        add_keyword=True, resubtract=False, hdu=None,
                        chunks=None, **options):
    """
    Subtract the sky background from an image.

    Parameters
    ----------
    ccd : `~astropy.nddata.CCDData`, `~astropy.nddata.NDData`, \
`~astropy.units.Quantity`, `~numpy.ndarray` or path
        The 2-D image (see `estimate_background`); never modified.
    background : `~ezbkg_ccd.Background`, optional
        The background to remove; estimated from ``ccd`` with
        ``**options`` when not given.
    gain : float or `~astropy.units.Quantity`, optional
        Electrons per data unit, for the Poisson variance of sources
        when ``ccd`` has no uncertainty (data in electrons need none).
    add_keyword : bool, str, `~ccdproc.Keyword` or dict, optional
        ccdproc's logging: `True` (default) records the call under
        ``SUBBKG``; `False` records nothing; anything else is recorded
        as given.
    resubtract : bool, optional
        Subtract even if ``ccd`` is already background-subtracted
        (``BKGSUB = T`` in its header). By default such a frame is
        refused: subtracting twice removes the residual sky and replaces
        the true background with a near-zero one.
    hdu : int, str or (str, int), optional
        The image HDU of a FITS path or `~astropy.io.fits.HDUList` ``ccd``
        (see `estimate_background`).
    chunks : int or 'auto', optional
        Process the frame lazily on Dask in chunks of about this many
        rows (see `estimate_background`); so is a Dask frame, or any
        frame with a ``background`` whose maps are Dask arrays. The
        result then holds Dask arrays (data, mask and uncertainty), to
        compute or to write with `~ezbkg_ccd.write_with_background`,
        chunk by chunk.
    **options
        Keywords of `estimate_background` (only without ``background``).

    Returns
    -------
    result : `~ezbkg_ccd.SubtractedCCDData`
        A `~astropy.nddata.CCDData` that carries ``background`` (so that
        ``result.write(path)`` writes its ``BKG`` and ``BKGRMS`` too):
        ``ccd - background`` in the unit of ``ccd``, float32 (float64 for
        float64 input). ``mask`` is ``ccd.mask`` or every invalid pixel;
        ``uncertainty`` is the input's (same type) combined in quadrature
        with the background model error, or, without one, built from the
        background RMS, the model error and the Poisson term; ``meta``
        is a copy (a `~astropy.io.fits.Header` when ``ccd`` had none)
        with ``BKGSUB = True``, the provenance keywords and the call
        logged, replaced cards kept as ``HISTORY``; ``wcs`` is kept.

    Raises
    ------
    TypeError
        If an argument has the wrong type, or ``options`` are given with
        ``background``.
    ValueError
        As `estimate_background`, if ``background`` does not match the
        image shape, or if ``ccd`` is already background-subtracted and
        ``resubtract`` is `False`.
    astropy.units.UnitsError
        If ``background`` is not in the unit of ``ccd``.

    Examples
    --------
    >>> import numpy as np
    >>> from astropy.nddata import CCDData
    >>> from ezbkg_ccd import subtract_background
    >>> rng = np.random.default_rng(2)
    >>> ccd = CCDData(rng.normal(50.0, 2.0, (128, 128)), unit='electron')
    >>> result = subtract_background(ccd, box_size=32)
    >>> print(f'{np.mean(result.data):.2f}', result.meta['BKGSUB'])
    -0.03 True
    >>> result.meta['SUBBKG']
    'ccd=<CCDData>, box_size=32'
    """
    check_keywords(options.get('method', 'sep'), options,
                   options.get('source_mask_options'),
                   public=(*PUBLIC_OPTIONS, *SUBTRACT_OPTIONS),
                   function='subtract_background')
    arguments = {'ccd': ccd, 'hdu': hdu, 'background': background,
                 'gain': gain, 'resubtract': resubtract or None,
                 'chunks': chunks, **options}
    log = log_entries(add_keyword, LOG_KEYWORD,
                      {k: v for k, v in arguments.items() if v is not None})
    target = _target(ccd)
    ccd = _input(ccd, hdu, chunks)
    if is_subtracted(ccd.meta) and not resubtract:
        msg = ('ccd is already background-subtracted (BKGSUB = T in its '
               'header); subtracting again would remove what is left of the '
               'sky and replace its recorded background. Pass '
               'resubtract=True to subtract again')
        raise ValueError(msg)
    estimated = background is None
    if estimated:
        background = _estimate(ccd, target=target, chunks=chunks,
                               **options)[0]  # the raw result holds pixels
    elif not isinstance(background, Background):
        msg = ('background must be a Background, got '
               f'{type(background).__name__}')
        raise TypeError(msg)
    elif options:
        msg = (f'options {sorted(options)} are only used to estimate a '
               'background; do not pass them with background')
        raise TypeError(msg)
    if background.shape != ccd.shape:
        msg = (f'background has shape {background.shape}, but ccd has '
               f'shape {ccd.shape}')
        raise ValueError(msg)
    if background.unit != ccd.unit:
        msg = f'background is in {background.unit}, but ccd is in {ccd.unit}'
        raise u.UnitsError(msg)
    gain = as_gain(gain, ccd.unit)
    lazy = is_lazy(ccd, chunks) or background.is_dask
    if lazy:
        residual, mask, uncertainty = lazy_subtract(
            ccd, background, estimated=estimated, gain=gain, chunks=chunks)
    else:
        dtype = work_dtype(ccd.data.dtype)
        if background.data_load:
            dtype = np.result_type(dtype, background.data.dtype)
        residual = np.array(ccd.data, dtype=dtype, order='C')
        background.subtract_from(residual)
        mask = _output_mask(ccd, background, residual, estimated)
        uncertainty = subtracted_uncertainty(ccd, residual, background,
                                             gain=gain, private=estimated)
    meta = ccd.meta.copy() if ccd.meta else fits.Header()
    for key in KEYWORDS:  # this background's provenance, no stale card
        if key in background.header:
            set_keyword(meta, key, background.header[key],
                        background.header.comments[key])
        else:
            drop_keyword(meta, key)
    set_keyword(meta, 'BKGSUB', True, 'sky background subtracted')
    drop_keyword(meta, REBUILD_KEYWORD)  # of a file the input was read from
    for key, value in uncertainty_cards(ccd, gain).items():
        if value is None:
            drop_keyword(meta, key)
        else:
            set_keyword(meta, key, value, UNCERTAINTY_COMMENTS[key])
    for key, value in log.items():
        set_keyword(meta, key, value, '')
    if lazy:
        return with_mask(SubtractedCCDData(
            residual, unit=ccd.unit, uncertainty=uncertainty, meta=meta,
            wcs=ccd.wcs, copy=False, background=background), mask)
    return SubtractedCCDData(residual, unit=ccd.unit, mask=mask,
                             uncertainty=uncertainty, meta=meta, wcs=ccd.wcs,
                             copy=False, background=background)


def _output_mask(ccd, background, residual, estimated):
    """
    ``ccd.mask`` OR every invalid pixel of the subtraction.

    A background estimated from ``ccd`` itself already holds its invalid
    pixels. Otherwise they are those of the invalid-pixel rule with the
    settings the background records (``BKGSATLV``, ``BKGZAREA``), its own
    invalid pixels and the non-finite pixels of the result.
    """
    if estimated:
        return background.invalid_mask
    mask, _ = invalid_pixels(ccd, rule=recorded_rule(background.header))
    if background.invalid_mask is not None:
        mask |= as_mask(background.invalid_mask, shape=ccd.shape,
                        name='background.invalid_mask')
    mask |= ~np.isfinite(residual)
    return mask


#: The keywords of `subtract_background` besides those of
#: `estimate_background`.
SUBTRACT_OPTIONS = keyword_names(subtract_background)
