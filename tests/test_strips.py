# Licensed under a 3-clause BSD style license - see LICENSE
"""Tests of the parallel strip mode for one large frame."""

import types

import numpy as np
import pytest
import sep
from astropy.nddata import CCDData
from astropy.utils.exceptions import AstropyDeprecationWarning, AstropyUserWarning

from ezbkg_ccd import (
    estimate_background,
    process_files,
    read_background,
    subtract_background,
)
from ezbkg_ccd._sep import binding as _sep_c
from ezbkg_ccd._sep import strips
from ezbkg_ccd._sep.binding import (
    filtered_meshes,
    interpolate_rows,
    spline_second_derivatives,
)


@pytest.fixture
def fresh_self_check():
    """The strips' self-check runs again in this test and after it."""
    strips.usable.cache_clear()
    yield
    strips.usable.cache_clear()


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


@pytest.mark.parametrize('n_threads', [2, 3, 5])
def test_stitched_map_equals_single_call(wavy_sky, n_threads):
    """Strips give the single-call maps and global values exactly."""
    data, mask = wavy_sky
    single = estimate_background(data, mask=mask, box_size=32)
    parallel = estimate_background(data, mask=mask, box_size=32,
                                   n_threads=n_threads)
    np.testing.assert_array_equal(parallel.data, single.data)
    np.testing.assert_array_equal(parallel.rms, single.rms)
    assert parallel.global_back == single.global_back
    assert parallel.global_rms == single.global_rms
    assert parallel.header['BKGOPTS'] == f"{{'n_threads': {n_threads}}}"


@pytest.mark.parametrize(('bw', 'bh', 'fw', 'fh', 'fthresh'), [
    (32, 32, 3, 3, 0.0), (30, 20, 3, 7, 2.0), (64, 48, 5, 5, 0.0),
    (32, 32, 1, 1, 0.0)])
@pytest.mark.parametrize('n_threads', [2, 4, 100])
@pytest.mark.parametrize('dtype', ['f4', 'f8'])
def test_bad_meshes_filled_across_strips(bw, bh, fw, fh, fthresh, n_threads,
                                         dtype):
    """
    Bad meshes whose nearest usable meshes lie in other strips are filled
    as in one call: full-width masked rows across strip edges, NaNs and
    SEP's other invalid value (<= -1e30).
    """
    rng = np.random.default_rng(5)
    data = rng.normal(100, 5, (1024, 1000)).astype(dtype)
    data += np.linspace(0, 50, 1024, dtype=dtype)[:, None]
    data[100:180, 300:800] = np.nan
    data[700:760, :500] = -1e31
    mask = np.zeros(data.shape, bool)
    mask[400:640] = True
    mask[:, 900:] = True
    single = sep.Background(data, mask=mask, bw=bw, bh=bh, fw=fw, fh=fh,
                            fthresh=fthresh)
    back, rms, global_back, global_rms = strips.sep_strips(
        data, mask, n_threads=n_threads, bw=bw, bh=bh, fw=fw, fh=fh,
        fthresh=fthresh)
    np.testing.assert_array_equal(back, single.back())
    np.testing.assert_array_equal(rms, single.rms())
    assert (global_back, global_rms) == (single.globalback, single.globalrms)


def test_rows_read_reach_nearest_usable_meshes():
    """A strip reads as far as the meshes its bad meshes are filled from."""
    bad = np.zeros((32, 8), bool)
    assert strips.rows_read(bad, (0, 16), 5) == (0, 18)
    bad[12:20] = True  # rows 12-15 are filled from row 11, 16-19 from 20
    assert strips.rows_read(bad, (0, 16), 5) == (0, 21)
    assert strips.rows_read(bad, (16, 32), 5) == (11, 32)
    bad[:, ::2] = False  # now a usable mesh beside every bad one
    assert strips.rows_read(bad, (0, 16), 5) == (0, 18)


def test_global_rms_fallback_as_sep():
    """With most meshes of zero sigma, SEP's fallback global RMS is kept."""
    data = np.full((512, 512), 7.0, dtype=np.float32)
    data[:128, :128] += np.random.default_rng(1).normal(0, 2, (128, 128))
    single = sep.Background(data, bw=32, bh=32)
    *_, global_back, global_rms = strips.sep_strips(
        data, None, n_threads=2, bw=32, bh=32, fw=3, fh=3, fthresh=0.0)
    assert single.globalrms > 0
    assert (global_back, global_rms) == (single.globalback, single.globalrms)


def test_more_jobs_than_meshes():
    """More jobs than mesh rows give one strip per mesh row."""
    data = np.random.default_rng(2).normal(10, 1, (96, 96)).astype('f4')
    single = estimate_background(data, box_size=32)
    parallel = estimate_background(data, box_size=32, n_threads=8)
    np.testing.assert_array_equal(parallel.data, single.data)
    assert strips.mesh_bands(3, 8) == [(0, 1), (1, 2), (2, 3)]


@pytest.mark.parametrize(('n_threads', 'error', 'message'), [
    (0, ValueError, 'n_threads must be an int >= 1, got 0'),
    (-1, ValueError, 'n_threads must be an int >= 1, got -1'),
    (1.5, TypeError, 'n_threads must be an int, got 1.5'),
    (True, TypeError, 'n_threads must be an int, got True')])
def test_bad_n_threads(flat_sky, n_threads, error, message):
    """n_threads must be a positive int."""
    with pytest.raises(error, match=message):
        estimate_background(flat_sky[0], n_threads=n_threads)


def test_n_jobs_is_the_deprecated_name_of_n_threads(wavy_sky):
    """An earlier release's n_jobs still gives threads, with a warning."""
    data, mask = wavy_sky
    with pytest.warns(AstropyDeprecationWarning,
                      match='n_jobs of the sep estimator is deprecated: use '
                      'n_threads'):
        old = estimate_background(data, mask=mask, box_size=32, n_jobs=2)
    new = estimate_background(data, mask=mask, box_size=32, n_threads=2)
    np.testing.assert_array_equal(old.data, new.data)


def test_bands_cover_every_mesh_row_once():
    """The strips' bands tile the mesh rows in near-equal parts."""
    bands = strips.mesh_bands(125, 4)
    assert [row for band in bands for row in range(*band)] == list(range(125))
    assert {stop - first for first, stop in bands} == {31, 32}


def test_float64_and_threads_match_single_call(wavy_sky):
    """float64 frames are computed in float64 and stitched as well."""
    data, mask = wavy_sky
    data = data.astype(np.float64)
    single = estimate_background(data, mask=mask, box_size=32)
    parallel = estimate_background(data, mask=mask, box_size=32, n_threads=2)
    assert parallel.data.dtype == np.float64
    np.testing.assert_array_equal(parallel.data, single.data)


def test_strip_failure_is_raised(wavy_sky, monkeypatch):
    """An exception in one strip's thread reaches the caller."""
    frame = wavy_sky[0]

    def fail_late_strips(data, mask, *, rows, **options):
        if not np.shares_memory(data[:1], frame[:1]):  # not the first strip
            raise RuntimeError('strip failed')
        return filtered_meshes(data, mask, rows=rows, **options)

    monkeypatch.setattr(strips, 'filtered_meshes', fail_late_strips)
    with pytest.raises(RuntimeError, match='strip failed'):
        estimate_background(wavy_sky[0], box_size=32, n_threads=2)


@pytest.mark.usefixtures('fresh_self_check')
@pytest.mark.usefixtures('fresh_self_check')
def test_unbound_sep_falls_back_to_one_call(wavy_sky, monkeypatch):
    """Without SEP's C library, n_threads warns and gives the single-call
    map (that of `sep.Background`, which the C library's equals)."""
    data, mask = wavy_sky
    single = estimate_background(data, mask=mask, box_size=32)
    monkeypatch.setattr(strips, 'AVAILABLE', False)
    strips.usable.cache_clear()
    with pytest.warns(AstropyUserWarning, match='n_threads=2: threaded strips '
                      'needs a SEP version tested'):
        fallback = estimate_background(data, mask=mask, box_size=32, n_threads=2)
    assert np.array_equal(fallback.data, single.data)
    assert fallback.global_back == single.global_back


class TestSepC:
    """The ctypes binding of SEP's C background functions."""

    def test_bound_for_installed_sep(self):
        """The installed SEP (pinned >= 1.4) is bound."""
        assert _sep_c.AVAILABLE

    @pytest.mark.parametrize('version', ['1.5.0', '1.4.2', '1.4.1.dev3',
                                         '1.3.0', '2.0.0'])
    def test_untested_version_not_bound(self, version):
        """Only the exact releases tested are bound, not a patch release."""
        module = types.SimpleNamespace(__version__=version, __file__=sep.__file__)
        assert _sep_c._bind(module) is None

    def test_grids_rebuild_sep_maps(self, wavy_sky):
        """SEP's grids, our spline coefficients and SEP's interpolation
        give SEP's maps bit for bit."""
        data, mask = wavy_sky
        options = {'bw': 32, 'bh': 32, 'fw': 3, 'fh': 3, 'fthresh': 0.0}
        back, sigma = filtered_meshes(data, mask, rows=slice(0, 1024),
                                      **options)
        grids = (back, spline_second_derivatives(back),
                 sigma, spline_second_derivatives(sigma))
        maps = np.zeros_like(data), np.zeros_like(data)
        interpolate_rows(grids, rows=slice(0, 1024), back=maps[0],
                         rms=maps[1], bw=32, bh=32)
        reference = sep.Background(data, mask=mask, **options)
        np.testing.assert_array_equal(maps[0], reference.back())
        np.testing.assert_array_equal(maps[1], reference.rms())

    @pytest.mark.parametrize('dtype', ['>f4', 'i4'])
    def test_rejects_other_dtypes(self, dtype):
        """Only native float32/float64 frames and maps."""
        data = np.ones((64, 64), dtype=dtype)
        with pytest.raises(TypeError, match='data must be native float32'):
            filtered_meshes(data, None, rows=slice(0, 64), bw=32, bh=32,
                            fw=3, fh=3, fthresh=0.0)
        grids = (np.ones((2, 2), 'f4'),) * 4
        with pytest.raises(TypeError, match='back and rms must share'):
            interpolate_rows(grids, rows=slice(0, 64), back=data, rms=data,
                             bw=32, bh=32)

    def test_rejects_non_contiguous(self):
        """Arrays must be C-contiguous: SEP reads them by address."""
        data = np.ones((64, 128), dtype='f4')[:, ::2]
        with pytest.raises(ValueError, match='must be C-contiguous'):
            filtered_meshes(data, None, rows=slice(0, 64), bw=32, bh=32,
                            fw=3, fh=3, fthresh=0.0)

    def test_rejects_grids_of_other_shape(self):
        """Grids must have one node per mesh of the maps."""
        grids = (np.ones((3, 2), 'f4'),) * 4
        maps = np.zeros((64, 64), 'f4')
        with pytest.raises(ValueError, match=r'grids of shape \(3, 2\) do not'):
            interpolate_rows(grids, rows=slice(0, 64), back=maps, rms=maps,
                             bw=32, bh=32)

    def test_sep_error_status(self):
        """A SEP error status becomes a RuntimeError with SEP's message."""
        with pytest.raises(RuntimeError, match='SEP failed to compute the '
                                               'background: memory'):
            _sep_c._check(1)


def test_subtract_background_in_strips(wavy_sky):
    """subtract_background passes n_threads on and subtracts the stitched map."""
    data, mask = wavy_sky
    single = subtract_background(CCDData(data, unit='adu', mask=mask),
                                 box_size=32)
    parallel = subtract_background(CCDData(data, unit='adu', mask=mask),
                                   box_size=32, n_threads=2)
    difference = np.abs(parallel.data - single.data)[~single.mask]
    assert difference.max() < 1e-4 * single.header['BKGSIG']
    assert np.array_equal(parallel.mask, single.mask)


@pytest.mark.usefixtures('fresh_self_check')
class TestSelfCheck:
    """The binding's checks catch a SEP whose C structures changed."""

    @staticmethod
    def _shifted_grid(monkeypatch):
        """SEP's sep_background, reporting one mesh column too many, as a
        changed struct layout would."""
        real = _sep_c._LIBRARY.sep_background

        def shifted(image, bw, bh, fw, fh, fthresh, background):
            status = real(image, bw, bh, fw, fh, fthresh, background)
            background._obj.contents.nx += 1
            return status

        monkeypatch.setattr(_sep_c._LIBRARY, 'sep_background', shifted)

    def test_layout_check(self, monkeypatch):
        """A grid whose size disagrees with the image is refused."""
        self._shifted_grid(monkeypatch)
        data = np.ones((96, 80), np.float32)
        with pytest.raises(RuntimeError, match='unexpected layout'):
            filtered_meshes(data, None, rows=slice(0, 96), bw=16, bh=16,
                            fw=3, fh=3, fthresh=0.0)

    def test_failed_self_check_falls_back(self, wavy_sky, monkeypatch):
        """With the check failing, strips are not used: a warning and the
        single call's maps."""
        data, mask = wavy_sky
        single = estimate_background(data, mask=mask, box_size=32)
        self._shifted_grid(monkeypatch)
        strips.usable.cache_clear()
        assert strips.AVAILABLE and not strips.usable()
        with pytest.warns(AstropyUserWarning,
                          match=f'sep {sep.__version__} failed its self-check'):
            fallback = estimate_background(data, mask=mask, box_size=32,
                                           n_threads=2)
        assert np.array_equal(fallback.data, single.data)

    def test_different_maps_fail(self, monkeypatch):
        """Maps that differ from sep.Background in one bit fail it."""
        real = strips.sep_strips

        def off_by_one_bit(*args, **kwargs):
            back, rms, global_back, global_rms = real(*args, **kwargs)
            back[0, 0] = np.nextafter(back[0, 0], np.float32(np.inf))
            return back, rms, global_back, global_rms

        monkeypatch.setattr(strips, 'sep_strips', off_by_one_bit)
        assert not strips.usable()

    def test_passes_with_installed_sep(self):
        """The installed SEP passes (it is one of the tested versions)."""
        assert sep.__version__ in _sep_c.TESTED_VERSIONS
        assert strips.usable()


def test_batch_passes_threads_through(wavy_sky, tmp_path):
    """process_files(n_threads=...) gives every frame strips: the same
    files as one call per frame."""
    data, _ = wavy_sky
    CCDData(data, unit='adu').write(tmp_path / 'frame.fits')
    outputs = {}
    for name, threads in (('one', {}), ('two', {'n_threads': 2})):
        [report] = process_files([tmp_path / 'frame.fits'],
                                 output_dir=tmp_path / name, box_size=32,
                                 **threads)
        assert report.status == 'done'
        outputs[name] = read_background(report.output)
    np.testing.assert_array_equal(outputs['two'].data, outputs['one'].data)
    assert outputs['two'].header['BKGOPTS'] == "{'n_threads': 2}"
