# Licensed under a 3-clause BSD style license - see LICENSE
"""
The values per mesh (background_mesh, background_rms_mesh, n_pixels_mesh,
plot_meshes) and the choice of statistic (bkg_estimator,
bkg_rms_estimator).
"""

import copy
import pickle
import tracemalloc

import numpy as np
import pytest
from astropy.io import fits
from astropy.stats import SigmaClip
from photutils.background import (
    Background2D,
    MADStdBackgroundRMS,
    MedianBackground,
    SExtractorBackground,
)

from ezbkg_ccd import (
    estimate_background,
    read_background,
    subtract_background,
    write_background,
)
from ezbkg_ccd.meshes import mesh_sizes

from .conftest import DATA


@pytest.fixture
def holed_sky():
    """A 300x130 sky (a partial last mesh row and column) with NaN
    blocks and a masked patch: the usable pixels of each mesh are known."""
    rng = np.random.default_rng(3)
    data = rng.normal(50.0, 2.0, (300, 130)).astype(np.float32)
    data[:40, :40] = np.nan
    data[290:, 125:] = np.nan
    mask = np.zeros(data.shape, bool)
    mask[100:150, 50:100] = True
    usable = np.isfinite(data) & ~mask
    counts = np.add.reduceat(np.add.reduceat(usable.astype(int),
                                             np.arange(0, 300, 32), axis=0),
                             np.arange(0, 130, 32), axis=1)
    return data, mask, counts


class TestSExtractorMeshes:
    """The mesh values are SExtractor's MINIBACKGROUND check-images."""

    @pytest.fixture
    def minimaps(self):
        return tuple(fits.getdata(DATA / f'sextractor_mini{name}.fits')
                     for name in ('back', 'rms'))

    @pytest.mark.parametrize('options', [{}, {'n_threads': 2},
                                         {'chunks': 64}])
    def test_equal_to_sextractor(self, sextractor_image, minimaps, options):
        """SEP's grids, in one call, in strips or in chunks on Dask, are
        SExtractor 2.25's MINIBACKGROUND and MINIBACK_RMS exactly."""
        bkg = estimate_background(sextractor_image, box_size=64,
                                  filter_size=3, **options)
        assert bkg.background_mesh.shape == (4, 4)
        assert np.array_equal(bkg.background_mesh, minimaps[0])
        assert np.array_equal(bkg.background_rms_mesh, minimaps[1])
        assert np.array_equal(bkg.n_pixels_mesh, np.full((4, 4), 64 * 64))

    def test_photutils_differs_but_is_its_own(self, sextractor_image):
        """method='photutils' gives photutils' own mesh values."""
        data = sextractor_image.data.astype(np.float32)
        bkg = estimate_background(data, box_size=64, filter_size=3,
                                  method='photutils')
        reference = Background2D(
            data, 64, filter_size=3,
            sigma_clip=SigmaClip(sigma=3.0, maxiters=10),
            bkg_estimator=SExtractorBackground(), exclude_percentile=50.0)
        assert np.array_equal(bkg.background_mesh, reference.background_mesh)
        assert np.array_equal(bkg.background_rms_mesh,
                              reference.background_rms_mesh)


class TestUsablePixels:
    """n_pixels_mesh counts the usable pixels of each mesh."""

    @pytest.mark.parametrize('options', [
        {}, {'n_threads': 2}, {'chunks': 64}, {'interpolation': 'smooth'},
        {'method': 'photutils'}])
    def test_counts(self, holed_sky, options):
        """NaN and masked pixels are left out, partial meshes counted as
        they are, for every mesh-based method."""
        data, mask, counts = holed_sky
        bkg = estimate_background(data, mask=mask, box_size=32, **options)
        assert np.array_equal(bkg.n_pixels_mesh, counts)
        assert bkg.npixels_mesh is bkg.n_pixels_mesh  # photutils' old name
        assert bkg.background_mesh.shape == counts.shape == (10, 5)
        # every mesh is filled: the bad ones from their neighbours
        assert np.all(np.abs(bkg.background_mesh - 50.0) < 1.5)

    def test_chunks_equal_memory(self, holed_sky):
        """Every value per mesh of a frame on Dask is the in-memory one."""
        data, mask, _ = holed_sky
        memory = estimate_background(data, mask=mask, box_size=32)
        lazy = estimate_background(data, mask=mask, box_size=32, chunks=32)
        for name in ('background_mesh', 'background_rms_mesh',
                     'n_pixels_mesh'):
            assert np.array_equal(getattr(lazy, name), getattr(memory, name))

    def test_source_mask_counted(self, holed_sky):
        """A source mask is left out of the counts too."""
        data, mask, counts = holed_sky
        sources = np.zeros(data.shape, bool)
        sources[192:224, 0:32] = True  # one whole mesh
        bkg = estimate_background(data, mask=mask, source_mask=sources,
                                  box_size=32)
        assert bkg.n_pixels_mesh[6, 0] == 0
        assert bkg.n_pixels_mesh[5, 0] == counts[5, 0]


class TestMeshValuesKept:
    """The values per mesh travel with the result, in data terms."""

    def test_rescaled_data(self):
        """float64 data far from zero, which is shifted before SEP sees
        it, gives mesh values in the data's terms."""
        rng = np.random.default_rng(5)
        data = 1e9 + rng.normal(0.0, 1.0, (128, 128))
        bkg = estimate_background(data, box_size=32)
        assert bkg.background_mesh.dtype == np.float64
        assert np.all(np.abs(bkg.background_mesh - 1e9) < 1.0)
        assert np.all(np.abs(bkg.background_rms_mesh - 1.0) < 0.2)

    def test_copies(self, holed_sky):
        """Pickle, deepcopy and subtract_background keep them."""
        data, mask, _ = holed_sky
        bkg = estimate_background(data, mask=mask, box_size=32)
        others = [pickle.loads(pickle.dumps(bkg)), copy.deepcopy(bkg),
                  subtract_background(data, mask=mask,
                                      box_size=32).background]
        for other in others:
            for name in ('background_mesh', 'background_rms_mesh',
                         'n_pixels_mesh'):
                assert np.array_equal(getattr(other, name),
                                      getattr(bkg, name))

    def test_coverage(self, holed_sky):
        """Pixels outside the coverage are not usable; the maps are
        filled there, the mesh values are those the maps were made of."""
        data, mask, counts = holed_sky
        coverage = np.zeros(data.shape, bool)
        coverage[:, -2:] = True  # the last mesh column, 2 pixels wide
        bkg = estimate_background(data, mask=mask, box_size=32,
                                  coverage_mask=coverage, fill_value=np.nan)
        assert np.array_equal(bkg.n_pixels_mesh[:, :-1], counts[:, :-1])
        assert not bkg.n_pixels_mesh[:, -1].any()
        assert np.isfinite(bkg.background_mesh).all()
        assert np.isnan(bkg.data[:, -2:]).all()

    def test_constant_has_none(self, holed_sky):
        """A constant level has no mesh grid: None, and plot_meshes says
        so."""
        data, mask, _ = holed_sky
        bkg = estimate_background(data, mask=mask, method='constant')
        assert bkg.background_mesh is None
        assert bkg.background_rms_mesh is None
        assert bkg.n_pixels_mesh is None
        with pytest.raises(ValueError, match=r"^this background \(method "
                           r"'constant'\) has no mesh values to plot: a "
                           'constant level, a background read from a file'):
            bkg.plot_meshes()

    def test_not_in_files(self, holed_sky, tmp_path):
        """Files hold the maps: a background read back has no mesh
        values, and its maps are unchanged."""
        data, mask, _ = holed_sky
        bkg = estimate_background(data, mask=mask, box_size=32)
        write_background(bkg, tmp_path / 'bkg.fits')
        again = read_background(tmp_path / 'bkg.fits')
        assert again.background_mesh is None
        assert np.array_equal(again.data, bkg.data)


class TestPlotMeshes:
    """plot_meshes marks the meshes, the filled ones apart."""

    @pytest.fixture(autouse=True)
    def _agg(self):
        matplotlib = pytest.importorskip('matplotlib')
        matplotlib.use('Agg')

    def test_markers_and_outlines(self, holed_sky, tmp_path):
        import matplotlib.pyplot as plt

        data, mask, counts = holed_sky
        bkg = estimate_background(data, mask=mask, box_size=32)
        bad = counts < 0.5 * mesh_sizes(data.shape, (32, 32))
        figure, ax = plt.subplots()
        ax.imshow(bkg.data, origin='lower')
        assert bkg.plot_meshes(ax=ax, outlines=True, linewidth=0.5) is ax
        good, filled = ax.collections
        assert len(good.get_offsets()) == np.count_nonzero(~bad)
        assert len(filled.get_offsets()) == np.count_nonzero(bad) > 0
        # centres of the cut-short last column: (128 + 129) / 2
        assert good.get_offsets()[:, 0].max() == 128.5
        assert len(ax.patches) == counts.size
        assert ax.patches[-1].get_width() == 2  # 130 = 4 * 32 + 2
        figure.savefig(tmp_path / 'meshes.png')
        plt.close(figure)
        assert (tmp_path / 'meshes.png').stat().st_size > 1000


class TestStatistics:
    """bkg_estimator and bkg_rms_estimator, by name or photutils object."""

    @pytest.fixture
    def skewed_sky(self):
        """Sky of 100 +- 5 where 15 % of the pixels hold faint sources
        (+3 to +15): the mean is biased most, the mode least."""
        rng = np.random.default_rng(8)
        data = rng.normal(100.0, 5.0, (256, 256))
        faint = rng.random(data.shape) < 0.15
        data[faint] += rng.uniform(3.0, 15.0, np.count_nonzero(faint))
        return data.astype(np.float32)

    def test_constant_levels(self, skewed_sky):
        """The named statistics order as sources bias them."""
        levels = {name: estimate_background(
            skewed_sky, method='constant', bkg_estimator=name).global_back
            for name in ('mode', 'median', 'mean', 'mmm', 'biweight')}
        assert levels['mean'] > levels['biweight'] > levels['median']
        assert levels['median'] > levels['mode']
        assert abs(levels['mode'] - 100.0) < 0.5
        assert abs(levels['mmm'] - 100.0) < 0.6
        assert levels['mean'] - 100.0 > 1.0

    def test_default_is_sextractor_mode(self, skewed_sky):
        """The default level and RMS are photutils' SExtractor estimator
        and the standard deviation of the clipped pixels."""
        bkg = estimate_background(skewed_sky, method='constant')
        clipped = SigmaClip(sigma=3.0, maxiters=10)(skewed_sky.ravel(),
                                                   masked=False)
        assert bkg.global_back == pytest.approx(
            float(SExtractorBackground(sigma_clip=None)(clipped)), rel=1e-12)
        assert bkg.global_rms == pytest.approx(float(np.std(clipped)),
                                               rel=1e-6)

    def test_names_and_objects_agree(self, skewed_sky):
        """A name is the photutils object without its own clipping."""
        for method in ('constant', 'photutils'):
            named = estimate_background(
                skewed_sky, method=method, box_size=64,
                bkg_estimator='median', bkg_rms_estimator='mad_std')
            given = estimate_background(
                skewed_sky, method=method, box_size=64,
                bkg_estimator=MedianBackground(sigma_clip=None),
                bkg_rms_estimator=MADStdBackgroundRMS(sigma_clip=None))
            assert np.array_equal(named.data, given.data)
            assert np.array_equal(named.rms, given.rms)
            assert named.header['BKGOPTS'] == (
                "{'bkg_estimator': 'median', 'bkg_rms_estimator': "
                "'mad_std'}")

    def test_rms_statistics(self):
        """On Gaussian noise every RMS statistic finds sigma."""
        data = np.random.default_rng(9).normal(0.0, 3.0, (200, 200))
        for name in ('std', 'mad_std', 'biweight'):
            bkg = estimate_background(data, method='constant',
                                      bkg_rms_estimator=name)
            assert bkg.global_rms == pytest.approx(3.0, rel=0.03)

    @pytest.mark.parametrize(('value', 'error', 'match'), [
        ('mode_', ValueError, r"^bkg_estimator must be one of mode, median, "
         r"mean, mmm, biweight or a photutils.background.BackgroundBase "
         r"object, got 'mode_'$"),
        (2.5, TypeError, r'^bkg_estimator is a statistic \(mode, median, '
         r'mean, mmm, biweight\), not a value: got 2.5$'),
        (np.median, TypeError, r'^bkg_estimator must be a name .* or a '
         r'photutils.background.BackgroundBase object, got \w+$'),
        (MADStdBackgroundRMS(), TypeError, 'got MADStdBackgroundRMS'),
    ])
    def test_bad_level(self, skewed_sky, value, error, match):
        for method in ('constant', 'photutils'):
            with pytest.raises(error, match=match):
                estimate_background(skewed_sky, method=method,
                                    bkg_estimator=value)

    def test_bad_rms(self, skewed_sky):
        with pytest.raises(ValueError, match=r'^bkg_rms_estimator must be '
                           r'one of std, mad_std, biweight or a '
                           r'photutils.background.BackgroundRMSBase object'):
            estimate_background(skewed_sky, method='constant',
                                bkg_rms_estimator='median')

    def test_sep_points_elsewhere(self, skewed_sky):
        """SEP computes SExtractor's mode only: the error names the
        methods that take a statistic."""
        with pytest.raises(TypeError, match=r"^unknown option "
                           r"'bkg_estimator' \(taken by method='constant' "
                           r"and method='photutils'\); estimate_background "
                           r"with method='sep' takes: "):
            estimate_background(skewed_sky, bkg_estimator='median')


def test_background_holds_no_pixels():
    """The lazily computed maps do not keep the float copy of integer
    data alive (only the grids and the invalid mask)."""
    data = np.random.default_rng(10).integers(900, 1100, (1024, 1024))
    data = data.astype('>i2')
    estimate_background(data, box_size=64)  # imports and caches first
    tracemalloc.start()
    try:
        bkg = estimate_background(data, box_size=64)
        held = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert not bkg.data_load
    assert held < 0.5 * data.size * np.dtype(np.float32).itemsize


class TestReviewed:
    """Breaks found in review, kept fixed."""

    def test_mesh_values_read_only(self, holed_sky):
        """Editing the mesh values cannot change the map lazily computed
        from the same grids."""
        data, mask, _ = holed_sky
        for options in ({}, {'chunks': 64}):
            bkg = estimate_background(data, mask=mask, box_size=32,
                                      **options)
            with pytest.raises(ValueError, match='read-only'):
                bkg.background_mesh[0, 0] = 0.0
            reference = estimate_background(data, mask=mask, box_size=32)
            assert np.array_equal(np.asarray(bkg.data), reference.data)

    def test_subtract_from_checks_shape(self, holed_sky):
        data, mask, _ = holed_sky
        bkg = estimate_background(data, mask=mask, box_size=32)
        with pytest.raises(ValueError, match=r'^array has shape \(97, 100\), '
                           r'but the background has shape \(300, 130\)$'):
            bkg.subtract_from(np.zeros((97, 100), np.float32))

    def test_photutils_filled_by_its_rule(self, holed_sky):
        """photutils leaves out meshes by its own rule (the partial last
        row and column too, at under half a full box): plot_meshes marks
        those."""
        import matplotlib

        matplotlib.use('Agg')
        import matplotlib.pyplot as plt

        data, mask, _ = holed_sky
        bkg = estimate_background(data, mask=mask, box_size=32,
                                  method='photutils')
        assert bkg.meshes.filled[-1].all() and bkg.meshes.filled[:, -1].all()
        figure, ax = plt.subplots()
        bkg.plot_meshes(ax=ax)
        assert len(ax.collections[1].get_offsets()) == np.count_nonzero(
            bkg.meshes.filled)
        plt.close(figure)

    def test_sep_estimator_takes_integers(self):
        """A direct call with integer data (the steps convert it first)."""
        from ezbkg_ccd.estimators import sep_estimator

        data = np.random.default_rng(4).integers(900, 1100, (128, 96))
        estimate = sep_estimator(data.astype('>i4'),
                                 mask=np.zeros(data.shape, bool),
                                 box_size=(32, 32), filter_size=(3, 3),
                                 filter_threshold=0.0)
        assert abs(estimate.global_back - 1000) < 10

    def test_estimator_object_does_not_clip_again(self):
        """An estimator object's own sigma_clip is not used after the
        method's clipping (as in Background2D), and the object is left
        as it was."""
        data = np.random.default_rng(6).normal(100.0, 5.0, (128, 128))
        data[:6] += 20.0  # within a 10-sigma clip, beyond a 3-sigma one
        given = MedianBackground()
        by_object = estimate_background(data, method='constant', sigma=10,
                                        bkg_estimator=given)
        by_name = estimate_background(data, method='constant', sigma=10,
                                      bkg_estimator='median')
        assert by_object.global_back == by_name.global_back
        assert given.sigma_clip is not None

    def test_rejected_and_single_pixel_meshes_filled(self):
        """Meshes the estimator was not given (rejected as skewed, SEP's
        one-pixel corner mesh) have no usable pixels and are marked as
        filled, in memory and in chunks alike."""
        rng = np.random.default_rng(12)
        data = rng.normal(100.0, 5.0, (129, 129)).astype(np.float32)
        y, x = np.indices(data.shape)
        data += 300.0 * np.exp(-np.hypot(y - 20, x - 20) / 8.0)  # wings
        skewed = estimate_background(data, box_size=32, reject_skewed=True)
        assert skewed.header['BKGNREJ'] > 0
        assert np.count_nonzero(skewed.n_pixels_mesh == 0) == (
            skewed.header['BKGNREJ'] + 1)  # and the corner mesh
        assert skewed.n_pixels_mesh[-1, -1] == 0
        lazy = estimate_background(data, box_size=32, chunks=64)
        memory = estimate_background(data, box_size=32)
        assert np.array_equal(lazy.n_pixels_mesh, memory.n_pixels_mesh)
        assert memory.n_pixels_mesh[-1, -1] == 0

    def test_counts_do_not_follow_the_callers_mask(self, holed_sky):
        data, mask, counts = holed_sky
        sources = np.zeros(data.shape, bool)
        sources[192:224, 0:32] = True
        bkg = estimate_background(data, mask=mask, source_mask=sources,
                                  box_size=32)
        sources[:] = False
        mask[:] = False
        assert bkg.n_pixels_mesh[6, 0] == 0
        assert np.array_equal(bkg.n_pixels_mesh[:6], counts[:6])

    def test_read_only_after_copies(self, holed_sky):
        data, mask, _ = holed_sky
        bkg = estimate_background(data, mask=mask, box_size=32)
        for other in (pickle.loads(pickle.dumps(bkg)), copy.deepcopy(bkg)):
            for name in ('background_mesh', 'background_rms_mesh',
                         'n_pixels_mesh'):
                assert not getattr(other, name).flags.writeable, name

    @pytest.mark.parametrize('interpolation', ['spline', 'smooth'])
    def test_direct_call_converts(self, interpolation):
        from ezbkg_ccd.estimators import sep_estimator

        data = np.random.default_rng(4).integers(900, 1100, (256, 256))
        estimate = sep_estimator(data.astype('>i2'),
                                 mask=np.zeros(data.shape, bool),
                                 box_size=(64, 64), filter_size=(3, 3),
                                 filter_threshold=0.0,
                                 interpolation=interpolation)
        assert abs(estimate.global_back - 1000) < 10

    def test_subtract_from_any_float_array(self, holed_sky):
        """Big-endian or strided floats, and a background on Dask, give
        what the computed map gives; integers are refused."""
        data, mask, _ = holed_sky
        data = np.nan_to_num(data, nan=50.0)
        bkg = estimate_background(data, box_size=32)
        expected = data - bkg.data
        for background in (estimate_background(data, box_size=32),
                           estimate_background(data, box_size=32,
                                               chunks=64)):
            for array in (data.astype('>f4'),
                          np.asfortranarray(data.astype(np.float32))):
                background.subtract_from(array)
                assert np.array_equal(array, expected)
        with pytest.raises(TypeError, match='^array must hold floats, got '
                           'dtype int32$'):
            bkg.subtract_from(np.zeros(data.shape, np.int32))
