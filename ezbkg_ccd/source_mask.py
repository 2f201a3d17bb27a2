# Licensed under a 3-clause BSD style license - see LICENSE
"""
Automatic source masks: detect, dilate, re-estimate, iterate.
"""

import numpy as np
import sep
from scipy import ndimage

from ezbkg_ccd._inputs import as_ccddata, working_copy
from ezbkg_ccd.steps import estimate_background

__all__ = ['make_source_mask']


def _disk(radius):
    y, x = np.ogrid[-radius:radius + 1, -radius:radius + 1]
    return x * x + y * y <= radius * radius


def make_source_mask(ccd, *, mask=None, threshold=1.5, min_area=5,
                     dilate=2, box_size=64, filter_size=3, max_iters=5,
                     tolerance=0.01):
    """
    Mask the sources of an image automatically.

    The background is estimated, sources are detected with SEP on the
    background-subtracted image at ``threshold`` times the background
    RMS, their footprints are grown by ``dilate`` pixels, the background
    is estimated again without them, and this repeats until the map
    changes by less than ``tolerance`` times the global RMS, or
    ``max_iters`` times.

    Parameters
    ----------
    ccd : `~astropy.nddata.CCDData`, array_like or path
        The image.
    mask : array_like of bool, optional
        Invalid pixels, never used (on top of ``ccd.mask`` and non-finite
        pixels).
    threshold : float, optional
        Detection threshold in units of the background RMS (default 1.5).
    min_area : int, optional
        Minimum number of pixels of a source (default 5).
    dilate : int, optional
        Radius in pixels of the disk the footprints are grown by
        (default 2; 0 keeps them as detected).
    box_size, filter_size : int or (int, int), optional
        Mesh and filter sizes of the background estimates (64 and 3).
    max_iters : int, optional
        At most this many detect-and-estimate rounds (default 5).
    tolerance : float, optional
        Stop when the background changes by less than this fraction of
        the global RMS (default 0.01).

    Returns
    -------
    source_mask : `~numpy.ndarray` of bool

    Examples
    --------
    >>> import numpy as np
    >>> from ezbkg_ccd import make_source_mask
    >>> rng = np.random.default_rng(0)
    >>> data = rng.normal(100.0, 5.0, (128, 128))
    >>> data[60:68, 60:68] += 200.0
    >>> source_mask = make_source_mask(data, box_size=32)
    >>> bool(source_mask[60:68, 60:68].all())
    True
    >>> float(source_mask[:40].mean()) < 0.02  # noise peaks are rare
    True
    """
    ccd = as_ccddata(ccd)
    for name, value in (('threshold', threshold), ('tolerance', tolerance)):
        if not (isinstance(value, (int, float)) and value > 0):
            msg = f'{name} must be a positive number, got {value!r}'
            raise ValueError(msg)
    for name, value, low in (('min_area', min_area, 1),
                             ('max_iters', max_iters, 1), ('dilate', dilate, 0)):
        if not isinstance(value, int) or value < low:
            msg = f'{name} must be an int >= {low}, got {value!r}'
            raise ValueError(msg)
    data = working_copy(ccd.data)
    options = {'box_size': box_size, 'filter_size': filter_size, 'mask': mask}
    background = estimate_background(ccd, **options)
    invalid = np.ascontiguousarray(background.invalid_mask)
    sep.set_extract_pixstack(max(300_000, data.size))
    sep.set_sub_object_limit(4096)
    source_mask = np.zeros(data.shape, bool)
    for _ in range(max_iters):
        residual = np.subtract(data, background.data, dtype=data.dtype)
        residual[invalid] = 0
        _, segmentation = sep.extract(
            residual, threshold, err=background.rms, mask=invalid,
            minarea=min_area, segmentation_map=True, clean=False,
            filter_type='conv')
        source_mask = segmentation > 0
        if dilate:
            source_mask = ndimage.binary_dilation(source_mask, _disk(dilate))
        previous = background
        background = estimate_background(ccd, source_mask=source_mask,
                                         **options)
        change = np.max(np.abs(background.data - previous.data))
        if change < tolerance * background.global_rms:
            break
    return source_mask
