# Licensed under a 3-clause BSD style license - see LICENSE
"""
The demonstration run on data shipped with the package.

A raw SAAO 1.0 m CCD frame is reduced as a ccdproc user would (overscan,
trim, gain, deviation), its background subtracted and written with its
``BKG``/``BKGRMS`` HDUs.
"""

import logging
from importlib.resources import files
from pathlib import Path

import astropy.units as u
import ccdproc

from ezbkg_ccd._fits import read_ccddata
from ezbkg_ccd.persistence import write_with_background
from ezbkg_ccd.steps import estimate_background, subtract_background

__all__ = ['raw_frame_path', 'reduce_raw_frame', 'run_demo']


def raw_frame_path():
    """
    Return the path of the raw CCD frame shipped with the package.

    Examples
    --------
    >>> from ezbkg_ccd.demo import raw_frame_path
    >>> raw_frame_path().name
    'raw_ccd_a8280271.fits'
    """
    return Path(str(files('ezbkg_ccd') / 'data' / 'raw_ccd_a8280271.fits'))


def reduce_raw_frame(path):
    """
    Overscan-subtract, trim, gain-correct a raw frame and add its errors.

    Uses the frame's ``BIASSEC``, ``TRIMSEC``, ``GAIN`` and ``RDNOISE``
    keywords; returns a `~astropy.nddata.CCDData` in electrons.

    Examples
    --------
    >>> from ezbkg_ccd.demo import raw_frame_path, reduce_raw_frame
    >>> ccd = reduce_raw_frame(raw_frame_path())
    >>> ccd.shape, ccd.unit
    ((520, 512), Unit("electron"))
    """
    ccd = read_ccddata(path)
    ccd = ccdproc.subtract_overscan(ccd, fits_section=ccd.header['BIASSEC'],
                                    median=True, overscan_axis=1)
    ccd = ccdproc.trim_image(ccd, fits_section=ccd.header['TRIMSEC'])
    ccd = ccdproc.gain_correct(ccd, ccd.header['GAIN'] * u.electron / u.adu)
    # ccdproc logs (not warns) about negative pixels; they are expected in
    # an overscan-subtracted frame.
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        return ccdproc.create_deviation(
            ccd, readnoise=ccd.header['RDNOISE'] * u.electron,
            disregard_nan=True)
    finally:
        logging.disable(previous)


def run_demo(output_dir, *, overwrite=False):
    """
    Run the demonstration and return its summary.

    Parameters
    ----------
    output_dir : str or `~pathlib.Path`
        Created if missing; gets ``raw_ccd_a8280271_bkgsub.fits``.
    overwrite : bool, optional
        Replace the output of an earlier run (default `False`).

    Returns
    -------
    summary : dict
        ``file``, ``output``, ``method``, ``box_size``, ``global_back``,
        ``global_rms``, ``unit`` and ``masked`` (invalid pixels).

    Examples
    --------
    >>> from ezbkg_ccd.demo import run_demo
    >>> summary = run_demo(tmp_path)
    >>> summary['unit'], summary['method'], round(summary['global_back'])
    ('electron', 'sep', 163)
    """
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    path = raw_frame_path()
    ccd = reduce_raw_frame(path)
    background = estimate_background(ccd, box_size=64, filter_size=3)
    result = subtract_background(ccd, background)
    output = output_dir / f'{path.name.removesuffix(".fits")}_bkgsub.fits'
    write_with_background(result, background, output, overwrite=overwrite)
    return {'file': path.name, 'output': str(output),
            'method': background.method, 'box_size': background.box_size,
            'global_back': background.global_back,
            'global_rms': background.global_rms,
            'unit': str(background.unit), 'masked': int(result.mask.sum())}
