# Licensed under a 3-clause BSD style license - see LICENSE
"""Behaviour that no other test pinned down: uncertainties in another
unit, a worker that dies in a parallel batch, a workflow background read
back from disk, the checks of `Background`, the SEP binding's refusal of
a struct layout that is not SEP's, and what a batch's workers do (plots,
skips, errors, progress), seen in this process; unwritable header cards
and stale provenance in a dict ``meta``."""

import ctypes
import ctypes.util
import os
import re
import sys
import time
import types

import astropy.units as u
import numpy as np
import pytest
import sep
from astropy.io import fits
from astropy.nddata import (
    CCDData,
    InverseVariance,
    StdDevUncertainty,
    UnknownUncertainty,
    VarianceUncertainty,
)
from astropy.utils.exceptions import AstropyUserWarning

from ezbkg_ccd import (
    Background,
    BackgroundEstimate,
    BackgroundGenerator,
    ScienceImage,
    estimate_background,
    process_files,
    read_background,
    register_estimator,
    registry,
    subtract_background,
    write_with_background,
)
from ezbkg_ccd._sep import binding, strips  # private: the SEP binding

#: Variance of SExtractor's mode estimate of n Gaussian samples, in units
#: of sigma**2 / n (the `Background.error` docstring derives it).
MODE_VARIANCE = 6.25 * np.pi / 2 + 2.25 - 7.5

#: Seconds per minute: a sigma in e-/min is this many times its e-/s.
PER_MINUTE = 60.0


def flat_sky(seed, shape=(128, 128), level=100.0, sigma=5.0):
    """A seeded noisy flat sky, float32."""
    rng = np.random.default_rng(seed)
    return rng.normal(level, sigma, shape).astype(np.float32)


class TestUncertaintyInAnotherUnit:
    """An input uncertainty in a unit convertible to, but not, the data's
    (e-/min for data in e-/s) is converted before it is combined with the
    background model error, and comes back in the data's unit."""

    @pytest.fixture
    def frame(self):
        """Data in e-/s, a per-pixel sigma in e-/min (30 to 90, that is
        0.5 to 1.5 e-/s), and the frame's background."""
        data = flat_sky(3)
        sigma = np.random.default_rng(4).uniform(30.0, 90.0, data.shape)
        background = estimate_background(
            CCDData(data, unit=u.electron / u.s), box_size=32)
        return data, sigma, background

    @staticmethod
    def expected_variance(sigma_per_minute, background):
        """By hand: the input variance in (e-/s)**2 plus the model
        variance, ``MODE_VARIANCE / BKGNPIX * rms**2``."""
        model = (MODE_VARIANCE / background.header['BKGNPIX']
                 * background.rms.astype(np.float64) ** 2)
        return (sigma_per_minute / PER_MINUTE) ** 2 + model

    @pytest.mark.parametrize(('kind', 'as_kind', 'power'), [
        (StdDevUncertainty, lambda sigma: sigma, 1),
        (VarianceUncertainty, np.square, 2),
        (InverseVariance, lambda sigma: 1 / sigma**2, -2)],
        ids=['std', 'variance', 'inverse-variance'])
    def test_converted_and_kept_in_kind(self, frame, kind, as_kind, power):
        """Every uncertainty type: the result is the input's type, in the
        data unit to its power, with the hand-computed values."""
        data, sigma, background = frame
        ccd = CCDData(data, unit=u.electron / u.s, uncertainty=kind(
            as_kind(sigma), unit=(u.electron / u.min) ** power))
        result = subtract_background(ccd, background)
        assert type(result.uncertainty) is kind
        assert result.uncertainty.unit == (u.electron / u.s) ** power
        variance = self.expected_variance(sigma, background)
        np.testing.assert_allclose(
            result.uncertainty.array, as_kind(np.sqrt(variance)), rtol=1e-6)
        # both terms count: the model's is a tenth of the input's
        ratio = np.median(variance / (sigma / PER_MINUTE) ** 2 - 1)
        assert 0.05 < ratio < 0.5

    def test_integer_variance(self, frame):
        """An integer variance array is converted as float, not in
        integer arithmetic."""
        data, sigma, background = frame
        counts = np.round(sigma**2).astype(np.int64)
        ccd = CCDData(data, unit=u.electron / u.s,
                      uncertainty=VarianceUncertainty(
                          counts, unit=(u.electron / u.min) ** 2))
        result = subtract_background(ccd, background)
        expected = self.expected_variance(np.sqrt(counts), background)
        assert result.uncertainty.array.dtype.kind == 'f'
        np.testing.assert_allclose(result.uncertainty.array, expected,
                                   rtol=1e-6)

    def test_same_unit_is_not_scaled(self, frame):
        """The same sigma in the data's own unit gives the values of the
        converted one (e-/min / 60 = e-/s)."""
        data, sigma, background = frame
        converted = subtract_background(CCDData(
            data, unit=u.electron / u.s, uncertainty=StdDevUncertainty(
                sigma, unit=u.electron / u.min)), background)
        native = subtract_background(CCDData(
            data, unit=u.electron / u.s, uncertainty=StdDevUncertainty(
                sigma / PER_MINUTE)), background)
        np.testing.assert_allclose(converted.uncertainty.array,
                                   native.uncertainty.array, rtol=1e-6)
        assert native.uncertainty.unit == u.electron / u.s


    def test_unconvertible_type(self, frame):
        """An uncertainty that is no variance, standard deviation or
        inverse variance is refused, naming its type."""
        data, _, background = frame
        ccd = CCDData(data, unit=u.electron / u.s,
                      uncertainty=UnknownUncertainty(np.ones(data.shape)))
        with pytest.raises(TypeError, match='ccd.uncertainty of type '
                                            'UnknownUncertainty cannot be '
                                            'converted to a variance'):
            subtract_background(ccd, background)

    def test_subclass_converted_and_kept(self, frame):
        """A subclass of StdDevUncertainty (not one of the three types
        handled directly) is converted too, and kept."""

        class Sigma(StdDevUncertainty):
            """A user's own standard deviation."""

        data, sigma, background = frame
        ccd = CCDData(data, unit=u.electron / u.s, uncertainty=Sigma(
            sigma, unit=u.electron / u.min))
        result = subtract_background(ccd, background)
        assert type(result.uncertainty) is Sigma
        assert result.uncertainty.unit == u.electron / u.s
        np.testing.assert_allclose(
            result.uncertainty.array,
            np.sqrt(self.expected_variance(sigma, background)), rtol=1e-6)


#: The frame levels of the crash test, by first pixel: a plugin crashes
#: its worker (os._exit) on 666 after a moment, and takes long on 555, so
#: that the crash breaks the pool while that frame runs beside it.
CRASH, SLOW = 666, 555


def constant_level(data, mask):
    """The estimate of a plugin: the median everywhere."""
    level = float(np.median(data[~mask]))
    return BackgroundEstimate(
        np.full(data.shape, level, data.dtype), np.ones(data.shape, data.dtype),
        level, 1.0, is_2d=False, samples_per_estimate=data.size)


def crashing_estimator(data, *, mask, box_size, filter_size,
                       filter_threshold):
    """A constant level, except that it kills its process on CRASH."""
    if data[0, 0] == CRASH:
        time.sleep(0.1)
        os._exit(1)
    if data[0, 0] == SLOW:
        time.sleep(0.5)
    return constant_level(data, mask)


@pytest.mark.skipif(not sys.platform.startswith('linux'),
                    reason='the workers inherit the plugin by fork (Linux)')
def test_crashed_worker_in_a_parallel_batch(tmp_path, monkeypatch):
    """With two workers, a frame that kills its worker fails alone: the
    frame beside it in the broken pool is run again and written, the
    rest go on in a fresh pool, and every output holds its frame's
    level."""
    monkeypatch.setattr(registry, '_REGISTRY', dict(registry._REGISTRY))
    register_estimator('crashing', crashing_estimator)
    levels = [100.0, 200.0, 300.0, 400.0, 500.0]
    paths = []
    for index, level in enumerate(levels):
        data = flat_sky(index, (64, 64), level=level, sigma=1.0)
        data[0, 0] = {0: CRASH, 1: SLOW}.get(index, data[0, 0])
        paths.append(tmp_path / f'f{index}.fits')
        CCDData(data, unit='adu').write(paths[-1])
    reports = process_files(paths, output_dir=tmp_path / 'out', n_jobs=2,
                            method='crashing', mode='estimate')
    assert reports[0].status == 'failed'
    assert reports[0].error.startswith('the worker process died while '
                                       'processing this file')
    assert not (tmp_path / 'out' / 'f0.bkg.fits').exists()
    for report, level in zip(reports[1:], levels[1:], strict=True):
        # a result lost with the broken pool is found written on retry
        assert (report.status, report.reason) in {('done', None),
                                                  ('skipped', 'output exists')}
        assert read_background(report.output).global_back == pytest.approx(
            level, abs=0.1)
    assert sorted(path.name for path in (tmp_path / 'out').iterdir()) == [
        f'f{index}.bkg.fits' for index in range(1, 5)]


class TestBkgmapFromDisk:
    """ScienceImage.bkgmap of a fresh image finds the background the
    workflow saved beside it."""

    @pytest.fixture
    def saved(self, tmp_path):
        """A science file with a gradient sky and the background the
        workflow saved for it (``<stem>.bkg.fits`` beside it)."""
        folder = tmp_path / 'night'
        folder.mkdir()
        y, x = np.mgrid[:128, :160]
        data = flat_sky(5, (128, 160)) + (0.2 * x + 0.1 * y).astype(np.float32)
        path = folder / 'sci.fits'
        CCDData(data, unit='adu', meta={'OBJECT': 'M 51'}).write(path)
        written, _ = BackgroundGenerator().estimate_with_sep(
            path, box_size=32, save=True)
        return path, written

    def test_equal_to_the_written_one(self, saved):
        """Same maps, provenance and unit; a saved, removable file."""
        path, written = saved
        assert written.path == path.with_name('sci.bkg.fits')
        found = ScienceImage(path).bkgmap
        assert isinstance(found, Background)
        assert found is not written
        assert found.path == written.path
        assert found.is_saved and found.is_exists and found.removable
        np.testing.assert_array_equal(found.data, written.data)
        np.testing.assert_array_equal(found.rms, written.rms)
        assert found.shape == written.shape == (128, 160)
        assert (found.method, found.box_size, found.unit) == (
            'sep', (32, 32), u.adu)
        assert found.global_back == written.global_back
        assert found.global_rms == written.global_rms
        for key in written.header:
            assert found.header[key] == written.header[key], key
        assert found.header['TGTPATH'] == str(path)

    def test_found_once_then_removed(self, saved):
        """The background found is kept; removing it deletes the file,
        and a fresh image then has none."""
        path, written = saved
        image = ScienceImage(path)
        found = image.bkgmap
        assert image.bkgmap is found
        assert found.remove()
        assert not written.path.exists()
        assert ScienceImage(path).bkgmap is None


class TestBackgroundChecks:
    """Background() refuses maps and headers it could not describe."""

    @pytest.fixture
    def header(self):
        """A complete provenance header."""
        return estimate_background(flat_sky(6, (64, 64)),
                                   box_size=32).header.copy()

    @pytest.mark.parametrize(('data', 'rms', 'shapes'), [
        (np.zeros(64), np.zeros(64), r'\(64,\) and \(64,\)'),
        (np.zeros((2, 8, 8)), np.zeros((2, 8, 8)),
         r'\(2, 8, 8\) and \(2, 8, 8\)'),
        (np.zeros((8, 8)), np.zeros((8, 9)), r'\(8, 8\) and \(8, 9\)')])
    def test_maps_not_2d_of_one_shape(self, header, data, rms, shapes):
        with pytest.raises(ValueError, match='data and rms must be 2-D arrays '
                                             f'of one shape, got {shapes}'):
            Background(data, rms, header)

    def test_lazy_map_needs_a_shape(self, header):
        """A map computed on first access needs the shape up front; with
        it, the map is computed once, when first asked for."""
        calls = []

        def compute():
            calls.append(1)
            return np.full((8, 8), 3.0)

        with pytest.raises(ValueError, match='shape must be given when a map '
                                             'is computed lazily'):
            Background(compute, np.ones((8, 8)), header)
        lazy = Background(compute, np.ones((8, 8)), header, shape=(8, 8))
        assert lazy.shape == (8, 8) and not lazy.data_load and not calls
        assert float(lazy.data.mean()) == 3.0 and lazy.data_load
        lazy.load()
        assert calls == [1]

    @pytest.mark.parametrize('missing', [['BKGTYPE'], ['BKGVALU', 'BKGSIG'],
                                         ['BKGNPIX']])
    def test_missing_provenance(self, header, missing):
        for key in missing:
            del header[key]
        with pytest.raises(ValueError, match=re.escape(
                f'header lacks the provenance keywords {missing}')):
            Background(np.zeros((8, 8)), np.zeros((8, 8)), header)

    def test_complete_header_accepted(self, header):
        """The same header, complete, makes a Background."""
        background = Background(np.zeros((8, 8)), np.ones((8, 8)), header)
        assert background.shape == (8, 8)
        assert background.method == 'sep'


class _NarrowBackground(ctypes.Structure):
    """``sep_bkg`` as a SEP whose sizes were ``int`` would lay it out: the
    layout the binding must refuse (it is smaller than SEP's, so reading
    it stays within SEP's struct)."""

    _fields_ = [('w', ctypes.c_int32), ('h', ctypes.c_int32),
                ('bw', ctypes.c_int32), ('bh', ctypes.c_int32),
                ('nx', ctypes.c_int32), ('ny', ctypes.c_int32),
                ('n', ctypes.c_int32), ('global_back', ctypes.c_float),
                ('global_rms', ctypes.c_float),
                ('back', ctypes.POINTER(ctypes.c_float)),
                ('dback', ctypes.POINTER(ctypes.c_float)),
                ('sigma', ctypes.POINTER(ctypes.c_float)),
                ('dsigma', ctypes.POINTER(ctypes.c_float))]


@pytest.mark.skipif(not binding.AVAILABLE,
                    reason='the installed SEP is not one the binding knows')
class TestSepLayoutSelfCheck:
    """The strips' self-check passes with the installed SEP, and fails
    cleanly (no crash, a warning, SEP's own maps) when the binding's view
    of ``sep_bkg`` is not SEP's."""

    @pytest.fixture(autouse=True)
    def fresh_self_check(self):
        """The self-check runs again in the test, and after it."""
        strips.usable.cache_clear()
        yield
        strips.usable.cache_clear()

    @pytest.fixture
    def wrong_layout(self, monkeypatch):
        """The SEP library bound with `_NarrowBackground` for ``sep_bkg``."""
        monkeypatch.setattr(binding, '_Background', _NarrowBackground)
        library = binding._bind(sep)
        assert library is not None
        monkeypatch.setattr(binding, '_LIBRARY', library)

    def test_passes_with_the_installed_sep(self):
        assert sep.__version__ in binding.TESTED_VERSIONS
        assert strips.usable()

    @pytest.mark.usefixtures('wrong_layout')
    def test_wrong_layout_is_refused(self):
        """The grid SEP returns is read as not fitting the image."""
        data = flat_sky(7, (96, 80))
        with pytest.raises(RuntimeError, match=f'sep {sep.__version__} '
                                               'returned a background of an '
                                               'unexpected layout'):
            binding.filtered_meshes(data, None, rows=slice(0, 96), bw=16,
                                    bh=16, fw=3, fh=3, fthresh=0.0)
        assert not strips.usable()

    @pytest.mark.usefixtures('wrong_layout')
    def test_wrong_layout_falls_back_to_sep(self):
        """n_threads warns and gives `sep.Background`'s maps."""
        data = flat_sky(8, (256, 192))
        with pytest.warns(AstropyUserWarning, match=f'n_threads=2: threaded '
                                                    f'strips sep '
                                                    f'{sep.__version__} failed '
                                                    'its self-check'):
            background = estimate_background(data, box_size=32, n_threads=2)
        reference = sep.Background(data, bw=32, bh=32, fw=3, fh=3)
        np.testing.assert_array_equal(background.data, reference.back())
        np.testing.assert_array_equal(background.rms, reference.rms())

    def test_not_bound_without_the_functions(self, tmp_path):
        """A tested version whose file is no shared library, or a library
        without SEP's functions, is not bound (strips are not used)."""
        text = tmp_path / 'sep.so'
        text.write_text('not a shared library')
        for path in (str(text), ctypes.util.find_library('m')):
            if path is None:  # no libm to be found on this system
                continue
            module = types.SimpleNamespace(__version__=sep.__version__,
                                           __file__=path)
            assert binding._bind(module) is None


def constant_sky(path, level, shape=(64, 64)):
    """Write a seeded flat sky at ``level`` (sigma 1) to ``path``."""
    CCDData(flat_sky(int(level), shape, level=level, sigma=1.0),
            unit='adu').write(path)
    return path


class TestBatchInThisProcess:
    """process_files with one job runs in this process (no worker): what
    the command line's workers do, seen here."""

    def test_plot_beside_each_output(self, tmp_path):
        """plot=True writes ``<output stem>.png`` beside each output."""
        path = constant_sky(tmp_path / 'a.fits', 100.0)
        [report] = process_files(str(path), output_dir=tmp_path / 'out',
                                 box_size=32, plot=True)
        assert report.status == 'done' and report.input == str(path)
        png = (tmp_path / 'out' / 'a_bkgsub.png').read_bytes()
        assert png.startswith(b'\x89PNG\r\n\x1a\n')

    def test_background_file_and_image_less_file(self, tmp_path):
        """A background file is skipped as such; a file without any image
        HDU fails (every HDU asked for), naming why."""
        path = constant_sky(tmp_path / 'a.fits', 100.0)
        [done] = process_files([path], output_dir=tmp_path, mode='estimate',
                               box_size=32)
        fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU.from_columns(
            [fits.Column('x', 'E', array=[1.0])], name='CAT')]).writeto(
            tmp_path / 'table.fits')
        reports = process_files([done.output, tmp_path / 'table.fits'],
                                output_dir=tmp_path / 'out', all_hdus=True)
        assert (reports[0].status, reports[0].reason) == (
            'skipped', 'a background file (BKG/BKGRMS, no image)')
        assert (reports[1].status, reports[1].error) == (
            'failed', 'no 2-D image HDU')
        assert not any((tmp_path / 'out').iterdir())

    def test_estimator_bug_named_with_its_type(self, tmp_path, monkeypatch):
        """An error that is not about the file (a plugin's RuntimeError)
        is reported with its type, on one line; the batch goes on."""

        def broken(data, *, mask, box_size, filter_size, filter_threshold):
            if data[0, 0] > 150:
                msg = 'internal\n   state lost'
                raise RuntimeError(msg)
            return constant_level(data, mask)

        monkeypatch.setattr(registry, '_REGISTRY', dict(registry._REGISTRY))
        register_estimator('broken', broken)
        paths = [constant_sky(tmp_path / f'f{index}.fits', level)
                 for index, level in enumerate((100.0, 200.0))]
        reports = process_files(paths, output_dir=tmp_path / 'out',
                                method='broken')
        assert [report.status for report in reports] == ['done', 'failed']
        assert reports[1].error == 'RuntimeError: internal state lost'

    def test_progress_bar(self, tmp_path, capsys):
        """progress=True draws a bar (tqdm) to stderr, to the last frame."""
        pytest.importorskip('tqdm')
        paths = [constant_sky(tmp_path / f'f{index}.fits', 100.0 + index)
                 for index in range(3)]
        reports = process_files(paths, output_dir=tmp_path / 'out',
                                box_size=32, progress=True)
        assert [report.status for report in reports] == ['done'] * 3
        assert '3/3' in capsys.readouterr().err

    def test_progress_shows_failures_and_time_left(self, tmp_path, capsys):
        """A failure is written above the bar as it happens; the bar
        shows the time left."""
        pytest.importorskip('tqdm')
        paths = [constant_sky(tmp_path / 'a.fits', 100.0),
                 tmp_path / 'bad.fits', constant_sky(tmp_path / 'c.fits', 9.0)]
        paths[1].write_text('not FITS')
        reports = process_files(paths, output_dir=tmp_path / 'out',
                                box_size=32, progress=True)
        assert [report.status for report in reports] == [
            'done', 'failed', 'done']
        shown = capsys.readouterr().err
        assert f'FAILED {paths[1]}: cannot read' in shown
        assert '<' in shown.split('FAILED')[-1]  # tqdm's elapsed<left

    def test_progress_without_tqdm(self, tmp_path, monkeypatch, caplog):
        """Without tqdm, progress=True logs how to get a bar and goes on."""
        monkeypatch.setitem(sys.modules, 'tqdm', None)  # import fails
        path = constant_sky(tmp_path / 'a.fits', 100.0)
        with caplog.at_level('INFO', logger='ezbkg_ccd'):
            [report] = process_files([path], output_dir=tmp_path / 'out',
                                     box_size=32, progress=True)
        assert report.status == 'done'
        assert 'install tqdm (the progress extra) for a progress bar' in (
            caplog.messages)


def test_unwritable_card_dropped(tmp_path):
    """A header card that cannot be written even repaired (a keyword with
    a space) is dropped with a warning naming it; the rest is written."""
    header = fits.Header([('OBJECT', 'M 51')])
    header.append(fits.Card.fromstring('BAD KEY = 1'.ljust(80)))
    ccd = CCDData(flat_sky(10, (64, 64)), unit='adu', meta=header)
    background = estimate_background(ccd, box_size=32)
    with pytest.warns(AstropyUserWarning, match=r'dropped the unwritable '
                                                r'card\(s\) BAD KEY'):
        write_with_background(subtract_background(ccd, background),
                              background, tmp_path / 'out.fits')
    written = fits.getheader(tmp_path / 'out.fits')
    assert written['OBJECT'] == 'M 51' and 'BAD KEY' not in written


def test_stale_provenance_in_a_dict_meta(tmp_path):
    """A provenance keyword of an earlier background that this one does
    not have is removed from a dict ``meta`` (which has no HISTORY) with a
    warning; the other keywords stay."""
    ccd = CCDData(flat_sky(11, (64, 64)), unit='adu',
                  meta={'TGTPATH': '/old/frame.fits', 'OBJECT': 'M 51'})
    with pytest.warns(AstropyUserWarning, match=r"ccd.meta\['TGTPATH'\] = "
                                                r"'/old/frame.fits' is "
                                                'removed'):
        result = subtract_background(ccd, box_size=32)
    assert 'TGTPATH' not in result.meta and result.meta['OBJECT'] == 'M 51'
    assert result.meta['BKGSUB'] is True
    assert ccd.meta['TGTPATH'] == '/old/frame.fits'  # the input's own
