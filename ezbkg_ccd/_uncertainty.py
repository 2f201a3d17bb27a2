# Licensed under a 3-clause BSD style license - see LICENSE
"""
Uncertainty of a background-subtracted image.
"""

import types

import numpy as np
from astropy.nddata import InverseVariance, StdDevUncertainty, VarianceUncertainty

__all__ = []


#: Uncertainty types converted in place: to and from a variance array,
#: and the power of the uncertainty's unit that a variance has.
_TO_VARIANCE = {StdDevUncertainty: np.square,
                VarianceUncertainty: np.array,
                InverseVariance: np.reciprocal}
_UNIT_POWER = {StdDevUncertainty: 2, VarianceUncertainty: 1,
               InverseVariance: -1}
_FROM_VARIANCE = {StdDevUncertainty: np.sqrt,
                  VarianceUncertainty: None,
                  InverseVariance: np.reciprocal}

#: Rows per block when adding a scaled map, to bound temporary memory.
_BLOCK_ROWS = 256


def _base(kind):
    """The one of the three variance-like types ``kind`` is (a subclass
    included), or `None`."""
    return next((base for base in _TO_VARIANCE if issubclass(kind, base)),
                None)


def _in_unit(variance, variance_unit, unit):
    """``variance`` (in ``variance_unit``, `None` for the data's) in
    ``unit**2``, scaled in place."""
    if variance_unit is not None:
        scale = variance_unit.to(unit**2)
        if scale != 1:
            variance *= scale
    return variance


def _variance(uncertainty, unit):
    """A new variance array (float) of any astropy uncertainty, in unit**2."""
    kind = type(uncertainty)
    base = _base(kind)
    if base is not None:
        array = np.asarray(uncertainty.array)
        if array.dtype.kind != 'f':
            array = array.astype(np.float64)
        variance = _TO_VARIANCE[base](array)
        own = uncertainty._unit
        return _in_unit(variance, None if own is None
                        else own ** _UNIT_POWER[base], unit)
    try:
        converted = uncertainty.represent_as(VarianceUncertainty)
    except (TypeError, AttributeError) as exc:
        msg = (f'ccd.uncertainty of type {kind.__name__} cannot be '
               'converted to a variance')
        raise TypeError(msg) from exc
    variance = np.array(converted.array, dtype=np.float64)
    return _in_unit(variance, converted._unit, unit)


def _as_uncertainty(variance, kind, unit):
    """Turn a variance array into an uncertainty of ``kind`` (in place)."""
    base = _base(kind)
    if base is not None:
        convert = _FROM_VARIANCE[base]
        if convert is not None:
            convert(variance, out=variance)
        return kind(variance, unit=unit ** (2 // _UNIT_POWER[base]),
                    copy=False)
    return VarianceUncertainty(variance, unit=unit**2).represent_as(kind)


def _add_in_blocks(out, function):
    """``out += function(rows)`` block by block, to bound temporaries."""
    for start in range(0, out.shape[0], _BLOCK_ROWS):
        rows = slice(start, start + _BLOCK_ROWS)
        out[rows] += function(rows)


def _buffer(scratch, dtype):
    """``scratch`` if it can take a result of ``dtype``, else `None`."""
    if (scratch is not None and scratch.dtype == dtype
            and scratch.flags.writeable):
        return scratch
    return None


def _std_in_quadrature(std, rms, factor, unit, scratch):
    """``sqrt(std**2 + (factor * rms)**2)`` in one pass over row blocks."""
    dtype = np.result_type(std.dtype, rms.dtype, np.float32)
    out = _buffer(scratch, dtype)
    if out is None:
        out = np.empty(std.shape, dtype)
    buffer = np.empty((_BLOCK_ROWS, std.shape[1]), out.dtype)
    factor = out.dtype.type(factor)
    for start in range(0, std.shape[0], _BLOCK_ROWS):
        rows = slice(start, start + _BLOCK_ROWS)
        block, scaled = out[rows], buffer[:out[rows].shape[0]]
        np.multiply(rms[rows], factor, out=scaled)
        np.square(scaled, out=scaled)
        np.square(std[rows], out=block)
        block += scaled
        np.sqrt(block, out=block)
    return StdDevUncertainty(out, unit=unit, copy=False)


def subtracted_uncertainty(ccd, residual, background, *, gain,
                           private=False):
    """
    Uncertainty of ``residual = ccd - background``.

    The input uncertainty (any type that converts to a variance) is
    combined in quadrature with the error of the background model, and
    returned as the input's type. Without an input uncertainty, the
    variance is the background RMS squared, plus the model error squared,
    plus the Poisson variance of the residual counts when ``gain`` (in
    electrons per data unit) is known.

    With ``private`` (a background nobody else will use), an RMS map
    still to be computed is computed into the result's buffer, which
    saves one full-size array.
    """
    scratch = background._fresh_rms() if private else None
    rms = background.rms if scratch is None else scratch
    scale = background.error_variance_scale
    uncertainty = ccd.uncertainty
    if (type(uncertainty) is StdDevUncertainty
            and uncertainty._unit in (None, ccd.unit)):
        return _std_in_quadrature(np.asarray(uncertainty.array), rms,
                                  np.sqrt(scale), ccd.unit, scratch)
    if uncertainty is not None:
        variance = _variance(ccd.uncertainty, ccd.unit)
        _add_in_blocks(variance, lambda rows: scale * np.square(rms[rows]))
        return _as_uncertainty(variance, type(ccd.uncertainty), ccd.unit)
    if gain is None:
        std = np.multiply(rms, rms.dtype.type(np.sqrt(1 + scale)),
                          out=_buffer(scratch, residual.dtype),
                          dtype=residual.dtype)
        return StdDevUncertainty(std, unit=ccd.unit, copy=False)
    variance = np.square(rms, out=_buffer(scratch, residual.dtype),
                         dtype=residual.dtype)
    variance *= variance.dtype.type(1 + scale)
    _add_in_blocks(variance, lambda rows: np.clip(
        residual[rows], 0, None) / variance.dtype.type(gain))
    return _as_uncertainty(variance, StdDevUncertainty, ccd.unit)


def uncertainty_cards(ccd, gain):
    """
    The cards that say how `subtracted_uncertainty` makes the uncertainty
    of ``ccd`` minus a background: ``BKGUNC`` (``input``: the input's,
    combined; ``sky``: from the background RMS; ``sky+poisson``: with
    the Poisson term of ``BKGGAIN`` electrons per data unit) and
    ``BKGGAIN`` (`None`: no card).
    """
    if ccd.uncertainty is not None:
        return {'BKGUNC': 'input', 'BKGGAIN': None}
    if gain is None:
        return {'BKGUNC': 'sky', 'BKGGAIN': None}
    return {'BKGUNC': 'sky+poisson', 'BKGGAIN': float(gain)}


#: The comments of the cards of `uncertainty_cards`.
UNCERTAINTY_COMMENTS = {
    'BKGUNC': 'uncertainty made from: input, sky, sky+poisson',
    'BKGGAIN': '[electron/unit] gain of its Poisson term',
}


def rebuilt_uncertainty(data, unit, background, header):
    """
    The uncertainty `subtracted_uncertainty` made of the background
    alone, rebuilt from the subtracted ``data`` and the ``background``
    as ``header`` records it (``BKGUNC``, ``BKGGAIN``), or `None` if it
    was made from the input's own uncertainty (or the header does not
    say).
    """
    kind = header.get('BKGUNC')
    if kind == 'sky':
        gain = None
    elif kind == 'sky+poisson' and 'BKGGAIN' in header:
        gain = header['BKGGAIN']
    else:
        return None
    return subtracted_uncertainty(
        types.SimpleNamespace(uncertainty=None, unit=unit), data,
        background, gain=gain)
