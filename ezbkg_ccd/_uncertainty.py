# Licensed under a 3-clause BSD style license - see LICENSE
"""
Uncertainty of a background-subtracted image.
"""

from numbers import Real

import astropy.units as u
import numpy as np
from astropy.nddata import StdDevUncertainty, VarianceUncertainty

__all__ = []


def gain_in_electrons(gain, unit):
    """
    Return the gain in electrons per ``unit`` as a float, or `None`.

    Data in electrons have a gain of 1; ``gain`` may be a number (taken
    to be electrons per data unit) or a `~astropy.units.Quantity`.
    """
    if gain is None:
        return 1.0 if unit == u.electron else None
    if isinstance(gain, u.Quantity):
        try:
            value = gain.to_value(u.electron / unit)
        except u.UnitConversionError as exc:
            msg = f'gain {gain} cannot be converted to electron / {unit}'
            raise u.UnitsError(msg) from exc
    elif isinstance(gain, Real) and not isinstance(gain, bool):
        value = float(gain)
    else:
        msg = f'gain must be a number or a Quantity, got {type(gain).__name__}'
        raise TypeError(msg)
    if not (np.isfinite(value) and value > 0):
        msg = f'gain must be positive and finite, got {gain!r}'
        raise ValueError(msg)
    return value


def _variance(uncertainty, unit):
    """The variance array of any astropy uncertainty, in ``unit**2``."""
    try:
        variance = uncertainty.represent_as(VarianceUncertainty)
    except (TypeError, AttributeError) as exc:
        msg = (f'ccd.uncertainty of type {type(uncertainty).__name__} '
               'cannot be converted to a variance')
        raise TypeError(msg) from exc
    if variance.unit is None:
        return variance.array
    return u.Quantity(variance.array, variance.unit,
                      copy=False).to_value(unit**2)


def subtracted_uncertainty(ccd, residual, background, *, gain):
    """
    Uncertainty of ``residual = ccd - background``.

    The input uncertainty (any type that converts to a variance) is
    combined in quadrature with the error of the background model, and
    returned as the input's type. Without an input uncertainty, the
    variance is the background RMS squared, plus the model error squared,
    plus the Poisson variance of the residual counts when ``gain`` (in
    electrons per data unit) is known.
    """
    model_variance = np.square(background.error)
    if ccd.uncertainty is not None:
        variance = _variance(ccd.uncertainty, ccd.unit) + model_variance
        return VarianceUncertainty(variance, unit=ccd.unit**2).represent_as(
            type(ccd.uncertainty))
    variance = np.square(background.rms) + model_variance
    if gain is not None:
        variance += np.clip(residual, 0, None) / variance.dtype.type(gain)
    return StdDevUncertainty(np.sqrt(variance, out=variance), unit=ccd.unit)
