# Licensed under a 3-clause BSD style license - see LICENSE
"""
WCS headers that never crash their readers.

wcslib reads some legacy distortion descriptions, a DSS plate solution
(``PLTRAH``, ``AMDX1``, ...) or IRAF's ``WAT`` cards, into a WCS with
distortion that astropy writes back as wcslib's own ``CQDISi``/``DQi.*``
(TPD) cards. `~astropy.nddata.CCDData.read` leaves the legacy cards in
``meta``, so a written file describes its distortion twice, and parsing
such a header corrupts the heap inside ``astropy.wcs`` (the process
aborts; astropy issue 7828). Here the legacy copy is left out on write,
where the WCS object already holds that distortion, and on read, where a
file already has both.
"""

import re
import warnings

from astropy.utils.exceptions import AstropyUserWarning

__all__ = []

#: Keywords that wcslib translates into its own distortion: a DSS plate
#: solution and IRAF's WAT cards.
_LEGACY_DISTORTION = re.compile(
    r'(PLTRA[HMS]|PLTDEC(SN|[DMS])|CNPIX[12]|PPO[36]|[XY]PIXELSZ'
    r'|AMD[XY]\d+|WAT\d_\d{3})')

#: wcslib's own (TPD) distortion cards of the primary WCS.
_TPD_DISTORTION = re.compile(r'(CQDIS\d+|DQ\d+(\..*)?)')


def _matching(header, pattern):
    return [key for key in header if pattern.fullmatch(key)]


def ccd_hdus(ccd, **options):
    """
    `~astropy.nddata.CCDData.to_hdu` without the legacy distortion cards
    that would describe the WCS's distortion a second time.

    Examples
    --------
    >>> import numpy as np
    >>> from astropy.nddata import CCDData
    >>> from astropy.wcs import WCS
    >>> from ezbkg_ccd._wcs import ccd_hdus
    >>> ccd = CCDData(np.zeros((4, 4)), unit='adu', wcs=WCS(naxis=2),
    ...               meta={'AMDX1': 1.0, 'PLATEID': 'XE295'})
    >>> header = ccd_hdus(ccd)[0].header
    >>> 'AMDX1' in header, header['PLATEID']
    (False, 'XE295')
    """
    hdulist = ccd.to_hdu(**options)
    if ccd.wcs is not None:  # written from the WCS object, distortion and all
        header = hdulist[0].header
        for key in _matching(header, _LEGACY_DISTORTION):
            del header[key]
    return hdulist


def without_unsafe_distortion(header, *, source):
    """
    ``header`` without its legacy distortion cards when it also has
    wcslib's own for the same WCS (a combination that crashes
    ``astropy.wcs``), with an `~astropy.utils.exceptions.AstropyUserWarning`;
    otherwise ``header`` itself.

    Examples
    --------
    >>> import warnings
    >>> from astropy.io import fits
    >>> from ezbkg_ccd._wcs import without_unsafe_distortion
    >>> header = fits.Header({'CQDIS1': 'TPD', 'AMDX1': 1.0})
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter('always')
    ...     safe = without_unsafe_distortion(header, source='plate.fits')
    >>> list(safe), len(caught)
    (['CQDIS1'], 1)
    """
    legacy = _matching(header, _LEGACY_DISTORTION)
    if not (legacy and _matching(header, _TPD_DISTORTION)):
        return header
    header = header.copy()
    for key in legacy:
        del header[key]
    msg = (f'the header of {source} describes its WCS distortion twice, as '
           'TPD (CQDISi/DQi) and as a plate solution or IRAF WAT cards, '
           'which crashes astropy.wcs; the latter cards '
           f'({", ".join(legacy[:4])}{", ..." if len(legacy) > 4 else ""}) '
           'were left out')
    warnings.warn(msg, AstropyUserWarning, stacklevel=3)
    return header
