# Licensed under a 3-clause BSD style license - see LICENSE
"""
The external peers of the accuracy benchmark, run as a user runs them.

Each function takes an image (a 2-D array) and a bool mask of the pixels
without sky data, writes FITS files to a temporary directory, runs the
program and returns its background map (float, the image's shape). The
benchmark times the whole call: the program and its file I/O, which is
what a user pays.

- SExtractor (``source-extractor``, 2.25): ``BACK_SIZE 64``,
  ``BACK_FILTERSIZE 3``, the ``BACKGROUND`` check image; invalid pixels
  get weight 0 in a ``MAP_WEIGHT`` weight map (and NaN become 0, which
  the zero weight hides), no catalogue (``CATALOG_TYPE NONE``), no
  detection filter (it does not change the background).
- NoiseChisel (``astnoisechisel``, Gnuastro 0.19): default options,
  invalid pixels set to NaN (Gnuastro's blank), the full-size ``SKY``
  extension (``--oneelempertile`` is off by default); the ``relaxed``
  variant loosens the checks that make NoiseChisel abort on strong sky
  structure (`RELAXED`). NoiseChisel leaves blank pixels blank in its
  sky.

A missing program raises `PeerMissing` (the benchmark skips the peer and
says how to install it); a run that fails (non-zero exit, e.g.
NoiseChisel finding too few sky tiles) raises `PeerFailed` with the
program's message.
"""

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
from astropy.io import fits

__all__ = ['INSTALL', 'PEERS', 'RELAXED', 'PeerFailed', 'PeerMissing',
           'noisechisel_background', 'peer_version', 'sextractor_background']

#: How to install the peers (Debian, Ubuntu).
INSTALL = 'apt-get install source-extractor gnuastro'

#: NoiseChisel options of the ``noisechisel_relaxed`` peer (all exist in
#: Gnuastro 0.19): interpolate from 4 tiles, not 15; 20 false detections
#: are enough to find the S/N threshold, not 100; tiles whose mean and
#: median quantiles differ by up to 0.1 (not 0.01) count as sky; no
#: tile is an outlier; a tile is sky when 30 % (not 70 %) of it is
#: undetected.
RELAXED = ('--interpnumngb=4', '--minnumfalse=20', '--meanmedqdiff=0.1',
           '--outliersigma=1000', '--minskyfrac=0.3')

#: Seconds before a peer run counts as failed.
TIMEOUT = 600

_SEXTRACTOR_CONFIG = """\
CATALOG_TYPE     NONE
PARAMETERS_NAME  catalogue.param
FILTER           N
BACK_TYPE        AUTO
BACK_SIZE        {box_size}
BACK_FILTERSIZE  {filter_size}
WEIGHT_TYPE      MAP_WEIGHT
WEIGHT_IMAGE     weight.fits
CHECKIMAGE_TYPE  BACKGROUND
CHECKIMAGE_NAME  background.fits
VERBOSE_TYPE     QUIET
"""


class PeerMissing(RuntimeError):
    """The peer's program is not installed."""


class PeerFailed(RuntimeError):
    """The peer's program ran and failed."""


def _executable(name):
    """The path of a program, or `PeerMissing`."""
    path = shutil.which(name)
    if path is None:
        msg = f'{name} not found: skipped (install with {INSTALL})'
        raise PeerMissing(msg)
    return path


def _run(command, directory):
    """Run a program in ``directory``; `PeerFailed` with the first line of
    its message if it fails."""
    name = Path(command[0]).name
    try:
        done = subprocess.run(command, cwd=directory, capture_output=True,
                              text=True, timeout=TIMEOUT, check=False)
    except subprocess.TimeoutExpired:
        msg = f'{name} did not finish in {TIMEOUT} s'
        raise PeerFailed(msg) from None
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines() or ['']
        first = re.sub(rf'^\S*{re.escape(name)}:\s*', '', lines[0])[:200]
        msg = f'{name} exit {done.returncode}: {first}'
        raise PeerFailed(msg)


def _invalid(image, invalid):
    """The pixels to leave out: ``invalid`` and the non-finite ones."""
    bad = ~np.isfinite(image)
    return bad if invalid is None else bad | invalid


def _read(path, extension, shape):
    """A full-size image from a peer's output file."""
    data = np.asarray(fits.getdata(path, extension), dtype=float)
    if data.shape != shape:
        msg = f'{path.name}[{extension}] has shape {data.shape}, not {shape}'
        raise PeerFailed(msg)
    return data


def sextractor_background(image, invalid=None, *, box_size=64, filter_size=3):
    """SExtractor's background map; ``invalid`` pixels get weight 0."""
    program = _executable('source-extractor')
    image = np.asarray(image, dtype=np.float32)
    bad = _invalid(image, invalid)
    with tempfile.TemporaryDirectory() as name:
        directory = Path(name)
        fits.writeto(directory / 'image.fits', np.where(bad, 0, image))
        fits.writeto(directory / 'weight.fits', (~bad).astype(np.float32))
        (directory / 'catalogue.param').write_text('NUMBER\n')
        (directory / 'config.sex').write_text(_SEXTRACTOR_CONFIG.format(
            box_size=box_size, filter_size=filter_size))
        _run([program, 'image.fits', '-c', 'config.sex'], directory)
        return _read(directory / 'background.fits', 0, image.shape)


def noisechisel_background(image, invalid=None, *, relaxed=False):
    """NoiseChisel's ``SKY`` (default options, or `RELAXED`); ``invalid``
    pixels are blank (NaN) in the input and in the sky."""
    program = _executable('astnoisechisel')
    image = np.asarray(image, dtype=np.float32)
    blank = np.where(_invalid(image, invalid), np.float32(np.nan), image)
    with tempfile.TemporaryDirectory() as name:
        directory = Path(name)
        fits.writeto(directory / 'image.fits', blank)
        options = list(RELAXED) if relaxed else []
        _run([program, 'image.fits', '-h0', '-o', 'out.fits', '--quiet',
              *options], directory)
        return _read(directory / 'out.fits', 'SKY', image.shape)


def peer_version(program):
    """First line of ``program --version``, or None if it is missing."""
    path = shutil.which(program)
    if path is None:
        return None
    done = subprocess.run([path, '--version'], capture_output=True, text=True,
                          timeout=60, check=False)
    return (done.stdout or done.stderr).strip().splitlines()[0]


#: Peer name -> (program, ``callable(image, invalid) -> background``).
PEERS = {
    'sextractor': ('source-extractor', sextractor_background),
    'noisechisel': ('astnoisechisel', noisechisel_background),
    'noisechisel_relaxed': (
        'astnoisechisel',
        lambda image, invalid=None: noisechisel_background(image, invalid,
                                                           relaxed=True)),
}
