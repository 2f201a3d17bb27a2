# Licensed under a 3-clause BSD style license - see LICENSE
"""
The one validation boundary: user input checked and converted once.

Every public entry point funnels its arguments through these helpers,
one per kind of check, so each check and its message exist once. Types
are checked first (`TypeError`), then values (`ValueError`); every
message names the parameter: ``"<name> must be <what>, got <value>"``.
"""

import dataclasses
import os
import types
from numbers import Integral, Real

import astropy.units as u
import numpy as np
from astropy.io import fits
from astropy.nddata import CCDData, NDData

from ezbkg_ccd._dask import is_dask, with_mask
from ezbkg_ccd._reader import hdulist_ccddata, read_ccddata
from ezbkg_ccd.registry import get_estimator, uses_meshes

__all__ = []


#: What holds an image HDU to choose from (``hdu=``).
_FILES = (str, os.PathLike, fits.HDUList)


def as_ccddata(ccd, *, hdu=None):
    """
    Return ``ccd`` as a `~astropy.nddata.CCDData` without copying data.

    `~astropy.nddata.CCDData` is returned as is; `~astropy.nddata.NDData`,
    masked arrays, `~astropy.units.Quantity` and plain arrays are wrapped
    (a unitless input gets ``adu``); a path is read from FITS, and a path
    or `~astropy.io.fits.HDUList` gives its image HDU ``hdu`` (default:
    the first with image data), with its ``MASK`` and ``UNCERT``; an
    image HDU (primary, extension or tile-compressed) is read as a file
    of that HDU alone.
    """
    if hdu is not None and not isinstance(ccd, _FILES):
        msg = ('hdu chooses an HDU of a FITS path or HDUList; ccd is a '
               f'{type(ccd).__name__}')
        raise TypeError(msg)
    if isinstance(ccd, CCDData):
        result = ccd
    elif isinstance(ccd, (str, os.PathLike)):
        result = read_ccddata(ccd, hdu=hdu)
    elif isinstance(ccd, fits.HDUList):
        result = hdulist_ccddata(ccd, hdu=hdu)
    elif isinstance(ccd, (fits.PrimaryHDU, fits.ImageHDU,
                          fits.CompImageHDU)):
        result = hdulist_ccddata(fits.HDUList([ccd]), hdu=0,
                                 path=f'the {type(ccd).__name__}')
    elif isinstance(ccd, NDData):
        lazy_mask = is_dask(ccd.mask)
        result = with_mask(CCDData(
            ccd.data, unit=ccd.unit or u.adu,
            mask=None if lazy_mask else ccd.mask,
            uncertainty=ccd.uncertainty, meta=ccd.meta, wcs=ccd.wcs,
            copy=False), ccd.mask if lazy_mask else None)
    elif isinstance(ccd, u.Quantity):
        result = CCDData(ccd.value, unit=ccd.unit, copy=False)
    elif isinstance(ccd, np.ma.MaskedArray):
        result = CCDData(ccd.data, unit=u.adu,
                         mask=np.ma.getmaskarray(ccd), copy=False)
    elif isinstance(ccd, np.ndarray) or is_dask(ccd):
        result = CCDData(ccd, unit=u.adu, copy=False)
    else:
        msg = ('ccd must be a CCDData, NDData, Quantity, numpy or Dask '
               'array, FITS image HDU, HDUList or FITS path, got '
               f'{type(ccd).__name__}')
        raise TypeError(msg)
    check_image(result.data, name='ccd')
    return result


def check_image(data, *, name):
    """Raise unless ``data`` is a non-empty, numeric, 2-D array."""
    if data.ndim != 2:
        msg = f'{name} must be 2-D, got {data.ndim} dimension(s)'
        raise ValueError(msg)
    if data.size == 0:
        msg = f'{name} is empty (shape {data.shape})'
        raise ValueError(msg)
    if not (np.issubdtype(data.dtype, np.number)
            or data.dtype == np.bool_):
        msg = f'{name} must hold numbers, got dtype {data.dtype}'
        raise TypeError(msg)
    if np.issubdtype(data.dtype, np.complexfloating):
        msg = (f'{name} must hold real numbers, got dtype {data.dtype}; pass '
               'the real part (or the modulus) explicitly')
        raise TypeError(msg)


def as_pair(value, *, name, odd=False, upper_bound=None):
    """
    Return a positive int or ``(ny, nx)`` pair as a tuple of two ints.

    With ``odd``, each size must be odd (median-filter windows); with
    ``upper_bound`` (an image shape), no size may exceed it.

    Examples
    --------
    >>> from ezbkg_ccd._validation import as_pair
    >>> as_pair(64, name='box_size'), as_pair((31, 63), name='box_size')
    ((64, 64), (31, 63))
    >>> as_pair(128, name='box_size', upper_bound=(100, 200))
    Traceback (most recent call last):
    ...
    ValueError: box_size (128, 128) is larger than the image (100, 200); ...
    """
    values = np.atleast_1d(np.asarray(value, dtype=object))
    kind = 'positive odd int' if odd else 'positive int'
    if (values.ndim != 1 or values.size not in (1, 2)
            or not all(isinstance(v, Integral) and not isinstance(v, bool)
                       for v in values)):
        msg = f'{name} must be a {kind} or a (ny, nx) pair, got {value!r}'
        raise TypeError(msg)
    pair = tuple(int(v) for v in np.broadcast_to(values, 2))
    if min(pair) < 1 or (odd and not all(v % 2 for v in pair)):
        msg = f'{name} must be a {kind} or a (ny, nx) pair, got {value!r}'
        raise ValueError(msg)
    if upper_bound is not None and any(
            size > bound for size, bound in zip(pair, upper_bound,
                                                strict=True)):
        msg = (f'{name} {pair} is larger than the image '
               f'{tuple(upper_bound)}; use a smaller {name} or '
               'method="constant"')
        raise ValueError(msg)
    return pair


def as_number(value, *, name, zero=False):
    """
    Return a finite positive real number (or 0, with ``zero``) as a float.

    Python and numpy numbers are accepted, `bool` is not.

    Examples
    --------
    >>> import numpy as np
    >>> from ezbkg_ccd._validation import as_number
    >>> as_number(np.float32(1.5), name='threshold')
    1.5
    >>> as_number(0, name='filter_threshold', zero=True)
    0.0
    >>> as_number(-1, name='threshold')
    Traceback (most recent call last):
    ...
    ValueError: threshold must be a positive number, got -1
    """
    if not isinstance(value, Real) or isinstance(value, (bool, np.bool_)):
        msg = f'{name} must be a number, got {value!r}'
        raise TypeError(msg)
    if not (np.isfinite(value) and (value >= 0 if zero else value > 0)):
        what = 'a number >= 0' if zero else 'a positive number'
        msg = f'{name} must be {what}, got {value!r}'
        raise ValueError(msg)
    return float(value)


def as_int(value, *, name, minimum=1):
    """
    Return an int of at least ``minimum``.

    Python and numpy integers are accepted, `bool` is not.

    Examples
    --------
    >>> import numpy as np
    >>> from ezbkg_ccd._validation import as_int
    >>> as_int(np.int64(3), name='n_threads')
    3
    >>> as_int(2.0, name='n_threads')
    Traceback (most recent call last):
    ...
    TypeError: n_threads must be an int, got 2.0
    """
    if not isinstance(value, Integral) or isinstance(value, (bool, np.bool_)):
        msg = f'{name} must be an int, got {value!r}'
        raise TypeError(msg)
    if value < minimum:
        msg = f'{name} must be an int >= {minimum}, got {value!r}'
        raise ValueError(msg)
    return int(value)


def as_choice(value, *, name, choices):
    """
    Return ``value`` if it is one of ``choices``.

    Examples
    --------
    >>> from ezbkg_ccd._validation import as_choice
    >>> as_choice('spline', name='edge', choices=('spline', 'adaptive'))
    'spline'
    """
    if not isinstance(value, str):
        msg = f'{name} must be a str, got {value!r}'
        raise TypeError(msg)
    if value not in choices:
        msg = f'{name} must be one of {", ".join(map(repr, choices))}, got {value!r}'
        raise ValueError(msg)
    return value


def as_gain(gain, unit):
    """
    The gain in electrons per ``unit`` as a float, or `None` (unknown).

    Data in electrons have a gain of 1; ``gain`` may be a number (taken
    to be electrons per data unit) or a `~astropy.units.Quantity`.
    """
    if gain is None:
        return 1.0 if unit == u.electron else None
    if isinstance(gain, u.Quantity):
        try:
            gain = gain.to_value(u.electron / unit)
        except u.UnitConversionError as exc:
            msg = f'gain {gain} cannot be converted to electron / {unit}'
            raise u.UnitsError(msg) from exc
    elif not isinstance(gain, Real) or isinstance(gain, (bool, np.bool_)):
        msg = f'gain must be a number or a Quantity, got {type(gain).__name__}'
        raise TypeError(msg)
    return as_number(gain, name='gain')


def as_rejection(value):
    """The skew threshold of ``reject_skewed`` (`True`: 5), or `None` (off)."""
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)):
        return 5.0 if value else None
    if not isinstance(value, Real):
        msg = f'reject_skewed must be a bool or a number, got {value!r}'
        raise TypeError(msg)
    return as_number(value, name='reject_skewed')


@dataclasses.dataclass(frozen=True)
class InvalidRule:
    """
    The checked settings of the invalid-pixel rule
    (`~ezbkg_ccd.invalid_pixel_mask`): a saturation level (a number,
    ``'header'`` or `None`) and the least zeroed area (or `None`).
    """

    saturation: float | str | None = 'header'
    zero_area: int | None = 100


def as_rule(saturation='header', zero_area=100):
    """
    Check the settings of the invalid-pixel rule once.

    Examples
    --------
    >>> from ezbkg_ccd._validation import as_rule
    >>> as_rule(6e4, None)
    InvalidRule(saturation=60000.0, zero_area=None)
    >>> as_rule('max')
    Traceback (most recent call last):
    ...
    ValueError: saturation must be a positive number, 'header' or None, got 'max'
    """
    what = "a positive number, 'header' or None"
    if isinstance(saturation, str):
        if saturation.strip().lower() != 'header':
            msg = f'saturation must be {what}, got {saturation!r}'
            raise ValueError(msg)
        saturation = 'header'
    elif saturation is not None:
        if not isinstance(saturation, Real) or isinstance(
                saturation, (bool, np.bool_)):
            msg = f'saturation must be {what}, got {saturation!r}'
            raise TypeError(msg)
        saturation = as_number(saturation, name='saturation')
    return InvalidRule(saturation, None if zero_area is None
                       else as_int(zero_area, name='zero_area'))


#: The rule by default.
DEFAULT_RULE = InvalidRule()

#: The header keywords that record a rule's settings, by field.
_RULE_KEYWORDS = {'saturation': 'BKGSATLV', 'zero_area': 'BKGZAREA'}


def rule_cards(rule):
    """
    The provenance cards of ``rule`` (``'none'`` for `None`), which
    `recorded_rule` reads back.
    """
    return {key: 'none' if getattr(rule, field) is None
            else getattr(rule, field)
            for field, key in _RULE_KEYWORDS.items()}


def recorded_rule(header):
    """
    The rule a background's ``header`` records (`rule_cards`), checked;
    `DEFAULT_RULE` for a header written before rules were recorded.

    Examples
    --------
    >>> from ezbkg_ccd._validation import InvalidRule, recorded_rule, rule_cards
    >>> recorded_rule(rule_cards(InvalidRule(6e4, None)))
    InvalidRule(saturation=60000.0, zero_area=None)
    >>> recorded_rule({}) == DEFAULT_RULE
    True
    """
    values = [header.get(key, getattr(DEFAULT_RULE, field))
              for field, key in _RULE_KEYWORDS.items()]
    try:
        return as_rule(*(None if value == 'none' else value
                         for value in values))
    except (TypeError, ValueError) as exc:
        msg = f'background has a malformed invalid-pixel rule: {exc}'
        raise ValueError(msg) from exc


def as_mask(mask, *, name, shape):
    """Return ``mask`` as a boolean array of ``shape`` (`None` passes)."""
    if mask is None:
        return None
    if isinstance(mask, NDData):
        mask = mask.data
    mask = np.asanyarray(mask)
    if not (mask.dtype == np.bool_ or np.issubdtype(mask.dtype, np.number)):
        msg = f'{name} must be a boolean array, got dtype {mask.dtype}'
        raise TypeError(msg)
    if mask.shape != tuple(shape):
        msg = (f'{name} must have the image shape {tuple(shape)}, '
               f'got {mask.shape}')
        raise ValueError(msg)
    return mask.astype(bool, copy=False)


@dataclasses.dataclass(frozen=True)
class Settings:
    """
    The validated settings of one estimate: what the engine
    (`ezbkg_ccd._engine`) runs on. Made by `as_settings`.

    Attributes
    ----------
    method : str
        The method name as given (stripped).
    estimator : callable
        Its registered estimator.
    uses_meshes : bool
        Whether it works on the mesh grid (`~ezbkg_ccd.register_estimator`).
    box_size, filter_size : (int, int)
    filter_threshold : float
    reject_skewed : float or None
        Skew threshold of mesh rejection, `None` when off.
    options : `~types.MappingProxyType`
        Further keywords for the estimator (read-only).
    """

    method: str
    estimator: object
    uses_meshes: bool
    box_size: tuple
    filter_size: tuple
    filter_threshold: float
    reject_skewed: float | None
    options: types.MappingProxyType


def as_settings(method, *, shape, box_size, filter_size, filter_threshold,
                reject_skewed=False, options=None):
    """
    Check the settings of an estimate of an image of ``shape`` once.

    The box is bounded by the image for an estimator on the mesh grid
    (every one not registered with ``uses_meshes=False``).
    """
    estimator = get_estimator(method)
    meshes = uses_meshes(method)
    return Settings(
        method=method.strip(), estimator=estimator, uses_meshes=meshes,
        box_size=as_pair(box_size, name='box_size',
                         upper_bound=shape if meshes else None),
        filter_size=as_pair(filter_size, name='filter_size', odd=True),
        filter_threshold=as_number(filter_threshold, name='filter_threshold',
                                   zero=True),
        reject_skewed=as_rejection(reject_skewed),
        options=types.MappingProxyType(dict(options or {})))
