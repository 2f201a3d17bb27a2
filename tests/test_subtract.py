# Licensed under a 3-clause BSD style license - see LICENSE
"""Tests of subtract_background: data, mask, uncertainty, meta."""

import astropy.units as u
import ccdproc
import numpy as np
import pytest
from astropy.io import fits
from astropy.nddata import (
    CCDData,
    InverseVariance,
    StdDevUncertainty,
    VarianceUncertainty,
)
from astropy.wcs import WCS

from ezbkg_ccd import estimate_background, subtract_background
from ezbkg_ccd.demo import IMAGE_SECTION, raw_frame_path
from ezbkg_ccd.provenance import log_entries

from .conftest import SIGMA


@pytest.fixture
def ccd(flat_sky):
    """A flat sky CCDData with a mask, a header and a WCS."""
    mask = np.zeros(flat_sky[0].shape, bool)
    mask[:8, :8] = True
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ['RA---TAN', 'DEC--TAN']
    wcs.wcs.crval = [150.0, 2.0]
    wcs.wcs.cdelt = [-1e-4, 1e-4]
    return CCDData(flat_sky[0], unit='adu', mask=mask, wcs=wcs,
                   meta=fits.Header({'OBJECT': 'field'}))


class TestResult:
    """The returned CCDData."""

    def test_data_is_difference(self, ccd):
        """Data is ccd - background, in the input unit."""
        bkg = estimate_background(ccd)
        result = subtract_background(ccd, bkg)
        np.testing.assert_array_equal(result.data, ccd.data - bkg.data)
        assert result.unit == ccd.unit
        assert result.data.dtype == np.float32
        assert abs(np.mean(result.data)) < 3 * bkg.error.max()

    def test_estimates_when_not_given(self, ccd):
        """Options estimate the background inside the call."""
        result = subtract_background(ccd, box_size=32, filter_size=1)
        bkg = estimate_background(ccd, box_size=32, filter_size=1)
        np.testing.assert_array_equal(result.data, ccd.data - bkg.data)
        assert result.meta['BKGBOX'] == 32

    def test_float64_stays_float64(self, flat_sky):
        """Float64 input gives float64 output."""
        result = subtract_background(flat_sky[0].astype(np.float64))
        assert result.data.dtype == np.float64

    def test_mask_is_input_or_invalid(self, ccd):
        """The output mask is ccd.mask OR mask OR non-finite pixels."""
        data = ccd.data.copy()
        data[100, 100] = np.nan
        data[101, 101] = np.inf
        extra = np.zeros(data.shape, bool)
        extra[200:210, 200:210] = True
        sources = np.zeros(data.shape, bool)
        sources[50:60, 50:60] = True
        image = CCDData(data, unit='adu', mask=ccd.mask)
        result = subtract_background(image, mask=extra, source_mask=sources)
        expected = ccd.mask | extra | ~np.isfinite(data)
        np.testing.assert_array_equal(result.mask, expected)
        assert not result.mask[50:60, 50:60].any()

    def test_wcs_and_meta_kept(self, ccd):
        """WCS and meta are copied; provenance and BKGSUB are added."""
        result = subtract_background(ccd)
        assert result.wcs.wcs.crval[0] == 150.0
        assert result.meta['OBJECT'] == 'field'
        assert result.meta['BKGSUB'] is True
        assert result.meta['BKGTYPE'] == 'SEP'
        assert result.meta['BKGVALU'] == pytest.approx(100.0, abs=0.5)
        assert 'BUNIT' not in result.meta

    def test_dict_meta(self, flat_sky):
        """Dict meta gets plain values, not (value, comment) tuples."""
        result = subtract_background(CCDData(flat_sky[0], unit='adu'))
        assert result.meta['BKGSUB'] is True
        assert result.meta['BKGBOX'] == 64

    def test_input_not_mutated(self, ccd):
        """Data, mask, uncertainty and meta of the input are untouched."""
        ccd.uncertainty = StdDevUncertainty(np.full(ccd.shape, SIGMA))
        before = (ccd.data.copy(), ccd.mask.copy(),
                  ccd.uncertainty.array.copy(), ccd.meta.copy())
        subtract_background(ccd)
        np.testing.assert_array_equal(ccd.data, before[0])
        np.testing.assert_array_equal(ccd.mask, before[1])
        np.testing.assert_array_equal(ccd.uncertainty.array, before[2])
        assert ccd.meta == before[3]
        assert 'BKGSUB' not in ccd.meta


class TestLogging:
    """The call is logged the way ccdproc logs its own steps."""

    def test_default_log(self, ccd):
        """SUBBKG records the arguments, arrays as placeholders."""
        result = subtract_background(ccd, box_size=32)
        assert result.meta['SUBBKG'] == 'ccd=<CCDData>, box_size=32'
        assert result.meta.comments['BKGSUB'] == 'sky background subtracted'

    def test_log_with_background(self, ccd):
        """A given background is logged by type."""
        result = subtract_background(ccd, estimate_background(ccd))
        assert result.meta['SUBBKG'] == 'ccd=<CCDData>, background=<Background>'

    def test_written_without_hierarch(self, ccd, tmp_path):
        """The logged header writes without HIERARCH (warnings are errors)."""
        result = subtract_background(ccd, box_size=32)
        result.write(tmp_path / 'out.fits')
        header = fits.getheader(tmp_path / 'out.fits')
        assert header['SUBBKG'] == 'ccd=<CCDData>, box_size=32'
        assert 'HIERARCH' not in header.tostring()

    @pytest.mark.parametrize('add_keyword, key, value', [
        ('MYSTEP', 'MYSTEP', None),
        (ccdproc.Keyword('MYKEY', value='sky'), 'MYKEY', 'sky'),
        ({'STEP1': 'sky'}, 'STEP1', 'sky'),
    ])
    def test_custom_keyword(self, ccd, add_keyword, key, value):
        """add_keyword takes ccdproc's str, Keyword and dict forms."""
        result = subtract_background(ccd, add_keyword=add_keyword)
        assert result.meta[key] == value
        assert 'SUBBKG' not in result.meta

    def test_no_log(self, ccd):
        """add_keyword=False logs nothing."""
        assert 'SUBBKG' not in subtract_background(ccd, add_keyword=False).meta

    def test_auto_logging_switch(self, ccd, monkeypatch):
        """ccdproc.conf.auto_logging = False turns the default log off, as
        for ccdproc's own steps; an explicit add_keyword is still logged."""
        monkeypatch.setattr(ccdproc.conf, 'auto_logging', False)
        bias = ccdproc.subtract_bias(ccd, ccd.multiply(0.0))
        assert 'SUBBIAS' not in bias.meta  # ccdproc's own switch
        result = subtract_background(ccd, box_size=32)
        assert 'SUBBKG' not in result.meta
        assert result.meta['BKGSUB'] is True
        assert subtract_background(ccd, add_keyword='MYSTEP').meta[
            'MYSTEP'] is None

    @pytest.mark.parametrize('value', [
        np.zeros(5), np.zeros(1), np.zeros((1, 5)), np.array(2.0),
        np.float64(3.0), 5 * u.adu, np.ones(3) * u.adu, 'sky', 7, None])
    def test_values_as_ccdproc_logs_them(self, value):
        """An argument is logged as ccdproc logs it (arrays longer than 1
        and array quantities by type): ccdproc's own rule is the oracle,
        so a drift of either shows here."""
        expected = ccdproc.log_meta._replace_array_with_placeholder(value)
        logged = log_entries(True, 'SUBBKG', {'x': value, 'y': 1})
        assert logged == {'SUBBKG': f'x={expected}, y=1'}

    def test_newlines_removed(self):
        """Newlines in a logged value are removed, as ccdproc does."""
        assert log_entries(True, 'SUBBKG', {'x': 'a\nb'}) == {
            'SUBBKG': 'x=ab'}

    def test_bad_keyword(self, ccd):
        """add_keyword of another type is refused before any work."""
        with pytest.raises(TypeError, match='add_keyword must be'):
            subtract_background(ccd, add_keyword=3.5)


class TestUncertainty:
    """Uncertainties are propagated in quadrature, types preserved."""

    @pytest.mark.parametrize('kind, array', [
        (StdDevUncertainty, 3.0),
        (VarianceUncertainty, 9.0),
        (InverseVariance, 1 / 9.0),
    ])
    def test_types_propagate(self, ccd, kind, array):
        """std, variance and inverse variance come out as they went in."""
        ccd.uncertainty = kind(np.full(ccd.shape, array))
        bkg = estimate_background(ccd)
        result = subtract_background(ccd, bkg)
        assert isinstance(result.uncertainty, kind)
        variance = result.uncertainty.represent_as(VarianceUncertainty).array
        np.testing.assert_allclose(variance, 9.0 + bkg.error**2, rtol=1e-6)

    def test_from_background_rms(self, ccd):
        """Without an input uncertainty, the RMS and model error are used."""
        bkg = estimate_background(ccd)
        result = subtract_background(ccd, bkg)
        assert isinstance(result.uncertainty, StdDevUncertainty)
        np.testing.assert_allclose(result.uncertainty.array,
                                   np.hypot(bkg.rms, bkg.error), rtol=1e-6)

    @pytest.mark.parametrize('gain', [2.0, 2.0 * u.electron / u.adu])
    def test_poisson_with_gain(self, ccd, gain):
        """A gain adds the Poisson variance of source counts."""
        data = ccd.data.copy()
        data[120:130, 120:130] += 4000.0
        image = CCDData(data, unit='adu')
        bkg = estimate_background(image)
        result = subtract_background(image, bkg, gain=gain)
        residual = data - bkg.data
        expected = np.sqrt(bkg.rms**2 + bkg.error**2
                           + np.clip(residual, 0, None) / 2.0)
        np.testing.assert_allclose(result.uncertainty.array, expected,
                                   rtol=1e-5)
        assert result.uncertainty.array[125, 125] > 40

    @pytest.mark.parametrize('uncertainty, gain', [
        (StdDevUncertainty(np.full((256, 256), 3.0, np.float32)), None),
        (StdDevUncertainty(np.full((256, 256), 3.0)), None),
        (None, None),
        (None, 2.0),
    ])
    def test_one_call_equals_two_steps(self, ccd, uncertainty, gain):
        """Estimating inside the call, with its RMS map as the result's
        buffer, gives the two-step uncertainty; a given background's RMS
        map is left whole."""
        ccd.uncertainty = uncertainty
        bkg = estimate_background(ccd)
        rms = bkg.rms.copy()
        two_steps = subtract_background(ccd, bkg, gain=gain)
        one_call = subtract_background(ccd, gain=gain)
        np.testing.assert_array_equal(bkg.rms, rms)
        assert one_call.uncertainty.array.dtype == two_steps.uncertainty.array.dtype
        np.testing.assert_allclose(one_call.uncertainty.array,
                                   two_steps.uncertainty.array, rtol=1e-6)

    def test_electrons_need_no_gain(self, flat_sky):
        """Data in electrons get the Poisson term with gain 1."""
        data = flat_sky[0].copy()
        data[10, 10] += 10000.0
        result = subtract_background(CCDData(data, unit='electron'))
        assert result.uncertainty.array[10, 10] > 90

    @pytest.mark.parametrize('gain, error, match', [
        ('2', TypeError, 'gain must be a number'),
        (-1.0, ValueError, 'gain must be a positive number, got -1.0'),
        (2 * u.s, u.UnitsError, 'gain 2.0 s cannot be converted'),
    ])
    def test_bad_gain(self, ccd, gain, error, match):
        """Bad gains are refused with the parameter's name."""
        with pytest.raises(error, match=match):
            subtract_background(ccd, gain=gain)


class TestBadInput:
    """Mismatched backgrounds and options are refused."""

    def test_wrong_type(self, ccd):
        """background must be a Background."""
        with pytest.raises(TypeError, match='background must be a Background'):
            subtract_background(ccd, np.zeros(ccd.shape))

    def test_wrong_shape(self, ccd, flat_sky):
        """A background of another shape is refused."""
        bkg = estimate_background(flat_sky[0][:128, :128])
        with pytest.raises(ValueError, match='background has shape'):
            subtract_background(ccd, bkg)

    def test_wrong_unit(self, ccd):
        """A background in another unit is refused."""
        bkg = estimate_background(CCDData(ccd.data, unit='electron'))
        with pytest.raises(u.UnitsError, match='background is in electron'):
            subtract_background(ccd, bkg)

    def test_options_with_background(self, ccd):
        """Estimation options make no sense with a given background."""
        with pytest.raises(TypeError, match=r"options \['box_size'\]"):
            subtract_background(ccd, estimate_background(ccd), box_size=32)


def test_raw_frame_reduction():
    """A raw uint16 frame goes through overscan, trim and subtraction."""
    raw = CCDData.read(raw_frame_path(), unit='adu')
    assert raw.data.dtype == np.uint16
    ccd = ccdproc.subtract_overscan(raw, fits_section=raw.header['BIASSEC'],
                                    median=True, overscan_axis=1)
    ccd = ccdproc.trim_image(ccd, fits_section=IMAGE_SECTION)
    result = subtract_background(ccd, box_size=64, filter_size=3,
                                 gain=raw.header['GAIN'])
    assert result.shape == (512, 512)
    assert result.unit == u.adu
    assert abs(np.median(result.data)) < 0.5 * result.meta['BKGSIG']
    # the top edge is as clean as the rest (no overscan rows to ring on)
    assert abs(np.median(result.data[-48:])) < 0.5 * result.meta['BKGSIG']
    assert result.meta['SUBOSCAN'].startswith('ccd=<CCDData>')
    assert result.meta['SUBBKG'] == ('ccd=<CCDData>, gain=1.9, box_size=64, '
                                     'filter_size=3')
    assert np.isfinite(result.uncertainty.array).all()


def test_memory_bound():
    """
    subtract_background stays under 3x the input on a 2048^2 frame: the
    residual, the uncertainty (in the RMS map's buffer), the masks and
    row-block temporaries; the hand-written SEP baseline needs 3x.
    """
    import tracemalloc

    rng = np.random.default_rng(4)
    data = rng.normal(100.0, 5.0, (2048, 2048)).astype(np.float32)
    mask = np.zeros(data.shape, bool)
    mask[:16] = True
    ccd = CCDData(data, unit='adu', mask=mask,
                  uncertainty=StdDevUncertainty(np.full(data.shape, 5.0,
                                                        np.float32)))
    tracemalloc.start()
    try:
        subtract_background(ccd)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 3 * data.nbytes
