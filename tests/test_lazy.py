# Licensed under a 3-clause BSD style license - see LICENSE
"""
Frames processed in chunks on Dask (``chunks=``, Dask inputs): the maps
are one SEP call's bit for bit, the results and files those of the frame
in memory, on any scheduler, and what cannot be done lazily is refused.
"""

import os
import pickle

import dask
import dask.array as da
import numpy as np
import pytest
import sep
from astropy.io import fits
from astropy.nddata import (
    CCDData,
    InverseVariance,
    StdDevUncertainty,
    VarianceUncertainty,
)

from ezbkg_ccd import (
    Background,
    estimate_background,
    process_files,
    read_with_background,
    subtract_background,
    write_background,
    write_with_background,
)
from ezbkg_ccd._fits import FileRegion, write_streamed
from ezbkg_ccd._reader import FileRows, lazy_ccddata
from ezbkg_ccd._sep import strips
from ezbkg_ccd._sep.lazy import mesh_chunks, sep_maps
from ezbkg_ccd.cli import main
from ezbkg_ccd.lazy import zero_area_tables


@pytest.fixture
def hard_sky():
    """A 700x530 sky (not whole meshes) with structure, stars, a NaN
    block, +-inf pixels, a masked patch and a nearly empty strip whose
    bad meshes SEP fills from far away."""
    rng = np.random.default_rng(5)
    y, x = np.mgrid[:700, :530]
    data = 300 + 40 * np.sin(x / 90) * np.cos(y / 70) + 0.05 * y
    data = data + rng.normal(0, 4, data.shape)
    stars = rng.integers(0, 530, (150, 2))
    data[stars[:, 0] % 700, stars[:, 1]] += rng.uniform(50, 3000, 150)
    data = data.astype(np.float32)
    data[100:180, 40:200] = np.nan
    data[400, 7], data[401, 9] = np.inf, -np.inf
    mask = np.zeros(data.shape, bool)
    mask[250:420, :] = True  # every mesh of several mesh rows is bad
    mask[250:420, 500:] = False
    return data, mask


def _sep_single(data, invalid, box, filter_size=3):
    """One SEP call on the frame, as the reference."""
    return sep.Background(data, mask=invalid, bw=box[1], bh=box[0],
                          fw=filter_size, fh=filter_size)


def assert_same_background(lazy, eager):
    np.testing.assert_array_equal(np.asarray(lazy.data), eager.data)
    np.testing.assert_array_equal(np.asarray(lazy.rms), eager.rms)
    for key in eager.header:
        if key != 'BKGDATE':
            assert lazy.header[key] == eager.header[key], key


class TestMaps:
    @pytest.mark.parametrize('chunks', [1, 45, 64, 200, 'auto', 10**6])
    @pytest.mark.parametrize('box', [(32, 32), (48, 40)])
    def test_bit_for_bit_one_sep_call(self, hard_sky, chunks, box):
        """Any chunking gives one SEP call's maps and global values, and
        the in-memory estimate with its provenance."""
        data, mask = hard_sky
        lazy = estimate_background(data, mask=mask, box_size=box,
                                   chunks=chunks)
        assert lazy.is_dask and not lazy.data_load
        invalid = mask | ~np.isfinite(data)
        single = _sep_single(data, invalid, box)
        np.testing.assert_array_equal(lazy.data.compute(), single.back())
        np.testing.assert_array_equal(lazy.rms.compute(), single.rms())
        assert lazy.global_back == single.globalback
        assert lazy.global_rms == single.globalrms
        assert_same_background(lazy, estimate_background(
            data, mask=mask, box_size=box))

    @pytest.mark.parametrize('band_rows', [32, 96, 700])
    def test_bands_any_size(self, hard_sky, band_rows):
        """Bands of one mesh row up to the whole frame give one call's maps
        (the bands whose bad meshes reach beyond their reads recomputed)."""
        data, mask = hard_sky
        invalid = mask | ~np.isfinite(data)
        frame = da.from_array(np.where(invalid, np.nan, data),
                              chunks=(band_rows, -1))
        invalid_frame = da.from_array(invalid, chunks=(50, -1))
        maps = sep_maps(frame, invalid_frame, bw=32, bh=32, fw=3, fh=5,
                        fthresh=0.0, counted=(invalid_frame, ~invalid_frame))
        single = sep.Background(data, mask=invalid, bw=32, bh=32, fw=3, fh=5)
        np.testing.assert_array_equal(maps.back.compute(), single.back())
        np.testing.assert_array_equal(maps.rms.compute(), single.rms())
        assert maps.counts == (np.count_nonzero(invalid),
                               np.count_nonzero(~invalid))
        with pytest.raises(ValueError, match='whole rows of meshes'):
            sep_maps(frame.rechunk((50, -1)), None, bw=32, bh=32, fw=3,
                     fh=3, fthresh=0.0)

    def test_dask_input_and_odd_chunks(self, hard_sky):
        """A Dask array in square, irregular chunks is processed lazily
        without chunks= and gives the in-memory result."""
        data, mask = hard_sky
        frame = da.from_array(data, chunks=((100, 333, 267), (200, 330)))
        lazy = estimate_background(frame, mask=da.from_array(mask),
                                   box_size=32)
        assert_same_background(lazy, estimate_background(data, mask=mask,
                                                         box_size=32))

    def test_integers_float64_big_endian(self):
        """Integer, float64 and big-endian frames: the in-memory maps."""
        rng = np.random.default_rng(2)
        counts = rng.poisson(900, (300, 260))
        for data in (counts.astype('>i4'), counts.astype(np.int16),
                     counts.astype('>f8') + 0.5, counts.astype(np.uint16)):
            lazy = estimate_background(data, box_size=32, chunks=70)
            eager = estimate_background(data, box_size=32)
            assert lazy.data.dtype == eager.data.dtype
            assert_same_background(lazy, eager)

    def test_invalid_rule(self):
        """Saturation, SEP's -1e30 markers and zeroed areas that cross
        chunk edges are found as in memory; a zeroed area under
        zero_area pixels stays data."""
        rng = np.random.default_rng(3)
        data = rng.normal(500, 10, (400, 300)).astype(np.float32)
        data[60:130, 100] = 0  # 70 pixels over the chunk edge at row 96
        data[200:230, 50] = 0  # 30 pixels: kept
        data[300, 10:20] = -1e31
        data[350, 200] = 9e4
        meta = {'SATURATE': 6e4}
        ccd = CCDData(data, unit='adu', meta=meta)
        lazy = estimate_background(ccd, box_size=32, chunks=32,
                                   zero_area=50)
        eager = estimate_background(ccd, box_size=32, zero_area=50)
        assert_same_background(lazy, eager)
        assert eager.header['BKGINVM'] == 'saturated+zero-area+sentinel'
        assert eager.header['BKGNINV'] == 70 + 10 + 1
        invalid = lazy.invalid_mask.compute()
        np.testing.assert_array_equal(invalid, eager.invalid_mask)
        assert invalid[60:130, 100].all() and not invalid[200:230, 50].any()

    def test_zero_area_tables_diagonal_join(self):
        """Zeroed regions that touch only diagonally across a chunk edge
        are one region (8 neighbours)."""
        upper = (1, np.array([0, 30]), np.array([0, 0, 0]),
                 np.array([1, 0, 0]))
        lower = (1, np.array([0, 30]), np.array([0, 1, 0]),
                 np.array([0, 0, 0]))
        assert [table.tolist() for table in zero_area_tables(
            [upper, lower], 60)] == [[False, True], [False, True]]
        assert zero_area_tables([upper, None, lower], 31) == [None] * 3

    def test_user_source_mask(self, hard_sky):
        """A source mask (NumPy or Dask) is excluded as in memory."""
        data, _ = hard_sky
        sources = np.zeros(data.shape, bool)
        sources[500:600, 300:400] = True
        eager = estimate_background(data, box_size=32, source_mask=sources)
        for given in (sources, da.from_array(sources, chunks=(128, 64))):
            assert_same_background(estimate_background(
                data, box_size=32, source_mask=given, chunks=100), eager)

    @pytest.mark.parametrize('scheduler', ['synchronous', 'processes'])
    def test_schedulers(self, hard_sky, scheduler):
        """Threads, one thread and processes give the same maps."""
        data, mask = hard_sky
        eager = estimate_background(data, mask=mask, box_size=32)
        with dask.config.set(scheduler=scheduler):
            lazy = estimate_background(data, mask=mask, box_size=32,
                                       chunks=128)
            assert_same_background(lazy, eager)

    def test_distributed_cluster(self, hard_sky):
        """A distributed LocalCluster of two worker processes gives the
        same maps."""
        distributed = pytest.importorskip('distributed')
        data, mask = hard_sky
        eager = estimate_background(data, mask=mask, box_size=32)
        with distributed.LocalCluster(
                n_workers=2, threads_per_worker=1, processes=True,
                dashboard_address=':0', silence_logs=50) as cluster, \
                distributed.Client(cluster):
            lazy = estimate_background(data, mask=mask, box_size=32,
                                       chunks=128)
            assert_same_background(lazy, eager)

    def test_strips_share_the_bands(self, hard_sky):
        """The threaded strips are the same bands: one call's maps."""
        data, mask = hard_sky
        invalid = mask | ~np.isfinite(data)
        work = np.where(invalid, 0, data).astype(np.float32)
        back, rms, level, noise = strips.sep_strips(
            work, invalid, n_threads=4, bw=32, bh=32, fw=3, fh=5,
            fthresh=0.0)
        single = sep.Background(work, mask=invalid, bw=32, bh=32, fw=3, fh=5)
        np.testing.assert_array_equal(back, single.back())
        np.testing.assert_array_equal(rms, single.rms())
        assert (level, noise) == (single.globalback, single.globalrms)


class TestSubtract:
    @pytest.mark.parametrize('uncertainty', [
        None, StdDevUncertainty, VarianceUncertainty, InverseVariance])
    def test_result_as_in_memory(self, hard_sky, uncertainty):
        """Data, mask and uncertainty (any input type, a gain) are those
        of the frame in memory, as Dask arrays."""
        data, mask = hard_sky
        given = None
        if uncertainty is not None:
            given = uncertainty(np.full(data.shape, 4.0, np.float32))
        ccd = CCDData(data, unit='electron', mask=mask, uncertainty=given)
        eager = subtract_background(ccd, box_size=32, gain=2.0)
        lazy = subtract_background(ccd, box_size=32, gain=2.0, chunks=64)
        for name in ('data', 'mask'):
            assert isinstance(getattr(lazy, name), da.Array)
            np.testing.assert_array_equal(
                getattr(lazy, name).compute(), getattr(eager, name))
        assert type(lazy.uncertainty) is type(eager.uncertainty)
        assert lazy.uncertainty.unit == eager.uncertainty.unit
        np.testing.assert_array_equal(lazy.uncertainty.array.compute(),
                                      eager.uncertainty.array)
        assert lazy.meta['SUBBKG'] == ('ccd=<CCDData>, gain=2.0, chunks=64, '
                                       'box_size=32')

    def test_given_background(self, hard_sky):
        """A lazy background subtracted from the frame in memory, and an
        in-memory one from a Dask frame: the in-memory result."""
        data, mask = hard_sky
        ccd = CCDData(data, unit='adu', mask=mask)
        eager = subtract_background(ccd, estimate_background(ccd,
                                                             box_size=32))
        for frame, background in (
                (ccd, estimate_background(ccd, box_size=32, chunks=100)),
                (CCDData(da.from_array(data, chunks=(100, -1)), unit='adu',
                         mask=mask), estimate_background(ccd, box_size=32))):
            lazy = subtract_background(frame, background)
            np.testing.assert_array_equal(lazy.data.compute(), eager.data)
            np.testing.assert_array_equal(lazy.mask.compute(), eager.mask)
            np.testing.assert_array_equal(lazy.uncertainty.array.compute(),
                                          eager.uncertainty.array)

    def test_rerun_refused(self, hard_sky):
        data, _ = hard_sky
        result = subtract_background(data, box_size=32, chunks=100)
        with pytest.raises(ValueError, match='already background-subtracted'):
            subtract_background(result, box_size=32)

    def test_background_pickles_lazily(self, hard_sky):
        data, _ = hard_sky
        lazy = estimate_background(data, box_size=32, chunks=100)
        again = pickle.loads(pickle.dumps(lazy))
        assert again.is_dask
        np.testing.assert_array_equal(again.data.compute(),
                                      lazy.data.compute())
        assert not lazy.load().is_dask
        assert isinstance(lazy.data, np.ndarray)
        ccd = estimate_background(data, box_size=32,
                                  chunks=100).to_ccddata()
        assert isinstance(ccd.data, da.Array)


class TestRefused:
    @pytest.mark.parametrize(('options', 'match'), [
        ({'method': 'constant'}, "method must be 'sep' for a frame"),
        ({'interpolation': 'smooth'}, "interpolation='smooth' is not avail"),
        ({'n_threads': 2}, 'n_threads=2 is not available'),
        ({'reject_skewed': True}, 'reject_skewed is not available'),
        ({'source_mask': 'auto'}, "source_mask='auto' is not available"),
        ({'source_mask': np.zeros((3, 3), bool)},
         r'source_mask must have the image shape \(128, 96\)'),
    ])
    def test_options(self, options, match):
        data = np.ones((128, 96), np.float32)
        with pytest.raises(ValueError, match=match):
            estimate_background(data, box_size=32, chunks=64, **options)

    @pytest.mark.parametrize(('chunks', 'error', 'match'), [
        (0, ValueError, 'chunks must be a positive number of rows, got 0'),
        (-5, ValueError, 'chunks must be a positive'),
        (2.5, TypeError, "chunks must be a number of rows or 'auto'"),
        (True, TypeError, "chunks must be a number of rows or 'auto'"),
        ('big', TypeError, "got 'big'"),
    ])
    def test_chunks(self, chunks, error, match):
        with pytest.raises(error, match=match):
            estimate_background(np.ones((64, 64)), box_size=32,
                                chunks=chunks)

    @pytest.mark.parametrize(('data', 'match'), [
        (np.full((64, 64), 1e35, np.float32), 'values reach 1e'),
        (1e12 + np.random.default_rng(0).normal(0, 1, (64, 64)),
         'level is over 1e4 times its noise'),
    ])
    def test_frames_needing_rescaling(self, data, match):
        """A frame SEP can only take rescaled is refused, never wrong (in
        memory it is rescaled)."""
        estimate_background(data, box_size=32)
        with pytest.raises(ValueError, match=match):
            estimate_background(data, box_size=32, chunks=32)

    def test_no_valid_mesh(self):
        data = np.full((128, 128), np.nan)
        data[:5, :5] = 1.0
        with pytest.raises(ValueError, match='too few valid pixels'):
            estimate_background(data, box_size=32, chunks=32)


def _write(path, data, **header):
    fits.PrimaryHDU(data, header=fits.Header(header)).writeto(path)
    return path


class TestFiles:
    def test_round_trip_as_in_memory(self, tmp_path, hard_sky):
        """A result and its background written in chunks read back as the
        one written from memory; HDUs of an existing file are kept."""
        data, mask = hard_sky
        ccd = CCDData(data, unit='adu', mask=mask)
        source = tmp_path / 'frame.fits'
        ccd.write(source)
        lazy = subtract_background(source, box_size=32, chunks=100)
        assert isinstance(lazy.data, da.Array)
        background = estimate_background(source, box_size=32, chunks=100)
        eager = subtract_background(source, box_size=32)
        write_with_background(eager, estimate_background(source, box_size=32),
                              tmp_path / 'eager.fits')
        table = fits.BinTableHDU.from_columns(
            [fits.Column(name='x', format='E', array=[1.0])], name='CAT')
        fits.HDUList([fits.PrimaryHDU(), table]).writeto(tmp_path / 'lazy.fits')
        write_with_background(lazy, background, tmp_path / 'lazy.fits',
                              overwrite=True)
        with fits.open(tmp_path / 'lazy.fits') as written, \
                fits.open(tmp_path / 'eager.fits') as expected:
            assert [hdu.name for hdu in written] == [
                *(hdu.name for hdu in expected), 'CAT']
            for got, want in zip(written, expected, strict=False):
                np.testing.assert_array_equal(got.data, want.data)
                for key in want.header:
                    if key not in ('BKGDATE', 'SUBBKG', 'CHECKSUM'):
                        assert got.header[key] == want.header[key], key
        again, back = read_with_background(tmp_path / 'lazy.fits')
        np.testing.assert_array_equal(back.data, background.data.compute())
        np.testing.assert_array_equal(again.mask, eager.mask)

    def test_background_alone(self, tmp_path, hard_sky):
        data, _ = hard_sky
        lazy = estimate_background(data, box_size=32, chunks=100)
        write_background(lazy, tmp_path / 'bkg.fits')
        again = Background.read(tmp_path / 'bkg.fits')
        assert_same_background(again, lazy.load())

    def test_no_overwrite_and_atomic(self, tmp_path, hard_sky):
        """An existing file is kept unless asked; a write that fails
        leaves neither a partial file nor a temporary one."""
        data, _ = hard_sky
        result = subtract_background(data, box_size=32, chunks=100)
        background = estimate_background(data, box_size=32, chunks=100)
        path = tmp_path / 'out.fits'
        path.write_bytes(b'precious')
        with pytest.raises(FileExistsError, match='already exists'):
            write_with_background(result, background, path)
        assert path.read_bytes() == b'precious'

        def broken(block):
            raise RuntimeError('disk on fire')

        failing = CCDData(result.data.map_blocks(broken, dtype=np.float32),
                          unit='adu')
        with pytest.raises(RuntimeError, match='disk on fire'):
            write_with_background(failing, background, path, overwrite=True)
        assert path.read_bytes() == b'precious'
        assert sorted(os.listdir(tmp_path)) == ['out.fits']
        with pytest.raises(ValueError, match='compress=True is not available'):
            write_with_background(result, background, tmp_path / 'c.fits',
                                  compress=True)

    @pytest.mark.parametrize(('stored', 'cards'), [
        (np.int16, {'BSCALE': 2.0, 'BZERO': 100.0}),
        (np.int32, {'BSCALE': 0.5, 'BZERO': 1.0}),
        (np.int16, {'BZERO': 32768}),  # unsigned 16 bits
        (np.uint8, {}),
        (np.int64, {}),
        ('>f8', {}),
        (np.int16, {'BLANK': -7}),
    ])
    def test_lazy_reading_as_astropy(self, tmp_path, stored, cards):
        """Each BITPIX, scaled and unsigned integers and BLANK read in
        chunks as astropy reads them."""
        rng = np.random.default_rng(9)
        raw = rng.integers(0, 100, (37, 29)).astype(stored)
        raw[3, 4] = -7 if 'BLANK' in cards else raw[3, 4]
        path = tmp_path / 'image.fits'
        hdu = fits.PrimaryHDU(raw)
        for key, value in cards.items():
            hdu.header[key] = value
        hdu.writeto(path)
        expected = fits.getdata(path)
        lazy = lazy_ccddata(path, rows=5).data
        assert lazy.dtype == expected.dtype.newbyteorder('=')
        np.testing.assert_array_equal(lazy.compute(), expected)

    def test_unreadable_in_chunks(self, tmp_path):
        """Compressed images, gzipped and truncated files: clear errors."""
        data = np.ones((64, 64), np.float32)
        fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(data)]).writeto(
            tmp_path / 'tiles.fits')
        _write(tmp_path / 'zipped.fits.gz', data)
        with pytest.raises(ValueError, match='image is tile-compressed'):
            estimate_background(tmp_path / 'tiles.fits', chunks=32)
        with pytest.raises(ValueError, match='the file is compressed'):
            estimate_background(tmp_path / 'zipped.fits.gz', chunks=32)
        truncated = tmp_path / 'cut.fits'
        raw = _write(tmp_path / 'whole.fits', data).read_bytes()
        truncated.write_bytes(raw[:2880 + 4 * 64 * 10])
        rows = FileRows(truncated, 2880, fits.getheader(tmp_path /
                                                         'whole.fits'))
        with pytest.raises(OSError, match='is truncated: its image ends'):
            rows[slice(0, 64), slice(None)]

    def test_file_region_whole_rows(self, tmp_path):
        region = FileRegion(tmp_path / 'x', 0, (4, 4), '>f4')
        with pytest.raises(ValueError, match='blocks must hold whole rows'):
            region[slice(0, 2), slice(0, 2)] = np.zeros((2, 2))

    def test_streamed_file_is_fits(self, tmp_path):
        """The writer's layout: headers, data and padding as astropy
        writes them."""
        data = np.arange(35 * 51, dtype=np.float32).reshape(35, 51)
        path = tmp_path / 'streamed.fits'
        write_streamed(path, [
            (fits.PrimaryHDU(np.zeros((1, 1), np.float32)),
             da.from_array(data, chunks=(8, -1))),
            (fits.ImageHDU(np.zeros((1, 1), np.uint8), name='M'),
             da.from_array(data.astype(np.uint8), chunks=(20, -1)))])
        with fits.open(path, checksum=True) as hdulist:
            hdulist.verify('exception')
            np.testing.assert_array_equal(hdulist[0].data, data)
            np.testing.assert_array_equal(hdulist['M'].data,
                                          data.astype(np.uint8))
        assert path.stat().st_size % 2880 == 0


class TestCommandLine:
    def test_chunks_gives_the_files_of_memory(self, tmp_path, hard_sky):
        """``--chunks`` writes what the in-memory run writes; a rerun
        skips it."""
        data, mask = hard_sky
        CCDData(data, unit='adu', mask=mask).write(tmp_path / 'big.fits')
        for folder, extra in (('memory', []), ('chunks', ['--chunks', '100'])):
            assert main(['-q', 'subtract', str(tmp_path / 'big.fits'), '-o',
                         str(tmp_path / folder), '--box-size', '32',
                         *extra]) == 0
        with fits.open(tmp_path / 'chunks' / 'big_bkgsub.fits') as got, \
                fits.open(tmp_path / 'memory' / 'big_bkgsub.fits') as want:
            for a, b in zip(got, want, strict=True):
                np.testing.assert_array_equal(a.data, b.data)
        reports = process_files([tmp_path / 'big.fits'],
                                output_dir=tmp_path / 'chunks', box_size=32,
                                chunks=100)
        assert reports[0].reason == 'output exists'

    def test_chunks_refusals(self, tmp_path, capsys):
        CCDData(np.ones((64, 64)), unit='adu').write(tmp_path / 'a.fits')
        assert main(['subtract', str(tmp_path / 'a.fits'), '-o',
                     str(tmp_path), '--chunks', '32', '--plot',
                     '--box-size', '32']) == 1
        assert 'plot is not available for a frame processed in chunks' in (
            capsys.readouterr().err)
        with pytest.raises(ValueError, match='all_hdus is not available'):
            process_files([tmp_path / 'a.fits'], output_dir=tmp_path / 'o',
                          all_hdus=True, chunks=32)

    def test_large_frame_chunked_automatically(self, tmp_path, hard_sky,
                                               monkeypatch):
        """A frame larger than a quarter of the available memory is
        processed in chunks without being asked (in worker processes
        too), unless its options need it in memory."""
        from ezbkg_ccd import batch

        data, _ = hard_sky
        CCDData(data, unit='adu').write(tmp_path / 'a.fits')
        monkeypatch.setattr(batch, 'available_memory', lambda: 1000)
        seen = []
        monkeypatch.setattr(batch, 'lazy_ccddata', lambda *args, **kw: (
            seen.append(args), lazy_ccddata(*args, **kw))[1])
        reports = process_files([tmp_path / 'a.fits'], output_dir=tmp_path /
                                'o', box_size=32, n_jobs=2)
        assert reports[0].status == 'done'
        expected = estimate_background(data, box_size=32)
        with fits.open(tmp_path / 'o' / 'a_bkgsub.fits') as hdulist:
            np.testing.assert_array_equal(hdulist['BKG'].data, expected.data)
        process_files([tmp_path / 'a.fits'], output_dir=tmp_path / 'p',
                      box_size=32)
        assert seen
        seen.clear()
        for options in ({'method': 'constant'}, {'n_threads': 2},
                        {'source_mask': 'auto'}, {'plot': True}):
            reports = process_files([tmp_path / 'a.fits'], output_dir=tmp_path
                                    / 'q', box_size=32, overwrite=True,
                                    **options)
            assert reports[0].status == 'done', (options, reports[0].error)
        assert not seen  # in memory: these cannot be done in chunks

    def test_scheduler_for_one_frame(self, tmp_path, hard_sky):
        """``--chunks`` with ``--scheduler`` runs the frame's chunks on the
        cluster and writes the same file."""
        distributed = pytest.importorskip('distributed')
        data, _ = hard_sky
        CCDData(data, unit='adu').write(tmp_path / 'a.fits')
        with distributed.LocalCluster(
                n_workers=2, threads_per_worker=1, processes=True,
                dashboard_address=':0', silence_logs=50) as cluster:
            assert main(['-q', 'subtract', str(tmp_path / 'a.fits'), '-o',
                         str(tmp_path / 'o'), '--box-size', '32', '--chunks',
                         '64', '--scheduler', cluster.scheduler_address]) == 0
        expected = estimate_background(data, box_size=32)
        with fits.open(tmp_path / 'o' / 'a_bkgsub.fits') as hdulist:
            np.testing.assert_array_equal(hdulist['BKG'].data, expected.data)


def test_mesh_chunks_whole_meshes():
    assert mesh_chunks(1000, 64, 1) == (64,) * 15 + (40,)
    assert sum(mesh_chunks(12345, 48, 1000)) == 12345


class TestBreaks:
    """Cases a fuzzing run broke: each now as in memory, or refused."""

    def test_single_pixel_corner_mesh(self):
        """SEP's one-pixel corner mesh is excluded as in memory."""
        data = np.random.default_rng(1).normal(100, 5, (65, 97))
        for box in (32, (1, 32)):
            assert_same_background(
                estimate_background(data, box_size=box, chunks=16),
                estimate_background(data, box_size=box))

    def test_masked_markers_are_not_listed(self):
        data = np.random.default_rng(2).normal(100, 5, (128, 128))
        data[5, 5], data[6, 6] = -1e31, -np.inf
        mask = np.zeros(data.shape, bool)
        mask[5, 5] = True
        lazy = estimate_background(data, box_size=32, mask=mask, chunks=40)
        assert lazy.header['BKGINVM'] == 'nonfinite+mask'
        assert_same_background(lazy, estimate_background(
            data, box_size=32, mask=mask))

    def test_zeros_are_sky_from_the_same_sample(self):
        """The sample that tells sky zeros from zeroed areas is the one of
        memory, whatever NaNs are in the frame."""
        data = np.random.default_rng(0).poisson(3, (200, 200)).astype('f4')
        data[:, 150:] = 0
        data[0, 0], data[0, 1] = np.nan, 0.5
        lazy = estimate_background(data, box_size=32, chunks=64)
        eager = estimate_background(data, box_size=32)
        assert_same_background(lazy, eager)
        np.testing.assert_array_equal(lazy.invalid_mask.compute(),
                                      eager.invalid_mask)

    def test_refusal_uses_the_valid_pixels(self):
        """Masked or saturated extreme pixels do not make a frame need
        rescaling; valid ones do, as in memory."""
        rng = np.random.default_rng(3)
        data = rng.normal(100, 5, (128, 128))
        mask = np.zeros(data.shape, bool)
        mask[10, 10], data[10, 10], data[3, 3] = True, 1e35, 1e35
        assert_same_background(
            estimate_background(data, box_size=32, mask=mask,
                                saturation=1000, chunks=64),
            estimate_background(data, box_size=32, mask=mask,
                                saturation=1000))
        high = 1e12 + rng.normal(0, 1, (128, 128))
        high[:, :40] = rng.normal(0, 1, (128, 40))
        masked = np.zeros(high.shape, bool)
        masked[:, :40] = True
        counts = np.random.default_rng(4).integers(
            10**6 - 10, 10**6 + 10, (128, 128)).astype(np.int32)
        for frame, given in ((high, masked), (counts, None)):
            with pytest.raises(ValueError, match='level is over 1e4 times'):
                estimate_background(frame, box_size=32, mask=given,
                                    chunks=64)

    def test_one_pixel_wide_box(self):
        with pytest.raises(ValueError, match='at least 2 pixels wide'):
            estimate_background(np.ones((64, 64)), box_size=(8, 1),
                                chunks=16)

    def test_scaled_float_image(self, tmp_path):
        hdu = fits.PrimaryHDU(np.arange(64.0, dtype=np.float32).reshape(8, 8))
        hdu.header['BSCALE'], hdu.header['BZERO'] = 2.0, 1000.0
        hdu.writeto(tmp_path / 'scaled.fits')
        np.testing.assert_array_equal(
            lazy_ccddata(tmp_path / 'scaled.fits', rows=3).data.compute(),
            fits.getdata(tmp_path / 'scaled.fits'))

    def test_unsigned_and_square_chunks_written(self, tmp_path):
        """Unsigned integers (stored with BZERO) and chunks that do not
        hold whole rows are written as given, and read back."""
        values = np.random.default_rng(5).integers(0, 65535, (50, 75))
        for dtype in (np.uint16, np.uint32, np.float32):
            data = da.from_array(values.astype(dtype), chunks=(25, 25))
            path = tmp_path / f'{np.dtype(dtype).name}.fits'
            write_streamed(path, [(fits.PrimaryHDU(np.zeros((1, 1), dtype)),
                                   data)])
            np.testing.assert_array_equal(fits.getdata(path), values)
        ccd = CCDData(values.astype(np.uint16), unit='adu')
        write_with_background(ccd, estimate_background(ccd, box_size=25),
                              tmp_path / 'memory.fits')
        again, _ = read_with_background(tmp_path / 'memory.fits')
        np.testing.assert_array_equal(again.data, values)

    def test_compressed_name_refused(self, tmp_path):
        data = np.random.default_rng(6).normal(5, 1, (64, 64))
        with pytest.raises(ValueError, match='cannot be compressed'):
            write_with_background(
                subtract_background(data, box_size=32, chunks=32),
                estimate_background(data, box_size=32, chunks=32),
                tmp_path / 'out.fits.gz')
        assert not os.listdir(tmp_path)

    def test_load_computes_the_masks(self):
        data = np.random.default_rng(7).normal(5, 1, (64, 64))
        data[3, 3] = np.nan
        sources = np.zeros(data.shape, bool)
        sources[10:20, 10:20] = True
        loaded = estimate_background(data, box_size=32, chunks=32,
                                     source_mask=sources).load()
        assert isinstance(loaded.invalid_mask, np.ndarray)
        np.testing.assert_array_equal(loaded.source_mask, sources)


def test_progress_of_a_frame_in_chunks(tmp_path, capsys):
    """Each step of a frame in chunks shows Dask's progress bar, on
    stderr; none without ``progress``."""
    CCDData(np.random.default_rng(8).normal(9, 1, (256, 256)),
            unit='adu').write(tmp_path / 'a.fits')
    for progress, folder in ((True, 'shown'), (False, 'quiet')):
        reports = process_files([tmp_path / 'a.fits'], output_dir=tmp_path /
                                folder, box_size=32, chunks=64,
                                progress=progress)
        assert reports[0].status == 'done'
        shown = capsys.readouterr().err
        assert ('100% Completed' in shown) is progress


def test_noiseless_frame_has_no_noise():
    """SEP's global RMS of 1.0 on a frame without noise is 0, in chunks
    as in memory."""
    data = np.full((128, 96), 5.0, np.float32)
    lazy = estimate_background(data, box_size=32, chunks=32)
    assert lazy.global_rms == estimate_background(
        data, box_size=32).global_rms == 0.0
