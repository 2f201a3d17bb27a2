# Licensed under a 3-clause BSD style license - see LICENSE
"""
Writing keywords into ``CCDData.meta`` the way ccdproc logs its steps.
"""

import warnings

import astropy.units as u
import ccdproc
import numpy as np
from astropy.io import fits
from astropy.nddata import NDData
from astropy.utils.exceptions import AstropyUserWarning
from ccdproc import Keyword

from ezbkg_ccd.provenance import set_card

__all__ = []


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
    >>> from ezbkg_ccd._header_log import set_keyword
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
    >>> from ezbkg_ccd._header_log import drop_keyword
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
