# Licensed under a 3-clause BSD style license - see LICENSE
"""
Output locations built from untrusted header values.

A folder layout such as ``"{OBSERVAT}/{TELESCOP}/{OBJECT}/{INSTRUME}/{FILTER}"``
is filled from a FITS header under a chosen root. Header values are
untrusted: each is reduced to a safe single path component, so no value
(``../..``, an absolute path, NUL, a very long string) can place a file
outside the root.
"""

import re
import string
from pathlib import Path

__all__ = ['safe_component', 'fill_savedir', 'fits_stem', 'MISSING_VALUE',
           'MAX_COMPONENT_LENGTH', 'FITS_ENDINGS']

#: Used for a keyword the header lacks or whose value sanitises to nothing.
MISSING_VALUE = 'UNKNOWN'

#: Longest folder name made from one header value.
MAX_COMPONENT_LENGTH = 64

#: File-name endings taken off a FITS file's name to name what derives
#: from it (``.gz`` first, so ``.fits.gz`` goes whole).
FITS_ENDINGS = ('.gz', '.fz', '.fits', '.fit', '.fts')

_UNSAFE = re.compile(r'[^A-Za-z0-9._+-]+')
_KEYWORD = re.compile(r'[A-Za-z][A-Za-z0-9_-]{0,69}')


def safe_component(value):
    """
    Reduce a header value to one safe folder name.

    Every run of characters other than letters, digits, ``.``, ``_``,
    ``+`` and ``-`` becomes ``_`` (so ``/``, ``\\`` and NUL cannot
    separate folders), leading dots are dropped (no ``.`` or ``..``),
    and the result is cut to `MAX_COMPONENT_LENGTH` characters.

    Examples
    --------
    >>> from ezbkg_ccd.paths import safe_component
    >>> safe_component('../../etc')
    '_.._etc'
    >>> safe_component('SAAO 1.0m'), safe_component('..'), safe_component(None)
    ('SAAO_1.0m', 'UNKNOWN', 'UNKNOWN')
    """
    text = '' if value is None else str(value).strip()
    text = _UNSAFE.sub('_', text).lstrip('.')[:MAX_COMPONENT_LENGTH]
    return text.strip('_') and text or MISSING_VALUE


def fits_stem(path):
    """
    The name of a FITS file without its `FITS_ENDINGS`.

    Examples
    --------
    >>> from ezbkg_ccd.paths import fits_stem
    >>> fits_stem('night/a0042.fits.gz'), fits_stem('b.fit'), fits_stem('c.v2')
    ('a0042', 'b', 'c.v2')
    """
    name = Path(path).name
    for ending in FITS_ENDINGS:
        name = name.removesuffix(ending)
    return name


def fill_savedir(template, header, root):
    """
    Fill a folder template from a header, safely under ``root``.

    Parameters
    ----------
    template : str
        Folders separated by ``/`` with ``{KEYWORD}`` fields, e.g.
        ``"{OBSERVAT}/{TELESCOP}/{OBJECT}/{INSTRUME}/{FILTER}"``.
    header : dict-like
        The values; missing keywords give ``UNKNOWN``.
    root : str or `~pathlib.Path`
        The folder every result stays inside.

    Returns
    -------
    savedir : `~pathlib.Path`

    Raises
    ------
    TypeError
        If ``template`` is not a string.
    ValueError
        If ``template`` is absolute or has ``..``, or (defensively) the
        result is not inside ``root``.

    Examples
    --------
    >>> from ezbkg_ccd.paths import fill_savedir
    >>> header = {'OBSERVAT': 'SAAO', 'OBJECT': '../../etc/passwd'}
    >>> fill_savedir('{OBSERVAT}/{OBJECT}/{FILTER}', header, '/data').as_posix()
    '/data/SAAO/_.._etc_passwd/UNKNOWN'
    """
    if not isinstance(template, str):
        msg = f'template must be a str, got {type(template).__name__}'
        raise TypeError(msg)
    parts = template.replace('\\', '/').split('/')
    if template.startswith(('/', '\\')) or '..' in parts:
        msg = f'template must be a relative path without "..", got {template!r}'
        raise ValueError(msg)
    fields = set()
    for _, name, spec, conversion in string.Formatter().parse(template):
        if name is None:
            continue
        if not _KEYWORD.fullmatch(name) or spec or conversion:
            msg = (f'template fields must be plain header keywords, got '
                   f'{{{name}}} in {template!r}')
            raise ValueError(msg)
        fields.add(name)
    values = {name: safe_component(header.get(name)) for name in fields}
    root = Path(root).resolve()
    savedir = root.joinpath(*(part.format(**values) for part in parts
                              if part)).resolve()
    if not savedir.is_relative_to(root):
        msg = f'template {template!r} leaves the root {str(root)!r}'
        raise ValueError(msg)
    return savedir
