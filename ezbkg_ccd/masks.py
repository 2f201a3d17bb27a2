# Licensed under a 3-clause BSD style license - see LICENSE
"""
Invalid-pixel masks: the documented rule behind ``ScienceImage.invalidmask``.
"""

import numpy as np
from scipy import ndimage

from ezbkg_ccd._inputs import as_ccddata, as_mask

__all__ = ['invalid_pixel_mask', 'saturation_level', 'SATURATION_KEYWORDS']

#: Header keywords searched, in order, for the saturation level.
SATURATION_KEYWORDS = ('SATURATE', 'SATLEVEL', 'SATURATN')


def saturation_level(header):
    """
    Return the saturation level from a header, or `None`.

    Examples
    --------
    >>> from ezbkg_ccd.masks import saturation_level
    >>> saturation_level({'SATURATE': 60000}), saturation_level({})
    (60000.0, None)
    """
    for key in SATURATION_KEYWORDS:
        value = header.get(key)
        if value is not None and not isinstance(value, (str, bool)):
            return float(value)
    return None


def invalid_pixel_mask(ccd, *, saturation='header', zero_area=100):
    """
    Pixels that must never be used: the rule of ``invalidmask``.

    A pixel is invalid if any of these holds:

    1. it is NaN or +-inf;
    2. ``ccd.mask`` is `True` there;
    3. it is at or above the saturation level;
    4. it is exactly 0 in a connected (8-neighbour) region of at least
       ``zero_area`` zero pixels: chip gaps, dead columns, zero-padded
       borders. Isolated zeros are valid data.

    Parameters
    ----------
    ccd : `~astropy.nddata.CCDData`, array_like or path
        The image.
    saturation : float, 'header' or None, optional
        The saturation level; ``'header'`` (default) reads ``SATURATE``,
        ``SATLEVEL`` or ``SATURATN`` from the header (no saturation mask
        if none is present); `None` masks nothing for saturation.
    zero_area : int or None, optional
        Smallest zeroed region masked (default 100 pixels); `None`
        disables rule 4.

    Returns
    -------
    mask : `~numpy.ndarray` of bool

    Examples
    --------
    >>> import numpy as np
    >>> from ezbkg_ccd.masks import invalid_pixel_mask
    >>> data = np.full((50, 50), 10.0)
    >>> data[:, 20] = 0.0          # a dead column: 50 zero pixels
    >>> data[5, 5] = 0.0           # an isolated zero: kept
    >>> data[9, 9] = np.nan
    >>> data[30, 30] = 7e4
    >>> mask = invalid_pixel_mask(data, saturation=6e4, zero_area=20)
    >>> int(mask.sum()), bool(mask[5, 5])
    (52, False)
    """
    ccd = as_ccddata(ccd)
    data = ccd.data
    with np.errstate(invalid='ignore'):
        mask = ~np.isfinite(data) if data.dtype.kind == 'f' else np.zeros(
            data.shape, bool)
        if ccd.mask is not None:
            mask |= as_mask(ccd.mask, name='ccd.mask', shape=data.shape)
        if isinstance(saturation, str):
            if saturation != 'header':
                msg = ("saturation must be a number, 'header' or None, got "
                       f'{saturation!r}')
                raise ValueError(msg)
            saturation = saturation_level(ccd.meta)
        if saturation is not None:
            mask |= data >= saturation
    if zero_area is not None:
        if not isinstance(zero_area, int) or zero_area < 1:
            msg = f'zero_area must be a positive int or None, got {zero_area!r}'
            raise ValueError(msg)
        labels, count = ndimage.label(data == 0, structure=np.ones((3, 3)))
        if count:
            sizes = np.bincount(labels.ravel())
            large = sizes >= zero_area
            large[0] = False
            mask |= large[labels]
    return mask
