# Licensed under a 3-clause BSD style license - see LICENSE
"""
Data that SEP can take, and estimates back in the data's own terms.

SEP works in float32 and treats -1e30 as missing data. Before an
estimate, `condition` finds what it cannot take: the markers of missing
data (`sep_sentinels`), a range beyond float32 (`range_scaling`: a power
of two, exact) and a level so large that float32 would quantize the
noise (`float32_offset`: a level removed, exactly, from float64 data),
and prepares the working array accordingly; `restore` turns the
estimate of the prepared array into that of the data, with an RMS map
that is never negative.
"""

import dataclasses

import numpy as np

__all__ = []

#: SExtractor's and SEP's marker of missing data: SEP never uses a pixel
#: at or below this value, compared in float32.
SEP_INVALID_BELOW = np.float32(-1e30)


def _largest_float64_below(limit):
    """
    The largest float64 that float32 rounds to ``limit`` or below: about
    half-way to the next float32 up, found to the last bit.
    """
    above = np.nextafter(limit, np.float32(np.inf))
    value = (np.float64(limit) + np.float64(above)) / 2
    while np.float32(value) > limit:
        value = np.nextafter(value, -np.inf)
    while np.float32(np.nextafter(value, np.inf)) <= limit:
        value = np.nextafter(value, np.inf)
    return value


#: `SEP_INVALID_BELOW` for float64 data, as SEP's float32 conversion sees it.
_SENTINEL_LIMITS = {np.dtype(np.float32): SEP_INVALID_BELOW,
                    np.dtype(np.float64): _largest_float64_below(
                        SEP_INVALID_BELOW)}

#: Pixels at or below -1e30 mark missing data only in a frame whose
#: typical magnitude is at most this (ten orders of magnitude smaller).
_MARKER_FRAME_LIMIT = 1e20

#: Data whose largest valid magnitude lies outside ``[2**-100, 2**99]``
#: are rescaled by a power of two before estimation: SEP works in float32,
#: in which larger values overflow to inf (or read as SEP's -1e30 marker)
#: and smaller ones lose precision.
_SAFE_EXPONENTS = (-100, 99)

#: After rescaling, a pixel above this magnitude cannot be used (float32
#: holds up to about 2**128).
_FLOAT32_USABLE = 2.0**127


def _extremes(work, invalid, *, exact=False):
    """
    The least and greatest valid value (``(inf, -inf)`` without any).

    Unless ``exact``, two fast NaN-blind reductions over every pixel may
    give bounds instead, wider than the valid values' (masked pixels
    included), when those are finite.
    """
    if not exact:
        bounds = (float(np.fmin.reduce(work, axis=None)),
                  float(np.fmax.reduce(work, axis=None)))
        if np.isfinite(bounds).all():
            return bounds
    valid = ~invalid
    return (float(work.min(where=valid, initial=np.inf)),
            float(work.max(where=valid, initial=-np.inf)))


def _typical(work, pixels):
    """The median magnitude of ``work[pixels]`` (0 without any)."""
    if not pixels.any():
        return 0.0
    return float(np.median(np.abs(work[pixels], dtype=np.float64)))


def sep_sentinels(work, invalid, *, extremes=None):
    """
    Pixels that mark missing data the way SExtractor and SEP do.

    A pixel at or below -1e30 (compared in float32, as SEP does) is such
    a marker, unless the frame's typical magnitude is within ten orders
    of magnitude of it (data in erg/s, scaled by 1e35, say), where it is
    data like any other.

    Parameters
    ----------
    work : `~numpy.ndarray`
        float32 or float64 image.
    invalid : `~numpy.ndarray` of bool
        Pixels already known to be unusable.
    extremes : (float, float), optional
        Bounds of the valid values (`_extremes`), if known.

    Returns
    -------
    sentinels : `~numpy.ndarray` of bool or None
        The markers, `None` if there are none.

    Examples
    --------
    >>> import numpy as np
    >>> from ezbkg_ccd._conditioning import sep_sentinels
    >>> valid = np.zeros((1, 4), bool)
    >>> sep_sentinels(np.array([[-1e30, -1e31, 3.0, 5.0]]), valid)
    array([[ True,  True, False, False]])
    >>> print(sep_sentinels(np.array([[-1e30, 3e35, -2e35, 1e35]]), valid))
    None
    """
    limit = _SENTINEL_LIMITS[work.dtype]
    if (extremes or _extremes(work, invalid))[0] > limit:
        return None
    candidates = work <= limit
    candidates &= ~invalid
    if not candidates.any():
        return None
    if _typical(work, ~(invalid | candidates)) > _MARKER_FRAME_LIMIT:
        return None
    return candidates


def _within_range(extremes):
    """Whether values within ``extremes`` need no scaling (or there are
    none: ``(inf, -inf)``)."""
    largest = max(abs(value) for value in extremes)
    return largest in (0, np.inf) or (
        _SAFE_EXPONENTS[0] <= int(np.frexp(largest)[1]) <= _SAFE_EXPONENTS[1])


def range_scaling(work, invalid, *, extremes=None):
    """
    The power of two that brings ``work`` into the range SEP handles.

    Most frames need none: ``(0, None)`` is returned when the largest
    valid magnitude is within ``[2**-100, 2**99]`` (or all are 0).
    Otherwise ``work * 2**k`` brings the median valid magnitude near 1
    (scaling by a power of two is exact, so ``2**-k`` times the estimate
    of the scaled data is the estimate of the data), and the valid pixels
    that would still exceed the float32 range, a few 1e300 pixels in a
    sky of 100, say, cannot be used.

    Parameters
    ----------
    work : `~numpy.ndarray`
        Float image.
    invalid : `~numpy.ndarray` of bool
        Pixels already known to be unusable.
    extremes : (float, float), optional
        Bounds of the valid values (`_extremes`), if known.

    Returns
    -------
    exponent : int
        ``k``.
    overflow : `~numpy.ndarray` of bool or None
        The valid pixels beyond float32 range after scaling, if any.

    Examples
    --------
    >>> import numpy as np
    >>> from ezbkg_ccd._conditioning import range_scaling
    >>> valid = np.zeros((1, 3), bool)
    >>> range_scaling(np.array([[1e-3, 2.0, -5.0]]), valid)
    (0, None)
    >>> range_scaling(np.array([[1e300, 3e300, -2e300]]), valid)[0]
    -998
    >>> range_scaling(np.array([[100.0, 90.0, 1e300]]), valid)
    (-7, array([[False, False,  True]]))
    """
    bounds = extremes or _extremes(work, invalid)
    if not _within_range(bounds):  # perhaps masked pixels only
        bounds = _extremes(work, invalid, exact=True)
    if _within_range(bounds):
        return 0, None
    largest = max(abs(value) for value in bounds)
    valid = ~invalid
    exponent = -int(np.frexp(_typical(work, valid) or largest)[1])
    with np.errstate(over='ignore'):
        limit = np.float64(np.ldexp(_FLOAT32_USABLE, -exponent))
    overflow = np.abs(work) > limit
    overflow &= valid
    return exponent, overflow if overflow.any() else None


#: A level is removed from float64 data before SEP when it is more than
#: this many times their spread: float32 would quantize their noise.
_OFFSET_RATIO = 1e4

#: Every how many pixels the level and spread are sampled.
SAMPLE_STEP = 97

#: With fewer sampled values than this, every usable value is used.
SAMPLE_LEAST = 100


def float32_offset(work, invalid):
    """
    A level to remove from float64 data so that float32 keeps their
    noise, or 0.

    SEP computes in float32, whose resolution is ``2**-24`` of a value:
    a sky of 2e12 counts with noise 50 (64-bit integers) comes out
    quantized in steps of 2**17, its noise measured as 0. The median of
    a sample of the valid pixels is removed when it exceeds
    ``1e4`` times their spread (their MAD), or when they have none.

    Examples
    --------
    >>> import numpy as np
    >>> from ezbkg_ccd._conditioning import float32_offset
    >>> data = 2e12 + np.random.default_rng(0).normal(0, 50, (64, 64))
    >>> valid = np.zeros(data.shape, bool)
    >>> round(float32_offset(data, valid) / 1e12, 3)
    2.0
    >>> float32_offset(data - 2e12, valid)
    0.0
    """
    if work.dtype != np.float64:
        return 0.0  # float32 data are already at SEP's precision
    sample = work.ravel()[::SAMPLE_STEP][~invalid.ravel()[::SAMPLE_STEP]]
    if sample.size < SAMPLE_LEAST:
        sample = work[~invalid]
    return sample_offset(sample)


def sample_offset(sample):
    """`float32_offset` of a sample of the valid float64 pixels."""
    if not sample.size:
        return 0.0
    level = float(np.median(sample))
    spread = float(np.median(np.abs(sample - level)))
    return level if abs(level) > _OFFSET_RATIO * spread else 0.0


@dataclasses.dataclass(frozen=True)
class Conditioning:
    """
    What `condition` found.

    Attributes
    ----------
    problems : dict
        ``'sentinel'`` and ``'overflow'`` masks of unusable pixels, for
        those that occur.
    offset : float
        Level removed first (`float32_offset`).
    exponent : int
        Then the power of two to scale by (`range_scaling`).
    """

    problems: dict
    offset: float = 0.0
    exponent: int = 0


def lazy_refusal(bounds, sample, dtype, *, markers=False):
    """
    Why a frame cannot be estimated without `condition`'s rescaling (as
    a frame processed chunk by chunk must be), or `None`.

    Parameters
    ----------
    bounds : (float, float)
        The least and greatest finite value, SEP's markers of missing data
        left out (``(inf, -inf)`` without any).
    sample : `~numpy.ndarray`
        The sample of the valid values that `float32_offset` takes.
    dtype : `~numpy.dtype`
        The working dtype (`work_dtype`).
    markers : bool, optional
        Whether the frame has pixels at or below -1e30.

    Examples
    --------
    >>> import numpy as np
    >>> from ezbkg_ccd._conditioning import lazy_refusal
    >>> sample = np.random.default_rng(0).normal(100, 5, 1000)
    >>> print(lazy_refusal((80.0, 120.0), sample, np.dtype('f4')))
    None
    >>> lazy_refusal((80.0, 1e35), sample, np.dtype('f4'))
    'its values reach 1e+35, beyond what SEP handles in float32'
    """
    if not _within_range(bounds):
        largest = max(abs(value) for value in bounds)
        return f'its values reach {largest:.3g}, beyond what SEP handles in float32'
    offset = sample_offset(sample) if dtype == np.float64 else 0.0
    if offset and not (np.ptp(sample) == 0 and offset == np.float32(offset)):
        return ('its level is over 1e4 times its noise, which float32 '
                'would quantize')
    if markers and _typical(sample, np.ones(sample.shape, bool)) > \
            _MARKER_FRAME_LIMIT:
        return 'its values are so large that -1e30 may be data'
    return None


def sentinel_limit(dtype):
    """The value at or below which a pixel of ``dtype`` (float32 or
    float64) is SEP's marker of missing data."""
    return _SENTINEL_LIMITS[np.dtype(dtype)]


def condition(work, invalid):
    """
    What SEP cannot take in ``work``, beyond the ``invalid`` pixels, and
    ``work`` made fit for it.

    Returns
    -------
    conditioning : `Conditioning`
    prepared : `~numpy.ndarray`
        ``(work - offset) * 2**exponent``: a new array, or ``work`` itself
        when neither is needed.
    """
    problems = {}
    extremes = _extremes(work, invalid)
    sentinels = sep_sentinels(work, invalid, extremes=extremes)
    if sentinels is not None:
        problems['sentinel'] = sentinels
        invalid = invalid | sentinels
        extremes = None  # without the sentinels
    offset = float32_offset(work, invalid)
    if offset:
        work = work - offset
        extremes = None
    exponent, overflow = range_scaling(work, invalid, extremes=extremes)
    if overflow is not None:
        problems['overflow'] = overflow
    if exponent:
        work = np.ldexp(work, exponent)
    return Conditioning(problems, offset, exponent), work


def _restored(values, conditioning, offset):
    """A map of prepared data back in data terms (lazily for a callable)."""
    if callable(values):
        return lambda: _restored(values(), conditioning, offset)
    if conditioning.exponent:
        values = np.ldexp(values, -conditioning.exponent)
    if offset:
        values = values + values.dtype.type(offset)
    return values


def _nonnegative(rms):
    """
    The RMS map with negative values set to 0 (lazily for a callable).

    SEP's bicubic spline of the mesh RMS can dip below zero between
    meshes of very different noise (a bright galaxy filling the frame,
    tiny meshes); a noise level cannot be negative.
    """
    if callable(rms):
        return lambda: _nonnegative(rms())
    if np.fmin.reduce(rms, axis=None) < 0:  # NaN-blind, no temporary
        return np.maximum(rms, 0)
    return rms


def restore(estimate, conditioning):
    """
    The estimate of the data from that of the prepared data, with its
    RMS map made non-negative.

    Parameters
    ----------
    estimate : `~ezbkg_ccd.BackgroundEstimate`
    conditioning : `Conditioning`

    Returns
    -------
    estimate : `~ezbkg_ccd.BackgroundEstimate`
    """
    changes = {'rms': _nonnegative(_restored(estimate.rms, conditioning, 0))}
    if conditioning.offset or conditioning.exponent:
        scale = 2.0 ** -conditioning.exponent
        changes.update(
            background=_restored(estimate.background, conditioning,
                                 conditioning.offset),
            global_back=estimate.global_back * scale + conditioning.offset,
            global_rms=estimate.global_rms * scale, subtract_from=None)
        if estimate.meshes is not None:
            back, rms = (np.asarray(grid, np.float64)
                         for grid in estimate.meshes[:2])
            changes['meshes'] = (
                _restored(back, conditioning, conditioning.offset),
                _restored(rms, conditioning, 0), *estimate.meshes[2:])
    return dataclasses.replace(estimate, **changes)


def work_dtype(dtype):
    """
    Float dtype in which SEP works: float64 for float64 data and for
    integers wider than 16 bits (which float32 cannot hold exactly),
    float32 for everything else.
    """
    wide = dtype.itemsize >= 8 if dtype.kind == 'f' else (
        dtype.kind in 'iu' and dtype.itemsize >= 4)
    return np.dtype(np.float64 if wide else np.float32)


def working_copy(data):
    """
    Return ``data`` as a native, C-contiguous float array for SEP.

    No copy is made when ``data`` already is one (float32 or float64).
    """
    return np.ascontiguousarray(data, dtype=work_dtype(data.dtype))
