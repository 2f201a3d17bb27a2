# Licensed under a 3-clause BSD style license - see LICENSE
"""
`ScienceImage`: a thin, file-backed image for the ezphot-style workflow.
"""

import os
import warnings
from pathlib import Path

from astropy.nddata import CCDData
from astropy.utils.exceptions import AstropyUserWarning

from ezbkg_ccd._inputs import as_ccddata
from ezbkg_ccd._reader import read_ccddata
from ezbkg_ccd.masks import invalid_pixel_mask
from ezbkg_ccd.paths import fits_stem
from ezbkg_ccd.persistence import read_background
from ezbkg_ccd.provenance import path_from_header, path_to_header
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
    hdu : int, str or (str, int), optional
        The image HDU (default: the first HDU with image data).
    saturation : float, 'header' or None, optional
        Saturation level for `invalidmask` (default: from the header);
        see `~ezbkg_ccd.masks.invalid_pixel_mask`.
    zero_area : int or None, optional
        Smallest zeroed region in `invalidmask` (default 100 pixels).
    ccd : `~astropy.nddata.CCDData` or array_like, optional
        The image already in memory; ``path`` is then where it is (or
        will be) stored and may be `None` or not exist yet. Its data are
        shared, its ``meta`` is copied (linking a background records
        ``BKGPATH`` there, never in the caller's header).

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

    def __init__(self, path, *, hdu=None, saturation='header', zero_area=100,
                 ccd=None):
        self.path = None if path is None else Path(path)
        if ccd is None and (self.path is None or not self.path.is_file()):
            msg = f'no such FITS file: {str(path)!r}'
            raise FileNotFoundError(msg)
        self.hdu = hdu
        self.saturation = saturation
        self.zero_area = zero_area
        self._ccd = None if ccd is None else _own_meta(as_ccddata(ccd))
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
        """
        Link ``background`` to this image and record ``BKGPATH``.

        The path is recorded relative to the image's folder when the
        background file is inside it.
        """
        self._background = background
        if background.path is not None:
            path = Path(background.path).resolve()
            if self.path is not None and path.is_relative_to(
                    self.path.parent.resolve()):
                path = Path(os.path.relpath(path, self.path.parent.resolve()))
            self.header['BKGPATH'] = path_to_header(path)

    def _recorded_bkgpath(self):
        """
        The file ``BKGPATH`` names, if it is safe to open, else `None`.

        A header is untrusted input: a relative path is resolved against
        the image's folder (never the working directory), and a path that
        leads out of that folder is ignored with a warning.
        """
        value = self.header.get('BKGPATH')
        if value is None or self.path is None:
            return None
        folder = self.path.parent.resolve()
        candidate = (folder / path_from_header(value)).resolve()
        if not candidate.is_relative_to(folder):
            msg = (f'BKGPATH {value!r} in the header of {str(self.path)!r} '
                   f'leads out of the image folder {str(folder)!r}; ignored '
                   '(a header never makes ezbkg-ccd open or delete files '
                   'elsewhere)')
            warnings.warn(msg, AstropyUserWarning, stacklevel=3)
            return None
        return candidate

    @property
    def bkgmap(self):
        """
        The linked `~ezbkg_ccd.Background` once written, else `None`.

        Looks at the linked background, then at the file ``BKGPATH``
        names in the image's folder, then at the default `bkgpath`, and
        returns the first whose file exists. A background found through
        ``BKGPATH`` can be read but not removed: ezbkg-ccd never deletes
        a file because a header names it.
        """
        if self._background is not None and self._background.is_exists:
            return self._background
        recorded = self._recorded_bkgpath()
        for candidate in (recorded, self.bkgpath):
            if candidate is None or not candidate.is_file():
                continue
            try:
                background = read_background(candidate)
            except (OSError, ValueError) as exc:
                problem = str(exc)
            else:
                if background.shape == self.data.shape:
                    # the default name is this package's own; a header's
                    # is not, and never steers a delete
                    background.removable = candidate is not recorded
                    self._background = background
                    return background
                problem = (f"shape {background.shape}, not the image's "
                           f'{self.data.shape}')
            which = ('BKGPATH in the header' if candidate is recorded
                     else 'the default background file')
            msg = (f'{which} of {str(self.path)!r}, {str(candidate)!r}, is no '
                   f'background of this image ({problem}); ignored')
            warnings.warn(msg, AstropyUserWarning, stacklevel=2)
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


def _own_meta(ccd):
    """``ccd`` sharing its data, with a copy of its ``meta``."""
    return CCDData(ccd.data, unit=ccd.unit, mask=ccd.mask,
                   uncertainty=ccd.uncertainty, wcs=ccd.wcs,
                   meta=ccd.meta.copy(), copy=False)
