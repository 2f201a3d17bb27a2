# Licensed under a 3-clause BSD style license - see LICENSE
"""Tests of the estimator registry and its entry points."""

import sys
import textwrap

import numpy as np
import pytest
from astropy.nddata import CCDData

from ezbkg_ccd import (
    BackgroundEstimate,
    available_estimators,
    estimate_background,
    get_estimator,
    process_files,
    register_estimator,
    registry,
    subtract_background,
)
from ezbkg_ccd.background import MODE_VARIANCE_FACTOR

from .conftest import install_plugin


def _percentile_estimator(data, *, mask, box_size, filter_size,
                          filter_threshold, percentile=50.0):
    """A constant level at a percentile of the unmasked pixels."""
    level = float(np.percentile(data[~mask], percentile))
    return BackgroundEstimate(
        np.broadcast_to(np.asarray(level, data.dtype), data.shape),
        np.broadcast_to(np.asarray(1.0, data.dtype), data.shape),
        level, 1.0, is_2d=False, samples_per_estimate=int((~mask).sum()))


@pytest.fixture
def clean_registry(monkeypatch):
    """A registry whose changes are undone after the test."""
    monkeypatch.setattr(registry, '_REGISTRY', dict(registry._REGISTRY))
    monkeypatch.setattr(registry, '_entry_points_loaded', False)


@pytest.mark.usefixtures('clean_registry')
class TestRegistry:
    """register_estimator, get_estimator and available_estimators."""

    def test_builtins(self):
        """The three built-in methods are there."""
        assert {'sep', 'constant', 'photutils'} <= set(available_estimators())

    def test_register_and_use(self, flat_sky):
        """A registered estimator is used by name with its options."""
        register_estimator('Percentile', _percentile_estimator)
        bkg = estimate_background(flat_sky[0], method='percentile',
                                  percentile=90.0)
        assert bkg.global_back == pytest.approx(
            np.percentile(flat_sky[0], 90.0), rel=1e-6)
        assert bkg.method == 'percentile'
        assert bkg.header['BKGOPTS'] == "{'percentile': 90.0}"
        assert get_estimator('PERCENTILE') is _percentile_estimator

    def test_lazy_read_only_maps(self, flat_sky):
        """Lazily computed read-only maps (broadcasts) are subtracted in
        one call; only writable fresh maps are reused as buffers."""

        def lazy(data, **options):
            estimate = _percentile_estimator(data, **options)
            return BackgroundEstimate(
                lambda: estimate.background, lambda: estimate.rms,
                estimate.global_back, estimate.global_rms, is_2d=False,
                samples_per_estimate=estimate.samples_per_estimate)

        register_estimator('lazy', lazy)
        result = subtract_background(flat_sky[0], method='lazy')
        level = np.percentile(flat_sky[0], 50.0)
        np.testing.assert_allclose(result.data, flat_sky[0] - level,
                                   rtol=1e-6, atol=1e-4)
        error = result.meta['BKGSIG'] * np.sqrt(
            MODE_VARIANCE_FACTOR / flat_sky[0].size)
        np.testing.assert_allclose(result.uncertainty.array,
                                   np.hypot(1.0, error), rtol=1e-6)

    def test_no_silent_replacement(self):
        """A name is only replaced with overwrite=True."""
        with pytest.raises(ValueError, match="'sep' is already registered"):
            register_estimator('sep', _percentile_estimator)
        register_estimator('sep', _percentile_estimator, overwrite=True)
        assert get_estimator('sep') is _percentile_estimator

    @pytest.mark.parametrize('name, estimator, error, match', [
        (3, _percentile_estimator, TypeError, 'name must be a str'),
        ('x', 'not callable', TypeError, 'estimator must be callable'),
        ('  ', _percentile_estimator, ValueError, 'name must not be empty'),
    ])
    def test_bad_registration(self, name, estimator, error, match):
        """Bad names and non-callables are refused."""
        with pytest.raises(error, match=match):
            register_estimator(name, estimator)

    def test_unknown(self):
        """An unknown name lists the known ones."""
        with pytest.raises(ValueError, match='known: constant, photutils, sep'):
            get_estimator('nope')

    def test_method_type(self):
        """method must be a string."""
        with pytest.raises(TypeError, match='method must be a str'):
            get_estimator(None)


@pytest.mark.usefixtures('clean_registry')
def test_entry_point_plugin(tmp_path, monkeypatch, flat_sky):
    """An installed package's entry point adds an estimator, no import."""
    install_plugin(tmp_path, 'skyplugin', 'sky-minimum = skyplugin:minimum',
                   textwrap.dedent("""
        import numpy as np
        from ezbkg_ccd import BackgroundEstimate

        def minimum(data, *, mask, box_size, filter_size, filter_threshold):
            level = float(data[~mask].min())
            return BackgroundEstimate(
                np.full(data.shape, level, data.dtype),
                np.zeros(data.shape, data.dtype), level, 0.0, is_2d=False,
                samples_per_estimate=1)
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, 'skyplugin', raising=False)
    assert 'sky-minimum' in available_estimators()
    bkg = estimate_background(flat_sky[0], method='sky-minimum')
    assert bkg.global_back == pytest.approx(float(flat_sky[0].min()))


class TestMisspeltOptions:
    """A misspelt option names the public function and the valid ones."""

    @pytest.mark.parametrize('method, option, match', [
        ('sep', 'boxsize', r"^unknown option 'boxsize' \(did you mean "
         r"'box_size'\?\); estimate_background with method='sep' takes: "
         r'box_size, chunks, coverage_mask, edge, fill_value, filter_size, '
         r'filter_threshold, hdu, '
         r'interpolation, mask, method, n_jobs, n_threads, reject_skewed, '
         r'saturation, source_mask, source_mask_options, zero_area$'),
        ('constant', 'n_threads', r"^unknown option 'n_threads' \(taken by "
         r"method='sep'\); estimate_background with method='constant' "
         r'takes: .*maxiters.*sigma,'),
        ('sep', 'bkg_estimator', r"^unknown option 'bkg_estimator' \(taken by "
         r"method='constant' and method='photutils'\); estimate_background "
         r"with method='sep' takes: "),
        ('photutils', 'exclude_percentil', r"'exclude_percentil' \(did you "
         r"mean 'exclude_percentile'\?\).* takes: .*coverage_mask.*"
         r'sigma_clip'),
    ])
    def test_estimate_and_subtract(self, flat_sky, method, option, match):
        """Both steps refuse it before any work, each naming itself (and
        subtract_background listing its own keywords too)."""
        ccd = CCDData(flat_sky[0], unit='adu')
        with pytest.raises(TypeError, match=match):
            estimate_background(ccd, method=method, **{option: 1})
        hint = match.split(';')[0].split('.*')[0]
        with pytest.raises(TypeError, match=f'{hint}; subtract_background '
                           f'with method={method!r} takes: add_keyword, '
                           'background, '):
            subtract_background(ccd, method=method, **{option: 1})

    def test_batch_refuses_before_any_file(self, tmp_path):
        """process_files refuses it once, not once per failed file."""
        with pytest.raises(TypeError, match="did you mean 'filter_size'"):
            process_files([tmp_path / 'missing.fits'], output_dir=tmp_path,
                          filtersize=3)

    @pytest.mark.usefixtures('clean_registry')
    def test_plugins(self, flat_sky):
        """A plugin's keyword parameters are its options; one taking any
        keyword is not checked unless it names its options."""
        register_estimator('percentile', _percentile_estimator)
        with pytest.raises(TypeError, match="did you mean 'percentile'"):
            estimate_background(flat_sky[0], method='percentile',
                                percentil=90.0)

        def anything(data, **options):
            return _percentile_estimator(data, **options)

        register_estimator('anything', anything)
        assert estimate_background(flat_sky[0], method='anything',
                                   percentile=90.0).method == 'anything'
        anything.options = ('percentile',)
        with pytest.raises(TypeError, match="'percentil' .*percentile"):
            estimate_background(flat_sky[0], method='anything',
                                percentil=90.0)


class TestMisspeltOwnKeywords:
    """Each public function's own keywords are in its hints too."""

    def test_subtract_background(self, flat_sky):
        """gain, add_keyword: with or without a background given."""
        ccd = CCDData(flat_sky[0], unit='adu')
        background = estimate_background(ccd, box_size=32)
        for args in ((ccd,), (ccd, background)):
            with pytest.raises(TypeError, match="^unknown option 'gian' "
                               r"\(did you mean 'gain'\?\); subtract_"
                               "background with method='sep' takes: "
                               'add_keyword, background, box_size'):
                subtract_background(*args, gian=2.0)

    def test_process_files(self, tmp_path):
        """process_files names its own keywords too."""
        with pytest.raises(TypeError, match=r"'overwirte' \(did you mean "
                                            "'overwrite'"):
            process_files([], output_dir=tmp_path, overwirte=True)

    @pytest.mark.parametrize('call', ['estimate', 'batch'])
    def test_source_mask_options(self, flat_sky, tmp_path, call):
        """A misspelt source_mask_options key is refused before any work
        (in a batch: once, not for every file)."""
        options = {'source_mask': 'auto',
                   'source_mask_options': {'treshold': 3.0}}
        with pytest.raises(TypeError, match="^unknown option 'treshold' "
                           r"\(did you mean 'threshold'\?\); source_mask_"
                           'options takes: box_size, dilate'):
            if call == 'estimate':
                estimate_background(flat_sky[0], **options)
            else:
                process_files([tmp_path / 'missing.fits'],
                              output_dir=tmp_path, **options)

    @pytest.mark.usefixtures('clean_registry')
    def test_options_attribute(self, flat_sky):
        """An options attribute may be one name; a non-iterable one is
        refused with a message."""

        def anything(data, **options):
            return _percentile_estimator(data, **options)

        register_estimator('anything', anything)
        anything.options = 'percentile'
        assert estimate_background(flat_sky[0], method='anything',
                                   percentile=10.0).method == 'anything'
        anything.options = 3
        with pytest.raises(TypeError, match='options attribute must name '
                                            'its options'):
            estimate_background(flat_sky[0], method='anything')
