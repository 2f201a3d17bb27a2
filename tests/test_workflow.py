# Licensed under a 3-clause BSD style license - see LICENSE
"""The ezphot-style workflow: BackgroundGenerator, ScienceImage, Background."""

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import sep
from astropy.io import fits
from astropy.nddata import CCDData
from astropy.utils.exceptions import AstropyDeprecationWarning
from photutils.background import Background2D

from ezbkg_ccd import (
    Background,
    BackgroundGenerator,
    ScienceImage,
    invalid_pixel_mask,
    read_background,
)
from ezbkg_ccd.demo import run_demo
from ezbkg_ccd.paths import MAX_COMPONENT_LENGTH, fill_savedir, safe_component
from ezbkg_ccd.plotting import plot_background

from .conftest import DATA, eso_1992_header

PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'


@pytest.fixture
def science_path(tmp_path):
    """A copy of SEP's real test image, as a user's science file."""
    path = tmp_path / 'science.fits'
    shutil.copy(DATA / 'sextractor_image.fits', path)
    return path


@pytest.fixture
def quiet_header():
    """Silence astropy's remarks on the 1992 header for the whole test."""
    with eso_1992_header():
        yield


@pytest.mark.usefixtures('quiet_header')
def test_seed_workflow(science_path, capsys):
    """The seed document's first block runs unchanged on a real file."""
    from ezbkg_ccd import BackgroundGenerator, ScienceImage

    bkggenerator = BackgroundGenerator()
    print(bkggenerator)
    bkggenerator.help()          # lists the public methods and their signatures

    sci = ScienceImage(science_path)
    bkg, sep_bkg = bkggenerator.estimate_with_sep(
        target_img=sci,               # ScienceImage, CCDData, or a FITS path
        box_size=64,
        filter_size=3,
        target_ivpmask=sci.invalidmask,   # optional invalid-pixel mask
        target_srcmask=sci.sourcemask,    # optional source mask
        save=True,
        visualize=True,
    )
    # bkg is a Background; sep_bkg is the underlying sep.Background

    subtracted = bkggenerator.subtract_background(
        target_img=sci, target_bkg=bkg, save=True, visualize=True)
    # a new ScienceImage (the input is untouched) with the background removed

    bkg = sci.calculate_bkg(target_srcmask=sci.sourcemask,
                            target_ivpmask=sci.invalidmask,
                            save=True, visualize=True)   # convenience wrapper

    out = capsys.readouterr().out
    assert out.startswith('Method class: BackgroundGenerator\n'
                          'For help, run bkggenerator.help()\n')
    for name in ('estimate_with_sep(self, target_img, *', 'estimate_constant',
                 'estimate_with_photutils', 'subtract_background', 'help'):
        assert name in out
    assert isinstance(bkg, Background)
    assert isinstance(sep_bkg, sep.Background)
    assert bkg.path == science_path.with_name('science.bkg.fits')
    assert bkg.is_exists and bkg.is_saved
    assert sci.header['BKGPATH'] == 'science.bkg.fits'
    assert bkg.header['TGTPATH'] == str(science_path)
    assert bkg.header['BKGSRCM'] == 'user' and bkg.header['BKGNSRC'] > 0
    assert isinstance(subtracted, ScienceImage)
    assert subtracted.path == science_path.with_name('science_bkgsub.fits')
    assert subtracted.header['BKGSUB'] is True
    np.testing.assert_array_equal(subtracted.data, sci.data - bkg.data)
    with fits.open(subtracted.path) as hdulist:
        assert 'BKG' in hdulist and 'BKGRMS' in hdulist
    with fits.open(science_path) as hdulist:
        np.testing.assert_array_equal(hdulist[0].data, sci.data)


@pytest.mark.usefixtures('quiet_header')
def test_seed_background_status(science_path, capsys):
    """The seed's Background block: bkgmap follows write() and remove()."""
    sci = ScienceImage(science_path)
    bkg, _ = BackgroundGenerator().estimate_with_sep(target_img=sci)
    print(bkg)
    print(sci.bkgmap)   # None while the background has not been written
    bkg.write()         # writes to bkg.path
    print(sci.bkgmap)   # now the Background instance linked to this image
    assert sci.bkgmap is bkg
    bkg.remove()        # deletes the file; sci.bkgmap is None again
    assert sci.bkgmap is None
    first, none_before, linked = capsys.readouterr().out.split('\n)\n')[:3]
    assert first.startswith('Background(\n  is_exists = False,\n'
                            '  is_saved = False,\n  data_load = True,\n'
                            '  header_load = True,\n'
                            f'  path = {science_path.parent}/science.bkg.fits,\n'
                            f'  savedir = {science_path.parent},\n')
    assert none_before.startswith('None\nBackground(\n  is_exists = True,\n'
                                  '  is_saved = True,')
    assert not bkg.is_exists and not bkg.is_saved


@pytest.mark.usefixtures('quiet_header')
class TestGenerator:
    """Options of BackgroundGenerator."""

    def test_sep_global_level(self, science_path, tmp_path):
        """is_2D_bkg=False gives SEP's global background and RMS as one
        level, those of the sep.Background returned with it, and it is
        written and read back as one level."""
        flat, sep_bkg = BackgroundGenerator().estimate_with_sep(
            science_path, is_2D_bkg=False)
        assert isinstance(sep_bkg, sep.Background)
        assert flat.is_2d is False and flat.header['BKGIS2D'] is False
        assert flat.method == 'sep'
        level, rms = np.float32(sep_bkg.globalback), np.float32(
            sep_bkg.globalrms)
        assert flat.global_back == pytest.approx(level, rel=1e-7)
        assert flat.global_rms == pytest.approx(rms, rel=1e-7)
        assert np.all(flat.data == level) and np.all(flat.rms == rms)
        assert flat.data.shape == sep_bkg.back().shape
        flat.write(tmp_path / 'flat.bkg.fits')
        again = read_background(tmp_path / 'flat.bkg.fits')
        assert again.is_2d is False and np.all(again.data == level)

    def test_constant(self, science_path):
        """estimate_constant gives one sigma-clipped level: not SEP's
        global background (the mode of its meshes), but close to it on
        this sparse field."""
        generator = BackgroundGenerator()
        clipped = generator.estimate_constant(str(science_path))
        _, sep_bkg = generator.estimate_with_sep(science_path)
        assert clipped.is_2d is False and clipped.method == 'constant'
        assert clipped.global_back != sep_bkg.globalback
        assert clipped.global_back == pytest.approx(sep_bkg.globalback,
                                                    abs=sep_bkg.globalrms)

    def test_photutils_is_deprecated(self, science_path):
        """estimate_with_photutils works but points to the SEP path."""
        with pytest.warns(AstropyDeprecationWarning,
                          match='Use BackgroundGenerator.estimate_with_sep'):
            bkg, raw = BackgroundGenerator().estimate_with_photutils(
                science_path)
        assert bkg.method == 'photutils'
        assert isinstance(raw, Background2D)

    def test_ccddata_target(self, science_path):
        """A CCDData target works; saving it needs a file or a root."""
        ccd = CCDData.read(science_path, unit='adu')
        bkg, _ = BackgroundGenerator().estimate_with_sep(ccd)
        assert bkg.path is None
        with pytest.raises(ValueError, match='save=True needs a file-backed'):
            BackgroundGenerator().estimate_with_sep(ccd, save=True)
        with pytest.raises(ValueError, match='save=True needs a file-backed'):
            BackgroundGenerator().subtract_background(ccd, bkg, save=True)

    def test_bad_target(self):
        """Other targets are refused."""
        with pytest.raises(TypeError, match='target_img must be'):
            BackgroundGenerator().estimate_with_sep(np.zeros((8, 8)))

    def test_subtract_does_not_overwrite(self, science_path):
        """An existing subtracted file is kept unless overwrite=True."""
        generator = BackgroundGenerator()
        generator.subtract_background(science_path, save=True)
        with pytest.raises(FileExistsError, match='already exists'):
            generator.subtract_background(science_path, save=True)
        generator.subtract_background(science_path, save=True, overwrite=True)

    def test_save_fig(self, science_path):
        """save_fig writes a PNG beside the background."""
        BackgroundGenerator().estimate_with_sep(science_path, save=True,
                                                save_fig=True)
        png = science_path.with_name('science.bkg.png')
        assert png.read_bytes()[:8] == PNG_SIGNATURE

    def test_verbose(self, science_path, capsys):
        """verbose prints the level and RMS."""
        BackgroundGenerator().estimate_with_sep(science_path, verbose=True)
        assert 'sep background of' in capsys.readouterr().out

    def test_template_under_root(self, tmp_path):
        """A header template places files under the root, sanitised."""
        header = fits.Header({'OBSERVAT': '../../etc', 'TELESCOP': '/abs',
                              'OBJECT': 'NGC 253', 'FILTER': 'r'})
        science = tmp_path / 'in' / 'frame.fits'
        science.parent.mkdir()
        CCDData(np.random.default_rng(1).normal(5, 1, (64, 64)), unit='adu',
                meta=header).write(science)
        root = tmp_path / 'root'
        generator = BackgroundGenerator(
            output_root=root,
            savedir_template='{OBSERVAT}/{TELESCOP}/{OBJECT}/{INSTRUME}/{FILTER}')
        bkg, _ = generator.estimate_with_sep(science, box_size=32, save=True)
        assert bkg.path == (root / '_.._etc' / '_abs' / 'NGC_253' / 'UNKNOWN'
                            / 'r' / 'frame.bkg.fits')
        assert bkg.path.resolve().is_relative_to(root.resolve())
        assert bkg.is_exists


class TestPaths:
    """Header values can never move a file outside the root."""

    @pytest.mark.parametrize('value', [
        '../..', '..', '/etc/passwd', '..\\..\\windows', 'a\x00b', 'x' * 500,
        '~root', '.hidden', '', '   ', None, 42, 'a/../../b'])
    def test_values_stay_inside(self, tmp_path, value):
        """Every hostile value gives one folder under the root."""
        savedir = fill_savedir('{OBJECT}/{FILTER}', {'OBJECT': value,
                                                     'FILTER': value},
                               tmp_path)
        assert savedir.parent.parent == tmp_path.resolve()
        assert savedir.is_relative_to(tmp_path.resolve())
        component = safe_component(value)
        assert '/' not in component and '\x00' not in component
        assert not component.startswith('.')
        assert 0 < len(component) <= MAX_COMPONENT_LENGTH

    @pytest.mark.parametrize('template, match', [
        ('/abs/{OBJECT}', 'relative path'),
        ('../{OBJECT}', 'relative path'),
        ('{OBJECT.__class__}', 'plain header keywords'),
        ('{OBJECT!r}', 'plain header keywords'),
        ('{0}', 'plain header keywords'),
    ])
    def test_bad_templates(self, tmp_path, template, match):
        """Templates that could escape or evaluate are refused."""
        with pytest.raises(ValueError, match=match):
            fill_savedir(template, {}, tmp_path)

    def test_symlink_escape(self, tmp_path):
        """A folder linking outside the root is refused."""
        root = tmp_path / 'root'
        root.mkdir()
        (root / 'SAAO').symlink_to(tmp_path)
        with pytest.raises(ValueError, match='leaves the root'):
            fill_savedir('{OBSERVAT}/x', {'OBSERVAT': 'SAAO'}, root)


class TestScienceImage:
    """ScienceImage masks and links."""

    def test_missing_file(self, tmp_path):
        """A missing file is reported at once."""
        with pytest.raises(FileNotFoundError, match='no such FITS file'):
            ScienceImage(tmp_path / 'none.fits')

    @pytest.mark.parametrize('name', ['a.fits', 'a.fits.gz', 'a.fit',
                                      'a.fts'])
    def test_derived_names_share_the_batch_stem(self, tmp_path, name):
        """The generator, bkgpath and process_files name outputs alike."""
        path = tmp_path / name
        path.write_bytes(b'')
        image = ScienceImage(path)
        assert image.bkgpath == tmp_path / 'a.bkg.fits'
        generator = BackgroundGenerator()
        assert generator._output_path(image, '_bkgsub.fits') == (
            tmp_path / 'a_bkgsub.fits')

    def test_invalid_mask_rule(self, tmp_path):
        """Non-finite, ccd.mask, saturated and zeroed regions are invalid."""
        data = np.full((100, 100), 50.0)
        data[:, 10] = 0.0            # dead column: 100 zero pixels
        data[70:80, 70:80] = 0.0     # zeroed patch: 100 pixels
        data[40, 40] = 0.0           # an isolated zero stays valid
        data[5, 5] = np.nan
        data[50, 50] = 65000.0
        mask = np.zeros(data.shape, bool)
        mask[90, 90] = True
        CCDData(data, unit='adu', mask=mask,
                meta={'SATURATE': 60000}).write(tmp_path / 'f.fits')
        sci = ScienceImage(tmp_path / 'f.fits')
        invalid = sci.invalidmask
        assert invalid[:, 10].all() and invalid[70:80, 70:80].all()
        assert invalid[5, 5] and invalid[50, 50] and invalid[90, 90]
        assert not invalid[40, 40]
        assert invalid.sum() == 100 + 100 + 3
        relaxed = ScienceImage(tmp_path / 'f.fits', saturation=None,
                               zero_area=None).invalidmask
        assert relaxed.sum() == 2

    def test_bad_rule_options(self):
        """Bad rule options name the parameter."""
        with pytest.raises(ValueError, match='zero_area must be'):
            invalid_pixel_mask(np.ones((4, 4)), zero_area=0)
        with pytest.raises(ValueError, match='saturation must be'):
            invalid_pixel_mask(np.ones((4, 4)), saturation='max')

    def test_source_mask_cached(self, tmp_path):
        """sourcemask is computed once and finds a bright source."""
        data = np.random.default_rng(3).normal(100, 5, (128, 128))
        data[60:70, 60:70] += 300
        CCDData(data, unit='adu').write(tmp_path / 's.fits')
        sci = ScienceImage(tmp_path / 's.fits')
        assert sci.sourcemask is sci.sourcemask
        assert sci.sourcemask[60:70, 60:70].all()
        assert sci.sourcemask.mean() < 0.05


class TestPlot:
    """The four-panel figure."""

    def test_png_panels(self, tmp_path, flat_sky):
        """A valid PNG with four image panels and their colour bars."""
        from ezbkg_ccd import estimate_background

        data = flat_sky[0].copy()
        data[100:110, :] = np.nan
        bkg = estimate_background(data, box_size=64)
        figure = plot_background(data, bkg, path=tmp_path / 'b.png')
        assert len(figure.axes) == 8  # 4 panels + 4 colour bars
        assert sum(bool(axes.images) for axes in figure.axes) == 4
        assert [axes.get_title() for axes in figure.axes[:4]] == [
            'image [adu]', 'background (sep) [adu]', 'background RMS [adu]',
            'image - background']
        assert len(figure.axes[1].lines) == 6  # 3 + 3 mesh lines
        assert (tmp_path / 'b.png').read_bytes()[:8] == PNG_SIGNATURE

    def test_failed_save_leaves_nothing(self, tmp_path, flat_sky,
                                        monkeypatch):
        """A figure is written atomically: a failed save leaves no file
        and keeps the figure already there."""
        from matplotlib.figure import Figure

        from ezbkg_ccd import estimate_background

        bkg = estimate_background(flat_sky[0])
        path = tmp_path / 'b.png'
        path.write_bytes(b'old')

        def broken(self, fname, *args, **kwargs):
            Path(fname).write_bytes(b'\x89PNG half')
            raise OSError('disk full')

        monkeypatch.setattr(Figure, 'savefig', broken)
        with pytest.raises(OSError, match='disk full'):
            plot_background(flat_sky[0], bkg, path=path)
        assert [p.name for p in tmp_path.iterdir()] == ['b.png']
        assert path.read_bytes() == b'old'

    def test_demo_without_matplotlib(self, tmp_path, monkeypatch):
        """The demo still writes its frame and says how to get a figure."""
        monkeypatch.setitem(sys.modules, 'matplotlib', None)
        summary = run_demo(tmp_path)
        assert summary['figure'] == 'none: pip install "ezbkg-ccd[plot]" for one'
        assert sorted(p.name for p in tmp_path.iterdir()) == [
            'raw_ccd_a8280271_bkgsub.fits', 'raw_ccd_a8280271_reduced.fits']

    def test_without_matplotlib(self, monkeypatch, flat_sky):
        """Without matplotlib, a clear ImportError names the extra."""
        from ezbkg_ccd import estimate_background

        bkg = estimate_background(flat_sky[0])
        monkeypatch.setitem(sys.modules, 'matplotlib', None)
        with pytest.raises(ImportError, match=r'ezbkg-ccd\[plot\]'):
            plot_background(flat_sky[0], bkg)
