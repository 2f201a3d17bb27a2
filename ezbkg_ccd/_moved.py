# Licensed under a 3-clause BSD style license - see LICENSE
"""
Deprecated module paths: the warning their alias modules give.
"""

import warnings

from astropy.utils.exceptions import AstropyDeprecationWarning

__all__ = []


def warn_moved(old, instead):
    """
    Warn that module ``old`` is deprecated; ``instead`` says what to use.

    Called at the import of an alias module, so the warning points at it.
    """
    msg = (f'{old} is deprecated since ezbkg-ccd 0.2 and will be removed in '
           f'0.3; {instead}')
    warnings.warn(msg, AstropyDeprecationWarning, stacklevel=3)
