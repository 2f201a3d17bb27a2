# Licensed under a 3-clause BSD style license - see LICENSE
"""
The one validation boundary and the engine behind it: every entry point
checks its input once, by the same rules, and plugins get the checks too.
"""

import numpy as np
import pytest
from astropy.io import fits
from astropy.nddata import CCDData
from astropy.utils.exceptions import AstropyDeprecationWarning, AstropyUserWarning

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
from ezbkg_ccd.estimators import sep_estimator

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
         "saturation must be a positive number, 'header' or None, got 'max'"),
        ({'saturation': [1]}, TypeError,
         "saturation must be a positive number, 'header' or None, got"),
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
        (['--saturation', 'high'], "--saturation: must be a positive "
         "number, 'header' or 'none', got high"),
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


class TestReviewedEdges:
    """Messy data and odd calls found by review, each once broken."""

    def test_source_mask_options_choose_the_meshes(self):
        """box_size and filter_size in source_mask_options set the automatic
        mask's meshes (they were ignored, yet recorded)."""
        image, _ = make_sky('gradient', (256, 256), seed=2)
        image[100:140, 100:140] += 40.0
        options = {'box_size': 16, 'filter_size': 1}
        bkg = estimate_background(image, box_size=64, source_mask='auto',
                                  source_mask_options=options)
        np.testing.assert_array_equal(
            bkg.source_mask, make_source_mask(image, **options))
        default = estimate_background(image, box_size=64, source_mask='auto')
        assert not np.array_equal(bkg.source_mask, default.source_mask)

    @pytest.mark.parametrize('rate', [0.3, 1.0])
    def test_low_counts_keep_their_zeros(self, rate):
        """In photon-counting data zeros are sky: the zero-area rule leaves
        them alone (it masked half the sky, or all of it)."""
        counts = np.random.default_rng(0).poisson(rate, (256, 256))
        bkg = estimate_background(counts.astype(np.int32), box_size=64)
        assert 'zero-area' not in bkg.header['BKGINVM']
        same = estimate_background(counts.astype(np.int32), box_size=64,
                                   zero_area=None)
        np.testing.assert_array_equal(bkg.data, same.data)
        assert estimate_background(np.zeros((128, 128)),
                                   method='constant').global_back == 0.0

    def test_zero_padding_of_a_subtracted_float_frame(self):
        """A float frame whose sky is 0 (resampled, sky-subtracted) still
        has its zero-filled border masked: float noise is never 0."""
        image = np.random.default_rng(1).normal(0.0, 1.0, (256, 256))
        image[:, :40] = 0.0
        bkg = estimate_background(image, box_size=32)
        assert bkg.header['BKGINVM'] == 'zero-area'
        assert bkg.invalid_mask[:, :40].all()

    def test_message_names_the_rule(self):
        """When the rule takes the frame, the error says how to keep it."""
        image, _ = make_sky('flat', (128, 128))
        ccd = CCDData(image, unit='adu', meta={'SATURATE': 10.0})
        with pytest.raises(ValueError, match=r'invalid: saturated \(if those '
                           r'are data, pass saturation=None\)'):
            estimate_background(ccd, box_size=32)

    def test_science_image_rule_reaches_the_estimate(self, gappy, tmp_path):
        """ScienceImage(saturation=None, zero_area=None) turns the rule off
        for the generator's estimate and subtraction too."""
        ccd, _ = gappy
        ccd.write(tmp_path / 'f.fits')
        sci = ScienceImage(tmp_path / 'f.fits', saturation=None,
                           zero_area=None)
        assert not sci.invalidmask.any()
        generator = BackgroundGenerator()
        bkg, _ = generator.estimate_with_sep(sci, box_size=32)
        assert bkg.header['BKGINVM'] == 'none'
        assert not generator.subtract_background(sci).ccd.mask.any()
        with pytest.raises(ValueError, match="saturation must be a positive "
                           "number, 'header' or None, got 'HEADR'"):
            ScienceImage(tmp_path / 'f.fits', saturation='HEADR')

    def test_given_background_keeps_its_rule(self, gappy, tmp_path):
        """Subtracting a given background flags this image's invalid pixels
        by the rule that background records, in memory or from a file."""
        ccd, _ = gappy
        off = estimate_background(ccd, box_size=32, saturation=None,
                                  zero_area=None)
        assert (off.header['BKGSATLV'], off.header['BKGZAREA']) == ('none',
                                                                   'none')
        assert not subtract_background(ccd, off).mask.any()
        off.write(tmp_path / 'off.fits')
        read = BackgroundFile.read(tmp_path / 'off.fits')
        assert read.invalid_mask is None
        assert not subtract_background(ccd, read).mask.any()
        on = estimate_background(ccd, box_size=32)
        on.write(tmp_path / 'on.fits')
        assert subtract_background(
            ccd, BackgroundFile.read(tmp_path / 'on.fits')).mask.sum() == 265

    def test_cli_rule_reaches_the_mask(self, gappy, tmp_path):
        """--saturation none --zero-area none: no pixel flagged in MASK."""
        ccd, _ = gappy
        ccd.write(tmp_path / 'f.fits')
        assert main(['-q', 'subtract', str(tmp_path / 'f.fits'), '-o',
                     str(tmp_path / 'out'), '--box-size', '32',
                     '--saturation', 'NONE', '--zero-area', 'None']) == 0
        result, _ = read_with_background(tmp_path / 'out' / 'f_bkgsub.fits')
        assert not result.mask.any()

    @pytest.mark.parametrize('value', [0, -1.0, 'high', float('nan'), True])
    def test_hostile_header_saturation(self, value):
        """A header level that is no positive number is ignored, with a
        warning naming it; the next keyword is used."""
        image, _ = make_sky('flat', (128, 128))
        image[5, 5] = 900.0
        ccd = CCDData(image, unit='adu',
                      meta={'SATURATE': value, 'SATLEVEL': 800.0})
        with pytest.warns(AstropyUserWarning, match=r'SATURATE = .* in the '
                          'header is no saturation level'):
            bkg = estimate_background(ccd, box_size=32)
        assert bkg.header['BKGINVM'] == 'saturated'
        assert bkg.header['BKGNINV'] == 1

    def test_header_saturation_of_raw_counts_only(self):
        """A header's level (raw ADU) is not applied to data in electrons
        (after a gain correction); lower-case keys in a dict count."""
        image, _ = make_sky('flat', (128, 128))
        image[5, 5] = 900.0
        for unit, expected in (('adu', 'saturated'), ('electron', 'none')):
            ccd = CCDData(image, unit=unit, meta={'saturate': 500.0})
            assert estimate_background(
                ccd, box_size=32).header['BKGINVM'] == expected

    @pytest.mark.parametrize('saturation, error, match', [
        (-5.0, ValueError, 'saturation must be a positive number, got -5.0'),
        (float('nan'), ValueError, 'saturation must be a positive number'),
        (np.bool_(True), TypeError, "saturation must be a positive number, "
         r"'header' or None, got (np\.)?True"),
    ])
    def test_bad_saturation_settings(self, saturation, error, match):
        """A given level must be a positive finite number."""
        with pytest.raises(error, match=match):
            estimate_background(np.ones((64, 64)), saturation=saturation)

    def test_batch_checks_the_rule_first(self, tmp_path):
        """A bad rule setting fails the batch before any file is read."""
        with pytest.raises(ValueError, match='zero_area must be an int >= 1'):
            process_files([tmp_path / 'missing.fits'],
                          output_dir=tmp_path / 'out', zero_area=0)
        assert not (tmp_path / 'out').exists()

    def test_threads_with_another_method(self, gappy, tmp_path, capsys):
        """--threads with a method that has no threads is a clear error."""
        ccd, _ = gappy
        ccd.write(tmp_path / 'f.fits')
        assert main(['subtract', str(tmp_path / 'f.fits'), '-o',
                     str(tmp_path / 'out'), '--method', 'constant',
                     '--threads', '2']) == 1
        assert ('--threads applies to method sep (threaded strips), not '
                '--method constant') in capsys.readouterr().err


class TestEstimatorEdges:
    """Registration and direct calls of estimators."""

    def test_uses_meshes_at_registration(self, monkeypatch):
        """A one-level estimator registered with uses_meshes=False runs on
        a frame smaller than the box, a bound method too."""
        monkeypatch.setattr(registry, '_REGISTRY', dict(registry._REGISTRY))

        class Level:
            def estimate(self, data, *, mask, box_size, filter_size,
                         filter_threshold):
                value = float(np.median(data[~mask]))
                return BackgroundEstimate(
                    np.broadcast_to(np.float32(value), data.shape),
                    np.broadcast_to(np.float32(0.0), data.shape), value, 0.0,
                    is_2d=False, samples_per_estimate=data.size)

        register_estimator('level', Level().estimate, uses_meshes=False)
        assert estimate_background(np.full((20, 20), 7.0),
                                   method='level').global_back == 7.0
        register_estimator('level', Level().estimate, overwrite=True)
        with pytest.raises(ValueError, match=r'box_size \(64, 64\) is larger '
                           r'than the image \(20, 20\)'):
            estimate_background(np.full((20, 20), 7.0), method='level')

    def test_sep_estimator_called_directly(self):
        """The public sep_estimator still refuses what SEP would answer
        with its sentinel levels."""
        data = np.ones((100, 100), np.float32)
        mask = np.ones(data.shape, bool)
        mask[:, :10] = False
        options = {'filter_size': (3, 3), 'filter_threshold': 0.0}
        with pytest.raises(ValueError, match='too few valid pixels'):
            sep_estimator(data, mask=mask, box_size=(32, 32), **options)
        with pytest.raises(ValueError, match=r'box_size \(128, 128\) is '
                           'larger than the image'):
            sep_estimator(data, mask=~mask & False, box_size=(128, 128),
                          **options)

    def test_n_jobs_and_n_threads(self):
        """Both names at once are refused; the deprecation points at the
        caller's line; numpy options are recorded by value."""
        image, _ = make_sky('flat', (256, 256))
        with pytest.raises(TypeError, match='give n_threads only'):
            estimate_background(image, n_jobs=2, n_threads=3)
        with pytest.warns(AstropyDeprecationWarning,
                          match='n_jobs of the sep estimator') as caught:
            estimate_background(image, box_size=32, n_jobs=2)
        assert caught[0].filename == __file__
        bkg = estimate_background(image, box_size=32,
                                  n_threads=np.int8(2),
                                  reject_skewed=np.bool_(True))
        assert bkg.header['BKGOPTS'] == "{'n_threads': 2}"
        assert bkg.header['BKGREJT'] == 5.0


class TestBackgroundFileEdges:
    """The workflow's file-backed backgrounds."""

    def test_write_options_and_read_format(self, tmp_path):
        """write() takes Background.write's options, read() its format."""
        bkg = BackgroundFile(estimate_background(np.full((64, 64), 3.0),
                                                 method='constant'),
                             tmp_path / 'b.fits')
        bkg.write(full_map=True, compress=True)
        bkg.write(overwrite=True, format='fits')
        again = BackgroundFile.read(tmp_path / 'b.fits', format='fits')
        assert again.is_saved and again.global_back == 3.0

    def test_remove_never_deletes_an_image(self, gappy, tmp_path):
        """remove() of a background read from a science file refuses: it
        would delete the image."""
        ccd, _ = gappy
        result = subtract_background(ccd, box_size=32)
        from ezbkg_ccd import write_with_background
        write_with_background(result, estimate_background(ccd, box_size=32),
                              tmp_path / 'sci_bkgsub.fits')
        found = BackgroundFile.read(tmp_path / 'sci_bkgsub.fits')
        with pytest.raises(PermissionError, match='is not a standalone '
                           'background file'):
            found.remove()
        assert (tmp_path / 'sci_bkgsub.fits').is_file()

    def test_old_strips_signature(self):
        """The deprecated ezbkg_ccd.strips keeps 0.1's n_jobs."""
        import importlib
        import sys
        sys.modules.pop('ezbkg_ccd.strips', None)
        with pytest.warns(AstropyDeprecationWarning, match='ezbkg_ccd.strips'
                          ' is deprecated') as caught:
            old = importlib.import_module('ezbkg_ccd.strips')
        assert caught[0].filename == __file__
        data = np.random.default_rng(0).normal(5, 1, (256, 128)).astype('f4')
        back, *_ = old.sep_strips(data, None, n_jobs=2, bw=32, bh=32, fw=3,
                                  fh=3, fthresh=0.0)
        np.testing.assert_array_equal(
            back, estimate_background(data, box_size=32).data)
        assert old.mesh_bands(4, 2) == [(0, 2), (2, 4)]
