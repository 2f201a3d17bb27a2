# Licensed under a 3-clause BSD style license - see LICENSE
"""
The built-in background estimators: ``sep``, ``constant``, ``photutils``.

Each follows the calling convention of `ezbkg_ccd.registry` and is
registered under its name when the package is imported.
"""

import warnings

import numpy as np
import sep
from astropy.stats import SigmaClip
from astropy.utils.exceptions import AstropyDeprecationWarning, AstropyUserWarning

from ezbkg_ccd._conditioning import working_copy
from ezbkg_ccd._moved import caller_stacklevel
from ezbkg_ccd._sep import strips
from ezbkg_ccd._sep.binding import TESTED_VERSIONS, subtract_maps
from ezbkg_ccd._sep.smooth import smooth_maps
from ezbkg_ccd._validation import as_choice, as_int
from ezbkg_ccd.background import MODE_VARIANCE_FACTOR
from ezbkg_ccd.meshes import (
    MIN_MESH_COVERAGE,
    fill_edges,
    mesh_sizes,
    require_usable_mesh,
    usable_counts,
)
from ezbkg_ccd.registry import (
    BackgroundEstimate,
    keyword_names,
    register_estimator,
)
from ezbkg_ccd.statistics import level_estimator, rms_estimator

__all__ = ['sep_estimator', 'constant_estimator', 'photutils_estimator']


def check_sep_box(box_size):
    """Refuse a box SEP cannot interpolate (under 2 pixels wide)."""
    if box_size[1] < 2:
        msg = (f'box_size must be at least 2 pixels wide for method "sep" '
               f'(SEP cannot interpolate 1-pixel-wide meshes), got {box_size}')
        raise ValueError(msg)


def single_pixel_rows(shape, box_size):
    """
    The rows of the last column of an image of ``shape`` that lie in
    meshes of one pixel, or `None`.

    An image one pixel wider than a multiple of the box has a last mesh
    column one pixel wide; where that column meets a one-pixel mesh row
    (the last row, or every row of one-pixel-high meshes), SEP's mesh of
    a single pixel has no noise estimate and its map goes off by many
    sigma around it. Excluded, the mesh is filled from its neighbours,
    as any mesh with too few usable pixels.

    Examples
    --------
    >>> from ezbkg_ccd.estimators import single_pixel_rows
    >>> single_pixel_rows((65, 65), (32, 32)), single_pixel_rows((64, 65),
    ...                                                          (32, 32))
    (slice(64, 65, None), None)
    """
    height, width = shape
    if width % box_size[1] != 1:
        return None
    if box_size[0] == 1:
        return slice(None)
    if height % box_size[0] == 1:
        return slice(height - 1, height)
    return None


def _without_single_pixels(mask, box_size):
    """
    ``mask`` that also excludes every mesh of one pixel (a new array), or
    ``mask`` itself if there is none (see `single_pixel_rows`).
    """
    rows = single_pixel_rows(mask.shape, box_size)
    if rows is None:
        return mask
    mask = mask.copy()
    mask[rows, -1] = True
    return mask


def sep_estimator(data, *, mask, box_size, filter_size, filter_threshold,
                  n_threads=1, edge='spline', interpolation='spline',
                  n_jobs=None):
    """
    SExtractor's mesh background, computed by SEP.

    Per ``box_size`` mesh: iterative clipping and the mode estimate
    ``2.5 median - 1.5 mean``; meshes with under half their pixels usable
    are filled from neighbours; a ``filter_size`` median filter over
    meshes (where the change exceeds ``filter_threshold``); a bicubic
    spline to full resolution. A mesh of a single pixel (in the corner
    of an image one pixel taller and wider than a multiple of the box),
    which SEP cannot estimate, is filled from its neighbours too.

    ``edge='adaptive'`` replaces the spline's extrapolation between the
    image edge and the outermost mesh centres, which amplifies mesh
    noise, by `~ezbkg_ccd.meshes.fill_edges`: linear where the last two
    meshes differ significantly, flat where they do not. The default
    ``'spline'`` is SExtractor's map exactly.

    With ``n_threads > 1`` a large frame is split into strips computed
    in parallel threads; the maps and global values are the single
    call's, bit for bit. With a SEP version not tested with ezbkg-ccd,
    or one whose C library fails the strips' self-check, this warns and
    makes one call. ``n_jobs`` is the deprecated name of ``n_threads``
    (``n_jobs`` now means processes, in `~ezbkg_ccd.process_files`).

    Examples
    --------
    >>> import numpy as np
    >>> from ezbkg_ccd.estimators import sep_estimator
    >>> data = np.full((128, 128), 3.0, dtype=np.float32)
    >>> estimate = sep_estimator(data, mask=np.zeros(data.shape, bool),
    ...                          box_size=(64, 64), filter_size=(3, 3),
    ...                          filter_threshold=0.0)
    >>> estimate.global_back, estimate.background().dtype
    (3.0, dtype('float32'))
    """
    check_sep_box(box_size)
    if n_jobs is not None:
        if n_threads != 1:
            msg = 'give n_threads only (n_jobs is its deprecated name)'
            raise TypeError(msg)
        msg = ('n_jobs of the sep estimator is deprecated: use n_threads '
               '(n_jobs means processes in process_files and the CLI)')
        warnings.warn(msg, AstropyDeprecationWarning,
                      stacklevel=caller_stacklevel())
        n_threads = n_jobs
    n_threads = as_int(n_threads, name='n_threads')
    as_choice(edge, name='edge', choices=('spline', 'adaptive'))
    as_choice(interpolation, name='interpolation',
              choices=('spline', 'smooth'))
    mask = _without_single_pixels(mask, box_size)
    require_usable_mesh(mask, box_size)  # also when called directly
    data = working_copy(data)  # as the steps give it (a direct call may not)
    if interpolation == 'smooth':
        return _smooth_estimate(data, mask, box_size, edge)
    options = {'mask': mask if mask.any() else None, 'bh': box_size[0],
               'bw': box_size[1], 'fh': filter_size[0], 'fw': filter_size[1],
               'fthresh': filter_threshold}
    samples = box_size[0] * box_size[1]
    if strips.usable():
        back, rms, global_back, global_rms, meshes, subtract_from = _sep_c(
            data, n_threads=n_threads, **options)
        n_pixels = (mesh_sizes(data.shape, box_size) if options['mask'] is None
                    else usable_counts(~mask, box_size))  # as SEP was given
        extra = {'sep_background': lambda: sep.Background(data, **options)}
    else:
        if n_threads > 1:
            why = (f'sep {sep.__version__} failed its self-check'
                   if strips.AVAILABLE else
                   f'needs a SEP version tested with ezbkg-ccd '
                   f'({", ".join(TESTED_VERSIONS)}), found sep '
                   f'{sep.__version__}')
            msg = (f'n_threads={n_threads}: threaded strips {why}; '
                   'computing the background in one call')
            warnings.warn(msg, AstropyUserWarning, stacklevel=2)
        background = sep.Background(data, **options)
        back, rms = background.back, background.rms
        global_back = float(background.globalback)
        global_rms = float(background.globalrms)
        extra = {'sep_background': lambda: background}
        meshes = n_pixels = None
        subtract_from = background.subfrom
    rms, global_rms = no_noise(rms, global_rms)
    if edge == 'adaptive':
        noise = global_rms * np.sqrt(2 * MODE_VARIANCE_FACTOR / samples)
        lazy_back = back

        def back():
            return fill_edges(lazy_back() if callable(lazy_back)
                              else lazy_back, box_size, noise)

        subtract_from = None
    return BackgroundEstimate(back, rms, global_back, global_rms, is_2d=True,
                              samples_per_estimate=samples, extra=extra,
                              subtract_from=subtract_from, meshes=meshes,
                              n_pixels_mesh=n_pixels)


def _sep_c(data, *, mask, n_threads, bw, bh, fw, fh, fthresh):
    """
    SEP's background through its C library (`ezbkg_ccd._sep`): the maps
    (computed on first use), global values, mesh grids and in-place
    subtraction, bit for bit those of `sep.Background`.
    """
    grids, global_back, global_rms = strips.sep_grids(
        data, mask, n_threads=n_threads, bw=bw, bh=bh, fw=fw, fh=fh,
        fthresh=fthresh)

    shape, dtype = data.shape, data.dtype  # the maps do not hold the data

    def interpolated(which):
        return lambda: strips.grid_map(grids, shape, dtype, which=which,
                                       bw=bw, bh=bh, n_threads=n_threads)

    return (interpolated('back'), interpolated('rms'), global_back,
            global_rms, (grids[0], grids[2]),
            lambda array: subtract_maps(grids, array, bw=bw, bh=bh))


def no_noise(rms, global_rms):
    """The RMS map (or mesh grid) and global RMS, the latter 0 where
    SEP's 1.0 means that no mesh has a positive RMS (a noiseless
    frame)."""
    if global_rms == 1.0:
        rms = rms() if callable(rms) else rms
        if not rms.any():
            global_rms = 0.0
    return rms, global_rms


def _smooth_estimate(data, mask, box_size, edge):
    """The ``interpolation='smooth'`` result of `sep_estimator`."""
    if edge != 'spline':
        msg = (f"edge={edge!r} applies to interpolation='spline' only (the "
               "smooth fit does not amplify the noise of the edge meshes)")
        raise ValueError(msg)
    if not strips.usable():
        msg = (f"interpolation='smooth' needs a SEP version tested with "
               f"ezbkg-ccd ({', '.join(TESTED_VERSIONS)}), found sep "
               f"{sep.__version__}")
        raise ValueError(msg)
    back, rms, global_back, global_rms, grids = smooth_maps(
        data, mask if mask.any() else None, bw=box_size[1], bh=box_size[0])
    rms, global_rms = no_noise(rms, global_rms)
    return BackgroundEstimate(back, rms, global_back, global_rms, is_2d=True,
                              samples_per_estimate=box_size[0] * box_size[1],
                              meshes=grids)


def constant_estimator(data, *, mask, box_size, filter_size,
                       filter_threshold, sigma=3.0, maxiters=10,
                       bkg_estimator='mode', bkg_rms_estimator='std'):
    """
    One sigma-clipped level for the whole frame (a 1-D background).

    The usable pixels are clipped at ``sigma`` (astropy
    `~astropy.stats.SigmaClip`, up to ``maxiters`` passes); the level is
    then ``bkg_estimator`` of the rest and the RMS ``bkg_rms_estimator``
    (`ezbkg_ccd.statistics`). The default level is SExtractor's mode
    estimate ``2.5 median - 1.5 mean``, or the median where the two
    disagree by 0.3 sigma or more (a crowded frame); the default RMS the
    standard deviation. ``box_size``, ``filter_size`` and
    ``filter_threshold`` are not used.

    Examples
    --------
    >>> import numpy as np
    >>> from ezbkg_ccd.estimators import constant_estimator
    >>> data = np.full((16, 16), 5.0, dtype=np.float32)
    >>> data[0, 0] = 1000.0
    >>> estimate = constant_estimator(data, mask=np.zeros(data.shape, bool),
    ...                               box_size=(16, 16), filter_size=(1, 1),
    ...                               filter_threshold=0.0)
    >>> estimate.global_back, estimate.global_rms, estimate.is_2d
    (5.0, 0.0, False)
    """
    level_of, rms_of = (level_estimator(bkg_estimator),
                        rms_estimator(bkg_rms_estimator))
    values = data[~mask]
    clipped = SigmaClip(sigma=sigma, maxiters=maxiters)(values, masked=False)
    level, std = float(level_of(clipped)), float(rms_of(clipped))
    return BackgroundEstimate(
        np.broadcast_to(np.asarray(level, dtype=data.dtype), data.shape),
        np.broadcast_to(np.asarray(std, dtype=data.dtype), data.shape),
        level, std, is_2d=False, samples_per_estimate=values.size)


def photutils_estimator(data, *, mask, box_size, filter_size,
                        filter_threshold, **background2d_options):
    """
    photutils `~photutils.background.Background2D`, by default with the
    SExtractor estimator.

    Sigma clipping at 3 sigma (10 iterations) and boxes with more than
    50 % masked pixels excluded, as SEP does; a ``filter_threshold`` of 0
    filters every mesh. Further keywords go to
    `~photutils.background.Background2D`; its ``bkg_estimator`` and
    ``bkg_rms_estimator`` may also be given by name (``'median'``,
    ``'biweight'``, ... see `ezbkg_ccd.statistics`).

    Examples
    --------
    >>> import numpy as np
    >>> from ezbkg_ccd.estimators import photutils_estimator
    >>> data = np.full((128, 128), 3.0, dtype=np.float32)
    >>> estimate = photutils_estimator(data, mask=np.zeros(data.shape, bool),
    ...                                box_size=(64, 64), filter_size=(3, 3),
    ...                                filter_threshold=0.0)
    >>> estimate.global_back
    3.0
    """
    from photutils.background import Background2D, SExtractorBackground

    require_usable_mesh(mask, box_size)  # also when called directly
    options = {'sigma_clip': SigmaClip(sigma=3.0, maxiters=10),
               'bkg_estimator': SExtractorBackground(),
               'exclude_percentile': 100 * (1 - MIN_MESH_COVERAGE)}
    options.update(background2d_options)
    for name, as_estimator in (('bkg_estimator', level_estimator),
                               ('bkg_rms_estimator', rms_estimator)):
        if name in background2d_options:
            options[name] = as_estimator(options[name], name=name)
    background = Background2D(
        data, box_size, mask=mask if mask.any() else None,
        filter_size=filter_size,
        filter_threshold=filter_threshold or None, **options)
    return BackgroundEstimate(
        background.background, background.background_rms,
        float(background.background_median),
        float(background.background_rms_median), is_2d=True,
        samples_per_estimate=box_size[0] * box_size[1],
        extra={'photutils_background': background},
        meshes=(background.background_mesh, background.background_rms_mesh,
                background.n_pixels_mesh <= (  # photutils' own rule
                    1 - background.exclude_percentile / 100) * np.prod(
                        background.box_size)))


def _background2d_options():
    """The keywords of `~photutils.background.Background2D` a user may
    pass through ``photutils_estimator``."""
    from photutils.background import Background2D

    return set(keyword_names(Background2D)) - {
        'box_size', 'mask', 'filter_size', 'filter_threshold'}


photutils_estimator.options = _background2d_options


register_estimator('sep', sep_estimator)
register_estimator('constant', constant_estimator, uses_meshes=False)
register_estimator('photutils', photutils_estimator)
