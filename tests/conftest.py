# Licensed under a 3-clause BSD style license - see LICENSE
"""Shared fixtures: real FITS files and synthetic skies of known background."""

import contextlib
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.nddata import CCDData
from astropy.utils.exceptions import AstropyUserWarning
from astropy.wcs import FITSFixedWarning

from ezbkg_ccd.demo import raw_frame_path
from ezbkg_ccd.synthetic import make_scene

DATA = Path(__file__).parent / 'data'

#: The noise sigma of every synthetic sky.
SIGMA = 5.0


@contextlib.contextmanager
def eso_1992_header():
    """
    Silence what astropy says of the SEP test files' 1992 ESO headers.

    They hold non-standard ``ESO-LOG`` cards and a DATE-OBS that astropy
    repairs; neither concerns the background.
    """
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', FITSFixedWarning)
        warnings.filterwarnings('ignore', 'The following header keyword',
                                AstropyUserWarning)
        yield


def read_sextractor_image():
    """SEP's test image, read the way a user would (int16, big-endian)."""
    with eso_1992_header():
        ccd = CCDData.read(DATA / 'sextractor_image.fits', unit='adu')
        ccd.meta = fits.Header()
    return ccd


@pytest.fixture
def sextractor_image():
    """SEP's test image as a CCDData read from its FITS file."""
    return read_sextractor_image()


@pytest.fixture
def sextractor_maps():
    """SExtractor's own BACKGROUND and BACKGROUND_RMS check images."""
    with eso_1992_header():
        return tuple(fits.getdata(DATA / f'sextractor_{name}.fits')
                     for name in ('back', 'rms'))


def install_plugin(folder, distribution, entry_point, source=None):
    """
    Make ``folder`` hold an installed distribution advertising
    ``entry_point`` (``'name = module:function'``) in the
    ``ezbkg_ccd.estimators`` group, with ``source`` as its module
    ``<distribution>.py``; put ``folder`` on ``sys.path`` to install it.
    """
    if source is not None:
        (folder / f'{distribution}.py').write_text(source)
    info = folder / f'{distribution}-1.0.dist-info'
    info.mkdir()
    (info / 'METADATA').write_text(f'Metadata-Version: 2.1\nName: '
                                   f'{distribution}\nVersion: 1.0\n')
    (info / 'entry_points.txt').write_text(
        f'[ezbkg_ccd.estimators]\n{entry_point}\n')


def make_sky(kind='flat', shape=(256, 256), seed=0):
    """Return (image, true background) of a seeded synthetic sky without
    sources (`~ezbkg_ccd.synthetic.make_scene`)."""
    image, truth, _, _ = make_scene(kind, shape=shape, sigma=SIGMA, seed=seed,
                                    sources=False)
    return image, truth


@pytest.fixture
def sky():
    """Factory of seeded synthetic skies: ``sky(kind, shape, seed)``."""
    return make_sky


@pytest.fixture
def flat_sky():
    """A 256x256 flat sky at 100 with noise sigma 5."""
    return make_sky('flat')


@pytest.fixture
def frames(tmp_path):
    """Three synthetic frames, the real raw frame and a corrupted file."""
    folder = tmp_path / 'in'
    folder.mkdir()
    rng = np.random.default_rng(8)
    for index in range(3):
        data = (200.0 + 10 * index + rng.normal(0, 3, (128, 160)))
        CCDData(data.astype(np.float32), unit='adu',
                meta={'IMAGETYP': 'object' if index else 'flat',
                      'OBJECT': f'f{index}'}).write(folder / f'f{index}.fits')
    shutil.copy(raw_frame_path(), folder / 'raw.fits')
    good = (folder / 'f0.fits').read_bytes()
    (folder / 'broken.fits').write_bytes(good[:len(good) // 2])
    return folder


@pytest.fixture
def mosaic(tmp_path):
    """A multi-extension file: two CCDs of different sky levels."""
    rng = np.random.default_rng(9)
    hdus = [fits.PrimaryHDU()]
    for index, level in enumerate((50.0, 80.0), 1):
        data = (level + rng.normal(0, 2, (96, 128))).astype(np.float32)
        hdus.append(fits.ImageHDU(data, name=f'CCD{index}'))
    hdus.append(fits.BinTableHDU.from_columns(
        [fits.Column('x', 'E', array=[1.0])], name='CAT'))
    path = tmp_path / 'mosaic.fits'
    fits.HDUList(hdus).writeto(path)
    return path
