# Licensed under a 3-clause BSD style license - see LICENSE
"""The synthetic scenes against their known truth."""

import numpy as np
import pytest

from ezbkg_ccd.synthetic import (
    SATURATION,
    SCENES,
    elliptical_radius,
    exponential_disk,
    make_scene,
)

#: The scenes before the ``sky`` keyword; their default output is fixed.
FIRST_SCENES = ('flat', 'gradient', 'vignetting', 'crowded', 'galaxy',
                'bright_star', 'gaps')
NEW_SCENES = ('dome', 'moonlight', 'disc', 'big_galaxy', 'cluster',
              'saturated')
SHAPE = (256, 256)


@pytest.fixture
def sky_only():
    """Factory of ``(truth, invalid)`` of a scene without sources."""
    def make(name, shape=SHAPE, sky=1000.0):
        _, truth, invalid, _ = make_scene(name, shape=shape, sky=sky,
                                          sources=False)
        return truth.astype(float), invalid
    return make


@pytest.fixture
def saturated():
    """A 512x512 saturated scene (two saturated stars, one hot column)."""
    return make_scene('saturated', shape=(512, 512), sigma=10.0, sky=1000.0,
                      seed=2)


class TestSkyLevel:
    """The ``sky`` keyword and the scenes that existed before it."""

    @pytest.mark.parametrize('name', FIRST_SCENES)
    def test_default_is_sky_100(self, name):
        """Omitting ``sky`` is the same as ``sky=100``, bit for bit."""
        default = make_scene(name, shape=(128, 96), seed=4)
        explicit = make_scene(name, shape=(128, 96), seed=4, sky=100.0)
        for first, second in zip(default[:3], explicit[:3], strict=True):
            assert first.tobytes() == second.tobytes()

    def test_first_scenes_keep_their_levels(self, sky_only):
        """At the default sky the first scenes keep their definitions: flat
        at 100, a 20 + 12 gradient, vignetting peaking at 100."""
        flat = sky_only('flat', sky=100.0)[0]
        gradient = sky_only('gradient', sky=100.0)[0]
        vignetting = sky_only('vignetting', sky=100.0)[0]
        assert np.all(flat == 100.0)
        assert gradient[0, 0] == 100.0
        np.testing.assert_allclose(gradient[-1, -1], 132.0, atol=0.2)
        np.testing.assert_allclose(vignetting.max(), 100.0)
        assert vignetting.min() < 80.0

    @pytest.mark.parametrize('name', SCENES)
    def test_structure_scales_with_sky(self, sky_only, name):
        """Gradients and fall-offs scale with the sky level."""
        low = sky_only(name, sky=100.0)[0]
        high = sky_only(name, sky=1000.0)[0]
        np.testing.assert_allclose(high, 10 * low, rtol=1e-6)

    @pytest.mark.parametrize('sky, error', [
        ('bright', TypeError), (True, TypeError), (None, TypeError),
        (0.0, ValueError), (-5, ValueError), (np.nan, ValueError),
        (np.inf, ValueError)])
    def test_bad_sky(self, sky, error):
        """sky is a positive finite number."""
        with pytest.raises(error, match='sky must be a positive finite number'):
            make_scene('flat', shape=(16, 16), sky=sky)


@pytest.mark.parametrize('name', NEW_SCENES)
class TestNewScenes:
    """What every new scene shares."""

    def test_seeded(self, name):
        """The same seed gives the same scene, another seed another."""
        first = make_scene(name, shape=SHAPE, seed=7)
        second = make_scene(name, shape=SHAPE, seed=7)
        other = make_scene(name, shape=SHAPE, seed=8)
        for left, right in zip(first[:3], second[:3], strict=True):
            np.testing.assert_array_equal(left, right)
        assert first[3] == second[3]
        assert not np.array_equal(first[0], other[0])

    def test_types(self, name):
        """float32 images and truths, a bool invalid mask, all finite."""
        image, truth, invalid, extra = make_scene(name, shape=(64, 48))
        assert image.dtype == truth.dtype == np.float32
        assert invalid.dtype == bool and invalid.shape == (64, 48)
        assert np.isfinite(image).all() and isinstance(extra, dict)


class TestDome:
    """Strong vignetting: sky * (1 - 0.25 r**2)."""

    def test_levels(self, sky_only):
        """The sky at the centre, 0.75 of it at the edge midpoints and half
        of it in the corners."""
        truth = sky_only('dome', shape=(257, 257))[0]
        np.testing.assert_allclose(truth[128, 128], 1000.0)
        for y, x in [(0, 128), (256, 128), (128, 0), (128, 256)]:
            np.testing.assert_allclose(truth[y, x], 750.0, rtol=0.01)
        for y, x in [(0, 0), (0, 256), (256, 0), (256, 256)]:
            np.testing.assert_allclose(truth[y, x], 500.0, rtol=0.02)

    def test_no_invalid_pixels(self, sky_only):
        """Vignetting leaves every pixel holding sky."""
        assert not sky_only('dome')[1].any()


class TestMoonlight:
    """A smooth non-linear gradient from one corner."""

    def test_thirty_percent(self, sky_only):
        """The sky rises by 30 % from the far corner to the near one."""
        truth = sky_only('moonlight')[0]
        np.testing.assert_allclose(truth.max() / truth.min(), 1.3, rtol=1e-3)
        assert truth[0, 0] == truth.max() and truth[-1, -1] == truth.min()

    def test_smooth_and_not_linear(self, sky_only):
        """Falling along the diagonal, below the straight line between the
        corners."""
        diagonal = np.diagonal(sky_only('moonlight')[0])
        assert np.all(np.diff(diagonal) < 0)
        assert diagonal[128] < (diagonal[0] + diagonal[-1]) / 2 - 50.0


class TestGalaxies:
    """Exponential discs: the small round one and the big elliptical one."""

    @pytest.mark.parametrize('name, scale, axis_ratio', [
        ('disc', 40.0, 1.0), ('big_galaxy', 120.0, 0.6)])
    def test_extra(self, name, scale, axis_ratio):
        """extra gives the centre, scale length, axis ratio and angle."""
        extra = make_scene(name, shape=SHAPE)[3]
        assert set(extra) == {'centre', 'scale_length', 'axis_ratio', 'angle'}
        assert extra['scale_length'] == scale
        assert extra['axis_ratio'] == axis_ratio
        assert np.hypot(extra['centre'][0] - 128, extra['centre'][1] - 128) < 20

    def test_disc_peak(self):
        """The disc peaks at 20 sigma above the sky at its centre."""
        image, truth, _, extra = make_scene('disc', shape=SHAPE, sigma=10.0,
                                            sky=1000.0)
        y, x = (int(round(c)) for c in extra['centre'])
        excess = np.median((image - truth)[y - 1:y + 2, x - 1:x + 2])
        assert 170.0 < excess < 230.0

    def test_big_galaxy_is_elliptical(self):
        """The light follows the elliptical radius of the extra details."""
        extra = make_scene('big_galaxy', shape=SHAPE)[3]
        disk = exponential_disk(SHAPE, extra['centre'], 120.0, 1.0,
                                axis_ratio=0.6, angle=extra['angle'])
        radius = elliptical_radius(SHAPE, extra['centre'], 0.6, extra['angle'])
        np.testing.assert_allclose(disk, np.exp(-radius / 120.0))
        assert 0 < extra['angle'] < 90


class TestEllipticalRadius:
    """The semi-major axis through each pixel."""

    def test_rotated(self):
        """At 90 degrees the major axis is along y."""
        radius = elliptical_radius((9, 9), (4, 4), axis_ratio=0.5, angle=90.0)
        np.testing.assert_allclose([radius[8, 4], radius[4, 8]], [4.0, 8.0])

    def test_circular_default(self):
        """By default the radius is the distance from the centre."""
        radius = elliptical_radius((5, 7), (1.5, 2.0))
        y, x = np.indices((5, 7))
        np.testing.assert_allclose(radius, np.hypot(y - 1.5, x - 2.0))

    @pytest.mark.parametrize('axis_ratio', [0.0, -0.5, 1.5])
    def test_bad_axis_ratio(self, axis_ratio):
        """The axis ratio is in (0, 1]."""
        with pytest.raises(ValueError, match=r'axis_ratio must be in \(0, 1\]'):
            elliptical_radius((5, 5), (2, 2), axis_ratio=axis_ratio)


class TestCluster:
    """A Plummer-profile globular cluster."""

    def test_star_count(self):
        """Most of the 3000 stars per 1024x1024 fall in the frame."""
        extra = make_scene('cluster', shape=(512, 512))[3]
        assert 0.8 * 750 <= extra['star_count'] <= 750
        assert extra['core_radius'] == 60.0

    def test_light_concentrated(self):
        """The cluster's light is far above the sky in the core and not in
        the outskirts."""
        image, truth, _, extra = make_scene('cluster', shape=(512, 512),
                                            sigma=10.0, sky=1000.0)
        radius = elliptical_radius((512, 512), extra['centre'])
        excess = image - truth
        assert np.median(excess[radius < 30]) > 5 * 10.0
        assert np.median(excess[radius > 200]) < 0.5 * 10.0


class TestSaturated:
    """Saturated stars, bleed trails and hot columns."""

    def test_saturation(self, saturated):
        """Nothing exceeds the saturation level, given in extra."""
        image, _, _, extra = saturated
        assert extra['saturation'] == SATURATION == image.max()
        assert len(extra['saturated_stars']) == 2

    def test_bleed_trails_invalid(self, saturated):
        """Each saturated star bleeds along its 3 central columns for at
        least 20 pixels up and down, and the trail is invalid."""
        image, _, invalid, extra = saturated
        for yc, xc in extra['saturated_stars']:
            trail = np.s_[int(yc) - 20:int(yc) + 20, int(xc) - 1:int(xc) + 2]
            assert np.all(image[trail] == SATURATION)
            assert invalid[trail].all()
        assert invalid[image == SATURATION].all()

    def test_hot_columns_invalid(self, saturated):
        """Hot columns are invalid and 50 sigma above the sky."""
        image, truth, invalid, extra = saturated
        assert extra['hot_columns']
        for column in extra['hot_columns']:
            hot = invalid[:, column] & (image[:, column] < SATURATION)
            assert hot.sum() > 0
            excess = np.median((image - truth)[hot, column])
            np.testing.assert_allclose(excess, 500.0, atol=30.0)

    def test_rest_is_sky(self, saturated):
        """Outside the trails and hot columns the image is sky and faint
        stars: its median is the truth's."""
        image, truth, invalid, _ = saturated
        assert invalid.mean() < 0.05
        median = np.median((image - truth)[~invalid])
        assert abs(median) < 0.5 * 10.0

    def test_without_sources(self):
        """Without sources no star saturates; the hot column remains."""
        image, _, invalid, extra = make_scene('saturated', shape=(512, 512),
                                              sources=False)
        assert image.max() < SATURATION
        assert invalid.any(axis=0).sum() == len(extra['hot_columns']) == 1
