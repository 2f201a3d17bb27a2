# Licensed under a 3-clause BSD style license - see LICENSE
"""Bad files, hostile headers and reruns: every output is right, readable
and safe, or the file fails alone with a clear message."""

import faulthandler
import functools
import json
import os
import re
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest
from astropy.io import fits
from astropy.nddata import CCDData, StdDevUncertainty
from astropy.utils.exceptions import AstropyUserWarning
from astropy.wcs import WCS, FITSFixedWarning

from ezbkg_ccd import (
    BackgroundFile,
    BackgroundGenerator,
    ScienceImage,
    available_estimators,
    estimate_background,
    process_files,
    read_background,
    read_with_background,
    registry,
    subtract_background,
    write_with_background,
)
from ezbkg_ccd._fits import _HOST, atomic_save, remove_stale_temporaries
from ezbkg_ccd._reader import read_ccddata
from ezbkg_ccd.cli import main

from .conftest import DATA, install_plugin
from .test_cli import run_cli

#: Pixels at which WCSs are compared: corners and centre of a 100x100 frame.
PIXELS = [(0, 0), (99, 0), (0, 99), (99, 99), (50, 50)]

#: Prints the world coordinates of PIXELS in each file argv[1:], read
#: with CCDData.read, as one JSON line per file: run in a subprocess,
#: where a crash inside astropy.wcs shows as an exit code instead of
#: ending the tests.
READ_BACK = textwrap.dedent(f"""
    import json, sys, warnings
    from astropy.nddata import CCDData
    warnings.simplefilter('ignore')
    for path in sys.argv[1:]:
        ccd = CCDData.read(path, unit='adu')
        world = [[float(v) for v in ccd.wcs.pixel_to_world_values(x, y)]
                 for x, y in {PIXELS}]
        print(json.dumps({{'world': world, 'sip': ccd.wcs.sip is not None}}))
""")


def read_back(*paths):
    """World coordinates of PIXELS in each file, read in one subprocess."""
    process = subprocess.run([sys.executable, '-c', READ_BACK,
                              *map(str, paths)],
                             capture_output=True, text=True, timeout=120,
                             check=False)
    assert process.returncode == 0, (process.returncode, process.stderr)
    return [json.loads(line) for line in process.stdout.splitlines()]


@pytest.fixture
def ezbkg(capfd):
    """``ezbkg(*arguments, cwd=..., shown_warnings=False)``: the command
    line, in this process (`run_cli`)."""
    return functools.partial(run_cli, capfd)


def sky(seed=0, shape=(100, 100)):
    """A noisy flat sky at 100 (sigma 5), float32."""
    rng = np.random.default_rng(seed)
    return rng.normal(100.0, 5.0, shape).astype(np.float32)


@pytest.fixture
def dss_frame(tmp_path):
    """A 100x100 frame with a DSS plate-solution header, as the plate scan
    wrote it (non-standard SKEW card included)."""
    lines = (DATA / 'dss_plate.hdr').read_text().splitlines()
    header = fits.Header.fromstring(''.join(f'{line:<80}' for line in lines))
    for key in ('SIMPLE', 'BITPIX', 'NAXIS', 'NAXIS1', 'NAXIS2', 'EXTEND'):
        header.remove(key)
    path = tmp_path / 'dss.fits'
    fits.PrimaryHDU(sky(1), header=header).writeto(path, output_verify='ignore')
    return path


@pytest.fixture
def quiet_wcs():
    """astropy's notes on the DSS header's old-style cards are expected."""
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', FITSFixedWarning)
        warnings.filterwarnings('ignore', 'The following header keyword',
                                AstropyUserWarning)
        warnings.filterwarnings('ignore', 'the header of', AstropyUserWarning)
        warnings.filterwarnings('ignore', 'Card .* is not FITS standard')
        warnings.filterwarnings('ignore', 'Verification reported errors')
        warnings.filterwarnings('ignore', 'Note: astropy.io.fits uses')
        yield


@pytest.mark.usefixtures('quiet_wcs')
class TestReadableOutputs:
    """Outputs always read back, with the input's WCS."""

    def test_dss_plate_solution(self, dss_frame, tmp_path):
        """A DSS frame's output reads back (it aborted the reader) with
        the same world coordinates; no legacy plate cards are written."""
        assert main(['-q', 'subtract', str(dss_frame), '-o',
                     str(tmp_path / 'out'), '--box-size', '32']) == 0
        output = tmp_path / 'out' / 'dss_bkgsub.fits'
        header = fits.getheader(output)
        assert 'CQDIS1' in header and 'AMDX1' not in header
        assert header['PLATEID'].strip() == '0025'
        again, original = read_back(output, dss_frame)
        np.testing.assert_allclose(again['world'],
                                   original['world'], rtol=0, atol=1e-9)

    def test_dss_output_processed_again(self, dss_frame, tmp_path):
        """The output can be processed again (estimate mode)."""
        main(['-q', 'subtract', str(dss_frame), '-o', str(tmp_path)])
        assert main(['-q', 'estimate', str(tmp_path / 'dss_bkgsub.fits'),
                     '-o', str(tmp_path / 'again')]) == 0

    def test_old_crashing_output_reads(self, dss_frame, tmp_path):
        """A file with the distortion twice (TPD and the plate solution),
        as earlier versions wrote, is read with a warning, not a crash."""
        main(['-q', 'subtract', str(dss_frame), '-o', str(tmp_path)])
        bad = tmp_path / 'dss_bkgsub.fits'
        with fits.open(bad, mode='update', output_verify='ignore') as hdulist:
            for key in ('PLTRAH', 'PLTRAM', 'PLTRAS', 'AMDX1', 'AMDY1',
                        'CNPIX1', 'CNPIX2', 'PPO3', 'PPO6', 'XPIXELSZ'):
                hdulist[0].header[key] = fits.getval(dss_frame, key)
        script = textwrap.dedent(f"""
            import warnings
            warnings.simplefilter('ignore', category=Warning)
            from ezbkg_ccd import read_with_background
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter('always')
                ccd, bkg = read_with_background({str(bad)!r})
            print(any('describes its WCS distortion twice' in str(w.message)
                      for w in caught))
            print(ccd.wcs.pixel_to_world_values(0, 0))
        """)
        process = subprocess.run([sys.executable, '-c', script],
                                 capture_output=True, text=True, timeout=120,
                                 check=False)
        assert process.returncode == 0, process.stderr
        assert process.stdout.startswith('True')

    def test_sip_kept(self, tmp_path):
        """A SIP distortion survives the round trip."""
        wcs = WCS(naxis=2)
        wcs.wcs.ctype = ['RA---TAN-SIP', 'DEC--TAN-SIP']
        wcs.wcs.crval, wcs.wcs.crpix = [150.0, 2.0], [50.0, 50.0]
        wcs.wcs.cdelt = [-1e-4, 1e-4]
        header = wcs.to_header()
        header.update({'A_ORDER': 2, 'B_ORDER': 2, 'A_2_0': 1e-5,
                       'B_0_2': -2e-5})
        path = tmp_path / 'sip.fits'
        fits.PrimaryHDU(sky(), header=header).writeto(path)
        assert main(['-q', 'subtract', str(path), '-o', str(tmp_path)]) == 0
        again, original = read_back(tmp_path / 'sip_bkgsub.fits', path)
        assert again['sip']
        np.testing.assert_allclose(again['world'], original['world'],
                                   rtol=0, atol=1e-9)


@pytest.fixture
def crashing_plugin(tmp_path, monkeypatch):
    """An estimator plugin, installed in this process (whose worker
    processes inherit it), whose compiled code 'crashes' (aborts the
    process) on frames whose first pixel is 666; the paths of four
    frames, the second of which crashes it."""
    install_plugin(tmp_path, 'crashplugin', 'fragile = crashplugin:fragile',
                   textwrap.dedent("""
        import os
        import numpy as np
        from ezbkg_ccd import BackgroundEstimate

        def fragile(data, *, mask, box_size, filter_size, filter_threshold):
            if data[0, 0] == 666:
                os.abort()
            level = float(np.median(data[~mask]))
            return BackgroundEstimate(
                np.full(data.shape, level, data.dtype),
                np.ones(data.shape, data.dtype), level, 1.0, is_2d=False,
                samples_per_estimate=data.size)
    """))
    folder = tmp_path / 'frames'
    folder.mkdir()
    for index in range(4):
        data = sky(index, (64, 64))
        if index == 1:
            data[0, 0] = 666
        CCDData(data, unit='adu').write(folder / f'f{index}.fits')
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(registry, '_REGISTRY', dict(registry._REGISTRY))
    monkeypatch.setattr(registry, '_entry_points_loaded', False)
    return [str(path) for path in sorted(folder.glob('*.fits'))]


class TestCrashIsolation:
    """A file that crashes its worker fails alone."""

    @pytest.mark.usefixtures('no_crash_dump')
    @pytest.mark.parametrize('jobs', ['1', '2'])
    def test_crashing_file(self, ezbkg, crashing_plugin, tmp_path, jobs):
        """Exit 1, the crashing file named, every other file written."""
        process = ezbkg('subtract', *crashing_plugin, '-o', 'out', '--method',
                        'fragile', '-j', jobs, cwd=tmp_path)
        assert process.returncode == 1, process.stderr
        # a file whose result was lost with the crashed pool, though its
        # output was written, is found done (skipped) on its retry
        done, skipped = re.search(r'(\d) done, (\d) skipped, 1 failed',
                                  process.stdout).groups()
        assert int(done) + int(skipped) == 3
        failed = [line for line in process.stderr.splitlines()
                  if line.startswith('FAILED')]
        assert len(failed) == 1 and 'f1.fits' in failed[0]
        assert 'worker process died' in failed[0]
        assert sorted(path.name for path in (tmp_path / 'out').iterdir()) == [
            'f0_bkgsub.fits', 'f2_bkgsub.fits', 'f3_bkgsub.fits']

    @pytest.fixture
    def no_crash_dump(self):
        """The worker about to abort inherits no fault handler (pytest's
        would print the worker's traceback)."""
        enabled = faulthandler.is_enabled()
        faulthandler.disable()
        yield
        if enabled:
            faulthandler.enable(file=sys.__stderr__)

    @pytest.mark.usefixtures('no_crash_dump')
    def test_process_files_isolate(self, crashing_plugin, tmp_path):
        """process_files(isolate=True) reports the crash in its report."""
        reports = process_files(crashing_plugin, output_dir=tmp_path / 'out',
                                method='fragile', isolate=True)
        assert [r.status for r in reports] == ['done', 'failed', 'done',
                                               'done']
        assert 'worker process died' in reports[1].error


class TestHostileHeaders:
    """Header cards astropy reads but would not write."""

    @staticmethod
    def _with_bad_observer(path, byte):
        """A frame whose OBSERVER holds ``byte``."""
        header = fits.Header([('OBSERVER', 'Jose'), ('OBJECT', 'M51')])
        fits.PrimaryHDU(sky(), header=header).writeto(path)
        raw = bytearray(path.read_bytes())
        raw[raw.index(b"'Jose") + 4] = byte
        path.write_bytes(bytes(raw))

    @pytest.mark.parametrize('byte', [0x01, 0x7f, 0xe9])
    def test_batch_goes_on(self, ezbkg, tmp_path, byte):
        """The card is repaired with a warning; the batch goes on."""
        self._with_bad_observer(tmp_path / 'a.fits', byte)
        CCDData(sky(2), unit='adu').write(tmp_path / 'b.fits')
        process = ezbkg('subtract', 'a.fits', 'b.fits', '-o', 'out', '-j', '1',
                        cwd=tmp_path, shown_warnings=True)
        assert process.returncode == 0, process.stderr
        assert '2 done' in process.stdout
        header = fits.getheader(tmp_path / 'out' / 'a_bkgsub.fits')
        assert header['OBSERVER'] == 'Jos?' and header['OBJECT'] == 'M51'

    def test_reader_warns_with_the_keyword(self, tmp_path):
        """Reading names the repaired card."""
        self._with_bad_observer(tmp_path / 'a.fits', 0x01)
        with pytest.warns(AstropyUserWarning,
                          match='repaired the card.s. OBSERVER'):
            ccd = read_ccddata(tmp_path / 'a.fits')
        assert ccd.meta['OBSERVER'] == 'Jos?'

    def test_writer_repairs_a_users_header(self, tmp_path):
        """A CCDData read by astropy itself, with the bad card, writes."""
        self._with_bad_observer(tmp_path / 'a.fits', 0x01)
        with warnings.catch_warnings():
            warnings.simplefilter('ignore', AstropyUserWarning)
            ccd = CCDData.read(tmp_path / 'a.fits', unit='adu')
        bkg = estimate_background(ccd, box_size=32)
        with pytest.warns(AstropyUserWarning, match='OBSERVER'):
            write_with_background(subtract_background(ccd, bkg), bkg,
                                  tmp_path / 'out.fits')
        assert fits.getval(tmp_path / 'out.fits', 'OBSERVER') == 'Jos?'

    def test_outputs_record_their_input(self, ezbkg, tmp_path):
        """CLI outputs carry TGTPATH, the absolute input path."""
        CCDData(sky(), unit='adu').write(tmp_path / 'a.fits')
        for command, name in (('subtract', 'a_bkgsub.fits'),
                              ('estimate', 'a.bkg.fits')):
            process = ezbkg(command, 'a.fits', '-o', 'out', cwd=tmp_path)
            assert process.returncode == 0, process.stderr
            assert read_background(tmp_path / 'out' / name).header[
                'TGTPATH'] == str(tmp_path / 'a.fits')
        assert fits.getval(tmp_path / 'out' / 'a_bkgsub.fits',
                           'TGTPATH') == str(tmp_path / 'a.fits')


class TestReruns:
    """A rerun never damages or silently keeps a wrong output."""

    def test_twice_in_one_folder(self, ezbkg, tmp_path):
        """`ezbkg subtract *.fits` twice: the second run skips its own
        outputs (already subtracted) and leaves them untouched."""
        for index in range(2):
            CCDData(sky(index), unit='adu').write(tmp_path / f'f{index}.fits')
        first = ezbkg('subtract', 'f0.fits', 'f1.fits', cwd=tmp_path)
        assert first.returncode == 0, first.stderr
        before = {path.name: path.read_bytes()
                  for path in tmp_path.glob('*_bkgsub.fits')}
        names = sorted(path.name for path in tmp_path.glob('*.fits'))
        second = ezbkg('subtract', *names, cwd=tmp_path)
        assert second.returncode == 0, second.stderr
        assert '0 done, 4 skipped, 0 failed' in second.stdout
        assert second.stderr.count('already background-subtracted') == 2
        assert {path.name: path.read_bytes()
                for path in tmp_path.glob('*_bkgsub.fits')} == before
        assert not list(tmp_path.glob('*_bkgsub_bkgsub.fits'))

    def test_resubtract_flag(self, ezbkg, tmp_path):
        """--resubtract subtracts an output again, on purpose."""
        CCDData(sky(), unit='adu').write(tmp_path / 'f.fits')
        ezbkg('subtract', 'f.fits', cwd=tmp_path)
        process = ezbkg('subtract', 'f_bkgsub.fits', '--resubtract',
                        cwd=tmp_path)
        assert process.returncode == 0 and '1 done' in process.stdout
        assert abs(read_background(tmp_path / 'f_bkgsub_bkgsub.fits')
                   .global_back) < 1

    def test_estimate_outputs_skipped(self, ezbkg, tmp_path):
        """Background files (estimate outputs) are not frames."""
        CCDData(sky(), unit='adu').write(tmp_path / 'f.fits')
        ezbkg('estimate', 'f.fits', cwd=tmp_path)
        process = ezbkg('estimate', 'f.fits', 'f.bkg.fits', cwd=tmp_path)
        assert process.returncode == 0
        assert 'skipped f.bkg.fits: a background file' in process.stderr

    def test_output_of_another_input(self, ezbkg, tmp_path):
        """An output made from another file of the same name is a failure,
        never a silent skip; --overwrite replaces it."""
        for night, level in (('n1', 100.0), ('n2', 300.0)):
            (tmp_path / night).mkdir()
            CCDData(sky() + level, unit='adu').write(tmp_path / night / 'f.fits')
        ezbkg('subtract', 'n1/f.fits', '-o', 'out', cwd=tmp_path)
        process = ezbkg('subtract', 'n2/f.fits', '-o', 'out', cwd=tmp_path)
        assert process.returncode == 1
        assert 'was made from' in process.stderr and 'n1' in process.stderr
        assert read_background(tmp_path / 'out' / 'f_bkgsub.fits'
                               ).global_back == pytest.approx(200, abs=1)
        process = ezbkg('subtract', 'n2/f.fits', '-o', 'out', '--overwrite',
                        cwd=tmp_path)
        assert process.returncode == 0
        assert read_background(tmp_path / 'out' / 'f_bkgsub.fits'
                               ).global_back == pytest.approx(400, abs=1)

    def test_output_without_record(self, tmp_path):
        """An existing file that records no input is not taken as done."""
        CCDData(sky(), unit='adu').write(tmp_path / 'f.fits')
        (tmp_path / 'out').mkdir()
        CCDData(sky(), unit='adu').write(tmp_path / 'out' / 'f_bkgsub.fits')
        reports = process_files([tmp_path / 'f.fits'],
                                output_dir=tmp_path / 'out')
        assert reports[0].status == 'failed'
        assert 'records no input file' in reports[0].error

    def test_concurrent_run_wrote_it_first(self, tmp_path, monkeypatch):
        """When another run publishes the output while this one computes,
        this one skips (same input) and keeps that file."""
        from ezbkg_ccd import batch

        CCDData(sky(), unit='adu').write(tmp_path / 'f.fits')
        process_files([tmp_path / 'f.fits'], output_dir=tmp_path / 'other')
        theirs = (tmp_path / 'other' / 'f_bkgsub.fits').read_bytes()
        real = batch.write_with_background

        def racing(result, background, output, **options):
            (tmp_path / 'out').mkdir(exist_ok=True)
            (tmp_path / 'out' / 'f_bkgsub.fits').write_bytes(theirs)
            real(result, background, output, **options)

        monkeypatch.setattr(batch, 'write_with_background', racing)
        reports = process_files([tmp_path / 'f.fits'],
                                output_dir=tmp_path / 'out')
        assert reports[0].status == 'skipped'
        assert (tmp_path / 'out' / 'f_bkgsub.fits').read_bytes() == theirs


class TestMultiExtension:
    """Images, masks, uncertainties and backgrounds paired by EXTVER."""

    def test_pairs_by_extver(self, mosaic, tmp_path):
        """Extension 2's image comes with extension 2's background."""
        process_files([mosaic], output_dir=tmp_path, all_hdus=True,
                      box_size=32)
        output = tmp_path / 'mosaic_bkgsub.fits'
        ccd, bkg = read_with_background(output, hdu=('CCD2', 2))
        assert bkg.global_back == pytest.approx(80, abs=0.5)
        assert abs(np.median(ccd.data)) < 0.5
        ccd, bkg = read_with_background(output)
        assert bkg.global_back == pytest.approx(50, abs=0.5)

    def test_no_background_of_that_extver(self, tmp_path):
        """A background of EXTVER 1 is never handed out for EXTVER 2."""
        ccd = CCDData(sky(), unit='adu')
        bkg = estimate_background(ccd, box_size=32)
        write_with_background(subtract_background(ccd, bkg), bkg,
                              tmp_path / 'one.fits')
        with fits.open(tmp_path / 'one.fits', mode='append') as hdulist:
            hdulist.append(fits.ImageHDU(sky(5), name='SCI', ver=2))
        with pytest.raises(ValueError, match='no background of the image with '
                                             r'EXTVER 2, only of EXTVER \[1\]'):
            read_with_background(tmp_path / 'one.fits', hdu=('SCI', 2))

    def test_all_hdus_on_a_processed_file(self, mosaic, tmp_path):
        """A processed mosaic is skipped; with resubtract, its MASK, UNCERT,
        BKG and BKGRMS are not science images, no (EXTNAME, EXTVER) pair
        repeats, and every image keeps its uncertainty."""
        process_files([mosaic], output_dir=tmp_path, all_hdus=True,
                      box_size=32)
        once = tmp_path / 'mosaic_bkgsub.fits'
        skipped = process_files([once], output_dir=tmp_path / 'again',
                                all_hdus=True, box_size=32)
        assert skipped[0].status == 'skipped'
        assert 'already background-subtracted' in skipped[0].reason
        again = process_files([once], output_dir=tmp_path / 'again',
                              all_hdus=True, box_size=32, resubtract=True)
        assert again[0].status == 'done' and again[0].hdus == 2
        with fits.open(tmp_path / 'again' / 'mosaic_bkgsub_bkgsub.fits') as hdus:
            pairs = [(hdu.name, hdu.header.get('EXTVER', 1))
                     for hdu in hdus[1:]]
            assert len(pairs) == len(set(pairs)) == 10
            for version in (1, 2):
                assert hdus['UNCERT', version].data.shape == (96, 128)
        for version, name in ((1, 'CCD1'), (2, 'CCD2')):
            ccd = read_ccddata(tmp_path / 'again' / 'mosaic_bkgsub_bkgsub.fits',
                               hdu=(name, version))
            assert isinstance(ccd.uncertainty, StdDevUncertainty)

    def test_tile_compressed_input(self, tmp_path):
        """A .fits.fz (image in a CompImageHDU, extension 1) is processed
        like the plain file."""
        data = sky(3, (128, 128))
        CCDData(data, unit='adu').write(tmp_path / 'plain.fits')
        fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(
            data, compression_type='GZIP_2', quantize_level=0.0)]).writeto(
            tmp_path / 'packed.fits.fz')
        reports = process_files([tmp_path / 'plain.fits',
                                 tmp_path / 'packed.fits.fz'],
                                output_dir=tmp_path / 'out', box_size=32)
        assert [r.status for r in reports] == ['done', 'done']
        plain = read_background(tmp_path / 'out' / 'plain_bkgsub.fits')
        packed = read_background(tmp_path / 'out' / 'packed_bkgsub.fits')
        np.testing.assert_array_equal(packed.data, plain.data)

    def test_table_only_file(self, tmp_path):
        """A file without an image says so and lists its HDUs."""
        fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU.from_columns(
            [fits.Column('x', 'E', array=[1.0])], name='CAT')]).writeto(
            tmp_path / 'table.fits')
        with pytest.raises(ValueError, match="has no image HDU to read "
                                             r"\(0: PrimaryHDU 'PRIMARY', "
                                             "1: BinTableHDU 'CAT'\\)"):
            read_ccddata(tmp_path / 'table.fits')
        with pytest.raises(ValueError, match="HDU 'CAT' .* is a BinTableHDU"):
            read_ccddata(tmp_path / 'table.fits', hdu='CAT')


class TestReading:
    """Headers and HDUs as other software writes them."""

    @pytest.mark.parametrize(('bunit', 'unit'), [
        ('ELECTRONS', 'electron'), ('ELECTRONS/S', 'electron / s'),
        ('electrons', 'electron'), ('ADU', 'adu')])
    def test_hst_style_bunit(self, tmp_path, bunit, unit):
        """BUNIT spellings astropy maps (HST's ELECTRONS/S) are read."""
        fits.PrimaryHDU(sky(), header=fits.Header([('BUNIT', bunit)])
                        ).writeto(tmp_path / 'hst.fits')
        assert read_ccddata(tmp_path / 'hst.fits').unit == unit
        reports = process_files([tmp_path / 'hst.fits'],
                                output_dir=tmp_path / 'out')
        assert reports[0].status == 'done'

    def test_unparsable_bunit_and_unit_option(self, tmp_path):
        """An unknown BUNIT fails clearly; --unit reads it anyway."""
        fits.PrimaryHDU(sky(), header=fits.Header([('BUNIT', 'counts')])
                        ).writeto(tmp_path / 'c.fits')
        with pytest.raises(ValueError, match="the BUNIT 'counts' of .* is not "
                                             'a unit; give the unit another '
                                             'way: a CCDData with its unit, '
                                             'unit= of process_files, or the '
                                             '--unit option of ezbkg'):
            read_ccddata(tmp_path / 'c.fits')
        assert main(['-q', 'subtract', str(tmp_path / 'c.fits'), '-o',
                     str(tmp_path), '--unit', 'count']) == 0
        assert read_background(tmp_path / 'c_bkgsub.fits').unit == 'count'

    @pytest.mark.parametrize('hdu', ['MASK', 'BKG', 3, -1])
    def test_auxiliary_hdu_refused(self, tmp_path, hdu):
        """An HDU that belongs to an image is not an image to process."""
        ccd = CCDData(sky(), unit='adu', mask=np.zeros((100, 100), bool))
        bkg = estimate_background(ccd, box_size=32)
        write_with_background(subtract_background(ccd, bkg), bkg,
                              tmp_path / 'done.fits')
        with pytest.raises(ValueError, match=r'of an image, not an image to '
                                             r'process; the images are HDUs '
                                             r'\[0\]'):
            read_ccddata(tmp_path / 'done.fits', hdu=hdu)
        reports = process_files([tmp_path / 'done.fits'], hdu=hdu,
                                output_dir=tmp_path / 'out', mode='estimate')
        assert reports[0].status == 'failed'

    @pytest.mark.parametrize('shape', [(10, 10), None])
    def test_mask_of_another_shape(self, tmp_path, shape):
        """A MASK HDU that does not fit its image names file and HDU."""
        mask = None if shape is None else np.zeros(shape, np.uint8)
        fits.HDUList([fits.PrimaryHDU(sky()),
                      fits.ImageHDU(mask, name='MASK')]).writeto(
            tmp_path / 'odd.fits')
        with pytest.raises(ValueError, match=r"the MASK HDU \(EXTVER 1\) of "
                                             r"'.*odd.fits' has shape"):
            read_ccddata(tmp_path / 'odd.fits')

    def test_science_image_default_hdu(self, tmp_path):
        """ScienceImage reads the first image HDU (a .fits.fz) by default."""
        fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(
            sky(), compression_type='GZIP_2', quantize_level=0.0)]).writeto(
            tmp_path / 'packed.fits.fz')
        sci = ScienceImage(tmp_path / 'packed.fits.fz')
        assert sci.data.shape == (100, 100)
        assert sci.calculate_bkg(box_size=32).global_back == pytest.approx(
            100, abs=1)


class TestSecurity:
    """A header never steers a read or a delete outside the image folder."""

    @staticmethod
    def _image_with_bkgpath(folder, value):
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / 'science.fits'
        CCDData(sky(), unit='adu', meta={'BKGPATH': value}).write(path)
        return path

    @pytest.mark.parametrize('value', ['../victim.bkg.fits',
                                       'ABSOLUTE'])
    def test_bkgpath_outside_is_ignored(self, tmp_path, value):
        """BKGPATH leading out of the image folder is ignored (warning);
        the file it names is neither opened nor deleted."""
        victim = tmp_path / 'victim.bkg.fits'
        estimate_background(sky(), box_size=32).write(victim)
        if value == 'ABSOLUTE':
            value = str(victim)
        sci = ScienceImage(self._image_with_bkgpath(tmp_path / 'night', value))
        with pytest.warns(AstropyUserWarning, match='leads out of the image '
                                                    'folder'):
            assert sci.bkgmap is None
        assert victim.is_file()

    def test_relative_bkgpath_is_the_image_folder(self, tmp_path,
                                                  monkeypatch):
        """A relative BKGPATH is resolved against the image's folder, not
        the working directory; a background found through it can be read
        but not removed."""
        folder = tmp_path / 'night'
        path = self._image_with_bkgpath(folder, 'bkg/mine.bkg.fits')
        (folder / 'bkg').mkdir()
        estimate_background(sky(), box_size=32).write(
            folder / 'bkg' / 'mine.bkg.fits')
        elsewhere = tmp_path / 'elsewhere'
        (elsewhere / 'bkg').mkdir(parents=True)
        estimate_background(sky() + 50, box_size=32).write(
            elsewhere / 'bkg' / 'mine.bkg.fits')
        monkeypatch.chdir(elsewhere)
        bkg = ScienceImage(path).bkgmap
        assert bkg.global_back == pytest.approx(100, abs=1)
        with pytest.raises(PermissionError, match='never deletes a file a '
                                                  'header names'):
            bkg.remove()
        assert (folder / 'bkg' / 'mine.bkg.fits').is_file()

    def test_bkgpath_naming_a_non_background(self, tmp_path):
        """BKGPATH naming the science file itself is ignored (warning)."""
        path = self._image_with_bkgpath(tmp_path, 'science.fits')
        with pytest.warns(AstropyUserWarning, match='is no background of this '
                                                    'image'):
            assert ScienceImage(path).bkgmap is None

    def test_bkgpath_of_another_shape(self, tmp_path):
        """A background that does not fit the image is ignored (warning)."""
        folder = tmp_path / 'night'
        path = self._image_with_bkgpath(folder, 'small.bkg.fits')
        estimate_background(sky(0, (64, 64)), box_size=32).write(
            folder / 'small.bkg.fits')
        with pytest.warns(AstropyUserWarning, match=r'shape \(64, 64\), not '
                                                    r"the image's"):
            assert ScienceImage(path).bkgmap is None

    def test_relative_background_path_elsewhere(self, tmp_path, monkeypatch):
        """A background written by a relative path outside the image folder
        is recorded absolute, not as a name the image folder resolves."""
        (tmp_path / 'images').mkdir()
        (tmp_path / 'work').mkdir()
        CCDData(sky(), unit='adu').write(tmp_path / 'images' / 'x.fits')
        monkeypatch.chdir(tmp_path / 'work')
        sci = ScienceImage('../images/x.fits')
        bkg = BackgroundFile(estimate_background(sci.ccd, box_size=32))
        bkg.write('x_sky.fits')
        sci.link_background(bkg)
        assert sci.header['BKGPATH'] == str(tmp_path / 'work' / 'x_sky.fits')

    def test_symlinked_default_removes_the_link(self, tmp_path):
        """remove() through a default <stem>.bkg.fits that is a symbolic
        link deletes the link, never the file it points to."""
        outside = tmp_path / 'outside.bkg.fits'
        estimate_background(sky(), box_size=32).write(outside)
        folder = tmp_path / 'night'
        folder.mkdir()
        CCDData(sky(), unit='adu').write(folder / 'science.fits')
        (folder / 'science.bkg.fits').symlink_to(outside)
        ScienceImage(folder / 'science.fits').bkgmap.remove()
        assert outside.is_file()
        assert not (folder / 'science.bkg.fits').is_symlink()

    def test_linking_keeps_the_callers_header(self):
        """ScienceImage(ccd=...) records BKGPATH in its own copy."""
        ccd = CCDData(sky(), unit='adu', meta={'OBJECT': 'M 51'})
        sci = ScienceImage(None, ccd=ccd)
        BackgroundGenerator(output_root='/nowhere').estimate_constant(sci)
        assert 'BKGPATH' not in ccd.meta

    def test_sanitised_folder_collision(self, tmp_path):
        """'M 51' and 'M_51' share a save folder: the second frame's
        background never replaces the first's, even with overwrite."""
        generator = BackgroundGenerator(output_root=tmp_path / 'out',
                                        savedir_template='{OBJECT}')
        first, second = tmp_path / 'n1', tmp_path / 'n2'
        for folder, name, level in ((first, 'M 51', 100.0),
                                    (second, 'M_51', 300.0)):
            folder.mkdir()
            CCDData(sky() + level, unit='adu',
                    meta={'OBJECT': name}).write(folder / 'f.fits')
        bkg, _ = generator.estimate_with_sep(first / 'f.fits', box_size=32,
                                             save=True)
        with pytest.raises(FileExistsError, match='holds the product of '
                                                  'another image'):
            generator.estimate_with_sep(second / 'f.fits', box_size=32,
                                        save=True, overwrite=True)
        assert read_background(bkg.path).global_back == pytest.approx(
            200, abs=1)

    def test_broken_plugin_skipped(self, tmp_path, monkeypatch):
        """A plugin that fails to import is skipped with a warning naming
        it; the built-ins and other plugins stay."""
        install_plugin(tmp_path, 'brokenplugin',
                       'broken = no_such_module:estimator')
        monkeypatch.syspath_prepend(str(tmp_path))
        monkeypatch.setattr(registry, '_REGISTRY', dict(registry._REGISTRY))
        monkeypatch.setattr(registry, '_entry_points_loaded', False)
        with pytest.warns(AstropyUserWarning, match="skipped the estimator "
                                                    "plugin 'broken'"):
            names = available_estimators()
        assert {'sep', 'constant', 'photutils'} <= set(names)
        assert 'broken' not in names

    def test_unknown_method_is_a_usage_error(self, capsys):
        """A misspelt --method exits 2 and lists the known methods."""
        with pytest.raises(SystemExit, match='2'):
            main(['subtract', 'x.fits', '--method', 'spe'])
        assert "method 'spe' is not a known estimator; known: constant" in \
            capsys.readouterr().err

    @pytest.mark.parametrize(('option', 'message'), [
        (['-j', '0'], 'must be a positive integer, got 0'),
        (['--box-size', '0'], 'must be a positive integer, got 0'),
        (['--box-size', 'big'], 'must be a positive integer, got big'),
        (['--filter-size', '2'], 'must be an odd positive integer, got 2'),
        (['--unit', 'furlongs'], "'furlongs' is not a unit astropy knows")])
    def test_bad_numbers_are_usage_errors(self, capsys, option, message):
        """Options that would fail every file exit 2 at once."""
        with pytest.raises(SystemExit, match='2'):
            main(['subtract', 'x.fits', *option])
        assert message in capsys.readouterr().err


class TestMessages:
    """What the command line prints."""

    def test_each_warning_once_and_quiet(self, ezbkg, tmp_path):
        """A repaired card is reported once; -q silences it."""
        TestHostileHeaders._with_bad_observer(tmp_path / 'a.fits', 0x01)
        loud = ezbkg('estimate', 'a.fits', '-o', 'one', cwd=tmp_path,
                     shown_warnings=True)
        assert loud.returncode == 0
        assert loud.stderr.count('repaired the card(s) OBSERVER') == 1
        quiet = ezbkg('-q', 'estimate', 'a.fits', '-o', 'two', cwd=tmp_path,
                      shown_warnings=True)
        assert quiet.returncode == 0 and quiet.stderr == ''

    def test_quiet_after_the_command(self, ezbkg, tmp_path):
        """-q and -v are taken after the subcommand too."""
        CCDData(sky(), unit='adu').write(tmp_path / 'a.fits')
        process = ezbkg('subtract', 'a.fits', '-o', 'out', '-q', cwd=tmp_path)
        assert process.returncode == 0 and process.stdout == ''
        process = ezbkg('-q', 'subtract', 'a.fits', '-o', 'out', '--overwrite',
                        cwd=tmp_path)
        assert process.returncode == 0 and process.stdout == ''
        process = ezbkg('estimate', 'a.fits', '-o', 'out', '-v', cwd=tmp_path)
        assert 'INFO: done' in process.stderr

    def test_failure_printed_once(self, ezbkg, tmp_path):
        """A failed file is named once, in the summary."""
        (tmp_path / 'bad.fits').write_text('not FITS')
        process = ezbkg('subtract', 'bad.fits', cwd=tmp_path)
        assert process.returncode == 1
        assert [line for line in process.stderr.splitlines()
                if 'bad.fits' in line] == [process.stderr.strip()]
        assert process.stderr.startswith('FAILED bad.fits: cannot read')


class TestWrites:
    """Atomic writes: no global state changed, nothing clobbered."""

    def test_umask_untouched_and_honoured(self, tmp_path, monkeypatch):
        """No os.umask call (process-wide, unsafe under threads); the new
        file's mode follows the umask."""
        previous = os.umask(0o027)
        try:
            monkeypatch.setattr(os, 'umask', lambda *_: pytest.fail('umask'))
            atomic_save(tmp_path / 'a.fits',
                        lambda temporary: open(temporary, 'w').close())
        finally:
            monkeypatch.undo()
            os.umask(previous)
        assert (tmp_path / 'a.fits').stat().st_mode & 0o777 == 0o640

    def test_no_clobber(self, tmp_path):
        """A file that appears meanwhile is kept without overwrite and
        replaced with it; no temporary file is left."""
        target = tmp_path / 'a.fits'

        def racing(temporary):
            target.write_text('theirs')
            with open(temporary, 'w') as handle:
                handle.write('mine')

        with pytest.raises(FileExistsError, match='already exists'):
            atomic_save(target, racing)
        assert target.read_text() == 'theirs'
        atomic_save(target, racing, overwrite=True)
        assert target.read_text() == 'mine'
        assert [path.name for path in tmp_path.iterdir()] == ['a.fits']

    def test_stale_temporaries_removed(self, tmp_path):
        """Temporary files of dead writers on this machine are removed by
        the next batch; a live writer's and another machine's are kept."""
        finished = subprocess.run([sys.executable, '-c', 'import os; '
                                   'print(os.getpid())'], capture_output=True,
                                  text=True, check=True)
        dead = int(finished.stdout)
        names = {'stale': f'.f0_bkgsub.{_HOST}.{dead}.0123abcd.tmp.fits',
                 'live': f'.f1_bkgsub.{_HOST}.{os.getpid()}.0123abcd.tmp.fits',
                 'remote': f'.f2_bkgsub.otherhost.{dead}.0123abcd.tmp.fits',
                 'user': f'.notes.{_HOST}.{dead}.txt'}
        for name in names.values():
            (tmp_path / name).write_text('partial')
        CCDData(sky(), unit='adu').write(tmp_path / 'f.fits')
        process_files([tmp_path / 'f.fits'], output_dir=tmp_path)
        left = {path.name for path in tmp_path.iterdir()}
        assert names['stale'] not in left
        assert {names['live'], names['remote'], names['user']} <= left
        assert remove_stale_temporaries(tmp_path / 'missing') == []
