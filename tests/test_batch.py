# Licensed under a 3-clause BSD style license - see LICENSE
"""Tests of process_files and the ezbkg batch command line."""

import os
import shutil

import numpy as np
import pytest
from astropy.io import fits

from ezbkg_ccd import (
    FileReport,
    estimate_background,
    process_files,
    read_background,
    read_with_background,
)


class TestProcessFiles:
    """The Python entry point."""

    def test_batch_survives_a_bad_file(self, frames, tmp_path):
        """A truncated file fails alone; the others are written."""
        reports = process_files(sorted(frames.glob('*.fits')),
                                output_dir=tmp_path / 'out', box_size=32)
        status = {os.path.basename(r.input): r.status for r in reports}
        assert status == {'broken.fits': 'failed', 'f0.fits': 'done',
                          'f1.fits': 'done', 'f2.fits': 'done',
                          'raw.fits': 'done'}
        failed = [r for r in reports if r.status == 'failed'][0]
        assert 'truncated' in failed.error
        assert all(isinstance(r, FileReport) for r in reports)
        ccd, bkg = read_with_background(tmp_path / 'out' / 'f1_bkgsub.fits')
        assert bkg.global_back == pytest.approx(210.0, abs=0.5)
        assert abs(np.median(ccd.data)) < 0.5
        assert not (tmp_path / 'out' / 'broken_bkgsub.fits').exists()

    def test_resume_skips_done(self, frames, tmp_path):
        """A rerun skips outputs already there unless overwrite."""
        paths = [frames / 'f0.fits', frames / 'f1.fits']
        process_files(paths[:1], output_dir=tmp_path, box_size=32)
        before = (tmp_path / 'f0_bkgsub.fits').stat().st_mtime_ns
        reports = process_files(paths, output_dir=tmp_path, box_size=32)
        assert [r.status for r in reports] == ['skipped', 'done']
        assert (tmp_path / 'f0_bkgsub.fits').stat().st_mtime_ns == before
        again = process_files(paths, output_dir=tmp_path, box_size=32,
                              overwrite=True)
        assert [r.status for r in again] == ['done', 'done']

    def test_processes_match_serial(self, frames, tmp_path):
        """Two worker processes give the same files as one."""
        paths = sorted(frames.glob('f*.fits'))
        process_files(paths, output_dir=tmp_path / 'one', box_size=32)
        reports = process_files(paths, output_dir=tmp_path / 'two',
                                n_jobs=2, box_size=32)
        assert [r.status for r in reports] == ['done'] * 3
        for path in paths:
            name = path.name.replace('.fits', '_bkgsub.fits')
            one = read_background(tmp_path / 'one' / name)
            two = read_background(tmp_path / 'two' / name)
            np.testing.assert_array_equal(one.data, two.data)

    def test_dask_local_cluster_matches_serial(self, frames, tmp_path):
        """A Dask LocalCluster (2 worker processes) gives the serial result."""
        distributed = pytest.importorskip('distributed')
        paths = sorted(frames.glob('*.fits'))
        serial = process_files(paths, output_dir=tmp_path / 'serial',
                               box_size=32)
        with distributed.LocalCluster(n_workers=2, threads_per_worker=1,
                                      processes=True, dashboard_address=':0',
                                      silence_logs=50) as cluster, \
                distributed.Client(cluster) as client:
            parallel = process_files(paths, output_dir=tmp_path / 'dask',
                                     client=client, box_size=32)
        assert [r.status for r in parallel] == [r.status for r in serial]
        for report in serial:
            if report.status == 'done':
                twin = tmp_path / 'dask' / os.path.basename(report.output)
                ccd_a, bkg_a = read_with_background(report.output)
                ccd_b, bkg_b = read_with_background(twin)
                np.testing.assert_array_equal(ccd_a.data, ccd_b.data)
                np.testing.assert_array_equal(bkg_a.rms, bkg_b.rms)

    def test_image_file_collection(self, frames, tmp_path):
        """A filtered ImageFileCollection gives just its files."""
        from ccdproc import ImageFileCollection

        (frames / 'broken.fits').unlink()
        collection = ImageFileCollection(frames, glob_include='f*.fits')
        objects = collection.filter(imagetyp='object')
        reports = process_files(objects, output_dir=tmp_path, box_size=32)
        assert sorted(os.path.basename(r.input) for r in reports) == [
            'f1.fits', 'f2.fits']

    def test_all_hdus(self, mosaic, tmp_path):
        """Every image HDU of a mosaic is processed into one file."""
        reports = process_files([mosaic], output_dir=tmp_path, box_size=32,
                                all_hdus=True)
        assert reports[0].hdus == 2
        with fits.open(tmp_path / 'mosaic_bkgsub.fits') as hdulist:
            for version, level in ((1, 50.0), (2, 80.0)):
                assert hdulist['BKG', version].header['BKGVALU'] == \
                    pytest.approx(level, abs=0.2)
                assert abs(np.median(hdulist[f'CCD{version}'].data)) < 0.2

    def test_hdu_choice(self, mosaic, tmp_path):
        """hdu= selects one extension by name."""
        reports = process_files([mosaic], output_dir=tmp_path, box_size=32,
                                hdu='CCD2')
        assert reports[0].global_back == pytest.approx(80.0, abs=0.2)

    def test_estimate_mode(self, frames, tmp_path):
        """mode='estimate' writes background files only."""
        process_files([frames / 'f2.fits'], output_dir=tmp_path,
                      mode='estimate', box_size=32)
        bkg = read_background(tmp_path / 'f2.bkg.fits')
        assert bkg.global_back == pytest.approx(220.0, abs=0.5)

    def test_name_collision(self, frames, tmp_path):
        """Two inputs with one name do not overwrite each other."""
        other = tmp_path / 'other'
        other.mkdir()
        shutil.copy(frames / 'f0.fits', other / 'f0.fits')
        reports = process_files([frames / 'f0.fits', other / 'f0.fits'],
                                output_dir=tmp_path / 'out', box_size=32)
        assert [r.status for r in reports] == ['done', 'failed']
        assert 'collides' in reports[1].error

    @pytest.mark.parametrize('kwargs, match', [
        ({'mode': 'both'}, 'mode must be one of'),
        ({'n_jobs': 0}, 'n_jobs must be an int >= 1, got 0'),
    ])
    def test_bad_options(self, tmp_path, kwargs, match):
        """Bad batch options are refused."""
        with pytest.raises(ValueError, match=match):
            process_files([], output_dir=tmp_path, **kwargs)


def test_estimate_background_auto(flat_sky):
    """source_mask='auto' masks sources and says so."""
    data = flat_sky[0].copy()
    data[100:110, 100:110] += 1000.0
    bkg = estimate_background(data, source_mask='auto')
    assert bkg.header['BKGSRCM'] == 'auto'
    assert bkg.source_mask[100:110, 100:110].all()
    with pytest.raises(ValueError, match="source_mask must be a boolean array, 'auto'"):
        estimate_background(data, source_mask='yes')
