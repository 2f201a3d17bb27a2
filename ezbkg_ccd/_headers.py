# Licensed under a 3-clause BSD style license - see LICENSE
"""
Headers from the wild, made safe to keep: cards that astropy reads but
refuses to write are repaired or dropped (with a warning naming them).
"""

import warnings

from astropy.io import fits
from astropy.io.fits.verify import VerifyError, VerifyWarning
from astropy.utils.exceptions import AstropyUserWarning

__all__ = []


def _printable(text):
    """``text`` with every character outside printable ASCII as ``?``."""
    return ''.join(c if ' ' <= c <= '~' else '?' for c in text)


def _checked(card):
    """``card`` if astropy will write it as it is, else `None`."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore', VerifyWarning)
            card.verify('exception')
            str(card)  # formats the value: raises for what cannot be written
    except (VerifyError, ValueError):
        return None
    return card


def _repaired(card):
    """A writable copy of a bad ``card`` (characters outside printable
    ASCII made ``?``), or `None` if it cannot be repaired."""
    try:
        image = card.image
    except (VerifyError, ValueError):
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore', VerifyWarning)
            fixed = fits.Card.fromstring(_printable(image))
            fixed.verify('fix')
    except (VerifyError, ValueError):
        return None
    return _checked(fixed)


def writable_header(header, *, source):
    """
    Return ``header`` with every card that astropy would refuse to write
    repaired or dropped.

    A card with a control or non-ASCII character (an observer's name in a
    local encoding, a byte damaged in transfer) aborts astropy's writer
    with a `~astropy.io.fits.verify.VerifyError`. Such characters become
    ``?``; a card that still cannot be written is dropped. Either way an
    `~astropy.utils.exceptions.AstropyUserWarning` names the keywords.
    The header is returned unchanged (the same object) when every card
    is fine.

    Parameters
    ----------
    header : `~astropy.io.fits.Header`
    source : str
        What the header belongs to, for the warning.

    Examples
    --------
    >>> import warnings
    >>> from astropy.io import fits
    >>> from ezbkg_ccd._headers import writable_header
    >>> cards = [f"OBSERVER= 'Jos{chr(1)}'", "OBJECT  = 'M 51'"]
    >>> header = fits.Header.fromstring(''.join(f'{card:<80}' for card in cards))
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter('always')
    ...     fixed = writable_header(header, source='frame.fits')
    >>> fixed['OBSERVER'], fixed['OBJECT']
    ('Jos?', 'M 51')
    >>> print(caught[0].message)  # doctest: +ELLIPSIS
    the header of frame.fits: repaired the card(s) OBSERVER (characters ...
    """
    cards, repaired, dropped = [], [], []
    for card in header.cards:
        if _checked(card) is not None:
            cards.append(card)
            continue
        fixed = _repaired(card)
        if fixed is None:
            dropped.append(card.keyword)
        else:
            cards.append(fixed)
            repaired.append(card.keyword)
    if not (repaired or dropped):
        return header
    parts = []
    if repaired:
        parts.append(f'repaired the card(s) {", ".join(repaired)} (characters '
                     'other than printable ASCII replaced by "?")')
    if dropped:
        parts.append(f'dropped the unwritable card(s) {", ".join(dropped)}')
    msg = f'the header of {source}: {"; ".join(parts)}'
    warnings.warn(msg, AstropyUserWarning, stacklevel=3)
    return fits.Header(cards)
