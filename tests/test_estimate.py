# Licensed under a 3-clause BSD style license - see LICENSE
"""Tests of estimate_background against known truth."""

import io

import astropy.units as u
import numpy as np
import pytest
import sep
from astropy.io import fits
from astropy.nddata import CCDData, NDData
from astropy.wcs import WCS

from ezbkg_ccd import Background, estimate_background, subtract_background

from .conftest import DATA, SIGMA, eso_1992_header


class TestSExtractorReference:
    """The SEP method reproduces SExtractor's own check images."""

    def test_maps_match_sextractor(self, sextractor_image, sextractor_maps):
        """BACKGROUND and BACKGROUND_RMS agree to float32 precision."""
        back, rms = sextractor_maps
        bkg = estimate_background(sextractor_image, box_size=64,
                                  filter_size=3)
        assert bkg.data.dtype == np.float32
        np.testing.assert_allclose(bkg.data, back, rtol=1e-6, atol=0)
        np.testing.assert_allclose(bkg.rms, rms, rtol=1e-6, atol=0)

    def test_raw_big_endian_int16(self, sextractor_maps):
        """The unscaled big-endian int16 pixels give the same maps."""
        with eso_1992_header(), fits.open(
                DATA / 'sextractor_image.fits',
                do_not_scale_image_data=True) as hdulist:
            raw = hdulist[0].data
            scale, zero = hdulist[0].header['BSCALE'], hdulist[0].header['BZERO']
            assert raw.dtype == np.dtype('>i2')
            bkg = estimate_background(raw, box_size=64, filter_size=3)
        np.testing.assert_allclose(bkg.data * scale + zero,
                                   sextractor_maps[0], rtol=1e-6)
        np.testing.assert_allclose(bkg.rms * scale, sextractor_maps[1],
                                   rtol=1e-4)

    def test_from_path(self, sextractor_maps, tmp_path, sextractor_image):
        """A FITS path gives the same maps and records the target file."""
        path = tmp_path / 'image.fits'
        sextractor_image.write(path)
        bkg = estimate_background(path, box_size=64, filter_size=3)
        np.testing.assert_allclose(bkg.data, sextractor_maps[0], rtol=1e-6)
        assert bkg.header['TGTPATH'] == str(path)

    def test_provenance(self, sextractor_image):
        """The header holds the method, sizes, levels and versions."""
        bkg = estimate_background(sextractor_image, box_size=(64, 32),
                                  filter_size=(3, 5), filter_threshold=1.5)
        header = bkg.header
        assert header['BKGTYPE'] == 'SEP'
        assert header['BKGIS2D'] is True
        assert (header['BKGBOX'], header['BKGBOXX']) == (64, 32)
        assert (header['BKGFILT'], header['BKGFILTX']) == (3, 5)
        assert header['BKGFTHR'] == 1.5
        assert header['SEPVERS'] == sep.__version__
        assert header['BKGSRCM'] == 'none'
        assert header['BKGINVM'] == 'none'
        assert header['BUNIT'] == 'adu'
        assert bkg.box_size == (64, 32)
        assert bkg.filter_size == (3, 5)
        assert bkg.filter_threshold == 1.5
        for key in ('BKGVALU', 'BKGSIG', 'BKGDATE', 'BKGVERS', 'ASTRVERS',
                    'PHOTVERS', 'NUMPVERS'):
            assert key in header


class TestSyntheticSkies:
    """Estimates agree with a known background within the noise."""

    @pytest.mark.parametrize('method', ['sep', 'photutils', 'constant'])
    @pytest.mark.parametrize('seed', [0, 1, 2])
    def test_flat(self, sky, method, seed):
        """A flat sky is recovered within a few model errors."""
        image, truth = sky('flat', seed=seed)
        bkg = estimate_background(image, method=method)
        error = bkg.data - truth
        assert np.abs(error).max() < 8 * bkg.error.max()
        assert np.sqrt(np.mean(error**2)) < 2 * bkg.error.max()
        assert abs(bkg.global_rms - SIGMA) < 0.05 * SIGMA
        assert np.all(np.abs(bkg.rms - SIGMA) < 0.1 * SIGMA)

    @pytest.mark.parametrize('seed', [0, 1, 2])
    def test_gradient(self, sky, seed):
        """A linear gradient is followed to a fraction of the noise."""
        image, truth = sky('gradient', seed=seed)
        bkg = estimate_background(image)
        error = bkg.data - truth
        assert np.sqrt(np.mean(error**2)) < 0.1 * SIGMA
        assert np.abs(error).max() < 0.3 * SIGMA

    def test_constant_is_one_level(self, flat_sky):
        """The constant method gives a 1-D background and says so."""
        image, truth = flat_sky
        bkg = estimate_background(image, method='constant')
        assert bkg.is_2d is False
        assert bkg.header['BKGIS2D'] is False
        assert np.ptp(bkg.data) == 0
        assert bkg.data.shape == image.shape
        assert abs(bkg.global_back - 100.0) < 3 * bkg.error.max()
        assert bkg.header['BKGNPIX'] > 0.95 * image.size

    @pytest.mark.parametrize('bad', [np.nan, np.inf, -np.inf])
    def test_non_finite_pixels_never_poison(self, flat_sky, bad):
        """NaN and +-inf pixels are excluded; the map stays finite."""
        image, truth = flat_sky
        image = image.copy()
        image[40:80, 100:140] = bad
        image[3, 7] = bad
        bkg = estimate_background(image)
        assert np.isfinite(bkg.data).all()
        assert np.isfinite(bkg.rms).all()
        assert np.abs(bkg.data - truth).max() < 8 * bkg.error.max()
        assert bkg.header['BKGINVM'] == 'nonfinite'
        assert bkg.header['BKGNINV'] == 40 * 40 + 1

    def test_masked_region_is_ignored(self, flat_sky):
        """ccd.mask and mask exclude a contaminated region."""
        image, truth = flat_sky
        image = image.copy()
        image[:, :128] += 1000.0
        half = np.zeros(image.shape, bool)
        half[:, :128] = True
        for bkg in (estimate_background(CCDData(image, unit='adu',
                                                mask=half)),
                    estimate_background(image, mask=half)):
            assert np.abs(bkg.data - truth).max() < 10 * bkg.error.max()
        assert bkg.header['BKGINVM'] == 'mask'
        assert bkg.invalid_mask.sum() == half.sum()

    def test_source_mask_excludes_sources(self, flat_sky):
        """A source mask removes bright blobs from the statistics."""
        image, truth = flat_sky
        image = image.copy()
        y, x = np.indices(image.shape)
        sources = (y % 32 < 16) & (x % 32 < 16)
        image[sources] += SIGMA
        unmasked = estimate_background(image)
        masked = estimate_background(image, source_mask=sources)
        assert np.abs(unmasked.data - truth).min() > 3 * masked.error.max()
        assert np.abs(masked.data - truth).max() < 8 * masked.error.max()
        assert masked.header['BKGSRCM'] == 'user'
        assert masked.header['BKGNSRC'] == sources.sum()
        assert masked.header['BKGNINV'] == 0
        assert masked.source_mask is not None

    def test_rectangular_box(self, sky):
        """A (ny, nx) box works along each axis."""
        image, truth = sky('gradient', shape=(128, 384))
        bkg = estimate_background(image, box_size=(32, 96), filter_size=1)
        assert np.sqrt(np.mean((bkg.data - truth)**2)) < 0.1 * SIGMA


class TestInputTypes:
    """Every supported input type and dtype gives the same background."""

    @pytest.fixture(params=['ndarray', 'quantity', 'nddata', 'ccddata',
                            'masked'])
    def image(self, request, flat_sky):
        """The flat sky as each supported input type."""
        data = flat_sky[0]
        return {'ndarray': data,
                'quantity': data * u.electron,
                'nddata': NDData(data, unit=u.electron),
                'ccddata': CCDData(data, unit=u.electron),
                'masked': np.ma.MaskedArray(data, mask=False)}[request.param]

    def test_types(self, image, flat_sky):
        """All types agree with the plain array."""
        bkg = estimate_background(image)
        reference = estimate_background(flat_sky[0])
        np.testing.assert_array_equal(bkg.data, reference.data)
        assert bkg.unit in (u.adu, u.electron)

    @pytest.mark.parametrize('kind', [fits.PrimaryHDU, fits.ImageHDU,
                                      fits.CompImageHDU])
    def test_fits_hdus(self, flat_sky, kind):
        """An image HDU in hand is read as a file of it would be: its
        BUNIT and WCS kept, big-endian data converted."""
        data = flat_sky[0].astype('>f4')
        wcs = WCS(naxis=2)
        wcs.wcs.ctype = ['RA---TAN', 'DEC--TAN']
        wcs.wcs.crval = [150.0, 2.0]
        wcs.wcs.cdelt = [-1e-4, 1e-4]
        header = wcs.to_header()
        header['BUNIT'] = 'electron'
        hdu = kind(data, header=header)
        bkg = estimate_background(hdu)
        assert bkg.unit == u.electron
        np.testing.assert_array_equal(
            bkg.data, estimate_background(flat_sky[0]).data)
        result = subtract_background(hdu, box_size=32)
        assert result.unit == u.electron
        assert result.wcs.wcs.crval.tolist() == [150.0, 2.0]
        assert result.meta['SUBBKG'] == (f'ccd=<{kind.__name__}>, '
                                         'box_size=32')

    def test_hdulist_and_hdu(self, flat_sky, tmp_path):
        """A path or an open HDUList gives its first image HDU, or the one
        named by hdu=, with its MASK; the choice is logged."""
        data = flat_sky[0]
        mask = np.zeros(data.shape, np.uint8)
        mask[:8] = 1
        fits.HDUList([fits.PrimaryHDU(),
                      fits.ImageHDU(data, name='SCI'),
                      fits.ImageHDU(data + 50, name='OTHER'),
                      fits.ImageHDU(mask, name='MASK')]).writeto(
                          tmp_path / 'm.fits')
        first = estimate_background(tmp_path / 'm.fits')
        other = estimate_background(tmp_path / 'm.fits', hdu='OTHER')
        assert other.global_back == pytest.approx(first.global_back + 50,
                                                  abs=0.01)
        with fits.open(tmp_path / 'm.fits') as hdulist:
            assert estimate_background(hdulist).global_back == (
                first.global_back)
            result = subtract_background(hdulist, hdu=2)
        assert result.meta['SUBBKG'] == 'ccd=<HDUList>, hdu=2'
        assert result.mask[:8].all() and not result.mask[8:].any()
        with pytest.raises(ValueError, match="has no HDU 'NOPE'"):
            estimate_background(tmp_path / 'm.fits', hdu='NOPE')
        with pytest.raises(TypeError, match='hdu chooses an HDU of a FITS '
                                            'path or HDUList; ccd is a '
                                            'ndarray'):
            estimate_background(data, hdu=1)
        with pytest.raises(TypeError, match='got BinTableHDU'):
            estimate_background(fits.BinTableHDU())

    def test_scaled_hdu_in_memory(self):
        """An HDU scaled in memory (stored integers, BZERO) and a file
        opened without scaling give the background of the values, as the
        file read normally does."""
        data = np.random.default_rng(3).normal(1000, 30, (128, 128))
        hdu = fits.PrimaryHDU(data.astype(np.int16))
        hdu.scale('int16', bzero=32768)
        buffer = io.BytesIO()
        hdu.writeto(buffer)
        as_read = estimate_background(fits.open(io.BytesIO(
            buffer.getvalue())), box_size=32)
        raw = fits.open(io.BytesIO(buffer.getvalue()),
                        do_not_scale_image_data=True)
        assert abs(as_read.global_back - 1000) < 2
        for given in (hdu, raw):
            bkg = estimate_background(given, box_size=32)
            assert bkg.global_back == pytest.approx(as_read.global_back,
                                                    rel=1e-6)

    @pytest.mark.parametrize('hdu, error, match', [
        (5, ValueError, 'has no HDU 5$'),
        (-9, ValueError, 'has no HDU -9$'),
        (('SCI',), ValueError, r"has no HDU \('SCI',\)$"),
        (True, TypeError, 'hdu must be an int, a str or a'),
    ])
    def test_bad_hdu(self, flat_sky, tmp_path, hdu, error, match):
        """A missing HDU is named, whatever the spelling."""
        fits.HDUList([fits.PrimaryHDU(),
                      fits.ImageHDU(flat_sky[0], name='SCI')]).writeto(
                          tmp_path / 'm.fits')
        with pytest.raises(error, match=match):
            estimate_background(tmp_path / 'm.fits', hdu=hdu)

    def test_closed_hdulist(self, flat_sky, tmp_path):
        """An HDU list closed before its HDUs were read says so."""
        fits.HDUList([fits.PrimaryHDU(),
                      fits.ImageHDU(flat_sky[0], name='SCI')]).writeto(
                          tmp_path / 'm.fits')
        hdulist = fits.open(tmp_path / 'm.fits')
        hdulist.close()
        with pytest.raises(ValueError, match='was closed before its HDUs '
                                             'were read'):
            estimate_background(hdulist)

    def test_bad_bunit(self, flat_sky):
        """A BUNIT that is not a unit says how to give one."""
        hdu = fits.PrimaryHDU(flat_sky[0])
        hdu.header['BUNIT'] = 'furlongs'
        with pytest.raises(ValueError, match="BUNIT 'furlongs' of 'the "
                                             "PrimaryHDU' is not a unit; give "
                                             'the unit another way'):
            estimate_background(hdu)

    def test_unitless_is_adu(self, flat_sky):
        """A unitless input is taken to be in adu."""
        assert estimate_background(flat_sky[0]).unit == u.adu

    @pytest.mark.parametrize('dtype', ['>f4', '<f4', '>f8', '<f8', '>i2',
                                       '<i2', '>u2', '<u2', '<i4', '>i4',
                                       'u1'])
    def test_dtypes_and_byte_orders(self, dtype):
        """Any numeric dtype or byte order works; float64 and integers wider
        than 16 bits are worked in float64, which holds them exactly."""
        rng = np.random.default_rng(5)
        data = rng.normal(120, 4, (128, 128)).round().astype(dtype)
        bkg = estimate_background(data, box_size=32)
        kind, size = np.dtype(dtype).kind, np.dtype(dtype).itemsize
        expected = np.float64 if (kind == 'f' and size == 8) or (
            kind in 'iu' and size >= 4) else np.float32
        assert bkg.data.dtype == expected
        assert abs(bkg.global_back - 120) < 1

    def test_non_contiguous_view(self, flat_sky):
        """A strided view gives the same result as its copy."""
        data = np.repeat(flat_sky[0], 2, axis=1)[:, ::2]
        assert not data.flags['C_CONTIGUOUS']
        np.testing.assert_array_equal(
            estimate_background(data).data,
            estimate_background(np.ascontiguousarray(data)).data)

    def test_input_not_mutated(self, flat_sky):
        """Data, mask and meta of the input are left as they were."""
        data = flat_sky[0].copy()
        data[5, 5] = np.inf
        mask = np.zeros(data.shape, bool)
        mask[10:20, 10:20] = True
        ccd = CCDData(data, unit='adu', mask=mask, meta={'A': 1})
        before = (data.copy(), mask.copy())
        estimate_background(ccd, source_mask=mask)
        np.testing.assert_array_equal(ccd.data, before[0])
        np.testing.assert_array_equal(ccd.mask, before[1])
        assert dict(ccd.meta) == {'A': 1}

    def test_returns_background(self, flat_sky):
        """The result is a Background with maps of the image shape."""
        bkg = estimate_background(flat_sky[0])
        assert isinstance(bkg, Background)
        assert bkg.shape == flat_sky[0].shape


class TestBadInput:
    """Bad input gets a clear error naming the parameter."""

    @pytest.mark.parametrize('data, match', [
        (np.zeros(10), 'ccd must be 2-D, got 1'),
        (np.zeros((4, 4, 4)), 'ccd must be 2-D, got 3'),
        (np.zeros((0, 5)), 'ccd is empty'),
    ])
    def test_bad_shapes(self, data, match):
        """Non-2-D and empty images are refused."""
        with pytest.raises(ValueError, match=match):
            estimate_background(data)

    def test_bad_type(self):
        """A list is not an image."""
        with pytest.raises(TypeError, match='ccd must be a CCDData'):
            estimate_background([[1.0, 2.0]])

    def test_strings_are_not_numbers(self):
        """A string array is refused."""
        with pytest.raises(TypeError, match='ccd must hold numbers'):
            estimate_background(np.full((4, 4), 'a'))

    @pytest.mark.parametrize('box_size, error, match', [
        (0, ValueError, 'box_size must be a positive int'),
        (-3, ValueError, 'box_size must be a positive int'),
        (2.5, TypeError, 'box_size must be a positive int'),
        ('64', TypeError, 'box_size must be a positive int'),
        (True, TypeError, 'box_size must be a positive int'),
        ((1, 2, 3), TypeError, 'box_size must be a positive int'),
        (512, ValueError, r'box_size \(512, 512\) is larger than the image'),
        ((16, 300), ValueError, 'box_size .* is larger than the image'),
    ])
    def test_bad_box_size(self, flat_sky, box_size, error, match):
        """Box sizes must be positive ints no larger than the image."""
        with pytest.raises(error, match=match):
            estimate_background(flat_sky[0], box_size=box_size)

    @pytest.mark.parametrize('filter_size, error, match', [
        (2, ValueError, 'filter_size must be a positive odd int'),
        ((3, 4), ValueError, 'filter_size must be a positive odd int'),
        (0, ValueError, 'filter_size must be a positive odd int'),
        (3.0, TypeError, 'filter_size must be a positive odd int'),
    ])
    def test_bad_filter_size(self, flat_sky, filter_size, error, match):
        """Filter sizes must be odd positive ints."""
        with pytest.raises(error, match=match):
            estimate_background(flat_sky[0], filter_size=filter_size)

    @pytest.mark.parametrize('value, error', [
        ('1', TypeError), (-1.0, ValueError), (np.nan, ValueError)])
    def test_bad_filter_threshold(self, flat_sky, value, error):
        """The filter threshold is a finite non-negative number."""
        with pytest.raises(error, match='filter_threshold must be'):
            estimate_background(flat_sky[0], filter_threshold=value)

    @pytest.mark.parametrize('name', ['mask', 'source_mask'])
    def test_mask_wrong_shape(self, flat_sky, name):
        """Masks must have the image shape."""
        with pytest.raises(ValueError, match=f'{name} must have the image'):
            estimate_background(flat_sky[0], **{name: np.zeros((3, 3))})

    def test_mask_wrong_type(self, flat_sky):
        """A mask of strings is refused."""
        with pytest.raises(TypeError, match='mask must be a boolean array'):
            estimate_background(flat_sky[0],
                                mask=np.full(flat_sky[0].shape, 'x'))

    @pytest.mark.parametrize('method', ['sep', 'photutils', 'constant'])
    def test_all_masked(self, flat_sky, method):
        """An all-masked or all-NaN image is an error, not 0 +- 1."""
        with pytest.raises(ValueError, match='no valid pixels'):
            estimate_background(np.full((64, 64), np.nan), method=method,
                                box_size=32)
        with pytest.raises(ValueError, match='no valid pixels'):
            estimate_background(flat_sky[0], method=method,
                                mask=np.ones(flat_sky[0].shape, bool))

    @pytest.mark.parametrize('method', ['sep', 'photutils'])
    def test_almost_all_masked(self, flat_sky, method):
        """SEP's silent globalback=0, globalrms=1 becomes an error."""
        mask = np.ones(flat_sky[0].shape, bool)
        mask[:20, :20] = False
        with pytest.raises(ValueError, match='too few valid pixels'):
            estimate_background(flat_sky[0], method=method, mask=mask)

    def test_unknown_method(self, flat_sky):
        """An unknown method lists the known ones."""
        with pytest.raises(ValueError,
                           match="method 'median' .* known: constant"):
            estimate_background(flat_sky[0], method='median')

    def test_unknown_option(self, flat_sky):
        """Options the estimator does not take are refused."""
        with pytest.raises(TypeError, match="^unknown option 'bogus'; "
                           "estimate_background with method='sep' takes: "):
            estimate_background(flat_sky[0], bogus=1)

    def test_missing_file(self, tmp_path):
        """A missing path names the file."""
        with pytest.raises(FileNotFoundError, match='no such FITS file'):
            estimate_background(tmp_path / 'nope.fits')
