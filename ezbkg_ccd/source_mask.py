# Licensed under a 3-clause BSD style license - see LICENSE
"""
Automatic source masks: detect, dilate, re-estimate, iterate.
"""


import numpy as np
import sep
from astropy.nddata import CCDData
from scipy import ndimage

from ezbkg_ccd._conditioning import range_scaling
from ezbkg_ccd._inputs import as_ccddata, working_copy
from ezbkg_ccd.registry import keyword_names
from ezbkg_ccd.steps import estimate_background

__all__ = ['make_source_mask', 'MAX_MASKED']

#: Footprint growth is reduced (halved, repeatedly) while sources and
#: invalid pixels together would cover more than this fraction of the
#: image, so that enough meshes stay usable in crowded fields.
MAX_MASKED = 0.5


def _growth(objects, rms, *, threshold, wing_level, dilate, max_growth):
    """
    Pixels to grow each detected footprint by, from its size and peak.

    For an exponential profile through the peak ``p`` (in RMS units)
    that crosses the detection ``threshold`` at the footprint's
    equivalent radius ``R``, the light falls to ``wing_level`` at
    ``R * ln(p / wing_level) / ln(p / threshold)``: faint extended
    sources grow by several times their size, bright compact ones less.
    """
    radius = np.sqrt(objects['npix'] / np.pi)
    peak = np.maximum(objects['peak'] / rms, threshold * 1.05)
    ratio = np.log(peak / wing_level) / np.log(peak / threshold)
    ratio = np.clip(ratio, 1.0, max_growth)
    return np.maximum(radius * (ratio - 1.0), dilate)


def _faint_wings(residual, masked, extended, rms, threshold, scale):
    """
    The faint wings of extended sources.

    Connected regions brighter than ``threshold`` in the residual
    averaged over ``scale`` x ``scale`` boxes (noise ``rms / scale``),
    which reach down to about ``threshold / scale`` times the RMS, are
    kept where they come within ``scale`` pixels of an ``extended``
    (masked) source: the wings that pixel-level detection misses, and
    not the large-scale misfit of a first background, which is not
    attached to a large source.
    """
    clean = np.where(masked, 0, residual).astype(np.float32, copy=False)
    smooth = ndimage.uniform_filter(clean, size=scale, mode='constant')
    labels, count = ndimage.label(smooth > threshold * rms / scale)
    if not count or not extended.any():
        return np.zeros(residual.shape, bool)
    near = ndimage.distance_transform_edt(~extended) <= scale
    keep = np.zeros(count + 1, bool)
    keep[np.unique(labels[near])] = True
    keep[0] = False
    return keep[labels]


def _grow(segmentation, growth):
    """Mask every pixel within its nearest footprint's growth distance."""
    if growth.size == 0:
        return np.zeros(segmentation.shape, bool)
    indices = np.empty((2, *segmentation.shape), np.int32)
    distances = ndimage.distance_transform_edt(
        segmentation == 0, return_indices=True, indices=indices)
    nearest = segmentation[indices[0], indices[1]]
    limits = np.concatenate([[0.0], growth])[nearest]
    return distances <= limits


def make_source_mask(ccd, *, mask=None, threshold=1.5, min_area=5,
                     dilate=2, wing_level=0.1, max_growth=6.0,
                     smooth_scale=16, smooth_threshold=3.0, box_size=64,
                     filter_size=3, max_iters=5, tolerance=0.01):
    """
    Mask the sources of an image automatically, faint wings included.

    The background is estimated; sources are detected with SEP
    (SExtractor's 3x3 convolution filter) on the background-subtracted
    image at ``threshold`` times the background RMS; each footprint is
    grown by a distance that scales with the source's size and
    brightness, out to where an exponential profile through its peak
    falls to ``wing_level`` times the RMS (at least ``dilate`` pixels,
    at most ``max_growth`` times its radius); the background is
    estimated again without them; and this repeats until the map
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
        Least growth of a footprint in pixels (default 2).
    wing_level : float, optional
        Grow footprints out to this level of a source's light, in units
        of the RMS (default 0.1).
    max_growth : float, optional
        A footprint grows to at most this many times its radius
        (default 6).
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
    for name, value in (('threshold', threshold), ('tolerance', tolerance),
                        ('wing_level', wing_level),
                        ('max_growth', max_growth)):
        if not (isinstance(value, (int, float)) and value > 0):
            msg = f'{name} must be a positive number, got {value!r}'
            raise ValueError(msg)
    for name, value, low in (('min_area', min_area, 1),
                             ('max_iters', max_iters, 1), ('dilate', dilate, 0)):
        if not isinstance(value, int) or value < low:
            msg = f'{name} must be an int >= {low}, got {value!r}'
            raise ValueError(msg)
    data = working_copy(ccd.data)
    exponent, _ = range_scaling(data, ~np.isfinite(data))
    if exponent:  # SEP's detection works in float32: bring data in range
        data = np.ldexp(data, exponent)
        ccd = CCDData(data, unit=ccd.unit, mask=ccd.mask, copy=False)
    options = {'box_size': box_size, 'filter_size': filter_size, 'mask': mask}
    background = estimate_background(ccd, **options)
    invalid = np.ascontiguousarray(background.invalid_mask)
    sep.set_extract_pixstack(max(300_000, data.size))
    sep.set_sub_object_limit(4096)
    source_mask = np.zeros(data.shape, bool)
    for _ in range(max_iters):
        residual = np.subtract(data, background.data, dtype=data.dtype)
        residual[invalid] = 0
        objects, segmentation = sep.extract(
            residual, threshold, err=background.rms, mask=invalid,
            minarea=min_area, segmentation_map=True, clean=False,
            filter_type='conv', deblend_cont=1.0)  # one object per footprint
        growth = _growth(objects, background.global_rms, threshold=threshold,
                         wing_level=wing_level, dilate=dilate,
                         max_growth=max_growth)
        source_mask = _grow(segmentation, growth)
        if smooth_scale:
            large = np.flatnonzero(objects['npix'] >= smooth_scale**2)
            extended = _grow(segmentation, np.where(
                np.isin(np.arange(len(objects)), large), growth, -1.0))
            source_mask |= _faint_wings(
                residual, source_mask | invalid, extended,
                background.global_rms, smooth_threshold, smooth_scale)
        while (np.count_nonzero(source_mask | invalid) > MAX_MASKED * data.size
               and growth.size and growth.max() >= 1):
            growth = growth / 2  # a crowded field: keep meshes usable
            source_mask = _grow(segmentation, growth)
        previous = background
        background = estimate_background(ccd, source_mask=source_mask,
                                         **options)
        change = np.max(np.abs(background.data - previous.data))
        if change < tolerance * background.global_rms:
            break
    return source_mask


#: The ``source_mask_options`` of `~ezbkg_ccd.estimate_background`.
SOURCE_MASK_OPTIONS = tuple(
    name for name in keyword_names(make_source_mask) if name != 'mask')
