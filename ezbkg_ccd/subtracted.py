# Licensed under a 3-clause BSD style license - see LICENSE
"""
The result of a subtraction: a `~astropy.nddata.CCDData` that carries the
background subtracted from it, so that a user's own ``result.write(path)``
keeps it.
"""

import warnings

from astropy.nddata import CCDData
from astropy.utils.exceptions import AstropyUserWarning

from ezbkg_ccd.persistence import background_hdus

__all__ = ['SubtractedCCDData']


class SubtractedCCDData(CCDData):
    """
    A `~astropy.nddata.CCDData` with the `~ezbkg_ccd.Background`
    subtracted from it, which `~ezbkg_ccd.subtract_background` returns.

    It is a `~astropy.nddata.CCDData` in every way (ccdproc's steps and
    ``ccdproc.combine`` take it); in addition `to_hdu`, and so
    ``result.write(path)``, add the ``BKG`` and ``BKGRMS`` HDUs of its
    `background`, as `~ezbkg_ccd.write_with_background` writes them, and
    `~ezbkg_ccd.read_with_background` reads them back. Anything made from
    it by arithmetic or slicing no longer matches that background and
    carries none.

    Parameters
    ----------
    *args, **kwargs
        As for `~astropy.nddata.CCDData`.
    background : `~ezbkg_ccd.Background`, optional
        The background subtracted (of the image's shape).

    Examples
    --------
    >>> import numpy as np
    >>> from ezbkg_ccd import read_with_background, subtract_background
    >>> rng = np.random.default_rng(4)
    >>> result = subtract_background(rng.normal(30.0, 2.0, (128, 128)),
    ...                              box_size=32)
    >>> result.write(tmp_path / 'result.fits')
    >>> again, background = read_with_background(tmp_path / 'result.fits')
    >>> bool((background.data == result.background.data).all())
    True
    >>> result.multiply(2).background is None, result[:64].background is None
    (True, True)
    """

    def __init__(self, *args, background=None, **kwargs):
        super().__init__(*args, **kwargs)
        if background is not None and background.shape != self.shape:
            msg = (f'background has shape {background.shape}, but the image '
                   f'has shape {self.shape}')
            raise ValueError(msg)
        self.background = background

    def to_hdu(self, *args, **kwargs):
        """
        `~astropy.nddata.CCDData.to_hdu`, followed by the ``BKG`` and
        ``BKGRMS`` HDUs of `background` (if any; with an
        `~astropy.utils.exceptions.AstropyUserWarning` and without them if
        the image's data were replaced by data of another shape).
        """
        hdulist = super().to_hdu(*args, **kwargs)
        if self.background is None:
            return hdulist
        if self.background.shape != self.shape:  # data replaced since
            msg = (f'the background carried ({self.background.shape}) no '
                   f'longer fits the image ({self.shape}); written without '
                   'it')
            warnings.warn(msg, AstropyUserWarning, stacklevel=2)
            return hdulist
        hdulist.extend(background_hdus(self.background))
        return hdulist
