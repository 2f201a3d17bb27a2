# Licensed under a 3-clause BSD style license - see LICENSE
"""
The automatic sky: an automatic source mask that cannot run away, and the
noise-aware smooth fit of the mesh grid (``interpolation='smooth'``).
"""

import numpy as np
import pytest
import sep
from astropy.io import fits
from astropy.utils.exceptions import AstropyUserWarning

from ezbkg_ccd import (
    Background,
    estimate_background,
    make_source_mask,
    source_detection,
)
from ezbkg_ccd._sep import strips
from ezbkg_ccd.smoothing import smooth_grid
from ezbkg_ccd.source_detection import _Model, mistaken_fraction
from ezbkg_ccd.synthetic import gaussian_stars, make_scene

SIGMA = 10.0


def dome(size=1024, seed=1, stars=200, fwhm=5.0):
    """The vignetted field of the issue: sky 1000 falling as
    ``1 - 0.25 r**2`` (r in half frames), bright stars, noise 10."""
    rng = np.random.default_rng(seed)
    y, x = np.indices((size, size))
    truth = 1000.0 * (1 - 0.25 * (((y - size / 2) / (size / 2)) ** 2
                                  + ((x - size / 2) / (size / 2)) ** 2))
    light = gaussian_stars(truth.shape, rng, stars, (3e3, 3e6), fwhm)
    image = truth + light + rng.normal(0, SIGMA, truth.shape)
    return image.astype(np.float32), truth


def errors(background, truth):
    """RMS and worst error in units of the noise."""
    error = (np.asarray(background) - truth) / SIGMA
    return float(np.sqrt(np.mean(error**2))), float(np.abs(error).max())


@pytest.fixture(scope='module')
def field():
    """The vignetted field and its automatic background."""
    image, truth = dome()
    return image, truth, estimate_background(image, source_mask='auto')


class TestVignettedField:
    """The measured failure: on a vignetted field the automatic mask
    masked 37 % of the frame and was off by 1.9 sigma RMS (11 sigma at
    worst), 8x worse than the plain map."""

    def test_auto_beats_the_plain_map(self, field):
        image, truth, auto = field
        plain_rms, plain_worst = errors(estimate_background(image).data,
                                        truth)
        rms, worst = errors(auto.data, truth)
        assert rms < 0.1 < plain_rms
        assert worst < plain_worst
        assert auto.header['BKGAFRAC'] < 0.15

    def test_the_loop_did_not_run_away(self, field):
        _, _, auto = field
        assert auto.header['BKGASTOP'] in ('converged', 'max_iters')
        assert 1 <= auto.header['BKGAKEPT'] <= auto.header['BKGAITER'] <= 5

    @pytest.mark.parametrize('seed', [2, 4, 5])
    def test_broad_stars(self, seed):
        """Broader bright stars (FWHM 8) on the dome: their wings once
        grew into the misfit of the map at the frame's edges."""
        image, truth = dome(size=512, seed=seed, stars=50, fwhm=8.0)
        auto = estimate_background(image, source_mask='auto')
        plain = estimate_background(image)
        assert errors(auto.data, truth)[0] < errors(plain.data, truth)[0]


class TestProvenance:
    """What the automatic mask did is recorded, and read back."""

    def test_cards(self, tmp_path):
        image, _, _, _ = make_scene('disc', shape=(512, 512), sigma=SIGMA,
                                    seed=2, sky=1000.0)
        bkg = estimate_background(image, source_mask='auto')
        header = bkg.header
        assert header['BKGSRCM'] == 'auto'
        assert header['BKGASTOP'] in ('converged', 'max_iters', 'diverging')
        assert header['BKGAFRAC'] == pytest.approx(
            header['BKGNSRC'] / image.size, abs=1e-5)
        assert "'interpolation': 'smooth'" in header['BKGOPTS']
        bkg.write(tmp_path / 'auto.fits')
        again = Background.read(tmp_path / 'auto.fits')
        for key in ('BKGAITER', 'BKGAKEPT', 'BKGAFRAC', 'BKGASTOP'):
            assert again.header[key] == header[key]

    def test_absent_without_auto(self, flat_sky):
        header = estimate_background(flat_sky[0]).header
        assert not any(key in header for key in
                       ('BKGAITER', 'BKGAKEPT', 'BKGAFRAC', 'BKGASTOP'))

    def test_given_interpolation_is_kept(self, flat_sky):
        """An explicit interpolation (or edge) is not overridden."""
        bkg = estimate_background(flat_sky[0], source_mask='auto',
                                  interpolation='spline')
        assert "'interpolation': 'spline'" in bkg.header['BKGOPTS']
        bkg = estimate_background(flat_sky[0], source_mask='auto',
                                  edge='adaptive')
        assert 'smooth' not in bkg.header['BKGOPTS']


class TestGuards:
    """How the loop ends when rounds take sky for sources."""

    @pytest.fixture
    def image(self):
        return make_scene('gradient', shape=(256, 256), sigma=SIGMA,
                          seed=1, sky=1000.0)[0]

    def test_fallback(self, image, monkeypatch):
        """Every round took sky for sources: the mask is dropped with a
        warning, and the map is the plain one, bit for bit."""
        monkeypatch.setattr(source_detection, 'mistaken_fraction',
                            lambda *args: 1.0)
        with pytest.warns(AstropyUserWarning,
                          match='took sky for sources.*plain map used'):
            bkg = estimate_background(image, source_mask='auto')
        assert bkg.header['BKGASTOP'] == 'fallback'
        assert bkg.header['BKGNSRC'] == 0 and bkg.header['BKGAKEPT'] == 0
        assert bkg.header['BKGAITER'] == source_detection.RUNAWAY_ROUNDS
        np.testing.assert_array_equal(bkg.data,
                                      estimate_background(image).data)
        with pytest.warns(AstropyUserWarning, match='took sky for sources'):
            assert not make_source_mask(image).any()

    def test_diverging_keeps_the_best_round(self, image, monkeypatch):
        """A good round, then rounds that take sky for sources: the loop
        stops after two of them and keeps the good one."""
        fractions = iter([0.0, 0.5, 0.5, 0.5])
        monkeypatch.setattr(source_detection, 'mistaken_fraction',
                            lambda *args: next(fractions))
        bkg = estimate_background(image, source_mask='auto',
                                  source_mask_options={'tolerance': 1e-9})
        assert bkg.header['BKGASTOP'] == 'diverging'
        assert (bkg.header['BKGAKEPT'], bkg.header['BKGAITER']) == (1, 3)

    def test_one_bad_round_is_not_fatal(self, image, monkeypatch):
        """An extended source masked partly in one round is masked
        further in the next: one flagged round does not stop the loop."""
        fractions = iter([0.5, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0])
        monkeypatch.setattr(source_detection, 'mistaken_fraction',
                            lambda *args: next(fractions))
        bkg = estimate_background(image, source_mask='auto')
        assert bkg.header['BKGASTOP'] != 'diverging'
        assert bkg.header['BKGAKEPT'] >= 2


    def test_crowded_first_round(self, image, monkeypatch):
        """Footprints that leave no mesh with enough sky end the loop; in
        the first round, with the plain map and a warning that says so."""
        monkeypatch.setattr(source_detection, '_source_mask',
                            lambda data, *args, **kwargs:
                            np.ones(data.shape, bool))
        with pytest.warns(AstropyUserWarning, match='crowded field'):
            bkg = estimate_background(image, source_mask='auto')
        assert bkg.header['BKGASTOP'] == 'fallback'

    def test_crowded_later_round(self):
        """A threshold in the noise: the footprints grow past the meshes'
        needs in a later round, and the best round is kept, no error."""
        image = np.random.default_rng(3).normal(100, 5, (256, 256))
        bkg = estimate_background(image, box_size=32, source_mask='auto',
                                  source_mask_options={'threshold': 0.3})
        assert bkg.header['BKGASTOP'] == 'diverging'
        assert 0 < bkg.header['BKGAKEPT'] < bkg.header['BKGAITER']

    def test_small_grid_keeps_sextractor_map(self):
        """On a grid of few meshes the automatic mask maps the sky with
        SExtractor's filtered spline, which rejects a source covering a
        few meshes better than a fit that has too little to choose its
        smoothing from."""
        image, truth, _, _ = make_scene('cluster', shape=(256, 256),
                                        sigma=SIGMA, seed=4, sky=1000.0)
        auto = estimate_background(image, source_mask='auto')
        assert 'interpolation' not in auto.header.get('BKGOPTS', '')
        plain = estimate_background(image)
        assert errors(auto.data, truth)[0] < errors(plain.data, truth)[0]


class TestMistakenFraction:
    """The check that a mask took sky for sources."""

    @pytest.fixture
    def sky(self):
        image, truth = dome(size=512, seed=3, stars=0)
        return image, truth

    def test_runaway_mask_is_flagged(self, sky):
        """The old failure: the bright centre masked, the map filled
        from the lower outskirts; the few sky pixels left there agree
        with the unmasked map."""
        image, truth = sky
        y, x = np.indices(image.shape)
        centre = np.hypot(y - 256, x - 256) < 150
        mask = centre & (np.random.default_rng(0).random(image.shape) < 0.85)
        filled = np.where(centre, truth.min(), truth)
        fraction = mistaken_fraction(
            image, np.zeros(image.shape, bool), mask,
            truth, _Model(filled, None, SIGMA), (64, 64))
        assert fraction > 0.1

    def test_real_sources_are_not(self, sky):
        """A masked source lowers the map only where it was: the sky
        left unmasked agrees with the masked map."""
        image, truth = sky
        mask = np.zeros(image.shape, bool)
        mask[200:300, 200:300] = True
        plain = truth + 20.0 * mask  # the source lifted the plain map
        fraction = mistaken_fraction(
            image, np.zeros(image.shape, bool), mask,
            plain, _Model(truth, None, SIGMA), (64, 64))
        assert fraction == 0.0


class TestWings:
    """Footprints grow by their source's profile, wings where owned."""

    def test_hot_column_grown_across_only(self):
        rng = np.random.default_rng(0)
        image = rng.normal(1000.0, SIGMA, (256, 256)).astype(np.float32)
        image[:, 100] += 50 * SIGMA
        columns = np.flatnonzero(make_source_mask(image).any(axis=0))
        assert columns.min() >= 100 - 8 and columns.max() <= 100 + 8

    def test_galaxy_wings_masked(self):
        """An exponential disc (scale 40 px, peak 20 sigma) is masked
        out to where its light is a few hundredths of the noise."""
        image, truth, _, extra = make_scene('disc', shape=(1024, 1024),
                                            sigma=SIGMA, seed=3, sky=1000.0)
        source_mask = make_source_mask(image)
        y, x = np.indices(image.shape)
        radius = np.hypot(y - extra['centre'][0], x - extra['centre'][1])
        light = 20 * np.exp(-radius / extra['scale_length'])
        assert source_mask[light > 0.1].mean() > 0.95
        auto = estimate_background(image, source_mask='auto')
        assert errors(auto.data, truth)[0] < 0.01


class TestSmoothInterpolation:
    """``interpolation='smooth'`` of the sep estimator."""

    @pytest.mark.parametrize('name', ['flat', 'gradient'])
    def test_closer_than_spline(self, name):
        """Without sources, the fit does not carry the mesh noise."""
        image, truth, _, _ = make_scene(name, shape=(512, 512), sigma=SIGMA,
                                        seed=5, sources=False, sky=1000.0)
        spline = errors(estimate_background(image).data, truth)[0]
        smooth = errors(estimate_background(
            image, interpolation='smooth').data, truth)[0]
        assert smooth < 0.5 * spline

    def test_vignetting_unbiased(self):
        """The median filter biases a dome; the fit does not."""
        image, truth = dome(size=512, stars=0)
        spline = errors(estimate_background(image).data, truth)[0]
        smooth = errors(estimate_background(
            image, interpolation='smooth').data, truth)[0]
        assert smooth < 0.5 * spline

    def test_sharp_step_kept(self):
        """A real step of the sky (two amplifiers) is followed as well as
        SExtractor's map follows it."""
        rng = np.random.default_rng(2)
        truth = 1000.0 + 20.0 * (np.indices((512, 512))[1] >= 256)
        image = (truth + rng.normal(0, SIGMA, truth.shape)).astype('f4')
        spline = errors(estimate_background(image).data, truth)[0]
        smooth = errors(estimate_background(
            image, interpolation='smooth').data, truth)[0]
        assert smooth < 1.1 * spline

    def test_invalid_pixels_and_odd_shape(self):
        """NaN blocks, masks and a frame that is no multiple of the box:
        a finite map close to the truth everywhere."""
        image, truth, invalid, _ = make_scene('gaps', shape=(301, 263),
                                              sigma=SIGMA, seed=1,
                                              sources=False, sky=1000.0)
        mask = np.zeros(image.shape, bool)
        mask[100:180, 150:220] = True
        bkg = estimate_background(image, mask=mask, box_size=32,
                                  interpolation='smooth')
        assert np.isfinite(bkg.data).all() and np.isfinite(bkg.rms).all()
        assert errors(bkg.data[~invalid], truth[~invalid])[1] < 0.5
        assert bkg.rms.mean() == pytest.approx(SIGMA, rel=0.05)

    def test_quantized_low_noise(self):
        """Integer data whose noise is below one count: the clipped
        spread would keep only the pixels at the level; SEP's is used."""
        rng = np.random.default_rng(5)
        data = np.round(rng.normal(100, 0.3, (256, 256))).astype(np.int16)
        smooth = estimate_background(data, box_size=32,
                                     interpolation='smooth')
        plain = estimate_background(data, box_size=32)
        assert smooth.global_rms == pytest.approx(plain.global_rms, rel=0.1)
        auto = estimate_background(data, box_size=32, source_mask='auto')
        assert auto.header['BKGAFRAC'] < 0.05

    @pytest.mark.parametrize('level', [1e20, 1e-25])
    def test_extreme_float32_values(self, level):
        """Squares are summed in float64: no overflow, no underflow."""
        data = np.random.default_rng(1).normal(level, level / 10, (256, 256))
        data = data.astype(np.float32)
        smooth = estimate_background(data, box_size=32,
                                     interpolation='smooth')
        assert smooth.global_rms == pytest.approx(level / 10, rel=0.05)
        assert np.isfinite(smooth.data).all()

    def test_partial_last_meshes_weigh_less(self):
        """A frame one pixel larger than a multiple of the box: its last
        meshes, one pixel high or wide, barely count."""
        data = np.random.default_rng(0).normal(1000, SIGMA, (1025, 1025))
        data = data.astype(np.float32)
        smooth = estimate_background(data, interpolation='smooth')
        plain = estimate_background(data)
        assert errors(smooth.data, 1000)[0] < 0.5 * errors(plain.data, 1000)[0]

    def test_single_pixel_mesh_is_no_usable_mesh(self):
        """The only usable mesh is one pixel: a clear error, not a map of
        zeros (spline) or an internal one (smooth)."""
        data = np.full((4, 11), np.nan, np.float32)
        data[:, 10] = data[:, 0:2] = 100.0
        for options in ({}, {'interpolation': 'smooth'}):
            with pytest.raises(ValueError, match='too few valid pixels'):
                estimate_background(data, box_size=(1, 5), **options)

    def test_float64_kept(self):
        data = np.random.default_rng(0).normal(5.0, 1.0, (128, 128))
        bkg = estimate_background(data, box_size=32, interpolation='smooth')
        assert bkg.data.dtype == np.float64

    def test_default_is_sextractor(self, flat_sky):
        """The default map stays SEP's, bit for bit."""
        image = np.ascontiguousarray(flat_sky[0], dtype=np.float32)
        np.testing.assert_array_equal(estimate_background(image).data,
                                      sep.Background(image).back())

    @pytest.mark.parametrize('options, error, match', [
        ({'interpolation': 'cubic'}, ValueError, 'interpolation must be'),
        ({'interpolation': 'smooth', 'edge': 'adaptive'}, ValueError,
         "edge='adaptive' applies to interpolation='spline' only"),
    ])
    def test_bad_options(self, flat_sky, options, error, match):
        with pytest.raises(error, match=match):
            estimate_background(flat_sky[0], **options)

    def test_without_the_bound_library(self, flat_sky, monkeypatch):
        """With a SEP whose C library is not bound, 'smooth' says why,
        and the automatic mask uses SExtractor's map."""
        monkeypatch.setattr(strips, 'usable', lambda: False)
        with pytest.raises(ValueError, match="'smooth' needs a SEP version"):
            estimate_background(flat_sky[0], interpolation='smooth')
        bkg = estimate_background(flat_sky[0], source_mask='auto')
        assert 'interpolation' not in bkg.header.get('BKGOPTS', '')


class TestSmoothGrid:
    """`~ezbkg_ccd.smoothing.smooth_grid` on known grids."""

    @pytest.fixture
    def plane(self):
        y, x = np.indices((12, 15))
        return 50.0 + 0.3 * x - 0.7 * y

    def test_hole_in_a_plane_filled_exactly(self, plane):
        weights = np.ones(plane.shape)
        weights[4:8, 5:10] = 0
        holed = np.where(weights > 0, plane, -1e6)
        np.testing.assert_allclose(smooth_grid(holed, weights)[0], plane,
                                   atol=1e-6)

    def test_outlier_mesh_ignored(self, plane):
        noisy = plane + np.random.default_rng(1).normal(0, 0.05, plane.shape)
        noisy[6, 7] += 50.0  # a bright star's mesh
        fitted = smooth_grid(noisy)[0]
        assert np.abs(fitted - plane).max() < 0.2

    def test_small_grids(self):
        grid = np.array([[1.0, 2.0], [3.0, 5.0]])
        np.testing.assert_allclose(smooth_grid(grid)[0], grid)
        weights = np.zeros((5, 5))
        weights[2, 3] = 1
        fitted = smooth_grid(np.full((5, 5), 7.0), weights)[0]
        np.testing.assert_allclose(fitted, 7.0)

    def test_no_weight(self):
        with pytest.raises(ValueError, match='weights must have at least'):
            smooth_grid(np.zeros((4, 4)), np.zeros((4, 4)))


def test_interpolate_back_only(flat_sky):
    """SEP's interpolation of the background map alone (no RMS map)."""
    from ezbkg_ccd._sep.binding import (
        filtered_meshes,
        interpolate_rows,
        spline_second_derivatives,
    )

    image = np.ascontiguousarray(flat_sky[0], dtype=np.float32)
    back, sigma = filtered_meshes(image, None, rows=slice(0, image.shape[0]),
                                  bw=64, bh=64, fw=3, fh=3, fthresh=0.0)
    grids = (back, spline_second_derivatives(back), sigma,
             spline_second_derivatives(sigma))
    result = np.empty_like(image)
    interpolate_rows(grids, rows=slice(0, image.shape[0]), back=result,
                     rms=None, bw=64, bh=64)
    np.testing.assert_array_equal(result, sep.Background(image).back())


def test_fits_round_trip_of_a_smooth_map(tmp_path):
    """A smooth map is stored and read back losslessly."""
    image = make_scene('moonlight', shape=(256, 256), sigma=SIGMA,
                       seed=0, sky=1000.0)[0]
    bkg = estimate_background(image, source_mask='auto')
    bkg.write(tmp_path / 'smooth.fits')
    with fits.open(tmp_path / 'smooth.fits') as hdus:
        np.testing.assert_array_equal(hdus['BKG'].data, bkg.data)


def test_nearest_in_strips_is_exact_within_reach():
    """The strip-wise nearest footprint (bounded memory) equals the
    whole-frame one wherever it is within the reach."""
    from ezbkg_ccd.source_detection import _nearest

    rng = np.random.default_rng(0)
    segmentation = np.zeros((1500, 300), np.int32)
    for label in range(1, 200):
        y, x = rng.integers(0, 1490), rng.integers(0, 290)
        segmentation[y:y + rng.integers(1, 9), x:x + rng.integers(1, 9)] = label
    labels, distances = _nearest(segmentation)
    for reach in (2.5, 40.0):
        strip_labels, strip_distances = _nearest(segmentation, reach=reach)
        close = distances <= reach
        np.testing.assert_array_equal(strip_labels[close], labels[close])
        np.testing.assert_array_equal(strip_distances[close], distances[close])
        assert (strip_distances[~close] > reach).all()


def test_constant_method_on_a_small_frame():
    """``method='constant'`` takes no mesh: its automatic mask works on a
    frame smaller than the default box (it advised 'constant' before)."""
    data = np.random.default_rng(0).normal(100, 5, (40, 40))
    data[18:22, 18:22] += 300.0
    bkg = estimate_background(data, method='constant', source_mask='auto')
    assert bkg.source_mask[18:22, 18:22].all()
    assert bkg.global_back == pytest.approx(100, abs=0.5)


def test_sep_limits_restored():
    """SEP's global extraction limits are left as they were."""
    before = sep.get_extract_pixstack(), sep.get_sub_object_limit()
    estimate_background(make_scene('flat', shape=(256, 256), seed=2)[0],
                        box_size=32, source_mask='auto')
    assert (sep.get_extract_pixstack(), sep.get_sub_object_limit()) == before
