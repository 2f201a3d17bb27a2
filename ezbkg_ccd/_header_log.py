# Licensed under a 3-clause BSD style license - see LICENSE
"""
Writing keywords into ``CCDData.meta`` the way ccdproc logs its steps.
"""

import astropy.units as u
import numpy as np
from astropy.io import fits
from astropy.nddata import NDData
from ccdproc import Keyword

from ezbkg_ccd.provenance import set_card

__all__ = []


def set_keyword(meta, key, value, comment):
    """Set ``key``: with its comment in a FITS header, plainly in a dict."""
    if isinstance(meta, fits.Header):
        set_card(meta, key, value, comment)
    else:
        meta[key] = value


def _placeholder(value):
    """ccdproc's rule: arrays and images are logged by type only."""
    if isinstance(value, (np.ndarray, NDData)) or (
            isinstance(value, u.Quantity) and not value.isscalar):
        return f'<{type(value).__name__}>'
    if hasattr(value, 'shape') and hasattr(value, 'data'):
        return f'<{type(value).__name__}>'
    return value


def log_entries(add_keyword, key, arguments):
    """
    Return the keywords that log a processing step, as ccdproc does.

    Parameters
    ----------
    add_keyword : bool, str, `~ccdproc.Keyword`, dict or None
        `True` logs ``key = "name=value, ..."`` of ``arguments``;
        `False`/`None` logs nothing; a string, `~ccdproc.Keyword` or dict
        is logged as given (ccdproc's ``add_keyword`` semantics).
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
    if not add_keyword:
        entries = {}
    elif add_keyword is True:
        entries = {key: ', '.join(f'{name}={_placeholder(value)}'
                                  for name, value in arguments.items())}
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
