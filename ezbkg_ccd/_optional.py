# Licensed under a 3-clause BSD style license - see LICENSE
"""
Optional dependencies, imported when first needed.
"""

import importlib

__all__ = ['optional_module']


def optional_module(name, *, extra, purpose):
    """
    The module ``name``, or an `ImportError` saying that ``purpose``
    needs it and how to install it (the ``extra`` of ezbkg-ccd).

    Examples
    --------
    >>> from ezbkg_ccd._optional import optional_module
    >>> optional_module('json', extra='none', purpose='this').__name__
    'json'
    >>> optional_module('no_such_module', extra='plot', purpose='plotting')
    Traceback (most recent call last):
    ...
    ImportError: plotting needs no_such_module: pip install "ezbkg-ccd[plot]"
    """
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        msg = (f'{purpose} needs {name.partition(".")[0]}: pip install '
               f'"ezbkg-ccd[{extra}]"')
        raise ImportError(msg) from exc
