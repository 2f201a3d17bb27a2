# Licensed under a 3-clause BSD style license - see LICENSE
"""
Validation of user input at the package boundary.

Every public entry point funnels its arguments through these helpers, so
each check (and its message) exists exactly once.
"""

import os
from numbers import Integral

import astropy.units as u
import numpy as np
from astropy.io import fits
from astropy.nddata import CCDData, NDData

from ezbkg_ccd._reader import hdulist_ccddata, read_ccddata

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
        result = CCDData(ccd.data, unit=ccd.unit or u.adu, mask=ccd.mask,
                         uncertainty=ccd.uncertainty, meta=ccd.meta,
                         wcs=ccd.wcs, copy=False)
    elif isinstance(ccd, u.Quantity):
        result = CCDData(ccd.value, unit=ccd.unit, copy=False)
    elif isinstance(ccd, np.ma.MaskedArray):
        result = CCDData(ccd.data, unit=u.adu,
                         mask=np.ma.getmaskarray(ccd), copy=False)
    elif isinstance(ccd, np.ndarray):
        result = CCDData(ccd, unit=u.adu, copy=False)
    else:
        msg = ('ccd must be a CCDData, NDData, Quantity, numpy array, FITS '
               f'image HDU, HDUList or FITS path, got {type(ccd).__name__}')
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


def as_pair(value, *, name, odd=False):
    """
    Return a positive int or ``(ny, nx)`` pair as a tuple of two ints.

    With ``odd``, each size must be odd (median-filter windows).
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
    return pair


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
