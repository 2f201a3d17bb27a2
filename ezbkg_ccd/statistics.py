# Licensed under a 3-clause BSD style license - see LICENSE
"""
The statistics of a background level and its RMS, by name: photutils'
estimator objects.

The ``constant`` and ``photutils`` methods take ``bkg_estimator`` and
``bkg_rms_estimator`` (photutils' names) as one of the names below or as
any photutils estimator object (`~photutils.background.BackgroundBase`,
`~photutils.background.BackgroundRMSBase`). The method clips the pixels
(astropy `~astropy.stats.SigmaClip`: ``sigma`` and ``maxiters`` of
``constant``, ``sigma_clip`` of ``photutils``) and the statistic is
computed on what is left: the estimator's own ``sigma_clip`` is not used
(`~photutils.background.Background2D` does the same), so that the level
and the RMS are of the same pixels.

The ``sep`` method computes SExtractor's mode and the clipped standard
deviation, in SEP's C code; it takes neither option.
"""

import copy
from numbers import Real

__all__ = ['LEVEL_STATISTICS', 'RMS_STATISTICS', 'level_estimator',
           'rms_estimator']

#: The level statistics by name, with the photutils class of each.
LEVEL_STATISTICS = {
    'mode': 'SExtractorBackground',
    'median': 'MedianBackground',
    'mean': 'MeanBackground',
    'mmm': 'MMMBackground',
    'biweight': 'BiweightLocationBackground',
}

#: The RMS statistics by name, with the photutils class of each.
RMS_STATISTICS = {
    'std': 'StdBackgroundRMS',
    'mad_std': 'MADStdBackgroundRMS',
    'biweight': 'BiweightScaleBackgroundRMS',
}


def _estimator(value, *, name, statistics, base):
    """A photutils estimator object of ``value`` (a name of
    ``statistics`` or an instance of the class ``base``)."""
    from photutils import background

    if isinstance(value, str):
        key = value.lower()
        if key not in statistics:
            msg = (f'{name} must be one of {", ".join(statistics)} or a '
                   f'photutils.background.{base} object, got {value!r}')
            raise ValueError(msg)
        return getattr(background, statistics[key])(sigma_clip=None)
    if isinstance(value, getattr(background, base)):
        value = copy.copy(value)  # the caller's object is left as it was
        value.sigma_clip = None  # the method has clipped
        return value
    if isinstance(value, Real):
        msg = (f'{name} is a statistic ({", ".join(statistics)}), not a '
               f'value: got {value!r}')
        raise TypeError(msg)
    msg = (f'{name} must be a name ({", ".join(statistics)}) or a '
           f'photutils.background.{base} object, got {type(value).__name__}')
    raise TypeError(msg)


def level_estimator(value, *, name='bkg_estimator'):
    """
    The photutils level estimator of ``value``, without clipping of its
    own: a name of `LEVEL_STATISTICS` (case-insensitive) or a copy of a
    `~photutils.background.BackgroundBase` object.

    Raises
    ------
    TypeError
        If ``value`` is neither a string nor such an object.
    ValueError
        If ``value`` names no statistic.

    Examples
    --------
    >>> import numpy as np
    >>> from ezbkg_ccd.statistics import level_estimator
    >>> level_estimator('median')
    MedianBackground(sigma_clip=None)
    >>> float(level_estimator('mean')(np.array([1.0, 2.0, 6.0])))
    3.0
    """
    return _estimator(value, name=name, statistics=LEVEL_STATISTICS,
                      base='BackgroundBase')


def rms_estimator(value, *, name='bkg_rms_estimator'):
    """
    The photutils RMS estimator of ``value``, without clipping of its
    own: a name of `RMS_STATISTICS` or a copy of a
    `~photutils.background.BackgroundRMSBase` object.

    Examples
    --------
    >>> from ezbkg_ccd.statistics import rms_estimator
    >>> rms_estimator('mad_std')
    MADStdBackgroundRMS(sigma_clip=None)
    """
    return _estimator(value, name=name, statistics=RMS_STATISTICS,
                      base='BackgroundRMSBase')
