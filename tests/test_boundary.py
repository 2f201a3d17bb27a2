# Licensed under a 3-clause BSD style license - see LICENSE
"""
The one validation boundary and the engine behind it: every entry point
checks its input once, by the same rules, and plugins get the checks too.
"""

import numpy as np
import pytest
from astropy.io import fits
from astropy.nddata import CCDData

from ezbkg_ccd import (
    BackgroundEstimate,
    BackgroundFile,
    BackgroundGenerator,
    ScienceImage,
    _engine,
    _validation,
    estimate_background,
    invalid_pixel_mask,
    make_source_mask,
    process_files,
    read_with_background,
    register_estimator,
    registry,
    subtract_background,
)
from ezbkg_ccd.cli import main

from .conftest import SIGMA, make_sky


@pytest.fixture
def gappy():
    """A flat sky of 100 with a saturated star (SATURATE in the header), a
    zeroed chip gap of 256 pixels and an isolated zero."""
    image, truth = make_sky('flat', (128, 128), seed=4)
    image[60:63, 60:63] = 5000.0
    image[:, 100:102] = 0.0
    image[5, 5] = 0.0
    header = fits.Header({'SATURATE': 4000.0})
    return CCDData(image, unit='adu', meta=header), truth


class TestOneInvalidPixelRule:
    """Every entry point finds the same invalid pixels."""

    def expected(self, ccd):
        mask = np.zeros(ccd.shape, bool)
        mask[60:63, 60:63] = True
        mask[:, 100:102] = True
        return mask

    def test_invalid_pixel_mask(self, gappy):
        """The documented rule: saturated (header level) and large zeroed
        areas; an isolated zero is data."""
        ccd, _ = gappy
        np.testing.assert_array_equal(invalid_pixel_mask(ccd),
                                      self.expected(ccd))

    def test_estimate_and_subtract(self, gappy):
        """The steps use the rule and record what made the mask."""
        ccd, truth = gappy
        bkg = estimate_background(ccd, box_size=32)
        np.testing.assert_array_equal(bkg.invalid_mask, self.expected(ccd))
        assert bkg.header['BKGINVM'] == 'saturated+zero-area'
        assert bkg.header['BKGNINV'] == 9 + 256
        assert np.abs(bkg.data - truth).max() < SIGMA
        result = subtract_background(ccd, box_size=32)
        np.testing.assert_array_equal(result.mask, self.expected(ccd))
        clean = estimate_background(make_sky('flat', (128, 128))[0],
                                    box_size=32)
        given = subtract_background(ccd, clean)  # a background from elsewhere
        np.testing.assert_array_equal(given.mask, self.expected(ccd))

    def test_auto_mask_and_workflow(self, gappy, tmp_path):
        """The automatic mask and the ezphot workflow use it too."""
        ccd, _ = gappy
        sources = make_source_mask(ccd, box_size=32)
        assert not sources[self.expected(ccd)].any()  # invalid, not sources
        ccd.write(tmp_path / 'f.fits')
        sci = ScienceImage(tmp_path / 'f.fits')
        np.testing.assert_array_equal(sci.invalidmask, self.expected(ccd))
        bkg, _ = BackgroundGenerator().estimate_with_sep(sci, box_size=32)
        np.testing.assert_array_equal(bkg.invalid_mask, self.expected(ccd))

    def test_batch(self, gappy, tmp_path):
        """And the batch."""
        ccd, _ = gappy
        ccd.write(tmp_path / 'f.fits')
        [report] = process_files([tmp_path / 'f.fits'],
                                 output_dir=tmp_path / 'out', box_size=32)
        result, bkg = read_with_background(report.output)
        assert bkg.header['BKGINVM'] == 'saturated+zero-area'
        np.testing.assert_array_equal(result.mask, self.expected(ccd))

    def test_switched_off(self, gappy):
        """saturation=None and zero_area=None use every finite pixel."""
        ccd, _ = gappy
        bkg = estimate_background(ccd, box_size=32, saturation=None,
                                  zero_area=None)
        assert bkg.header['BKGINVM'] == 'none'
        assert not bkg.invalid_mask.any()
        level = estimate_background(ccd, box_size=32, saturation=1000.0,
                                    zero_area=1000)
        assert level.header['BKGINVM'] == 'saturated'

    @pytest.mark.parametrize('options, error, match', [
        ({'saturation': 'max'}, ValueError,
         "saturation must be a number, 'header' or None, got 'max'"),
        ({'saturation': [1]}, TypeError,
         "saturation must be a number, 'header' or None, got"),
        ({'zero_area': 0}, ValueError, 'zero_area must be an int >= 1'),
        ({'zero_area': 2.5}, TypeError, 'zero_area must be an int, got 2.5'),
    ])
    def test_bad_settings(self, gappy, options, error, match):
        """Bad settings of the rule are refused, by every entry point."""
        ccd, _ = gappy
        for function in (estimate_background, invalid_pixel_mask,
                         make_source_mask):
            with pytest.raises(error, match=match):
                function(ccd, **options)


@pytest.fixture
def plugin(monkeypatch):
    """A plugin estimator on the mesh grid that counts its calls."""
    calls = []

    def mesh_minimum(data, *, mask, box_size, filter_size, filter_threshold):
        calls.append(box_size)
        level = float(data[~mask].min())
        return BackgroundEstimate(
            np.broadcast_to(np.float32(level), data.shape),
            np.broadcast_to(np.float32(1.0), data.shape), level, 1.0,
            is_2d=False, samples_per_estimate=box_size[0] * box_size[1])

    monkeypatch.setattr(registry, '_REGISTRY', dict(registry._REGISTRY))
    register_estimator('mesh-minimum', mesh_minimum)
    return calls


class TestPluginsGetTheChecks:
    """The boundary checks what estimators used to check themselves."""

    def test_box_larger_than_the_image(self, plugin):
        """Refused before the plugin runs, naming the parameter."""
        with pytest.raises(ValueError, match=r'box_size \(64, 128\) is '
                           r'larger than the image \(100, 100\)'):
            estimate_background(np.ones((100, 100)), method='mesh-minimum',
                                box_size=(64, 128))
        assert plugin == []

    def test_no_usable_mesh(self, plugin):
        """A frame whose every mesh is mostly masked is refused."""
        mask = np.ones((128, 128), bool)
        mask[::2, ::2] = False  # a quarter of each mesh usable
        with pytest.raises(ValueError, match='too few valid pixels to '
                           'estimate a background: no 32x32 box is at least '
                           '50% unmasked'):
            estimate_background(np.ones((128, 128)), method='mesh-minimum',
                                box_size=32, mask=mask)
        assert plugin == []

    def test_constant_does_not_use_meshes(self):
        """An estimator off the mesh grid says so and gets no box check."""
        bkg = estimate_background(np.full((20, 30), 3.0), method='constant')
        assert bkg.global_back == 3.0

    def test_numpy_numbers(self, plugin):
        """numpy scalars are numbers and ints everywhere."""
        image, _ = make_sky('flat', (128, 128))
        bkg = estimate_background(image, box_size=np.int64(32),
                                  filter_size=np.int32(3),
                                  filter_threshold=np.float32(0.5),
                                  reject_skewed=np.float64(4.0))
        assert bkg.box_size == (32, 32) and bkg.filter_threshold == 0.5
        mask = make_source_mask(image, box_size=32, threshold=np.float32(2),
                                min_area=np.int16(5), max_iters=np.int64(2))
        assert mask.dtype == bool

    @pytest.mark.parametrize('options, error, match', [
        ({'threshold': True}, TypeError, 'threshold must be a number, got '
         'True'),
        ({'threshold': 0}, ValueError, 'threshold must be a positive '
         'number, got 0'),
        ({'min_area': 2.0}, TypeError, 'min_area must be an int, got 2.0'),
        ({'dilate': -1}, ValueError, 'dilate must be an int >= 0, got -1'),
        ({'smooth_scale': -4}, ValueError, 'smooth_scale must be an int >= '
         '0, got -4'),
        ({'tolerance': float('nan')}, ValueError, 'tolerance must be a '
         'positive number, got nan'),
    ])
    def test_source_mask_options(self, options, error, match):
        """make_source_mask and source_mask_options share the checks and
        their messages."""
        image, _ = make_sky('flat', (64, 64))
        with pytest.raises(error, match=match):
            make_source_mask(image, box_size=32, **options)
        with pytest.raises(error, match=match):
            estimate_background(image, box_size=32, source_mask='auto',
                                source_mask_options=options)


class TestEngine:
    """source_mask='auto' iterates on the engine with one prepared frame."""

    def test_frame_prepared_once(self, monkeypatch):
        """One validation and one working copy per call, however many
        rounds the automatic mask runs."""
        counts = {'as_ccddata': 0, 'prepare': 0, 'estimate_raw': 0}

        def counting(module, name):
            original = getattr(module, name)

            def wrapper(*args, **kwargs):
                counts[name] += 1
                return original(*args, **kwargs)
            monkeypatch.setattr(module, name, wrapper)

        import ezbkg_ccd.masks
        import ezbkg_ccd.steps
        counting(_engine, 'prepare')
        counting(_engine, 'estimate_raw')
        counting(ezbkg_ccd.steps, 'as_ccddata')
        image, _ = make_sky('gradient', (256, 256))
        image[100:110, 100:110] += 500.0
        bkg = estimate_background(image, box_size=32, source_mask='auto',
                                  source_mask_options={'max_iters': 3})
        assert bkg.header['BKGSRCM'] == 'auto'
        assert counts['as_ccddata'] == 1 and counts['prepare'] == 1
        assert 2 <= counts['estimate_raw'] <= 5  # first pass, rounds, final

    def test_settings_are_frozen(self):
        """The validated settings cannot change under the engine."""
        settings = _validation.as_settings(
            'sep', shape=(64, 64), box_size=32, filter_size=3,
            filter_threshold=0.0, options={'edge': 'adaptive'})
        with pytest.raises(AttributeError, match='cannot assign'):
            settings.box_size = (8, 8)
        with pytest.raises(TypeError, match='does not support item'):
            settings.options['edge'] = 'spline'


class TestRuleOnTheCommandLine:
    """The command line takes the rule's settings."""

    @pytest.mark.parametrize('flags, expected', [
        ([], 'saturated+zero-area'),
        (['--saturation', 'none'], 'zero-area'),
        (['--saturation', '1e5', '--zero-area', 'none'], 'none'),
        (['--saturation', '4500', '--zero-area', '1000'], 'saturated'),
    ])
    def test_flags(self, gappy, tmp_path, flags, expected):
        """--saturation and --zero-area reach every frame."""
        ccd, _ = gappy
        ccd.write(tmp_path / 'f.fits')
        assert main(['-q', 'subtract', str(tmp_path / 'f.fits'), '-o',
                     str(tmp_path / 'out'), '--box-size', '32',
                     *flags]) == 0
        _, bkg = read_with_background(tmp_path / 'out' / 'f_bkgsub.fits')
        assert bkg.header['BKGINVM'] == expected

    @pytest.mark.parametrize('flags, message', [
        (['--saturation', 'high'], "--saturation: must be a number, "
         "'header' or 'none', got high"),
        (['--zero-area', '0'], '--zero-area: must be a positive integer'),
    ])
    def test_bad_flags(self, tmp_path, capsys, flags, message):
        """Bad values are argparse errors naming the flag."""
        with pytest.raises(SystemExit, match='2'):
            main(['subtract', str(tmp_path / 'f.fits'), '-o',
                  str(tmp_path), *flags])
        assert message in capsys.readouterr().err


def test_background_file_read(tmp_path):
    """BackgroundFile.read gives a saved background at its path."""
    bkg = estimate_background(make_sky('flat', (64, 64))[0], box_size=32)
    bkg.write(tmp_path / 'b.fits')
    again = BackgroundFile.read(tmp_path / 'b.fits')
    assert isinstance(again, BackgroundFile)
    assert again.path == tmp_path / 'b.fits' and again.is_saved
    np.testing.assert_array_equal(again.data, bkg.data)
    assert again.remove() and not again.is_exists
