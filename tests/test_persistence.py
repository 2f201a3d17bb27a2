# Licensed under a 3-clause BSD style license - see LICENSE
"""Tests of writing and reading backgrounds with FITS files."""

import copy
import os
import pickle
from unittest import mock

import ccdproc
import numpy as np
import pytest
from astropy.io import fits
from astropy.io import registry as io_registry
from astropy.io.registry import IORegistryError
from astropy.nddata import (
    CCDData,
    InverseVariance,
    StdDevUncertainty,
    VarianceUncertainty,
)
from astropy.utils.exceptions import AstropyUserWarning
from astropy.wcs import WCS

from ezbkg_ccd import (
    Background,
    BackgroundFile,
    SubtractedCCDData,
    estimate_background,
    process_files,
    read_background,
    read_with_background,
    subtract_background,
    write_background,
    write_with_background,
)
from ezbkg_ccd.demo import IMAGE_SECTION, raw_frame_path

from .conftest import DATA, SIGMA


def assert_same_background(actual, expected):
    """Every attribute of two backgrounds agrees exactly."""
    assert actual.data.dtype == expected.data.dtype
    np.testing.assert_array_equal(actual.data, expected.data)
    np.testing.assert_array_equal(actual.rms, expected.rms)
    assert actual.header == expected.header
    for name in ('method', 'is_2d', 'box_size', 'filter_size',
                 'filter_threshold', 'global_back', 'global_rms', 'unit'):
        assert getattr(actual, name) == getattr(expected, name), name


def assert_same_ccd(actual, expected):
    """Data, mask, uncertainty (type), unit, WCS and meta agree exactly."""
    np.testing.assert_array_equal(actual.data, expected.data)
    np.testing.assert_array_equal(actual.mask, expected.mask)
    assert type(actual.uncertainty) is type(expected.uncertainty)
    np.testing.assert_array_equal(actual.uncertainty.array,
                                  expected.uncertainty.array)
    assert actual.unit == expected.unit
    if expected.wcs is None:
        assert actual.wcs is None
    else:
        assert actual.wcs.to_header() == expected.wcs.to_header()
    structural = ('', 'COMMENT', 'HISTORY', 'SIMPLE', 'BITPIX', 'NAXIS',
                  'NAXIS1', 'NAXIS2', 'EXTEND', 'BZERO', 'BSCALE')
    for key, value in expected.meta.items():
        if key not in structural:
            assert actual.meta[key] == value, key


@pytest.fixture(params=[StdDevUncertainty, VarianceUncertainty,
                        InverseVariance])
def subtracted(request, flat_sky):
    """A background-subtracted frame (each uncertainty type) and its background."""
    data = flat_sky[0].copy()
    data[30:40, 60:70] = np.nan
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ['RA---TAN', 'DEC--TAN']
    wcs.wcs.crval = [10.0, -30.0]
    wcs.wcs.crpix = [128.0, 128.0]
    wcs.wcs.cdelt = [-2e-4, 2e-4]
    value = {StdDevUncertainty: SIGMA, VarianceUncertainty: SIGMA**2,
             InverseVariance: SIGMA**-2}[request.param]
    ccd = CCDData(data, unit='adu', wcs=wcs,
                  uncertainty=request.param(np.full(data.shape, value)),
                  meta=fits.Header({'OBJECT': 'NGC 1', 'EXPTIME': 30.0}))
    bkg = estimate_background(ccd, box_size=32)
    return subtract_background(ccd, bkg), bkg


class TestRoundTrip:
    """What is written is read back exactly."""

    @pytest.mark.parametrize('name, compress', [
        ('out.fits', False), ('out.fits', True), ('out.fits.gz', False),
        ('out.fits.gz', True)])
    def test_synthetic(self, subtracted, tmp_path, name, compress):
        """Data, mask, uncertainty, WCS, meta and background survive."""
        result, bkg = subtracted
        path = tmp_path / name
        write_with_background(result, bkg, path, compress=compress)
        ccd, again = read_with_background(path)
        assert_same_ccd(ccd, result)
        assert_same_background(again, bkg)

    def test_compressed_hdus(self, subtracted, tmp_path):
        """compress=True tile-compresses the extensions."""
        result, bkg = subtracted
        write_with_background(result, bkg, tmp_path / 'c.fits', compress=True)
        with fits.open(tmp_path / 'c.fits') as hdulist:
            kinds = {hdu.name: type(hdu).__name__ for hdu in hdulist}
        assert kinds == {'PRIMARY': 'PrimaryHDU', 'MASK': 'CompImageHDU',
                         'UNCERT': 'CompImageHDU', 'BKG': 'CompImageHDU',
                         'BKGRMS': 'CompImageHDU'}

    def test_layout(self, subtracted, tmp_path):
        """The file holds PRIMARY, MASK, UNCERT, BKG and BKGRMS."""
        result, bkg = subtracted
        write_with_background(result, bkg, tmp_path / 'out.fits')
        with fits.open(tmp_path / 'out.fits') as hdulist:
            assert [hdu.name for hdu in hdulist] == [
                'PRIMARY', 'MASK', 'UNCERT', 'BKG', 'BKGRMS']
            for name in ('BKG', 'BKGRMS'):
                header = hdulist[name].header
                assert header['BKGTYPE'] == 'SEP'
                assert header['BKGBOX'] == 32
                assert header['BUNIT'] == 'adu'

    def test_plain_ccddata_read_ignores_background(self, subtracted,
                                                   tmp_path):
        """CCDData.read alone still reads the science data."""
        result, bkg = subtracted
        write_with_background(result, bkg, tmp_path / 'out.fits')
        ccd = CCDData.read(tmp_path / 'out.fits')
        assert_same_ccd(ccd, result)

    def test_real_raw_frame(self, tmp_path):
        """The real raw frame, reduced and subtracted, round-trips."""
        raw = CCDData.read(raw_frame_path(), unit='adu')
        ccd = ccdproc.subtract_overscan(raw, fits_section=raw.header['BIASSEC'],
                                        median=True, overscan_axis=1)
        ccd = ccdproc.trim_image(ccd, fits_section=IMAGE_SECTION)
        bkg = estimate_background(ccd)
        result = subtract_background(ccd, bkg, gain=raw.header['GAIN'])
        path = tmp_path / 'a8280271_bkgsub.fits'
        write_with_background(result, bkg, path)
        ccd_again, bkg_again = read_with_background(path)
        assert_same_ccd(ccd_again, result)
        assert_same_background(bkg_again, bkg)
        assert ccd_again.meta['SUBBKG'] == result.meta['SUBBKG']

    def test_constant_is_compressed_and_viewable(self, flat_sky, tmp_path):
        """A constant background is stored as flat maps, tile-compressed
        losslessly by default: a viewer shows them, and they take almost
        no room."""
        bkg = estimate_background(flat_sky[0], method='constant')
        write_background(bkg, tmp_path / 'c.fits')
        write_background(bkg, tmp_path / 'full.fits', full_map=True)
        with fits.open(tmp_path / 'c.fits') as hdulist:
            assert isinstance(hdulist['BKG'], fits.CompImageHDU)
            assert (hdulist['BKG'].data == np.float32(bkg.global_back)).all()
            assert hdulist['BKGRMS'].data.shape == (256, 256)
        small, full = ((tmp_path / name).stat().st_size
                       for name in ('c.fits', 'full.fits'))
        assert small < full / 10
        again = read_background(tmp_path / 'c.fits')
        assert_same_background(again, bkg)
        assert again.data.flags.writeable

    def test_compact_files_of_0_1_still_read(self, flat_sky, tmp_path):
        """A constant background stored without data (BKGNAX1/2, as 0.1
        wrote it) reads back as full maps."""
        bkg = estimate_background(flat_sky[0], method='constant')
        header = fits.Header(bkg.header)
        header['BKGNAX1'], header['BKGNAX2'] = 256, 256
        header['BKGBITPX'] = -32
        fits.HDUList([fits.PrimaryHDU(),
                      fits.ImageHDU(header=header, name='BKG'),
                      fits.ImageHDU(header=header, name='BKGRMS')]).writeto(
            tmp_path / 'old.fits')
        assert_same_background(read_background(tmp_path / 'old.fits'), bkg)

    def test_constant_full_map(self, flat_sky, tmp_path):
        """full_map=True stores a constant as arrays."""
        bkg = estimate_background(flat_sky[0], method='constant')
        write_with_background(flat_sky[0], bkg, tmp_path / 'c.fits',
                              full_map=True)
        with fits.open(tmp_path / 'c.fits') as hdulist:
            assert hdulist['BKG'].data.shape == (256, 256)
        assert_same_background(read_background(tmp_path / 'c.fits'), bkg)

    @pytest.mark.parametrize('compress', [False, True])
    def test_standalone(self, flat_sky, tmp_path, compress):
        """bkg.write and Background.read round-trip a standalone file."""
        bkg = estimate_background(flat_sky[0].astype(np.float64))
        bkg.write(tmp_path / 'bkg.fits', compress=compress)
        again = Background.read(tmp_path / 'bkg.fits')
        assert_same_background(again, bkg)
        assert again.data.dtype == np.float64

    def test_standalone_default_path(self, flat_sky, tmp_path):
        """A workflow background's write() without a path uses its path."""
        bkg = BackgroundFile(estimate_background(flat_sky[0]),
                             tmp_path / 'b.fits')
        bkg.write()
        assert bkg.is_saved and bkg.is_exists
        assert_same_background(read_background(tmp_path / 'b.fits'), bkg)

    def test_registry_formats(self, flat_sky, tmp_path):
        """Background I/O goes through astropy's registry, 'fits' by
        default whatever the file name; file objects are read."""
        bkg = estimate_background(flat_sky[0], box_size=32)
        for name in ('named.dat', 'ext.fits.gz', 'tiles.fits.fz',
                     'packed.fits.bz2'):
            bkg.write(tmp_path / name, compress=name.endswith('.fz'))
            assert_same_background(Background.read(tmp_path / name), bkg)
        bkg.write(tmp_path / 'explicit.fits', format='fits')
        with open(tmp_path / 'explicit.fits', 'rb') as stream:
            assert_same_background(Background.read(stream), bkg)
        formats = io_registry.get_formats(Background)
        assert list(formats['Format']) == ['fits']
        assert list(formats['Read']) == list(formats['Write']) == ['Yes']
        with pytest.raises(IORegistryError, match="No writer defined for "
                           "format 'votable'"):
            bkg.write(tmp_path / 'x.xml', format='votable')
        with open(tmp_path / 'stream.fits', 'wb') as stream, \
                pytest.raises(TypeError, match='path must be a file name'):
            bkg.write(stream)
        assert (tmp_path / 'stream.fits').stat().st_size == 0

    def test_registry_reads_plain_files_clearly(self, tmp_path):
        """A file that is not FITS is an OSError naming it, as before."""
        (tmp_path / 'notes.txt').write_text('no FITS here')
        with pytest.raises(OSError, match="cannot read '.*notes.txt' as "
                           'FITS'):
            Background.read(tmp_path / 'notes.txt')

    def test_plain_file_has_no_background(self, flat_sky, tmp_path):
        """A file written by CCDData.write reads as (ccd, None)."""
        CCDData(flat_sky[0], unit='adu').write(tmp_path / 'plain.fits')
        ccd, bkg = read_with_background(tmp_path / 'plain.fits')
        assert bkg is None
        np.testing.assert_array_equal(ccd.data, flat_sky[0])

    def test_file_without_unit_is_adu(self, flat_sky, tmp_path):
        """A file without BUNIT is read in adu."""
        fits.writeto(tmp_path / 'nounit.fits', flat_sky[0])
        ccd, _ = read_with_background(tmp_path / 'nounit.fits')
        assert ccd.unit == 'adu'


class TestRewrite:
    """Rewriting replaces, never duplicates, and keeps foreign HDUs."""

    def test_no_duplicates_and_foreign_kept(self, subtracted, tmp_path):
        """BKG/BKGRMS are replaced; other HDUs survive."""
        result, bkg = subtracted
        path = tmp_path / 'out.fits'
        write_with_background(result, bkg, path)
        with fits.open(path, mode='append') as hdulist:
            hdulist.append(fits.ImageHDU(np.arange(6).reshape(2, 3),
                                         name='WEIGHT'))
            hdulist.append(fits.BinTableHDU.from_columns(
                [fits.Column('x', 'E', array=[1.0, 2.0])], name='CATALOG'))
        other = estimate_background(result, box_size=64, method='constant')
        write_with_background(result, other, path, overwrite=True)
        with fits.open(path) as hdulist:
            names = [hdu.name for hdu in hdulist]
            np.testing.assert_array_equal(hdulist['WEIGHT'].data,
                                          np.arange(6).reshape(2, 3))
            assert list(hdulist['CATALOG'].data['x']) == [1.0, 2.0]
        assert sorted(names) == sorted(['PRIMARY', 'MASK', 'UNCERT', 'WEIGHT',
                                        'CATALOG', 'BKG', 'BKGRMS'])
        assert read_background(path).method == 'constant'

    def test_permissions_follow_umask(self, subtracted, tmp_path):
        """Atomic writes give the usual permissions, not mkstemp's 0600."""
        result, bkg = subtracted
        umask = os.umask(0o022)
        try:
            write_with_background(result, bkg, tmp_path / 'out.fits')
        finally:
            os.umask(umask)
        assert (tmp_path / 'out.fits').stat().st_mode & 0o777 == 0o644

    def test_exists_without_overwrite(self, subtracted, tmp_path):
        """An existing file is not replaced unless asked."""
        result, bkg = subtracted
        path = tmp_path / 'out.fits'
        path.write_bytes(b'precious')
        with pytest.raises(FileExistsError, match='already exists'):
            write_with_background(result, bkg, path)
        with pytest.raises(FileExistsError, match='already exists'):
            bkg.write(path)
        assert path.read_bytes() == b'precious'

    def test_overwrite_non_fits(self, subtracted, tmp_path):
        """overwrite=True replaces a file that is not FITS."""
        result, bkg = subtracted
        path = tmp_path / 'out.fits'
        path.write_bytes(b'junk')
        write_with_background(result, bkg, path, overwrite=True)
        assert read_background(path).method == 'sep'


class TestAtomicWrite:
    """An interrupted write leaves nothing half-written."""

    def _interrupt(self):
        return mock.patch.object(fits.HDUList, 'writeto',
                                 side_effect=KeyboardInterrupt('stop'))

    def test_no_partial_file(self, subtracted, tmp_path):
        """No file appears under the final name, no temporary is left."""
        result, bkg = subtracted
        with self._interrupt(), pytest.raises(KeyboardInterrupt, match='stop'):
            write_with_background(result, bkg, tmp_path / 'out.fits')
        assert os.listdir(tmp_path) == []

    def test_existing_file_intact(self, subtracted, tmp_path):
        """An existing file is unchanged after a failed overwrite."""
        result, bkg = subtracted
        path = tmp_path / 'out.fits'
        write_with_background(result, bkg, path)
        before = path.read_bytes()
        with self._interrupt(), pytest.raises(KeyboardInterrupt, match='stop'):
            write_with_background(result, bkg, path, overwrite=True)
        assert path.read_bytes() == before
        assert os.listdir(tmp_path) == ['out.fits']


class TestBadFiles:
    """Unreadable files and unwritable places give clear errors."""

    def test_missing(self, tmp_path):
        """A missing file names its path."""
        with pytest.raises(FileNotFoundError, match='nope.fits'):
            read_with_background(tmp_path / 'nope.fits')

    @pytest.mark.parametrize('content', [b'', b'not a fits file' * 20])
    def test_not_fits(self, tmp_path, content):
        """Empty and non-FITS files raise OSError naming the path."""
        path = tmp_path / 'bad.fits'
        path.write_bytes(content)
        with pytest.raises(OSError, match="cannot read '.*bad.fits' as FITS"):
            read_with_background(path)

    def test_truncated(self, subtracted, tmp_path):
        """A truncated file raises OSError naming the path."""
        result, bkg = subtracted
        path = tmp_path / 'out.fits'
        write_with_background(result, bkg, path)
        path.write_bytes(path.read_bytes()[:200_000])
        with pytest.raises(OSError, match="'.*out.fits' as FITS.*truncated"):
            read_with_background(path)
        with pytest.raises(OSError, match='truncated'):
            Background.read(path)

    def test_no_background(self, flat_sky, tmp_path):
        """Background.read of a file without BKG is a ValueError."""
        fits.writeto(tmp_path / 'plain.fits', flat_sky[0])
        with pytest.raises(ValueError, match='holds no background'):
            Background.read(tmp_path / 'plain.fits')

    @pytest.mark.parametrize('damage, match', [
        (lambda h: h['BKG'].header.remove('BKGTYPE'), 'lacks the keywords'),
        (lambda h: h.pop(h.index_of('BKGRMS')), 'no BKGRMS HDU'),
        (lambda h: setattr(h['BKGRMS'], 'data', np.zeros((3, 3), 'f4')),
         'not one 2-D shape'),
    ])
    def test_malformed(self, flat_sky, tmp_path, damage, match):
        """A damaged BKG HDU is reported with the path."""
        path = tmp_path / 'bkg.fits'
        estimate_background(flat_sky[0]).write(path)
        with fits.open(path) as hdulist:
            damage(hdulist)
            hdulist.writeto(tmp_path / 'damaged.fits')
        expected = f"'.*damaged.fits' is malformed: .*{match}"
        with pytest.raises(ValueError, match=expected):
            read_background(tmp_path / 'damaged.fits')

    def test_compact_without_shape(self, flat_sky, tmp_path):
        """A dataless BKG HDU needs its shape keywords."""
        bkg = estimate_background(flat_sky[0], method='constant')
        fits.HDUList([fits.PrimaryHDU(),
                      fits.ImageHDU(header=fits.Header(bkg.header),
                                    name='BKG'),
                      fits.ImageHDU(header=fits.Header(bkg.header),
                                    name='BKGRMS')]).writeto(
            tmp_path / 'damaged.fits')
        with pytest.raises(ValueError, match='no data and no BKGNAX1'):
            read_background(tmp_path / 'damaged.fits')

    def test_missing_directory(self, subtracted, tmp_path):
        """Writing into a missing directory names it."""
        result, bkg = subtracted
        with pytest.raises(FileNotFoundError, match='no such directory'):
            write_with_background(result, bkg, tmp_path / 'no' / 'out.fits')

    def test_unwritable_directory(self, subtracted, tmp_path):
        """A directory refusing new files gives OSError with the path."""
        result, bkg = subtracted
        refused = PermissionError(13, 'Permission denied')
        with mock.patch('ezbkg_ccd._fits.os.open', side_effect=refused), \
                pytest.raises(PermissionError,
                              match="cannot write '.*out.fits': Permission"):
            write_with_background(result, bkg, tmp_path / 'out.fits')

    def test_no_path(self, flat_sky):
        """write() needs a path from somewhere."""
        with pytest.raises(TypeError, match='Background.write needs the '
                           r'file to write: write\(path\)'):
            estimate_background(flat_sky[0]).write()
        with pytest.raises(ValueError, match='path must be given when the '
                           'background has no path'):
            BackgroundFile(estimate_background(flat_sky[0])).write()

    def test_wrong_background_type(self, flat_sky, tmp_path):
        """write_with_background wants a Background."""
        with pytest.raises(TypeError, match='background must be a Background'):
            write_with_background(flat_sky[0], flat_sky[1], tmp_path / 'x.fits')


def test_docs_list_every_keyword():
    """The persistence page documents every keyword that is written."""
    from ezbkg_ccd.provenance import KEYWORDS

    page = (DATA.parent.parent / 'docs' / 'persistence.rst').read_text()
    missing = [key for key in [*KEYWORDS, 'BUNIT', 'BKGSUB', 'SUBBKG']
               if f'``{key}``' not in page]
    assert missing == []


class TestPickle:
    """A Background travels to Dask and multiprocessing workers."""

    @pytest.mark.parametrize('method', ['sep', 'constant', 'photutils'])
    def test_pickle_and_deepcopy(self, flat_sky, method):
        """Pickled (maps still lazy or not) and deep-copied backgrounds
        hold the same maps and provenance; a deep copy is independent."""
        background = estimate_background(flat_sky[0], method=method,
                                         box_size=32)
        again = pickle.loads(pickle.dumps(background))
        np.testing.assert_array_equal(again.data, background.data)
        np.testing.assert_array_equal(again.rms, background.rms)
        assert again.header == background.header
        copied = copy.deepcopy(background)
        copied.header['BKGTYPE'] = 'OTHER'
        assert background.method == method
        residual = flat_sky[0].astype(np.float32)
        copied.subtract_from(residual)
        np.testing.assert_array_equal(
            residual, flat_sky[0].astype(np.float32) - background.data)

    def test_original_left_as_it_was(self, flat_sky):
        """Pickling computes the maps for the copy only: the original
        keeps them lazy and subtracts with SEP's own subfrom."""
        background = estimate_background(flat_sky[0], box_size=32)
        assert not background.data_load
        pickle.dumps(background)
        assert not background.data_load
        assert background._subtract_from is not None

    def test_read_from_file(self, flat_sky, tmp_path):
        """A background read lazily from a file pickles with its maps."""
        write_background(estimate_background(flat_sky[0], box_size=32),
                         tmp_path / 'b.fits')
        background = read_background(tmp_path / 'b.fits')
        again = pickle.loads(pickle.dumps(background))
        np.testing.assert_array_equal(again.data, background.data)


class TestCarriedBackground:
    """``subtract_background(...).write(path)`` keeps the background."""

    def test_one_line_write_keeps_the_background(self, tmp_path):
        rng = np.random.default_rng(12)
        ccd = CCDData(rng.normal(200.0, 5.0, (128, 96)), unit='adu',
                      mask=np.zeros((128, 96), bool))
        result = subtract_background(ccd, box_size=32)
        assert isinstance(result, SubtractedCCDData)
        result.write(tmp_path / 'one.fits')
        write_with_background(result, result.background,
                              tmp_path / 'two.fits')
        with fits.open(tmp_path / 'one.fits') as one, \
                fits.open(tmp_path / 'two.fits') as two:
            assert [hdu.name for hdu in one] == [hdu.name for hdu in two] == [
                'PRIMARY', 'MASK', 'UNCERT', 'BKG', 'BKGRMS']
            for got, want in zip(one, two, strict=True):
                np.testing.assert_array_equal(got.data, want.data)
        again, background = read_with_background(tmp_path / 'one.fits')
        np.testing.assert_array_equal(background.data, result.background.data)
        np.testing.assert_array_equal(again.data, result.data)
        combined = ccdproc.combine([result, result], method='average')
        assert combined.background is None
        assert result.multiply(2).background is None
        assert result[:64].background is None

    def test_replaced_data_written_without_it(self, tmp_path):
        result = subtract_background(
            np.random.default_rng(13).normal(5.0, 1.0, (64, 64)), box_size=32)
        result.data = result.data[:32]
        with pytest.warns(AstropyUserWarning, match='no longer fits the image'):
            result.write(tmp_path / 'cut.fits')
        with fits.open(tmp_path / 'cut.fits') as hdulist:
            assert 'BKG' not in hdulist

    def test_background_of_another_shape_refused(self):
        background = estimate_background(np.ones((64, 64)), box_size=32)
        with pytest.raises(ValueError, match=r'background has shape \(64, 64\)'):
            SubtractedCCDData(np.ones((32, 32)), unit='adu',
                              background=background)


class TestOmitRebuildable:
    """omit_rebuildable leaves out an UNCERT that BKGRMS rebuilds exactly."""

    @pytest.fixture(params=[{'unit': 'adu'}, {'unit': 'adu', 'gain': 2.5},
                            {'unit': 'electron'}])
    def plain(self, request, flat_sky):
        """A frame without an uncertainty, subtracted: the uncertainty is
        the sky's (and Poisson with a gain, or for electrons)."""
        options = dict(request.param)
        data = flat_sky[0].astype(np.float32)
        data[30:40, 60:70] = np.nan
        ccd = CCDData(data, unit=options.pop('unit'),
                      meta=fits.Header({'OBJECT': 'NGC 1'}))
        result = subtract_background(ccd, box_size=32, **options)
        return result, result.background

    @pytest.mark.parametrize('compress', [False, True])
    def test_round_trip(self, plain, tmp_path, compress):
        """No UNCERT in the file; read back, it is the same bit for bit."""
        result, bkg = plain
        path = tmp_path / 'lean.fits'
        write_with_background(result, bkg, path, compress=compress,
                              omit_rebuildable=True)
        with fits.open(path) as hdulist:
            assert [hdu.name for hdu in hdulist] == [
                'PRIMARY', 'MASK', 'BKG', 'BKGRMS']
            assert len(hdulist[0].header['BKGUNCR']) == 8  # data CRC-32
            assert hdulist[0].header['BKGUNC'] == result.meta['BKGUNC']
        ccd, again = read_with_background(path)
        assert_same_ccd(ccd, result)
        assert ccd.uncertainty.array.dtype == result.uncertainty.array.dtype
        assert 'BKGUNCR' not in ccd.meta  # it holds its uncertainty now
        assert_same_background(again, bkg)
        # astropy alone reads no uncertainty from the file
        assert CCDData.read(path).uncertainty is None

    def test_smaller(self, plain, tmp_path):
        result, bkg = plain
        write_with_background(result, bkg, tmp_path / 'full.fits')
        write_with_background(result, bkg, tmp_path / 'lean.fits',
                              omit_rebuildable=True)
        full, lean = ((tmp_path / name).stat().st_size
                      for name in ('full.fits', 'lean.fits'))
        assert full - lean >= result.data.nbytes

    def test_cards(self, plain):
        """BKGUNC says how the uncertainty was made, BKGGAIN with what."""
        result, _ = plain
        if result.unit == 'electron':
            assert (result.meta['BKGUNC'], result.meta['BKGGAIN']) == (
                'sky+poisson', 1.0)
        elif 'BKGGAIN' in result.meta:
            assert (result.meta['BKGUNC'], result.meta['BKGGAIN']) == (
                'sky+poisson', 2.5)
        else:
            assert result.meta['BKGUNC'] == 'sky'

    def test_input_uncertainty_kept(self, subtracted, tmp_path):
        """An uncertainty made from the input's is never left out."""
        result, bkg = subtracted
        assert result.meta['BKGUNC'] == 'input'
        assert 'BKGGAIN' not in result.meta
        write_with_background(result, bkg, tmp_path / 'out.fits',
                              omit_rebuildable=True)
        with fits.open(tmp_path / 'out.fits') as hdulist:
            assert 'UNCERT' in hdulist
            assert 'BKGUNCR' not in hdulist[0].header
        ccd, _ = read_with_background(tmp_path / 'out.fits')
        assert_same_ccd(ccd, result)

    def test_changed_uncertainty_kept(self, plain, tmp_path):
        """An uncertainty changed since the subtraction, by one bit or in
        dtype, is written: nothing is lost."""
        result, bkg = plain
        changed = [result.uncertainty.array.copy(),
                   result.uncertainty.array.astype(np.float64)]
        changed[0][5, 5] = np.nextafter(changed[0][5, 5], np.inf)
        for index, array in enumerate(changed):
            edited = result.copy()
            edited.uncertainty = StdDevUncertainty(array)
            path = tmp_path / f'{index}.fits'
            write_with_background(edited, bkg, path, omit_rebuildable=True)
            ccd, _ = read_with_background(path)
            assert ccd.uncertainty.array.dtype == array.dtype
            np.testing.assert_array_equal(ccd.uncertainty.array, array)

    def test_resubtracted_input_is_not_rebuilt(self, plain, tmp_path):
        """A frame subtracted again (its uncertainty now the input's) says
        BKGUNC = input, and keeps its UNCERT."""
        result, _ = plain
        again = subtract_background(result, box_size=32, resubtract=True)
        assert again.meta['BKGUNC'] == 'input'
        assert 'BKGGAIN' not in again.meta
        write_with_background(again, again.background, tmp_path / 'r.fits',
                              omit_rebuildable=True)
        with fits.open(tmp_path / 'r.fits') as hdulist:
            assert 'UNCERT' in hdulist

    def test_chunks_refused(self, flat_sky, tmp_path):
        result = subtract_background(flat_sky[0], box_size=32, chunks=64)
        with pytest.raises(ValueError, match='omit_rebuildable is not '
                           'available for a frame processed in chunks'):
            write_with_background(result, result.background,
                                  tmp_path / 'x.fits', omit_rebuildable=True)
        assert not (tmp_path / 'x.fits').exists()

    def test_edited_data_not_rebuilt(self, plain, tmp_path):
        """A lean file whose data were changed since (by a program that
        kept the header) reads with no uncertainty and a warning, never a
        wrong one."""
        result, bkg = plain
        lean = tmp_path / 'lean.fits'
        write_with_background(result, bkg, lean, omit_rebuildable=True)
        with fits.open(lean, mode='update') as hdulist:
            hdulist[0].data[0, 0] += 1.0
        with pytest.warns(AstropyUserWarning, match='written without its '
                          'uncertainty, to be rebuilt from BKGRMS, but its '
                          'data, BKGUNC/BKGGAIN or background have changed'):
            ccd, _ = read_with_background(lean)
        assert ccd.uncertainty is None
        assert 'BKGUNCR' not in ccd.meta

    def test_stale_marker_dropped(self, plain, tmp_path):
        """A frame read from a lean file by astropy alone (no uncertainty,
        the marker in its header), edited and written again, or
        subtracted again, does not carry the marker on."""
        result, bkg = plain
        lean = tmp_path / 'lean.fits'
        write_with_background(result, bkg, lean, omit_rebuildable=True)
        plain_read = CCDData.read(lean)
        assert 'BKGUNCR' in plain_read.meta
        halved = plain_read.multiply(0.5)
        halved.meta = plain_read.meta
        write_with_background(halved, bkg, tmp_path / 'again.fits')
        with fits.open(tmp_path / 'again.fits') as hdulist:
            assert 'BKGUNCR' not in hdulist[0].header
        ccd, _ = read_with_background(tmp_path / 'again.fits')
        assert ccd.uncertainty is None
        again = subtract_background(plain_read, box_size=32, resubtract=True)
        assert 'BKGUNCR' not in again.meta
        assert again.meta['BKGUNC'] in ('sky', 'sky+poisson')

    @pytest.mark.parametrize('options', [{'mode': 'estimate'},
                                         {'chunks': 32}])
    def test_batch_refusals(self, tmp_path, options):
        """Before any work: estimate writes no uncertainty, and a frame in
        chunks cannot be checked whole."""
        CCDData(np.ones((64, 64)), unit='adu').write(tmp_path / 'f.fits')
        with pytest.raises(ValueError, match="^omit_rebuildable applies to "
                           "mode='subtract' of frames processed whole"):
            process_files([tmp_path / 'f.fits'], output_dir=tmp_path / 'o',
                          omit_rebuildable=True, **options)
        assert not (tmp_path / 'o').exists()

    @pytest.mark.parametrize('edit', ['BKGGAIN', 'BKGUNC', 'BKGRMS'])
    def test_edited_recipe_not_rebuilt(self, flat_sky, tmp_path, edit):
        """A changed gain, uncertainty recipe or RMS map is caught by the
        checksum too: no uncertainty and a warning, never a wrong one."""
        ccd = CCDData(flat_sky[0].astype(np.float32), unit='adu')
        result = subtract_background(ccd, box_size=32, gain=2.0)
        lean = tmp_path / 'lean.fits'
        write_with_background(result, result.background, lean,
                              omit_rebuildable=True)
        with fits.open(lean, mode='update') as hdulist:
            if edit == 'BKGRMS':
                hdulist['BKGRMS'].data[3, 3] *= 1.5
            else:
                hdulist[0].header[edit] = {'BKGGAIN': 4.0,
                                           'BKGUNC': 'sky'}[edit]
        with pytest.warns(AstropyUserWarning, match='have changed since: '
                          'read without one'):
            again, _ = read_with_background(lean)
        assert again.uncertainty is None

    def test_marker_kept_when_still_true(self, plain, tmp_path):
        """A lean file read by astropy alone and written again unchanged
        is still rebuilt exactly."""
        result, bkg = plain
        lean = tmp_path / 'lean.fits'
        write_with_background(result, bkg, lean, omit_rebuildable=True)
        plain_read = CCDData.read(lean)
        write_with_background(plain_read, bkg, tmp_path / 'again.fits')
        ccd, _ = read_with_background(tmp_path / 'again.fits')
        np.testing.assert_array_equal(ccd.uncertainty.array,
                                      result.uncertainty.array)
