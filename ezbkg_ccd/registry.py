# Licensed under a 3-clause BSD style license - see LICENSE
"""
The registry of background estimators, open to plugins.

An estimator is a callable::

    estimator(data, *, mask, box_size, filter_size, filter_threshold,
              **options) -> BackgroundEstimate

``data`` is a native-byte-order, C-contiguous float32 or float64 array
that the estimator must not modify; ``mask`` is a boolean array, `True`
where a pixel must not be used (invalid or source). ``box_size`` and
``filter_size`` are ``(ny, nx)`` tuples already validated. Third-party
packages add estimators with `register_estimator` or, without any
import, through the ``ezbkg_ccd.estimators`` entry-point group.

The ``options`` an estimator takes are its keyword parameters; one that
takes any keyword (``**options``, passed on elsewhere) may name them in
an ``options`` attribute (names, or a callable returning them), so that
a misspelt option is reported with the valid ones.

Before an estimator is called, ``box_size`` is checked against the image
and at least one mesh must have half its pixels usable (SExtractor's
rule), unless the estimator does not work on the mesh grid: registered
with ``uses_meshes=False``, or with a ``uses_meshes = False`` attribute
(for entry points), as ``constant`` is.
"""

import difflib
import inspect
import warnings
from dataclasses import dataclass, field
from importlib.metadata import entry_points

import numpy as np
from astropy.utils.exceptions import AstropyUserWarning

__all__ = ['BackgroundEstimate', 'register_estimator', 'get_estimator',
           'available_estimators', 'ENTRY_POINT_GROUP']

ENTRY_POINT_GROUP = 'ezbkg_ccd.estimators'

#: The keywords every estimator is given.
STANDARD_KEYWORDS = ('mask', 'box_size', 'filter_size', 'filter_threshold')

_REGISTRY = {}
#: Whether each registered estimator works on the mesh grid.
_USES_MESHES = {}
_entry_points_loaded = False


@dataclass(frozen=True)
class BackgroundEstimate:
    """
    What an estimator returns.

    Parameters
    ----------
    background, rms : `~numpy.ndarray` or callable
        Full-size background and background RMS maps (a read-only
        broadcast view is fine for a constant level), or zero-argument
        callables that compute them when first needed (a new array on
        each call: a writable one may be reused as a buffer).
    global_back, global_rms : float
        The global background level and RMS.
    is_2d : bool
        Whether ``background`` varies across the image.
    samples_per_estimate : int
        The number of pixels behind one independent estimate (a mesh, or
        the whole frame for a constant level); sets the uncertainty of
        the background model.
    extra : dict, optional
        Estimator-specific objects (e.g. the `sep.Background`); never
        persisted.
    subtract_from : callable, optional
        Subtracts the background from a float array in place without a
        full-size map (e.g. `sep.Background.subfrom`).
    meshes : (back, rms) or (back, rms, filled), optional
        The low-resolution grids, one value per ``box_size`` mesh, as the
        maps interpolate them (for SEP, after bad meshes are filled and
        the median filter: SExtractor's ``MINIBACK`` and ``MINIBACK_RMS``
        check-images), and which meshes were filled from their
        neighbours (by default, SExtractor's rule); `None` if the
        estimator has none.
    n_pixels_mesh : `~numpy.ndarray` of int, optional
        The usable pixels of each mesh; by default those of ``mask``,
        counted by the caller when ``meshes`` are given.
    """

    background: np.ndarray
    rms: np.ndarray
    global_back: float
    global_rms: float
    is_2d: bool
    samples_per_estimate: int
    extra: dict = field(default_factory=dict)
    subtract_from: object = None
    meshes: object = None
    n_pixels_mesh: object = None


def register_estimator(name, estimator, *, overwrite=False,
                       uses_meshes=None):
    """
    Make ``estimator`` available as ``method=name``.

    Parameters
    ----------
    name : str
        The method name (case-insensitive, stored in lower case).
    estimator : callable
        See the module docstring for the calling convention.
    overwrite : bool, optional
        Replace an estimator already registered under ``name``. The
        default is `False`.
    uses_meshes : bool, optional
        Whether it works on SExtractor's mesh grid, so that ``box_size``
        must fit in the image and at least one mesh must have half its
        pixels usable (both checked before it runs). The default is the
        estimator's ``uses_meshes`` attribute, else `True`; pass `False`
        for one level per frame.

    Raises
    ------
    TypeError
        If ``name`` is not a string or ``estimator`` is not callable.
    ValueError
        If ``name`` is empty or already registered and not ``overwrite``.

    Examples
    --------
    >>> import numpy as np
    >>> from ezbkg_ccd import (BackgroundEstimate, estimate_background,
    ...                        register_estimator)
    >>> def median_level(data, *, mask, box_size, filter_size,
    ...                  filter_threshold):
    ...     level = float(np.median(data[~mask]))
    ...     spread = float(np.std(data[~mask]))
    ...     return BackgroundEstimate(
    ...         np.broadcast_to(np.float32(level), data.shape),
    ...         np.broadcast_to(np.float32(spread), data.shape),
    ...         level, spread, is_2d=False, samples_per_estimate=data.size)
    >>> register_estimator('median-level', median_level, overwrite=True,
    ...                    uses_meshes=False)  # one level: no mesh checks
    >>> bkg = estimate_background(np.full((32, 32), 7.0),
    ...                           method='median-level')
    >>> bkg.global_back, bkg.method
    (7.0, 'median-level')
    """
    if not isinstance(name, str):
        msg = f'name must be a str, got {type(name).__name__}'
        raise TypeError(msg)
    if not callable(estimator):
        msg = f'estimator must be callable, got {type(estimator).__name__}'
        raise TypeError(msg)
    key = name.strip().lower()
    if not key:
        msg = 'name must not be empty'
        raise ValueError(msg)
    if key in _REGISTRY and not overwrite:
        msg = (f'name {key!r} is already registered; pass overwrite=True '
               'to replace it')
        raise ValueError(msg)
    _REGISTRY[key] = estimator
    _USES_MESHES[key] = bool(getattr(estimator, 'uses_meshes', True)
                             if uses_meshes is None else uses_meshes)


def uses_meshes(name):
    """Whether the estimator registered as ``name`` works on the mesh grid
    (`register_estimator`)."""
    estimator = get_estimator(name)
    return _USES_MESHES.get(name.strip().lower(),
                            bool(getattr(estimator, 'uses_meshes', True)))


def _load_entry_points():
    """
    Register the estimators that installed packages advertise, once.

    A plugin that fails to load (an `ImportError` in its package, a name
    that is not callable) is skipped with a warning naming it; the other
    plugins and the built-in estimators stay available.
    """
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    for entry_point in entry_points(group=ENTRY_POINT_GROUP):
        if entry_point.name.strip().lower() in _REGISTRY:
            continue
        try:
            register_estimator(entry_point.name, entry_point.load())
        except Exception as exc:  # any failure of third-party code
            msg = (f'skipped the estimator plugin {entry_point.name!r} '
                   f'({entry_point.value}) of the {ENTRY_POINT_GROUP} entry '
                   f'points: {type(exc).__name__}: {exc}')
            warnings.warn(msg, AstropyUserWarning, stacklevel=3)


def available_estimators():
    """
    Return the sorted names of all registered estimators.

    Examples
    --------
    >>> from ezbkg_ccd import available_estimators
    >>> {'constant', 'photutils', 'sep'} <= set(available_estimators())
    True
    """
    _load_entry_points()
    return sorted(_REGISTRY)


def get_estimator(name):
    """
    Return the estimator registered as ``name``.

    Raises
    ------
    TypeError
        If ``name`` is not a string.
    ValueError
        If no estimator has that name; the message lists the known ones.

    Examples
    --------
    >>> from ezbkg_ccd import get_estimator
    >>> get_estimator('nope')
    Traceback (most recent call last):
    ...
    ValueError: method 'nope' is not a known estimator; known: constant, ...
    """
    if not isinstance(name, str):
        msg = f'method must be a str, got {type(name).__name__}'
        raise TypeError(msg)
    key = name.strip().lower()
    if key not in _REGISTRY:
        _load_entry_points()
    if key not in _REGISTRY:
        known = ', '.join(available_estimators())
        msg = f'method {name!r} is not a known estimator; known: {known}'
        raise ValueError(msg)
    return _REGISTRY[key]


def estimator_options(estimator):
    """
    The option names ``estimator`` takes besides `STANDARD_KEYWORDS`, or
    `None` when it takes any keyword and does not name them.
    """
    declared = getattr(estimator, 'options', None)
    if callable(declared):
        declared = declared()
    if isinstance(declared, str):
        return frozenset([declared])
    if declared is not None:
        try:
            return frozenset(declared)
        except TypeError:
            msg = ("an estimator's options attribute must name its options "
                   f'(names, or a callable returning them), got {declared!r}')
            raise TypeError(msg) from None
    try:
        parameters = inspect.signature(estimator).parameters.values()
    except (TypeError, ValueError):  # no signature to read (compiled code)
        return None
    if any(p.kind is p.VAR_KEYWORD for p in parameters):
        return None
    return frozenset(keyword_names(estimator)) - set(STANDARD_KEYWORDS)


def keyword_names(function):
    """
    The names of the parameters of ``function`` after its first (the data
    or image) that can be given by keyword.
    """
    parameters = list(inspect.signature(function).parameters.values())[1:]
    return tuple(p.name for p in parameters
                 if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD))


def refuse_unknown(given, accepted, *, context, elsewhere=None):
    """
    Raise `TypeError` for the first name of ``given`` not in
    ``accepted``, naming the nearest accepted one and listing them all
    (``context`` says whose they are); ``elsewhere(name)``, if given,
    returns what else takes the name, said first.
    """
    unknown = sorted(set(given) - set(accepted))
    if unknown:
        valid = sorted(accepted)
        guess = difflib.get_close_matches(unknown[0], valid, n=1)
        hint = f" (did you mean '{guess[0]}'?)" if guess else ''
        takers = elsewhere(unknown[0]) if elsewhere else None
        if takers:
            hint = f' (taken by {takers})'
        msg = (f'unknown option {unknown[0]!r}{hint}; {context} takes: '
               f"{', '.join(valid)}")
        raise TypeError(msg)


def _methods_taking(name, method):
    """The other registered methods whose estimator names option
    ``name``, as text, or ``''``."""
    takers = []
    for other, estimator in sorted(_REGISTRY.items()):
        try:
            if other != method and name in (estimator_options(estimator)
                                            or ()):
                takers.append(f'method={other!r}')
        except TypeError:  # a plugin's malformed options attribute
            continue
    return ' and '.join(takers)


def check_options(method, options, *, public,
                  function='estimate_background'):
    """
    Raise `TypeError` (`refuse_unknown`) for a keyword in ``options``
    that neither ``function`` (its keyword names ``public``) nor the
    estimator of ``method`` takes.
    """
    accepted = estimator_options(get_estimator(method))
    if accepted is not None:
        refuse_unknown(options, accepted | set(public),
                       context=f'{function} with method={method!r}',
                       elsewhere=lambda name: _methods_taking(name, method))
