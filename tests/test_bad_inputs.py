# Licensed under a 3-clause BSD style license - see LICENSE
"""Bad input gives a right answer or a clear error, never a silent wrong one."""

import warnings

import numpy as np
import pytest
import sep
from astropy.io import fits
from astropy.nddata import CCDData
from astropy.utils.exceptions import AstropyUserWarning

from ezbkg_ccd import (
    Background,
    estimate_background,
    process_files,
    read_with_background,
    subtract_background,
    write_with_background,
)
from ezbkg_ccd.batch import OUTPUT_EXISTS
from ezbkg_ccd.persistence import recorded_target
from ezbkg_ccd.provenance import path_to_header


@pytest.fixture
def galaxy_frame():
    """A bright galaxy filling a 256x256 frame, with Poisson noise: SEP's
    RMS spline dips below zero between its meshes."""
    rng = np.random.default_rng(1)
    y, x = np.mgrid[:256, :256]
    light = 1e4 * np.exp(-np.hypot(y - 128, x - 128) / 20)
    data = 100 + rng.normal(0, 5, light.shape) + rng.poisson(light)
    return data.astype(np.float32)


@pytest.fixture
def noise():
    """Gaussian noise around 100 (sigma 10), float64."""
    return np.random.default_rng(0).normal(100.0, 10.0, (128, 128))


class TestNumbers:
    """Numbers that used to come out silently wrong."""

    def test_rms_never_negative(self, galaxy_frame):
        """Where SEP's RMS map is negative it is 0; elsewhere it is SEP's."""
        reference = sep.Background(galaxy_frame, bw=32, bh=32).rms()
        assert (reference < 0).sum() > 100  # the failure this guards
        bkg = estimate_background(galaxy_frame, box_size=32)
        assert bkg.rms.min() >= 0
        np.testing.assert_array_equal(bkg.rms, np.maximum(reference, 0))
        result = subtract_background(galaxy_frame, bkg)
        assert np.all(result.uncertainty.array >= 0)
        assert np.isfinite(result.uncertainty.array).all()

    def test_rms_never_negative_with_strips(self, galaxy_frame):
        """The threaded strips give the same non-negative map."""
        single = estimate_background(galaxy_frame, box_size=32)
        strips = estimate_background(galaxy_frame, box_size=32, n_threads=2)
        np.testing.assert_array_equal(strips.rms, single.rms)

    def test_rms_never_negative_from_a_plugin(self, noise, monkeypatch):
        """A plugin's negative RMS is clipped too (lazy or not)."""
        from ezbkg_ccd import BackgroundEstimate, registry

        monkeypatch.setattr(registry, '_REGISTRY', dict(registry._REGISTRY))

        def dipping(data, *, mask, box_size, filter_size, filter_threshold):
            rms = np.full(data.shape, 2.0)
            rms[:10] = -1.0
            return BackgroundEstimate(np.zeros(data.shape), lambda: rms.copy(),
                                      0.0, 2.0, is_2d=True,
                                      samples_per_estimate=100)

        registry.register_estimator('dipping', dipping)
        bkg = estimate_background(noise, method='dipping')
        assert bkg.rms[:10].max() == 0 and bkg.rms[10:].min() == 2.0

    @pytest.mark.parametrize('box_size', [1, (64, 1), (1, 1)])
    def test_one_pixel_wide_box_refused(self, noise, box_size):
        """SEP cannot interpolate 1-pixel-wide meshes: a clear error."""
        with pytest.raises(ValueError, match='box_size must be at least 2 '
                                             'pixels wide for method "sep"'):
            estimate_background(noise, box_size=box_size)

    def test_one_pixel_high_box_is_fine(self, noise):
        """A 1-pixel-high mesh row is interpolated correctly by SEP."""
        bkg = estimate_background(np.full((64, 64), 1.0), box_size=(1, 16))
        assert np.all(bkg.data == 1.0)
        assert abs(estimate_background(noise, box_size=(1, 64)).global_back
                   - 100) < 1

    @pytest.mark.parametrize('method', ['sep', 'constant', 'photutils'])
    @pytest.mark.parametrize('scale', [1e300, 1e40, 1e-40, 1e-300])
    def test_beyond_float32_range(self, noise, method, scale):
        """Data beyond SEP's float32 range are rescaled by a power of two:
        the same estimate, scaled, finite, and written to FITS."""
        plain = estimate_background(noise, box_size=32, method=method)
        scaled = estimate_background(noise * scale, box_size=32,
                                     method=method)
        assert np.isfinite(scaled.data).all() and np.isfinite(scaled.rms).all()
        np.testing.assert_allclose(scaled.data / scale, plain.data, rtol=1e-5)
        np.testing.assert_allclose(scaled.rms / scale, plain.rms, rtol=1e-4)
        assert scaled.global_back / scale == pytest.approx(plain.global_back,
                                                           rel=1e-5)

    def test_beyond_float32_range_written(self, noise, tmp_path):
        """A 1e300-scaled frame subtracts and round-trips through FITS."""
        ccd = CCDData(noise * 1e300, unit='adu')
        result = subtract_background(ccd, box_size=32)
        assert np.isfinite(result.data).all() and not result.mask.any()
        assert np.isfinite(result.uncertainty.array).all()
        write_with_background(result, estimate_background(ccd, box_size=32),
                              tmp_path / 'huge.fits')
        again, bkg = read_with_background(tmp_path / 'huge.fits')
        assert bkg.global_back == pytest.approx(1e302, rel=0.01)

    @pytest.mark.parametrize('value', [3e38, 1e39, 1e300])
    def test_a_few_huge_pixels(self, noise, value):
        """A few pixels beyond float32 range no longer make the map NaN."""
        data = noise.copy()
        data[5, 5] = data[70, 90] = value
        bkg = estimate_background(data, box_size=32)
        assert np.isfinite(bkg.data).all()
        assert bkg.global_back == pytest.approx(100, abs=1)

    def test_huge_float32_values(self):
        """float32 data near the largest float32 give a finite map."""
        data = np.random.default_rng(3).uniform(2.9e38, 3.0e38, (128, 128))
        bkg = estimate_background(data.astype(np.float32), box_size=32)
        assert np.isfinite(bkg.data).all()
        assert 2.9e38 < bkg.global_back < 3.0e38

    def test_auto_mask_beyond_float32_range(self, noise):
        """The automatic source mask works on rescaled data too."""
        data = noise.copy()
        data[60:68, 60:68] += 300
        plain = estimate_background(data, box_size=32, source_mask='auto')
        huge = estimate_background(data * 1e300, box_size=32,
                                   source_mask='auto')
        np.testing.assert_array_equal(huge.source_mask, plain.source_mask)
        assert plain.source_mask[60:68, 60:68].all()

    def test_sep_sentinel_pixels(self, noise):
        """Pixels <= -1e30 (SEP's missing data) are counted and flagged."""
        data = noise.copy()
        data[:10, :20] = -1e31
        result = subtract_background(data, box_size=32)
        assert result.meta['BKGINVM'] == 'sentinel'
        assert result.meta['BKGNINV'] == 200
        assert result.mask[:10, :20].all() and result.mask.sum() == 200
        assert result.meta['BKGVALU'] == pytest.approx(100, abs=1)

    @pytest.mark.parametrize('dtype', [np.float32, np.float64])
    def test_sentinel_exactly_minus_1e30(self, noise, dtype):
        """-1e30 itself is SEP's marker in float64 data too (float32 rounds
        it below -1e30)."""
        data = noise.astype(dtype)
        data[50:120, 50:120] = -1e30
        result = subtract_background(data, box_size=64)
        assert result.meta['BKGINVM'] == 'sentinel'
        assert result.meta['BKGNINV'] == 70 * 70 == result.mask.sum()

    @pytest.mark.parametrize('dtype', [np.float32, np.float64])
    def test_huge_frame_is_not_sentinels(self, dtype):
        """In a frame at the scale of 1e35 (noise around 0), values below
        -1e30 are data, not markers: nothing is invalid."""
        rng = np.random.default_rng(4)
        data = rng.normal(0.0, 1e35, (256, 256)).astype(dtype)
        bkg = estimate_background(data, box_size=64)
        assert bkg.header['BKGINVM'] == 'none'
        assert abs(bkg.global_back) < 0.05 * bkg.global_rms
        assert bkg.global_rms == pytest.approx(1e35, rel=0.05)

    def test_only_sentinels(self):
        """An image of only -1e30 pixels is an error, not 0 +- 1."""
        with pytest.raises(ValueError, match='ccd has no valid pixels.*-1e30'):
            estimate_background(np.full((64, 64), -1e30, np.float32))

    @pytest.mark.parametrize(('shape', 'box_size'), [
        ((2049, 2049), 64), ((129, 129), 64), ((128, 129), (1, 16))])
    def test_single_pixel_meshes(self, shape, box_size):
        """Meshes of one pixel (an image one pixel taller and wider than a
        multiple of the box) no longer throw the corner off by many sigma:
        they are filled from their neighbours; strips agree."""
        data = np.random.default_rng(0).normal(100.0, 5.0, shape)
        raw = sep.Background(data, bw=box_size if np.isscalar(box_size)
                             else box_size[1], bh=box_size if
                             np.isscalar(box_size) else box_size[0])
        assert np.abs(raw.back() - 100).max() > 10  # the failure guarded
        bkg = estimate_background(data, box_size=box_size)
        assert np.abs(bkg.data - 100).max() < 7
        assert bkg.header['BKGNINV'] == 0  # the pixels are still valid
        if shape[0] > 1000:
            np.testing.assert_array_equal(
                estimate_background(data, box_size=box_size, n_threads=2).data,
                bkg.data)

    def test_wide_integers_keep_precision(self):
        """int64 values near 2e12 are worked in float64, not float32."""
        rng = np.random.default_rng(6)
        data = (2_000_000_000_000 + rng.normal(0, 50, (128, 128))).astype(
            np.int64)
        bkg = estimate_background(data, box_size=32)
        assert bkg.data.dtype == np.float64
        assert bkg.global_rms == pytest.approx(50, rel=0.1)
        assert abs(bkg.global_back - 2e12) < 20

    @pytest.mark.parametrize('dtype', [np.complex64, np.complex128])
    def test_complex_refused(self, noise, dtype):
        """Complex data are a TypeError: no silently dropped imaginary part."""
        with pytest.raises(TypeError, match='ccd must hold real numbers'):
            estimate_background(noise.astype(dtype))
        with pytest.raises(TypeError, match='ccd must hold real numbers'):
            subtract_background(CCDData(noise.astype(dtype), unit='adu'))

    @pytest.mark.parametrize('method', ['sep', 'constant', 'photutils'])
    def test_constant_image(self, method):
        """A noiseless frame has an RMS of 0, in the map and in BKGSIG."""
        bkg = estimate_background(np.full((128, 128), 5.0), box_size=32,
                                  method=method)
        assert bkg.header['BKGSIG'] == 0.0 and bkg.global_rms == 0.0
        assert not bkg.rms.any() and np.all(bkg.data == 5.0)

    def test_constant_image_in_strips_and_auto(self):
        """Strips and the automatic mask agree on a noiseless frame."""
        data = np.full((256, 128), 5.0)
        assert estimate_background(data, box_size=32,
                                   n_threads=2).global_rms == 0.0
        auto = estimate_background(data, box_size=32, source_mask='auto')
        assert auto.global_rms == 0.0 and not auto.source_mask.any()

    def test_array_options_recorded(self, noise, tmp_path, monkeypatch):
        """An array option of a plugin estimator is described in BKGOPTS,
        and the header writes."""
        from ezbkg_ccd import BackgroundEstimate, registry

        monkeypatch.setattr(registry, '_REGISTRY', dict(registry._REGISTRY))

        def weighted(data, *, mask, box_size, filter_size, filter_threshold,
                     weights):
            level = float(np.average(data[~mask], weights=weights[~mask]))
            return BackgroundEstimate(np.full(data.shape, level),
                                      np.ones(data.shape), level, 1.0,
                                      is_2d=False,
                                      samples_per_estimate=data.size)

        registry.register_estimator('weighted', weighted, uses_meshes=False)
        bkg = estimate_background(noise, method='weighted',
                                  weights=np.ones(noise.shape))
        assert bkg.header['BKGOPTS'] == (
            "{'weights': <ndarray shape=(128, 128) dtype=float64>}")
        bkg.write(tmp_path / 'weighted.fits')
        assert fits.getheader(tmp_path / 'weighted.fits', 'BKG')['BKGOPTS'] \
            == bkg.header['BKGOPTS']

    def test_multiline_option_repr(self, noise):
        """An option whose repr spans lines or is not ASCII still fits one
        card of printable ASCII."""

        class Sigma(float):
            def __repr__(self):
                return f'Sigma(\n    {float(self)},\n    by=Jos\u00e9)'

        bkg = estimate_background(noise, method='constant', sigma=Sigma(2.5))
        assert bkg.header['BKGOPTS'] == "{'sigma': Sigma( 2.5, by=Jos\\xe9)}"


class TestSubtractTwice:
    """An already-subtracted frame is refused unless asked for."""

    def test_refused(self, noise):
        """BKGSUB = T: a ValueError that says how to go on."""
        once = subtract_background(CCDData(noise, unit='adu'), box_size=32)
        with pytest.raises(ValueError, match='already background-subtracted'
                                             '.*resubtract=True'):
            subtract_background(once, box_size=32)

    @pytest.mark.parametrize('value', [True, 1, 'T', 'Y', 'YES', 'true'])
    @pytest.mark.parametrize('key', ['BKGSUB', 'bkgsub'])
    def test_refused_whatever_the_spelling(self, noise, key, value):
        """Any spelling of yes, in a dict meta of any case."""
        ccd = CCDData(noise, unit='adu', meta={key: value})
        with pytest.raises(ValueError, match='already background-subtracted'):
            subtract_background(ccd, box_size=32)

    def test_refused_from_file(self, noise, tmp_path):
        """The same for a subtracted file read back."""
        ccd = CCDData(noise, unit='adu')
        bkg = estimate_background(ccd, box_size=32)
        write_with_background(subtract_background(ccd, bkg), bkg,
                              tmp_path / 'once.fits')
        with pytest.raises(ValueError, match='already background-subtracted'):
            subtract_background(tmp_path / 'once.fits', box_size=32)

    def test_resubtract_keeps_the_first_record(self, noise):
        """resubtract=True subtracts again; the first provenance values
        are kept as HISTORY cards, each keyword once."""
        ccd = CCDData(noise, unit='adu', meta=fits.Header())
        once = subtract_background(ccd, box_size=32)
        twice = subtract_background(once, box_size=32, resubtract=True)
        assert abs(twice.meta['BKGVALU']) < 1
        history = list(twice.meta['HISTORY'])
        assert (f"ezbkg-ccd replaced BKGVALU = {once.meta['BKGVALU']!r}"
                in history)
        assert twice.meta.count('BKGVALU') == 1
        assert 'resubtract=True' in twice.meta['SUBBKG']


class TestUserCards:
    """Provenance keywords never silently replace a user's cards."""

    def test_user_cards_kept_in_history(self, noise):
        """The user's own BKGTYPE, BKGVALU and SUBBKG are kept in HISTORY,
        and a duplicate keyword leaves no stale copy."""
        header = fits.Header([('BKGTYPE', 'MANUAL', 'my own pipeline'),
                              ('BKGVALU', 98.0), ('SUBBKG', 'by hand'),
                              ('BKGVALU', 97.0), ('OBJECT', 'M 51')])
        result = subtract_background(CCDData(noise, unit='adu', meta=header),
                                     box_size=32)
        meta = result.meta
        assert meta['BKGTYPE'] == 'SEP' and meta['OBJECT'] == 'M 51'
        assert meta.count('BKGVALU') == 1
        assert meta['BKGVALU'] == pytest.approx(100, abs=1)
        history = list(meta['HISTORY'])
        for card in ("BKGTYPE = 'MANUAL'", 'BKGVALU = 98.0', 'BKGVALU = 97.0',
                     "SUBBKG = 'by hand'"):
            assert f'ezbkg-ccd replaced {card}' in history
        assert list(header['HISTORY']) == [] if 'HISTORY' in header else True
        assert header['BKGVALU'] == 98.0  # the input is untouched

    def test_dict_meta_warns(self, noise):
        """A plain-dict meta cannot hold HISTORY: replacing warns."""
        ccd = CCDData(noise, unit='adu', meta={'BKGTYPE': 'MANUAL'})
        with pytest.warns(AstropyUserWarning,
                          match=r"ccd.meta\['BKGTYPE'\] = 'MANUAL' is replaced"):
            result = subtract_background(ccd, box_size=32)
        assert result.meta['BKGTYPE'] == 'SEP'

    def test_stale_provenance_removed(self, noise):
        """Provenance of an earlier run that this one does not set (its
        TGTPATH, its BKGREJT) is removed, kept in HISTORY."""
        header = fits.Header([('TGTPATH', '/old/night/frame.fits'),
                              ('BKGREJT', 5.0), ('BKGSUB', True)])
        result = subtract_background(CCDData(noise, unit='adu', meta=header),
                                     box_size=32, resubtract=True)
        assert 'TGTPATH' not in result.meta and 'BKGREJT' not in result.meta
        assert ("ezbkg-ccd replaced TGTPATH = '/old/night/frame.fits'"
                in list(result.meta['HISTORY']))

    def test_same_value_is_not_history(self, noise):
        """Setting a keyword to the value it has adds nothing."""
        ccd = CCDData(noise, unit='adu', meta=fits.Header([('BKGSUB', True)]))
        with warnings.catch_warnings():
            warnings.simplefilter('error')
            result = subtract_background(ccd, box_size=32, resubtract=True)
        assert not any('BKGSUB' in line for line in
                       result.meta.get('HISTORY', []))


class TestPrintableHeaders:
    """Paths and values that a FITS card cannot hold as they are."""

    def test_non_ascii_path(self, tmp_path):
        """A folder and file named in UTF-8 are recorded encoded, read back
        as they are, and a rerun resumes; the log escapes them."""
        folder = tmp_path / 'données'
        folder.mkdir()
        path = folder / 'é 1.fits'
        CCDData(np.random.default_rng(2).normal(100, 5, (128, 128)),
                unit='adu').write(path)
        result = subtract_background(path, box_size=32)
        assert result.meta['TGTPATH'] == path_to_header(path)
        assert '%C3%A9' in result.meta['TGTPATH']
        assert r'\xe9 1.fits' in result.meta['SUBBKG']
        result.write(tmp_path / 'written.fits')
        out = tmp_path / 'out'
        first = process_files([path], output_dir=out, box_size=32)
        assert first[0].status == 'done', first[0].error
        assert recorded_target(out / 'é 1_bkgsub.fits') == str(path)
        again = process_files([path], output_dir=out, box_size=32)
        assert (again[0].status, again[0].reason) == ('skipped',
                                                      OUTPUT_EXISTS)

    def test_control_characters_in_log(self, flat_sky):
        """A tab in a logged value (the method name, which is stripped)
        is escaped, not a crash after the work."""
        result = subtract_background(CCDData(flat_sky[0], unit='adu'),
                                     method='constant\t')
        assert result.meta['SUBBKG'] == 'ccd=<CCDData>, method=constant\\t'
        assert result.meta['BKGTYPE'] == 'CONSTANT'


class TestCoverageMask:
    """Areas with no data: left out, filled, recorded, for every method."""

    @pytest.mark.parametrize('method', ['sep', 'constant', 'photutils'])
    def test_filled_not_extrapolated(self, noise, method, tmp_path):
        coverage = np.zeros(noise.shape, bool)
        coverage[:, :20] = True
        data = noise.copy()
        data[coverage] = 1e6  # what no data looks like: must not leak in
        bkg = estimate_background(data, method=method, box_size=32,
                                  coverage_mask=coverage, fill_value=-5.0)
        plain = estimate_background(noise, method=method, box_size=32,
                                    mask=coverage)
        assert (bkg.data[coverage] == -5.0).all()
        assert (bkg.rms[coverage] == -5.0).all()
        np.testing.assert_array_equal(bkg.data[~coverage],
                                      plain.data[~coverage])
        assert bkg.header['BKGNCOV'] == coverage.sum()
        assert bkg.header['BKGFILL'] == -5.0
        result = subtract_background(data, method=method, box_size=32,
                                     coverage_mask=coverage)
        np.testing.assert_array_equal(result.data[coverage], data[coverage])
        assert result.mask[coverage].all()
        bkg.write(tmp_path / 'covered.fits')
        again = Background.read(tmp_path / 'covered.fits')
        assert again.header['BKGNCOV'] == coverage.sum()
        np.testing.assert_array_equal(again.data, bkg.data)

    def test_nan_fill_and_lazy(self, noise):
        coverage = np.zeros(noise.shape, bool)
        coverage[100:, :] = True
        eager = estimate_background(noise, box_size=32,
                                    coverage_mask=coverage,
                                    fill_value=np.nan)
        lazy = estimate_background(noise, box_size=32, coverage_mask=coverage,
                                   fill_value=np.nan, chunks=32)
        np.testing.assert_array_equal(lazy.data.compute(), eager.data)
        assert np.isnan(eager.rms[coverage]).all()
        assert eager.header['BKGFILL'] == 'NaN'

    @pytest.mark.parametrize(('options', 'error', 'match'), [
        ({'coverage_mask': np.zeros((3, 3), bool)}, ValueError,
         r'coverage_mask must have the image shape \(128, 128\)'),
        ({'coverage_mask': np.zeros((128, 128), bool), 'fill_value': 'x'},
         TypeError, "fill_value must be a number, got 'x'"),
        ({'coverage_mask': np.zeros((128, 128), bool),
          'fill_value': np.inf}, ValueError, 'fill_value must be finite'),
    ])
    def test_bad_values(self, noise, options, error, match):
        with pytest.raises(error, match=match):
            estimate_background(noise, box_size=32, **options)
