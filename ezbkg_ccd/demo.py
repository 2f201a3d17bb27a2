# Licensed under a 3-clause BSD style license - see LICENSE
"""
The demonstration run on data shipped with the package.

A raw SAAO 1.0 m CCD frame is reduced as a ccdproc user would (overscan,
trim, gain, deviation) and written, its background subtracted and written
with its ``BKG``/``BKGRMS`` HDUs, and plotted when matplotlib is
installed.
"""

import logging
from importlib.resources import files
from importlib.util import find_spec
from pathlib import Path

import astropy.units as u
import ccdproc
import numpy as np

from ezbkg_ccd._reader import read_ccddata
from ezbkg_ccd.paths import fits_stem
from ezbkg_ccd.persistence import write_image, write_with_background
from ezbkg_ccd.plotting import plot_background
from ezbkg_ccd.steps import estimate_background, subtract_background

__all__ = ['IMAGE_SECTION', 'raw_frame_path', 'reduce_raw_frame', 'run_demo']

#: The exposed pixels of the raw frame. STE3 is a 512x512 CCD; the
#: frame's ``TRIMSEC``, ``[17:528, 1:520]``, also keeps the last 8 rows,
#: a vertical overscan at the bias level that would drag the background
#: map down (and make the spline ring) along the top edge.
IMAGE_SECTION = '[17:528, 1:512]'


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

    Uses the frame's ``BIASSEC``, ``GAIN`` and ``RDNOISE`` keywords and
    `IMAGE_SECTION`; returns a `~astropy.nddata.CCDData` in electrons.

    Examples
    --------
    >>> from ezbkg_ccd.demo import raw_frame_path, reduce_raw_frame
    >>> ccd = reduce_raw_frame(raw_frame_path())
    >>> ccd.shape, ccd.unit
    ((512, 512), Unit("electron"))
    """
    ccd = read_ccddata(path)
    ccd = ccdproc.subtract_overscan(ccd, fits_section=ccd.header['BIASSEC'],
                                    median=True, overscan_axis=1)
    ccd = ccdproc.trim_image(ccd, fits_section=IMAGE_SECTION)
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


def run_demo(output_dir, *, overwrite=False, plot=True):
    """
    Run the demonstration and return its summary.

    Parameters
    ----------
    output_dir : str or `~pathlib.Path`
        Created if missing; gets the reduced frame before background
        subtraction, ``raw_ccd_a8280271_reduced.fits`` (an input for the
        command line), the result ``raw_ccd_a8280271_bkgsub.fits`` and
        its figure ``raw_ccd_a8280271_bkgsub.png``.
    overwrite : bool, optional
        Replace the output of an earlier run (default `False`).
    plot : bool, optional
        Write the figure (default `True`); skipped with a note in the
        summary when matplotlib (the ``plot`` extra) is not installed.

    Returns
    -------
    summary : dict
        ``file``, ``reduced``, ``output``, ``method``, ``box_size``,
        ``global_back``,
        ``global_rms``, ``unit``, ``masked`` (invalid pixels) and
        ``figure`` (its path, or why there is none).

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
    reduced = output_dir / f'{fits_stem(path)}_reduced.fits'
    write_image(ccd, reduced, overwrite=overwrite)
    background = estimate_background(ccd, box_size=64, filter_size=3)
    result = subtract_background(ccd, background)
    output = output_dir / f'{fits_stem(path)}_bkgsub.fits'
    write_with_background(result, background, output, overwrite=overwrite)
    return {'file': path.name, 'reduced': str(reduced), 'output': str(output),
            'method': background.method, 'box_size': background.box_size,
            'global_back': background.global_back,
            'global_rms': background.global_rms,
            'unit': str(background.unit),
            'masked': int(np.count_nonzero(result.mask)),
            'figure': _figure(ccd, background, output.with_suffix('.png'),
                              plot=plot)}


def _figure(ccd, background, path, *, plot):
    """Plot to ``path``; return it, or why no figure was made."""
    if not plot:
        return 'not asked for'
    if find_spec('matplotlib') is None:
        return 'none: pip install "ezbkg-ccd[plot]" for one'
    plot_background(ccd, background, path=path)
    return str(path)
