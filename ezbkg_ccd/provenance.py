# Licensed under a 3-clause BSD style license - see LICENSE
"""
The FITS provenance keywords that describe a background, and the
ccdproc-style log of a step in ``CCDData.meta``.

`KEYWORDS` is the single list of every keyword ezbkg-ccd writes, with its
meaning; headers, the documentation and the readers all use it.
`set_keyword`, `drop_keyword` and `log_entries` write them (and the
call) into a header the way ccdproc logs its own steps.
"""

import datetime
import functools
import os
import re
import urllib.parse
import warnings
from importlib.metadata import PackageNotFoundError, version

import astropy.units as u
import ccdproc
import numpy as np
from astropy.io import fits
from astropy.nddata import NDData
from astropy.utils.exceptions import AstropyUserWarning
from ccdproc import Keyword

__all__ = ['KEYWORDS', 'REQUIRED_KEYWORDS', 'SOFTWARE_KEYWORDS',
           'provenance_header', 'set_card', 'options_text', 'record_target']

#: Every provenance keyword, in the order written, with its meaning (also
#: the card comment, so each fits beside any value: at most 46 characters).
KEYWORDS = {
    'BKGTYPE': 'background method (estimator name)',
    'BKGIS2D': 'T: 2-D map; F: one constant level',
    'BKGBOX': '[pix] mesh box size along y (rows)',
    'BKGBOXX': '[pix] mesh box size along x (columns)',
    'BKGFILT': '[mesh] median filter size along y',
    'BKGFILTX': '[mesh] median filter size along x',
    'BKGFTHR': 'median filter threshold',
    'BKGVALU': 'global background level',
    'BKGSIG': 'global background RMS',
    'BKGNPIX': 'pixels behind one background estimate',
    'BKGINVM': 'invalid-pixel masks used',
    'BKGNINV': 'number of invalid pixels',
    'BKGSATLV': 'invalid rule: saturation level, header, none',
    'BKGZAREA': '[pix] invalid rule: least zeroed area, none',
    'BKGSRCM': 'source mask used: none, user or auto',
    'BKGNSRC': 'number of source-masked pixels',
    'BKGSMOPT': 'settings of the automatic source mask',
    'BKGAITER': 'automatic source mask: rounds run',
    'BKGAKEPT': 'automatic source mask: round kept',
    'BKGAFRAC': 'automatic source mask: masked fraction',
    'BKGASTOP': 'how the automatic source mask stopped',
    'BKGNCOV': 'pixels without data coverage (filled)',
    'BKGFILL': 'map value where there is no data coverage',
    'BKGREJT': '[sigma] skew threshold of mesh rejection',
    'BKGNREJ': 'meshes rejected as source-skewed',
    'BKGOPTS': 'further estimator options',
    'TGTPATH': 'file the background was estimated from',
    'BKGDATE': '[UTC] when the background was estimated',
    'BKGVERS': 'ezbkg-ccd version',
    'SEPVERS': 'sep version',
    'PHOTVERS': 'photutils version',
    'ASTRVERS': 'astropy version',
    'NUMPVERS': 'numpy version',
    'BKGNAX1': '[pix] width of a map stored without data',
    'BKGNAX2': '[pix] height of a map stored without data',
    'BKGBITPX': 'BITPIX of a map stored without data',
}

#: Keywords that a background header must hold to be read back.
REQUIRED_KEYWORDS = ('BKGTYPE', 'BKGIS2D', 'BKGBOX', 'BKGBOXX', 'BKGFILT',
                     'BKGFILTX', 'BKGFTHR', 'BKGVALU', 'BKGSIG', 'BKGNPIX')

#: Keyword -> distribution whose version it records.
SOFTWARE_KEYWORDS = {'BKGVERS': 'ezbkg-ccd', 'SEPVERS': 'sep',
                     'PHOTVERS': 'photutils', 'ASTRVERS': 'astropy',
                     'NUMPVERS': 'numpy'}


def set_card(header, key, value, comment=''):
    """
    Set ``header[key]``, shortening the comment so the card fits.

    astropy warns (and truncates) when a string value and its comment do
    not fit one 80-character card; this trims the comment instead.

    Examples
    --------
    >>> from astropy.io import fits
    >>> from ezbkg_ccd.provenance import set_card
    >>> header = fits.Header()
    >>> set_card(header, 'TGTPATH', '/data/' + 'n' * 49 + '.fits', 'target')
    >>> header.comments['TGTPATH']
    'targe'
    """
    if isinstance(value, str) and len(value) <= 68:
        quoted = max(len(value.replace("'", "''")) + 2, 20)
        comment = comment[:max(80 - 10 - quoted - 3, 0)]
    header[key] = (value, comment)


#: Characters a path keeps in a header card: printable ASCII but ``%``.
_PATH_SAFE = ''.join(chr(code) for code in range(0x20, 0x7f) if code != 0x25)


def path_to_header(path):
    """
    ``path`` as printable ASCII for a header card: other characters (and
    ``%``) percent-encoded as UTF-8, reversibly (`path_from_header`).

    Examples
    --------
    >>> from ezbkg_ccd.provenance import path_from_header, path_to_header
    >>> path_to_header('/données/f 1.fits')
    '/donn%C3%A9es/f 1.fits'
    >>> path_from_header(path_to_header('/données/f 1.fits'))
    '/données/f 1.fits'
    """
    return urllib.parse.quote(str(path), safe=_PATH_SAFE)


def path_from_header(text):
    """The path `path_to_header` encoded as ``text``."""
    return urllib.parse.unquote(str(text))


def record_target(header, path):
    """
    Record ``path`` as the file a background was estimated from.

    ``TGTPATH`` holds the absolute path (`path_to_header`), so that a
    rerun can tell whether an existing output was made from the same
    file.

    Examples
    --------
    >>> import os
    >>> from astropy.io import fits
    >>> from ezbkg_ccd.provenance import record_target
    >>> header = fits.Header()
    >>> record_target(header, 'night1/frame.fits')
    >>> header['TGTPATH'] == os.path.abspath('night1/frame.fits')
    True
    """
    set_card(header, 'TGTPATH', path_to_header(os.path.abspath(path)),
             KEYWORDS['TGTPATH'])


def _option_repr(value):
    """``repr`` of an option; a numpy scalar as its Python value, arrays
    by type, shape and dtype only."""
    if isinstance(value, np.generic):
        return repr(value.item())
    if hasattr(value, 'shape') and hasattr(value, 'dtype'):
        return (f'<{type(value).__name__} shape={tuple(np.shape(value))} '
                f'dtype={value.dtype}>')
    return repr(value)


def options_text(options):
    """
    Options as one line of printable ASCII for a header card, or `None`.

    Keys are sorted; arrays (a photutils ``coverage_mask``, say) are
    described, not printed; line breaks and non-ASCII characters of other
    values' ``repr`` are escaped.

    Examples
    --------
    >>> import numpy as np
    >>> from ezbkg_ccd.provenance import options_text
    >>> options_text({'percentile': 90.0, 'coverage_mask': np.zeros((4, 5), bool)})
    "{'coverage_mask': <ndarray shape=(4, 5) dtype=bool>, 'percentile': 90.0}"
    >>> options_text({}) is None
    True
    """
    if not options:
        return None
    text = ', '.join(f'{key!r}: {_option_repr(value)}'
                     for key, value in sorted(options.items()))
    text = re.sub(r'\s+', ' ', '{' + text + '}')
    return text.encode('ascii', 'backslashreplace').decode('ascii')


@functools.cache
def _version(distribution):
    try:
        return version(distribution)
    except PackageNotFoundError:
        return 'unknown'


def provenance_header(values):
    """
    Return a `~astropy.io.fits.Header` of provenance keywords.

    Parameters
    ----------
    values : dict
        Keyword -> value for the keywords of `KEYWORDS` that describe the
        estimate; the date and the software versions are added here.
        Keywords whose value is `None` are left out.

    Returns
    -------
    header : `~astropy.io.fits.Header`

    Examples
    --------
    >>> from ezbkg_ccd.provenance import provenance_header
    >>> header = provenance_header({'BKGTYPE': 'SEP', 'BKGVALU': 1.5})
    >>> header['BKGVALU'], header.comments['BKGVALU']
    (1.5, 'global background level')
    >>> 'BKGVERS' in header
    True
    """
    now = datetime.datetime.now(datetime.UTC)
    values = {**values,
              'BKGDATE': now.isoformat(timespec='seconds').replace('+00:00', ''),
              **{key: _version(name)
                 for key, name in SOFTWARE_KEYWORDS.items()}}
    unknown = set(values) - set(KEYWORDS)
    if unknown:
        msg = f'values has unknown provenance keywords {sorted(unknown)}'
        raise ValueError(msg)
    header = fits.Header()
    for key, comment in KEYWORDS.items():
        if values.get(key) is not None:
            set_card(header, key, values[key], comment)
    return header


def _differs(old, new):
    """Whether a stored value differs from a new one (any types)."""
    try:
        return bool(old != new)
    except (TypeError, ValueError):
        return True


def _history(meta, key, old):
    meta.add_history(f'ezbkg-ccd replaced {key} = {old!r}')


def set_keyword(meta, key, value, comment):
    """
    Set ``key`` in ``meta`` without silently losing what it held.

    In a FITS header the card gets its comment, every earlier value of
    ``key`` that differs from ``value`` is kept as a ``HISTORY`` card
    (``ezbkg-ccd replaced KEY = old``), and duplicate ``key`` cards are
    removed, so no stale copy stays. A plain dict, which cannot hold
    ``HISTORY`` cards, gets an `~astropy.utils.exceptions.AstropyUserWarning`
    for a replaced value instead.

    Examples
    --------
    >>> from astropy.io import fits
    >>> from ezbkg_ccd.provenance import set_keyword
    >>> header = fits.Header([('BKGVALU', 1.0), ('BKGVALU', 2.0)])
    >>> set_keyword(header, 'BKGVALU', 3.0, 'global background level')
    >>> header.count('BKGVALU'), header['BKGVALU']
    (1, 3.0)
    >>> list(header['HISTORY'])
    ['ezbkg-ccd replaced BKGVALU = 1.0', 'ezbkg-ccd replaced BKGVALU = 2.0']
    """
    if not isinstance(meta, fits.Header):
        if key in meta and _differs(meta[key], value):
            msg = (f'ccd.meta[{key!r}] = {meta[key]!r} is replaced by '
                   f'{value!r}')
            warnings.warn(msg, AstropyUserWarning, stacklevel=3)
        meta[key] = value
        return
    replaced = [old for old in _remove(meta, key) if _differs(old, value)]
    set_card(meta, key, value, comment)
    for old in replaced:
        _history(meta, key, old)


def _remove(meta, key):
    """Remove every ``key`` card of a header; return their values."""
    if key not in meta:
        return []
    name = key.upper()
    indices = [index for index, card in enumerate(meta.cards)
               if card.keyword.upper() == name]
    values = [meta[index] for index in indices]
    for index in reversed(indices):
        del meta[index]
    return values


def drop_keyword(meta, key):
    """
    Remove ``key`` from ``meta``, keeping its value as in `set_keyword`.

    Examples
    --------
    >>> from astropy.io import fits
    >>> from ezbkg_ccd.provenance import drop_keyword
    >>> header = fits.Header([('TGTPATH', '/old/frame.fits')])
    >>> drop_keyword(header, 'TGTPATH')
    >>> 'TGTPATH' in header, list(header['HISTORY'])
    (False, ["ezbkg-ccd replaced TGTPATH = '/old/frame.fits'"])
    """
    if not isinstance(meta, fits.Header):
        if key in meta:
            msg = f'ccd.meta[{key!r}] = {meta[key]!r} is removed'
            warnings.warn(msg, AstropyUserWarning, stacklevel=3)
            del meta[key]
        return
    for old in _remove(meta, key):
        _history(meta, key, old)


def _length(value):
    """ccdproc's length of an array or image (42: none, or no length)."""
    for candidate in (value, getattr(value, 'data', None)):
        try:
            return len(candidate)
        except TypeError:
            continue
    return 42


def _placeholder(value):
    """
    ccdproc's rule: arrays and images longer than 1 and array quantities
    are logged by type only; so are FITS HDUs and HDU lists, and other
    objects with a shape and data (a `~ezbkg_ccd.Background`).
    """
    if isinstance(value, (fits.HDUList, fits.PrimaryHDU, fits.ImageHDU,
                          fits.CompImageHDU)):
        by_type = True
    elif isinstance(value, u.Quantity):
        by_type = not value.isscalar
    elif isinstance(value, (np.ndarray, NDData)):
        by_type = _length(value) > 1
    else:  # not a numpy scalar, which has both
        by_type = (not isinstance(value, np.generic)
                   and hasattr(value, 'shape') and hasattr(value, 'data'))
    return f'<{type(value).__name__}>' if by_type else value


def _printable(text):
    """``text`` with every character a header card cannot hold (not
    printable ASCII: a tab, an accented letter of a path) escaped."""
    return ''.join(character if ' ' <= character <= '~' else
                   character.encode('unicode_escape').decode('ascii')
                   for character in text)


def log_entries(add_keyword, key, arguments):
    """
    Return the keywords that log a processing step, as ccdproc does.

    Parameters
    ----------
    add_keyword : bool, str, `~ccdproc.Keyword`, dict or None
        `True` logs ``key = "name=value, ..."`` of ``arguments`` (unless
        ccdproc's ``ccdproc.conf.auto_logging`` is off, as for ccdproc's
        own steps); `False`/`None` logs nothing; a string,
        `~ccdproc.Keyword` or dict is logged as given (ccdproc's
        ``add_keyword`` semantics).
    key : str
        The keyword for the default log: at most 8 characters, so no
        HIERARCH card is needed.
    arguments : dict
        The arguments the caller passed, in order.

    Returns
    -------
    entries : dict
        Keyword -> value, to be set in the result's ``meta``.
    """
    if not add_keyword or (add_keyword is True
                           and not ccdproc.conf.auto_logging):
        entries = {}
    elif add_keyword is True:
        text = ', '.join(f'{name}={_placeholder(value)}'
                         for name, value in arguments.items())
        entries = {key: _printable(text.replace('\n', ''))}
    elif isinstance(add_keyword, str):
        entries = {add_keyword: None}
    elif isinstance(add_keyword, Keyword):
        entries = {add_keyword.name: add_keyword.value}
    elif isinstance(add_keyword, dict):
        entries = add_keyword
    else:
        msg = ('add_keyword must be a bool, str, ccdproc.Keyword or dict, '
               f'got {type(add_keyword).__name__}')
        raise TypeError(msg)
    return entries
