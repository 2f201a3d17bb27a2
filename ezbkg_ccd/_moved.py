# Licensed under a 3-clause BSD style license - see LICENSE
"""
Deprecations: the warning of the alias modules of moved module paths,
and warnings that point at the user's line.
"""

import sys
import warnings

from astropy.utils.exceptions import AstropyDeprecationWarning

__all__ = []


def caller_stacklevel():
    """
    The ``stacklevel`` of a warning given by the function calling this
    one that points at the first frame outside ezbkg-ccd and Python's
    import machinery: the user's line.
    """
    frame, level = sys._getframe(2), 2
    while frame is not None:
        filename = frame.f_code.co_filename
        # `warnings` itself skips (and does not count) importlib's frames
        if not ('importlib' in filename and '_bootstrap' in filename):
            name = frame.f_globals.get('__name__', '')
            if not (name.startswith('ezbkg_ccd') or name == 'importlib'):
                break
            level += 1
        frame = frame.f_back
    return level


def warn_moved(old, instead):
    """
    Warn that module ``old`` is deprecated; ``instead`` says what to use.

    Called at the import of an alias module, so the warning points at it.
    """
    msg = (f'{old} is deprecated since ezbkg-ccd 0.2 and will be removed in '
           f'0.3; {instead}')
    warnings.warn(msg, AstropyDeprecationWarning,
                  stacklevel=caller_stacklevel())
