# Licensed under a 3-clause BSD style license - see LICENSE
"""
The engine: a `~ezbkg_ccd.Background` from prepared pixels and
validated settings, with no validation and no I/O.

The public layer (`ezbkg_ccd.steps`) checks its input once, into a
`~ezbkg_ccd._validation.Settings` and a `Frame` (`prepare`), and calls
`estimate`; the automatic source mask (`ezbkg_ccd.masks`) iterates on
`estimate_raw` with the same frame, never copying or checking it again.
"""

import dataclasses

import numpy as np

from ezbkg_ccd._conditioning import Conditioning, condition, restore, working_copy
from ezbkg_ccd._validation import rule_cards
from ezbkg_ccd.background import Background, MeshValues
from ezbkg_ccd.meshes import require_usable_mesh, skewed_meshes, usable_counts
from ezbkg_ccd.provenance import options_text, path_to_header, provenance_header

__all__ = []


@dataclasses.dataclass(frozen=True)
class Frame:
    """
    An image made ready for the estimators.

    Attributes
    ----------
    work : `~numpy.ndarray`
        Native, C-contiguous float pixels, conditioned for SEP
        (`~ezbkg_ccd._conditioning.condition`): never modified.
    invalid : `~numpy.ndarray` of bool
        Pixels never used.
    invalid_sources : tuple of str
        What made them (``BKGINVM``).
    conditioning : `~ezbkg_ccd._conditioning.Conditioning`
        How ``work`` was made from the data.
    unit : `~astropy.units.Unit`
        The data unit.
    target : str or None
        The absolute path of the image file, if any (``TGTPATH``).
    rule : `~ezbkg_ccd._validation.InvalidRule` or None
        The settings of the invalid-pixel rule that found ``invalid``
        (``BKGSATLV``, ``BKGZAREA``), if any.
    """

    work: np.ndarray
    invalid: np.ndarray
    invalid_sources: tuple
    conditioning: Conditioning
    unit: object
    target: str | None = None
    rule: object = None


def prepare(data, invalid, invalid_sources, *, unit, target=None, rule=None):
    """
    A `Frame` of ``data`` with its ``invalid`` pixels (a new array this
    frame owns) and the pixels SEP cannot take added to them.
    """
    conditioning, work = condition(working_copy(data), invalid)
    sources = list(invalid_sources)
    for name, pixels in conditioning.problems.items():
        invalid |= pixels
        sources.append(name)
    return Frame(work, invalid, tuple(sources), conditioning, unit, target,
                 rule)


def excluded_pixels(frame, source_mask=None):
    """The pixels no statistic may use: invalid or source."""
    excluded = (frame.invalid if source_mask is None
                else frame.invalid | source_mask)
    if excluded.all():
        msg = ('ccd has no valid pixels: every pixel is masked, non-finite '
               "or at or below -1e30 (SEP's marker of missing data)"
               f'{_rule_hint(frame)}')
        raise ValueError(msg)
    return excluded


def _rule_hint(frame):
    """What to try when the invalid-pixel rule took much of the frame."""
    hints = {'saturated': 'saturation=None', 'zero-area': 'zero_area=None'}
    given = [hints[name] for name in frame.invalid_sources if name in hints]
    if not given:
        return ''
    return (f'; invalid: {"+".join(frame.invalid_sources)} (if those are '
            f'data, pass {" or ".join(given)})')


def estimate_raw(frame, settings, excluded):
    """
    The estimator's result for the prepared pixels (in their terms), and
    the number of meshes rejected as skewed (`None` when not asked).
    """
    rejected = None
    if settings.reject_skewed is not None:
        skewed, rejected = skewed_meshes(frame.work, excluded,
                                         settings.box_size,
                                         threshold=settings.reject_skewed)
        excluded = excluded | skewed
    if settings.uses_meshes:
        require_usable_mesh(excluded, settings.box_size,
                            hint=_rule_hint(frame))
    raw = settings.estimator(
        frame.work, mask=excluded, box_size=settings.box_size,
        filter_size=settings.filter_size,
        filter_threshold=settings.filter_threshold, **settings.options)
    if raw.meshes is not None and raw.n_pixels_mesh is None:
        raw = dataclasses.replace(raw, n_pixels_mesh=usable_counts(
            ~excluded, settings.box_size))
    return raw, rejected


def estimate(frame, settings, *, source_mask=None, source_kind='user',
             source_mask_options=None, auto_report=None, raw=None):
    """
    The `~ezbkg_ccd.Background` of ``frame`` with its provenance, and
    the estimator's raw result.

    ``source_kind`` (``'user'`` or ``'auto'``) and ``source_mask_options``
    are recorded as ``BKGSRCM`` and ``BKGSMOPT``, an ``auto_report``
    (`~ezbkg_ccd.source_detection.AutoMaskReport`) as ``BKGAITER``,
    ``BKGAKEPT``, ``BKGAFRAC`` and ``BKGASTOP``. A ``raw`` result of
    the estimator with these settings and mask (the automatic mask's
    last estimate) is used instead of estimating again.
    """
    rejected = None
    if raw is None:
        raw, rejected = estimate_raw(frame, settings,
                                     excluded_pixels(frame, source_mask))
    result = restore(raw, frame.conditioning)
    header = provenance(
        frame, settings, result,
        invalid_count=int(np.count_nonzero(frame.invalid)),
        source_count=(None if source_mask is None
                      else int(np.count_nonzero(source_mask))),
        rejected=rejected, source_kind=source_kind,
        source_mask_options=source_mask_options, auto_report=auto_report)
    background = Background(result.background, result.rms, header,
                            source_mask=source_mask,
                            invalid_mask=frame.invalid,
                            shape=frame.work.shape,
                            subtract_from=result.subtract_from,
                            meshes=_meshes(result))
    return background, raw


def _meshes(result):
    """The mesh values a `~ezbkg_ccd.Background` holds of an estimator's
    ``result``, or `None`."""
    if result.meshes is None:
        return None
    return MeshValues(*result.meshes[:2], result.n_pixels_mesh,
                      *result.meshes[2:])


def provenance(frame, settings, result, *, invalid_count, source_count=None,
               rejected=None, source_kind='user', source_mask_options=None,
               auto_report=None):
    """
    The provenance header of an estimate of ``frame`` with ``settings``.

    ``result`` gives the global values, ``is_2d`` and
    ``samples_per_estimate``; ``invalid_count`` and ``source_count`` the
    number of invalid and source-masked pixels (`None`: no source mask);
    the rest is as for `estimate`.
    """
    header = provenance_header({
        'BKGTYPE': settings.method.upper(), 'BKGIS2D': result.is_2d,
        'BKGBOX': settings.box_size[0], 'BKGBOXX': settings.box_size[1],
        'BKGFILT': settings.filter_size[0],
        'BKGFILTX': settings.filter_size[1],
        'BKGFTHR': settings.filter_threshold, 'BKGVALU': result.global_back,
        'BKGSIG': result.global_rms,
        'BKGNPIX': result.samples_per_estimate,
        'BKGINVM': '+'.join(frame.invalid_sources) or 'none',
        'BKGNINV': invalid_count,
        **({} if frame.rule is None else rule_cards(frame.rule)),
        'BKGSRCM': 'none' if source_count is None else source_kind,
        'BKGNSRC': source_count or 0,
        'BKGREJT': settings.reject_skewed, 'BKGNREJ': rejected,
        'BKGOPTS': options_text(settings.options),
        'BKGSMOPT': (options_text(source_mask_options or {})
                     if source_kind == 'auto' else None),
        **({} if auto_report is None else auto_report.cards()),
        'TGTPATH': (None if frame.target is None
                    else path_to_header(frame.target))})
    header['BUNIT'] = frame.unit.to_string()
    return header
