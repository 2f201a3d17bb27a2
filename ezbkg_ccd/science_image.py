# Licensed under a 3-clause BSD style license - see LICENSE
"""
`ScienceImage`: a thin, file-backed image for the ezphot-style workflow.
"""

from pathlib import Path

from ezbkg_ccd._inputs import as_ccddata
from ezbkg_ccd._reader import read_ccddata
from ezbkg_ccd.masks import invalid_pixel_mask
from ezbkg_ccd.paths import fits_stem
from ezbkg_ccd.persistence import read_background
from ezbkg_ccd.source_mask import make_source_mask

__all__ = ['ScienceImage']


class ScienceImage:
    """
    A science frame backed by a FITS file, over `~astropy.nddata.CCDData`.

    The file is read on first use of `ccd`; `invalidmask` and
    `sourcemask` are computed on first use and cached.

    Parameters
    ----------
    path : str or `~pathlib.Path`
        The FITS file.
    hdu : int or str, optional
        The image HDU (default 0).
    saturation : float, 'header' or None, optional
        Saturation level for `invalidmask` (default: from the header);
        see `~ezbkg_ccd.masks.invalid_pixel_mask`.
    zero_area : int or None, optional
        Smallest zeroed region in `invalidmask` (default 100 pixels).
    ccd : `~astropy.nddata.CCDData` or array_like, optional
        The image already in memory; ``path`` is then where it is (or
        will be) stored and may be `None` or not exist yet.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist and no ``ccd`` is given.

    Examples
    --------
    >>> import numpy as np
    >>> from astropy.nddata import CCDData
    >>> from ezbkg_ccd import ScienceImage
    >>> CCDData(np.ones((64, 64)), unit='adu').write(tmp_path / 'sci.fits')
    >>> sci = ScienceImage(tmp_path / 'sci.fits')
    >>> sci.data.shape, sci.bkgmap
    ((64, 64), None)
    """

    def __init__(self, path, *, hdu=0, saturation='header', zero_area=100,
                 ccd=None):
        self.path = None if path is None else Path(path)
        if ccd is None and (self.path is None or not self.path.is_file()):
            msg = f'no such FITS file: {str(path)!r}'
            raise FileNotFoundError(msg)
        self.hdu = hdu
        self.saturation = saturation
        self.zero_area = zero_area
        self._ccd = None if ccd is None else as_ccddata(ccd)
        self._invalidmask = None
        self._sourcemask = None
        self._background = None

    @property
    def ccd(self):
        """The image as a `~astropy.nddata.CCDData` (read on first use)."""
        if self._ccd is None:
            self._ccd = read_ccddata(self.path, hdu=self.hdu)
        return self._ccd

    @property
    def data(self):
        """The pixel array."""
        return self.ccd.data

    @property
    def header(self):
        """The header (``ccd.meta``)."""
        return self.ccd.meta

    @property
    def invalidmask(self):
        """Invalid pixels by the rule of `~ezbkg_ccd.masks.invalid_pixel_mask`."""
        if self._invalidmask is None:
            self._invalidmask = invalid_pixel_mask(
                self.ccd, saturation=self.saturation,
                zero_area=self.zero_area)
        return self._invalidmask

    @property
    def sourcemask(self):
        """An automatic source mask (`~ezbkg_ccd.make_source_mask`)."""
        if self._sourcemask is None:
            self._sourcemask = make_source_mask(self.ccd,
                                                mask=self.invalidmask)
        return self._sourcemask

    @property
    def bkgpath(self):
        """The default background file: ``<stem>.bkg.fits`` beside the image."""
        if self.path is None:
            return None
        return self.path.with_name(f'{fits_stem(self.path)}.bkg.fits')

    def link_background(self, background):
        """Link ``background`` to this image and record ``BKGPATH``."""
        self._background = background
        if background.path is not None:
            self.header['BKGPATH'] = str(background.path)

    @property
    def bkgmap(self):
        """
        The linked `~ezbkg_ccd.Background` once written, else `None`.

        Looks at the linked background, then at ``BKGPATH`` in the header
        and the default `bkgpath`, and returns the first whose file exists.
        """
        if self._background is not None and self._background.is_exists:
            return self._background
        for candidate in (self.header.get('BKGPATH'), self.bkgpath):
            if candidate is not None and Path(candidate).is_file():
                self._background = read_background(candidate)
                return self._background
        return None

    def calculate_bkg(self, *, generator=None, **options):
        """
        Estimate this image's background with a `BackgroundGenerator`.

        Keywords are those of `BackgroundGenerator.estimate_with_sep`;
        returns the `~ezbkg_ccd.Background` only.
        """
        from ezbkg_ccd.generator import BackgroundGenerator

        generator = BackgroundGenerator() if generator is None else generator
        background, _ = generator.estimate_with_sep(self, **options)
        return background

    def __repr__(self):
        return f'ScienceImage(path={self.path})'
