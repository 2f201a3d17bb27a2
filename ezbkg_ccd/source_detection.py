# Licensed under a 3-clause BSD style license - see LICENSE
"""
The automatic source mask: detect, grow, re-estimate, and know when to
stop.

Each round detects sources against the current background model, grows
every footprint out to where its light falls into the noise, adds the
faint wings that a large source owns, and estimates the background again
without them. Three guards keep the loop from taking sky for sources (a
vignetted dome that the first map cannot follow leaves broad positive
residuals that touch every bright star):

1. a wing is accepted only where a source owns it: within a reach set
   by the source's own profile, and only while its averaged light stays
   above the model and keeps falling outward, ring by ring, ever more
   slowly (as the light of a star or galaxy does, and a misfit of the
   sky does not);
2. growth and wings never take the mask beyond `MAX_MASKED` of the
   frame (the footprints themselves are always masked; where they alone
   leave no mesh usable, the loop stops);
3. every round is checked against the unmasked map: where the masked
   map departs well from it while the sky pixels the mask left there
   agree with the unmasked map, the mask took sky for sources
   (`mistaken_fraction`). The loop stops at the first round that fails
   the check and keeps the last round that passed; if the first round
   already fails, the mask is dropped, with a warning, and the plain map
   is used.

The loop also stops when the map changes by less than the tolerance, or
when its change grows but stays within the noise. What happened is
reported (`AutoMaskReport`) and recorded in the provenance.
"""

import dataclasses
import warnings

import numpy as np
import sep
from astropy.utils.exceptions import AstropyUserWarning
from scipy import ndimage

from ezbkg_ccd import _engine
from ezbkg_ccd._moved import caller_stacklevel
from ezbkg_ccd.meshes import expand, tiles

__all__ = ['MAX_MASKED', 'AutoMaskReport', 'detect_sources',
           'mistaken_fraction']

#: Footprint growth is reduced (halved, repeatedly) while sources and
#: invalid pixels together would cover more than this fraction of the
#: image, and faint wings are left out where they would exceed it, so
#: that enough meshes stay usable in crowded fields.
MAX_MASKED = 0.5

#: Faint wings are looked for at the smoothing scale and this many
#: scales in all, each twice the last.
WING_OCTAVES = 3

#: The wings of a source may reach this many of its exponential scale
#: lengths beyond its grown footprint (ln 10: a tenth of ``wing_level``).
WING_DEPTH = np.log(10.0)

#: Sources of at least ``max(smooth_scale, LARGE)**2`` pixels are large:
#: grown on their own and searched for faint wings.
LARGE = 8

#: A footprint whose axis ratio ``b / a`` is below this is a line (a hot
#: column, a bleed trail, a satellite): grown across, not by its length.
ELONGATED = 0.3

#: The faint wings of large sources are measured on blocks of this many
#: pixels a side (their rings are ``smooth_scale`` wide or more).
COARSE = 4

#: Large sources grown by more than this many pixels are grown on their
#: own.
LOCAL_GROWTH = 8.0

#: The loop stops after this many rounds in a row that took sky for
#: sources (one such round may be an extended source not yet masked
#: whole, which the next round masks further).
RUNAWAY_ROUNDS = 2

#: A change of the map that grows from one round to the next but stays
#: below this many global RMS is noise: the loop has converged.
STALL = 0.1

#: The sanity check's level, in units of the global RMS: the masked map
#: departing from the unmasked one, and the unmasked sky pixels departing
#: from the masked map the same way, each by more than this on one mesh,
#: flags that mesh.
MISTAKEN_LEVEL = 0.5

#: The mask is dropped if flagged meshes cover more than this fraction
#: of the meshes with data.
MISTAKEN_FRACTION = 0.02


@dataclasses.dataclass(frozen=True)
class AutoMaskReport:
    """
    How the automatic source mask ended.

    Attributes
    ----------
    rounds : int
        Detect-and-estimate rounds run.
    kept : int
        The round whose mask is kept (0 after a fallback): the last of
        those that took least sky for sources.
    masked_fraction : float
        Fraction of the frame masked as sources (0 after a fallback).
    stop : str
        ``'converged'`` (the map changed by less than the tolerance, or
        by a growing amount within the noise), ``'max_iters'``,
        ``'diverging'`` (`RUNAWAY_ROUNDS` rounds in a row took sky for
        sources) or ``'fallback'`` (every round did: the mask was
        dropped).
    """

    rounds: int
    kept: int
    masked_fraction: float
    stop: str

    def cards(self):
        """The provenance keywords (``BKGAITER``, ``BKGAKEPT``,
        ``BKGAFRAC``, ``BKGASTOP``)."""
        return {'BKGAITER': self.rounds, 'BKGAKEPT': self.kept,
                'BKGAFRAC': round(self.masked_fraction, 5),
                'BKGASTOP': self.stop}


@dataclasses.dataclass(frozen=True)
class _Model:
    """One background estimate: maps, global RMS, the estimator's
    result."""

    back: np.ndarray
    rms: np.ndarray
    global_rms: float
    raw: object = None

    @classmethod
    def of(cls, frame, settings, source_mask=None):
        raw, _ = _engine.estimate_raw(
            frame, settings, _engine.excluded_pixels(frame, source_mask))
        back, rms = (value() if callable(value) else value
                     for value in (raw.background, raw.rms))
        if rms.min() < 0:
            rms = np.maximum(rms, 0)
        return cls(back, rms, float(raw.global_rms), raw)


#: ``2 (e**x - 1 - x) / x**2``, the mean over an exponential profile's
#: isophote of radius ``x`` scale lengths in units of its level there,
#: tabulated for `_exponential_scales`.
_RADII = np.linspace(1e-3, 40.0, 4000)
_MEAN_OVER_EDGE = 2 * (np.expm1(_RADII) - _RADII) / _RADII**2


def _exponential_scales(objects, level):
    """
    Each footprint's equivalent radius ``R`` and the scale length ``h``
    of the exponential profile whose isophote at the detection ``level``
    (data units) encloses the footprint's area and flux.

    The flux, not the peak pixel, sets the profile, so that a star on a
    galaxy does not make the galaxy look compact; and for a footprint
    more elongated than `ELONGATED` the profile runs across its minor
    axis (``R * sqrt(b / a)``), so that a hot column or a satellite trail
    is not grown by its length.
    """
    radius = np.sqrt(objects['npix'] / np.pi)
    elongation = np.clip(objects['b'] / np.maximum(objects['a'], 1e-30),
                         0, 1)
    elongation = np.where(elongation < ELONGATED, elongation, 1.0)
    ratio = objects['flux'] / (max(level, 1e-30) * objects['npix'])
    return radius, (radius * np.sqrt(elongation)
                    / np.interp(ratio, _MEAN_OVER_EDGE, _RADII))


def _growth(radius, scale, *, threshold, wing_level, dilate, max_growth):
    """
    Pixels to grow each detected footprint by, from its exponential
    profile (`_exponential_scales`): out to where the light falls from
    the ``threshold`` to ``wing_level``, ``scale * ln(threshold /
    wing_level)``. Faint extended sources grow by several times their
    size, bright compact ones less; by at least ``dilate`` pixels, to at
    most ``max_growth`` radii in all.
    """
    growth = np.minimum(scale * np.log(threshold / wing_level),
                        max(max_growth - 1, 0) * radius)
    return np.maximum(growth, dilate)


def _nearest(segmentation, reach=None):
    """
    The label of the nearest footprint of every pixel, and the distance
    to it: the larger of the chessboard distance and the taxicab distance
    over sqrt(2), exact along rows, columns and diagonals and within 8 %
    of the Euclidean distance elsewhere, at a fifth of its cost.

    With a ``reach``, the result is exact wherever the distance is at
    most ``reach``: the frame is done in strips of `_ROWS` rows that
    overlap by what that needs, which keeps the temporaries small;
    farther pixels may get a larger distance (infinite, label 0, where
    no footprint is near their strip).
    """
    if reach is None:
        return _nearest_within(segmentation)
    halo = int(np.ceil(np.sqrt(2) * reach)) + 1  # the taxicab's reach
    nearest = np.zeros_like(segmentation)
    distance = np.full(segmentation.shape, np.inf, np.float32)
    for start in range(0, len(segmentation), _ROWS):
        low = max(start - halo, 0)
        stop = min(start + _ROWS, len(segmentation))
        high = min(stop + halo, len(segmentation))
        if not segmentation[low:high].any():
            continue
        labels, distances = _nearest_within(segmentation[low:high])
        nearest[start:stop] = labels[start - low:stop - low]
        distance[start:stop] = distances[start - low:stop - low]
    return nearest, distance


def _nearest_within(segmentation):
    """`_nearest` of a frame (or strip) with footprints, in one piece."""
    background = segmentation == 0
    distance, indices = ndimage.distance_transform_cdt(
        background, metric='chessboard', return_indices=True)
    nearest = segmentation[indices[0], indices[1]]
    del indices
    distance = distance.astype(np.float32)
    taxicab = ndimage.distance_transform_cdt(background, metric='taxicab')
    np.maximum(distance, np.multiply(taxicab, np.float32(np.sqrt(0.5)),
                                     dtype=np.float32), out=distance)
    return nearest, distance


#: Rows of the strips of `_nearest`.
_ROWS = 512


def _grow(segmentation, objects, growth, nearest, distances, extended):
    """
    Every pixel within its footprint's growth distance of it.

    Each pixel is compared with the growth of its ``nearest`` footprint
    (at ``distances``); an ``extended`` source grown by more than
    `LOCAL_GROWTH` pixels is grown on its own as well, so that the small
    stars around a galaxy do not stop its growth.
    """
    grown = distances <= np.r_[0.0, growth].astype(np.float32)[nearest]
    height, width = segmentation.shape
    for index in np.flatnonzero(extended & (growth > LOCAL_GROWTH)):
        source, reach = objects[index], growth[index]
        rows = slice(max(int(source['ymin'] - reach), 0),
                     min(int(source['ymax'] + reach) + 2, height))
        columns = slice(max(int(source['xmin'] - reach), 0),
                        min(int(source['xmax'] + reach) + 2, width))
        own = segmentation[rows, columns] == index + 1
        grown[rows, columns] |= ndimage.distance_transform_edt(~own) <= reach
    return grown


def _blocks(values, factor, reduce=np.sum):
    """``values`` reduced over ``factor`` x ``factor`` blocks (the last
    ones cut short, padded with zeros)."""
    return reduce(tiles(values, (factor, factor)), axis=(2, 3))


def _ring_profile(smooth, weight, index, owners, rings):
    """The weighted mean of ``smooth`` in each owner's rings (at the
    flat ``index`` ``owner * rings + ring``), and the weight of each."""
    count = np.bincount(index, weight, minlength=owners * rings)
    total = np.bincount(index, smooth * weight, minlength=count.size)
    return ((total / np.maximum(count, 1)).reshape(owners, rings),
            count.reshape(owners, rings))


def _before(profile, filled, lag):
    """The profile's value ``lag`` filled rings before each ring, empty
    rings skipped (+inf where there is none)."""
    rings = np.arange(profile.shape[1])
    last = np.maximum.accumulate(np.where(filled, rings, -1), axis=1)
    carried = np.take_along_axis(profile, np.maximum(last, 0), axis=1)
    carried[last < 0] = np.inf
    shifted = np.full(profile.shape, np.inf)
    shifted[:, lag:] = carried[:, :-lag]
    return shifted


def _owned_wings(residual, masked, grown, large, reach, *, rms, threshold,
                 scale):
    """
    The faint wings that large sources own.

    Around each ``grown`` footprint (labels of the masked pixels) of a
    ``large`` source, the unmasked residual averaged over ``s`` x ``s``
    boxes is averaged again in rings ``s`` wide, counted outward from
    the footprint, out to the source's ``reach`` in pixels; ``s`` is
    ``scale`` and its `WING_OCTAVES` doublings. A ring belongs to the
    source's wing while every ring up to it lies above the model and
    below the ring before it, each by ``threshold`` times the noise of
    a ring mean (the RMS over the square root of its pixel count), and
    falls less than the ring before: a source's light falls off outward
    ever more slowly, a misfit of the sky does not. Where the model has
    absorbed part of a wing, its fall still shows. Of an owned ring, the
    pixels above the model are masked.

    All of it is computed on blocks of `COARSE` pixels a side (the rings
    are 16 pixels wide or more), at a small fraction of the cost.
    """
    large = np.flatnonzero(large)
    if not large.size:
        return np.zeros(residual.shape, bool)
    labels = np.zeros(reach.size + 1, np.int32)
    labels[large + 1] = np.arange(1, large.size + 1)
    owner, distance = _nearest(_blocks(labels[grown], COARSE, np.max))
    distance *= COARSE
    total = _blocks(np.where(masked, 0, residual).astype(np.float32),
                    COARSE)
    weight = _blocks((~masked).astype(np.float32), COARSE)
    reach = np.r_[0.0, reach[large]]
    inside = (weight > 0) & (distance <= reach[owner])
    wings = np.zeros(owner.shape, bool)
    for size in scale * 2 ** np.arange(WING_OCTAVES):
        width = max(size // COARSE, 1)
        area = ndimage.uniform_filter(weight, width, mode='constant')
        smooth = ndimage.uniform_filter(total, width, mode='constant')
        smooth = np.where(area > 0.25 * COARSE**2,
                          smooth / np.maximum(area, 1e-30), 0)
        ring = np.minimum(distance // size, reach.max() // size).astype(int)
        rings = ring.max() + 1
        profile, count = _ring_profile(
            smooth[inside], weight[inside],
            owner[inside] * rings + ring[inside], large.size + 1, rings)
        filled = count > 0
        noise = threshold * rms / np.sqrt(np.maximum(count, 1))
        previous = _before(profile, filled, 1)
        with np.errstate(invalid='ignore'):  # inf - inf: no fall yet
            slowing = ~(previous - profile
                        > _before(profile, filled, 2) - previous + noise)
        accepted = np.logical_and.accumulate(
            ~filled | ((profile > noise) & (previous - profile > noise)
                       & slowing), axis=1)
        accepted[0] = False
        wings |= inside & accepted[owner, ring] & (smooth > 0)
    return expand(wings, (COARSE, COARSE), residual.shape) & ~masked


def _source_mask(data, invalid, model, *, threshold, min_area, dilate,
                 wing_level, max_growth, smooth_scale, smooth_threshold):
    """The sources of ``data`` detected against ``model``, grown, with
    their owned wings, within `MAX_MASKED` of the frame."""
    residual = np.subtract(data, model.back, dtype=data.dtype)
    residual[invalid] = 0
    objects, segmentation = sep.extract(
        residual, threshold, err=model.rms, mask=invalid, minarea=min_area,
        segmentation_map=True, clean=False, filter_type='conv',
        deblend_cont=1.0, deblend_nthresh=1)  # one object per footprint
    if not len(objects):
        return np.zeros(data.shape, bool)
    radius, scale = _exponential_scales(objects,
                                        threshold * model.global_rms)
    growth = _growth(radius, scale, threshold=threshold,
                     wing_level=wing_level, dilate=dilate,
                     max_growth=max_growth)
    limit = MAX_MASKED * data.size
    large = objects['npix'] >= max(smooth_scale, LARGE) ** 2
    nearest, distances = _nearest(segmentation, reach=growth.max())
    source_mask = _grow(segmentation, objects, growth, nearest, distances,
                        large)
    while (np.count_nonzero(source_mask | invalid) > limit
           and growth.max() >= 1):
        growth = growth / 2  # a crowded field: keep meshes usable
        source_mask = _grow(segmentation, objects, growth, nearest,
                            distances, large)
    del segmentation, distances  # what is left is at most 2x the frame
    if smooth_scale:
        np.multiply(nearest, source_mask, out=nearest)  # grown footprints
        wings = _owned_wings(residual, source_mask | invalid, nearest, large,
                             np.maximum(WING_DEPTH * scale,
                                        (max_growth - 1) * radius),
                             rms=model.global_rms,
                             threshold=smooth_threshold, scale=smooth_scale)
        if np.count_nonzero(source_mask | wings | invalid) <= limit:
            source_mask |= wings
    return source_mask


def _mesh_medians(values, box_size, step=1):
    """The median of the finite ``values`` of each mesh (NaN if none),
    of every ``step``-th row and column of it."""
    cut = tiles(values.astype(np.float32, copy=False), box_size,
                fill=np.nan)[:, :, ::step, ::step]
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', RuntimeWarning)  # all-NaN meshes
        return np.nanmedian(cut.reshape(*cut.shape[:2], -1), axis=2)


def mistaken_fraction(data, invalid, source_mask, plain, masked, box_size):
    """
    The fraction of the meshes with data where the mask took sky for
    sources: the ``masked`` map (a `_Model`) departs from the ``plain``
    (unmasked) one, and the sky pixels left unmasked depart from the
    ``masked`` map the same way, each by more than `MISTAKEN_LEVEL` times
    the global RMS: the sky agrees with the plain map, not with the
    masked one.

    The maps are compared at the meshes' centres, the sky pixels by the
    median of every other row and column of each mesh.
    """
    level = MISTAKEN_LEVEL * max(masked.global_rms, 1e-30)
    sky = _mesh_medians(np.where(invalid | source_mask, np.nan,
                                 data - masked.back), box_size, step=2)
    starts = [np.arange(0, size, box)
              for size, box in zip(data.shape, box_size, strict=True)]
    centres = np.ix_(*(np.minimum(start + box // 2, size - 1) for start, box,
                       size in zip(starts, box_size, data.shape,
                                   strict=True)))
    change = plain[centres] - masked.back[centres]
    with np.errstate(invalid='ignore'):  # meshes without sky pixels
        mistaken = (np.abs(change) > level) & (sky * np.sign(change) > level)
    with_data = tiles(~invalid, box_size).any(axis=(2, 3))
    return np.count_nonzero(mistaken) / max(np.count_nonzero(with_data), 1)


def detect_sources(frame, settings, *, threshold, min_area, dilate,
                   wing_level, max_growth, smooth_scale, smooth_threshold,
                   max_iters, tolerance):
    """
    The detect-grow-estimate loop of `~ezbkg_ccd.make_source_mask` on a
    prepared `~ezbkg_ccd._engine.Frame`, with the mesh ``settings`` of
    its estimates and checked detection settings.

    Returns
    -------
    source_mask : `~numpy.ndarray` of bool or None
        `None` after a fallback.
    report : `AutoMaskReport`
    estimate : `~ezbkg_ccd.registry.BackgroundEstimate` or None
        The estimator's result with ``settings`` and ``source_mask``.
    """
    limits = sep.get_extract_pixstack(), sep.get_sub_object_limit()
    sep.set_extract_pixstack(max(300_000, frame.work.size))
    sep.set_sub_object_limit(4096)
    try:
        return _detect_sources(frame, settings, threshold=threshold,
                               min_area=min_area, dilate=dilate,
                               wing_level=wing_level, max_growth=max_growth,
                               smooth_scale=smooth_scale,
                               smooth_threshold=smooth_threshold,
                               max_iters=max_iters, tolerance=tolerance)
    finally:  # SEP's limits are global: leave them as they were
        sep.set_extract_pixstack(limits[0])
        sep.set_sub_object_limit(limits[1])


def _detect_sources(frame, settings, *, max_iters, tolerance, **detection):
    """`detect_sources` within SEP's raised limits."""
    data, invalid = frame.work, frame.invalid
    model = _Model.of(frame, settings)
    plain = model.back
    best, kept, stop = None, 0, 'max_iters'
    least, mistaken, last_change = np.inf, 0, np.inf
    crowded = False
    for round_ in range(1, max_iters + 1):
        source_mask = _source_mask(data, invalid, model, **detection)
        try:
            new = _Model.of(frame, settings, source_mask)
        except ValueError:  # the footprints alone left no mesh usable
            crowded, stop = True, 'diverging'
            break
        fraction = mistaken_fraction(data, invalid, source_mask, plain, new,
                                     settings.box_size)
        if fraction <= least:
            best, kept, least, kept_raw = source_mask, round_, fraction, new.raw
        else:
            kept_raw = None  # an older round is kept: free its maps
        mistaken = mistaken + 1 if fraction > MISTAKEN_FRACTION else 0
        if mistaken == RUNAWAY_ROUNDS:
            stop = 'diverging'
            break
        scale = max(new.global_rms, 1e-30)
        change = float(np.sqrt(np.mean(np.square(
            (new.back - model.back) / np.float32(scale), dtype=np.float64))))
        model = new
        if change < tolerance or last_change < change < STALL:
            stop = 'converged'
            break
        last_change = change
    if least > MISTAKEN_FRACTION:
        why = ('the sources it found leave no mesh with enough sky pixels (a '
               'crowded field: a larger box_size may help)' if crowded and
               best is None else
               'where the masked map departs from the unmasked one, the sky '
               'pixels left unmasked agree with the unmasked map (a box_size '
               'small enough to follow the sky, or a higher threshold, may '
               'help)')
        msg = (f"source_mask='auto' took sky for sources: {why}; the mask is "
               'dropped and the plain map used')
        warnings.warn(msg, AstropyUserWarning,
                      stacklevel=caller_stacklevel())
        return None, AutoMaskReport(round_, 0, 0.0, 'fallback'), None
    return best, AutoMaskReport(round_, kept,
                                np.count_nonzero(best) / best.size,
                                stop), kept_raw
