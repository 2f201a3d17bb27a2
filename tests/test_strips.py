# Licensed under a 3-clause BSD style license - see LICENSE
"""Tests of the parallel strip mode for one large frame."""

import types

import numpy as np
import pytest
import sep
from astropy.nddata import CCDData
from astropy.utils.exceptions import AstropyUserWarning

from ezbkg_ccd import _sep_c, estimate_background, strips, subtract_background
from ezbkg_ccd._sep_c import background_rows
from ezbkg_ccd.strips import strip_rows


@pytest.fixture
def wavy_sky():
    """A 1024x1024 sky with large-scale structure, NaNs and a masked patch."""
    rng = np.random.default_rng(11)
    y, x = np.mgrid[:1024, :1024]
    data = 100 + 20 * np.sin(x / 150) * np.cos(y / 110)
    data = (data + rng.normal(0, 5, data.shape)).astype(np.float32)
    data[300:340, 500:700] = np.nan
    mask = np.zeros(data.shape, bool)
    mask[600:700, 100:200] = True
    return data, mask


@pytest.mark.parametrize('n_jobs', [2, 3, 5])
def test_stitched_map_equals_single_call(wavy_sky, n_jobs):
    """Strips reproduce the single-call maps within 1e-4 of the RMS."""
    data, mask = wavy_sky
    single = estimate_background(data, mask=mask, box_size=32)
    parallel = estimate_background(data, mask=mask, box_size=32,
                                   n_jobs=n_jobs)
    tolerance = 1e-4 * single.global_rms
    assert np.abs(parallel.data - single.data).max() < tolerance
    assert np.abs(parallel.rms - single.rms).max() < tolerance
    assert parallel.global_back == pytest.approx(single.global_back,
                                                 abs=0.01 * single.global_rms)
    assert parallel.global_rms == pytest.approx(single.global_rms, rel=0.01)
    assert parallel.header['BKGOPTS'] == f"{{'n_jobs': {n_jobs}}}"


def test_more_jobs_than_meshes():
    """More jobs than mesh rows still gives one strip per mesh row."""
    data = np.random.default_rng(2).normal(10, 1, (96, 96)).astype('f4')
    single = estimate_background(data, box_size=32)
    parallel = estimate_background(data, box_size=32, n_jobs=8)
    assert np.abs(parallel.data - single.data).max() < 1e-4
    assert len(strip_rows(96, 32, 8, 6)) == 3


@pytest.mark.parametrize('n_jobs', [0, -1, 1.5, True])
def test_bad_n_jobs(flat_sky, n_jobs):
    """n_jobs must be a positive int."""
    with pytest.raises(ValueError, match='n_jobs must be a positive int'):
        estimate_background(flat_sky[0], n_jobs=n_jobs)


def test_strips_cover_every_row_once():
    """Owned rows tile the image; strips start on mesh boundaries."""
    strips = strip_rows(1000, 64, 4, 6)
    owned = [row for _, _, start, stop in strips for row in range(start, stop)]
    assert owned == list(range(1000))
    assert all(start % 64 == 0 for start, _, _, _ in strips)


def test_float64_and_threads_match_single_call(wavy_sky):
    """float64 frames are computed in float64 and stitched as well."""
    data, mask = wavy_sky
    data = data.astype(np.float64)
    single = estimate_background(data, mask=mask, box_size=32)
    parallel = estimate_background(data, mask=mask, box_size=32, n_jobs=2)
    assert parallel.data.dtype == np.float64
    assert np.abs(parallel.data - single.data).max() < 1e-4 * single.global_rms


def test_strip_failure_is_raised(wavy_sky, monkeypatch):
    """An exception in one strip's thread reaches the caller."""
    def fail_late_strips(data, mask, *, rows, **options):
        if rows.start:
            raise RuntimeError('strip failed')
        background_rows(data, mask, rows=rows, **options)

    monkeypatch.setattr(strips, 'background_rows', fail_late_strips)
    with pytest.raises(RuntimeError, match='strip failed'):
        estimate_background(wavy_sky[0], box_size=32, n_jobs=2)


def test_unbound_sep_falls_back_to_one_call(wavy_sky, monkeypatch):
    """Without SEP's C library, n_jobs warns and gives the single-call map."""
    data, mask = wavy_sky
    single = estimate_background(data, mask=mask, box_size=32)
    monkeypatch.setattr(strips, 'AVAILABLE', False)
    with pytest.warns(AstropyUserWarning, match='n_jobs=2 needs SEP 1.3 or 1.4'):
        fallback = estimate_background(data, mask=mask, box_size=32, n_jobs=2)
    assert np.array_equal(fallback.data, single.data)
    assert fallback.global_back == single.global_back


class TestSepC:
    """The ctypes binding of SEP's C background functions."""

    def test_bound_for_installed_sep(self):
        """The installed SEP (pinned >= 1.4) is bound."""
        assert _sep_c.AVAILABLE

    @pytest.mark.parametrize(('version', 'expected'), [
        ('1.4.1', (1, 4)), ('1.4.2.dev0', (1, 4)), ('2', None), ('x.y', None)])
    def test_version(self, version, expected):
        """Versions parse to (major, minor) or None."""
        assert _sep_c._version(version) == expected

    def test_unknown_version_not_bound(self):
        """A SEP version with an unknown layout is not bound."""
        module = types.SimpleNamespace(__version__='1.5.0', __file__=sep.__file__)
        assert _sep_c._bind(module) is None

    def test_rows_equal_sep(self, wavy_sky):
        """A strip covering the frame gives SEP's maps bit for bit."""
        data, mask = wavy_sky
        back, rms = np.zeros_like(data), np.zeros_like(data)
        background_rows(data, mask, rows=slice(0, 1024), own=slice(0, 1024),
                        back=back, rms=rms, bw=32, bh=32, fw=3, fh=3,
                        fthresh=0.0)
        reference = sep.Background(data, mask=mask, bw=32, bh=32)
        assert np.array_equal(back, reference.back())
        assert np.array_equal(rms, reference.rms())

    @pytest.mark.parametrize('dtype', ['>f4', 'i4'])
    def test_rejects_other_dtypes(self, dtype):
        """Only native float32/float64 maps are written."""
        data = np.ones((64, 64), dtype=dtype)
        with pytest.raises(TypeError, match='must share a native float32'):
            background_rows(data, None, rows=slice(0, 64), own=slice(0, 64),
                            back=data, rms=data, bw=32, bh=32, fw=3, fh=3,
                            fthresh=0.0)

    def test_rejects_non_contiguous(self):
        """Arrays must be C-contiguous: SEP reads them by address."""
        data = np.ones((64, 128), dtype='f4')[:, ::2]
        back = np.zeros((64, 64), dtype='f4')
        with pytest.raises(ValueError, match='must be C-contiguous'):
            background_rows(data, None, rows=slice(0, 64), own=slice(0, 64),
                            back=back, rms=back, bw=32, bh=32, fw=3, fh=3,
                            fthresh=0.0)

    def test_sep_error_status(self):
        """A SEP error status becomes a RuntimeError with SEP's message."""
        with pytest.raises(RuntimeError, match='SEP failed to compute the '
                                               'background: memory'):
            _sep_c._check(1)


def test_subtract_background_in_strips(wavy_sky):
    """subtract_background passes n_jobs on and subtracts the stitched map."""
    data, mask = wavy_sky
    single = subtract_background(CCDData(data, unit='adu', mask=mask),
                                 box_size=32)
    parallel = subtract_background(CCDData(data, unit='adu', mask=mask),
                                   box_size=32, n_jobs=2)
    difference = np.abs(parallel.data - single.data)[~single.mask]
    assert difference.max() < 1e-4 * single.header['BKGSIG']
    assert np.array_equal(parallel.mask, single.mask)
