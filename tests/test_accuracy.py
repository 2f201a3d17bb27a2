# Licensed under a 3-clause BSD style license - see LICENSE
"""Direction of the accuracy benchmark, on small images (fast)."""

import numpy as np
import pytest
import sep

from ezbkg_ccd import estimate_background, invalid_pixel_mask, make_source_mask
from ezbkg_ccd.synthetic import SCENES, make_scene

SHAPE = (320, 320)


def rms_errors(name, seed=0):
    """RMS error (in sigma) of raw SEP, ours and ours+auto on a scene."""
    image, truth, invalid, extra = make_scene(name, shape=SHAPE, seed=seed)
    masked = invalid_pixel_mask(image, saturation=59000.0)
    maps = {'sep': sep.Background(np.ascontiguousarray(image)).back(),
            'ours': estimate_background(image, mask=masked).data,
            'auto': estimate_background(image, mask=masked,
                                        source_mask='auto',
                                        edge='adaptive').data}
    valid = ~invalid
    return {key: float(np.sqrt(np.mean(((value - truth)[valid] / 5.0) ** 2)))
            for key, value in maps.items()}


@pytest.mark.parametrize('name, gain', [('crowded', 1.8), ('galaxy', 2.0),
                                        ('bright_star', 2.0)])
def test_auto_mask_beats_raw_sep(name, gain):
    """Automatic masking cuts the error near bright and extended sources."""
    errors = rms_errors(name)
    assert errors['auto'] * gain < errors['sep']


@pytest.mark.parametrize('name', ['flat', 'gradient', 'vignetting'])
def test_auto_mask_harmless_on_smooth_skies(name):
    """On skies without large sources, masking costs at most 10 %."""
    errors = rms_errors(name)
    assert errors['auto'] < 1.1 * errors['sep']


class TestSkewedMeshes:
    """Contaminated-mesh rejection (reject_skewed)."""

    def test_bright_star_wings(self):
        """Without any source mask, rejecting the meshes the wings of a
        bright star skew about halves the error (2.2x; at least 1.5x)."""
        image, truth, _, _ = make_scene('bright_star', shape=SHAPE)
        masked = invalid_pixel_mask(image, saturation=59000.0)
        errors = {}
        for reject in (False, True):
            bkg = estimate_background(image, mask=masked,
                                      reject_skewed=reject)
            errors[reject] = np.sqrt(np.mean(((bkg.data - truth) / 5.0)**2))
        assert errors[True] * 1.5 < errors[False]
        assert bkg.header['BKGREJT'] == 5.0
        assert 1 <= bkg.header['BKGNREJ'] <= 12

    @pytest.mark.parametrize('name', ['flat', 'gradient', 'vignetting'])
    def test_smooth_skies_untouched(self, name):
        """Noise, gradients and vignetting reject no mesh."""
        image, truth, _, _ = make_scene(name, shape=SHAPE)
        sources = make_source_mask(image)
        bkg = estimate_background(image, source_mask=sources,
                                  reject_skewed=True)
        plain = estimate_background(image, source_mask=sources)
        assert bkg.header['BKGNREJ'] == 0
        np.testing.assert_array_equal(bkg.data, plain.data)

    def test_off_by_default(self, flat_sky):
        """The default keeps SExtractor's map and writes no keywords."""
        bkg = estimate_background(flat_sky[0])
        assert 'BKGREJT' not in bkg.header and 'BKGNREJ' not in bkg.header

    @pytest.mark.parametrize('value, error', [
        ('yes', TypeError), (0.0, ValueError), (np.inf, ValueError)])
    def test_bad_values(self, flat_sky, value, error):
        """reject_skewed is a bool or a positive finite threshold."""
        with pytest.raises(error, match='reject_skewed must be'):
            estimate_background(flat_sky[0], reject_skewed=value)


def test_invalid_rule_fixes_chip_gaps():
    """Zeroed regions and chip gaps poison raw SEP, not ours."""
    errors = rms_errors('gaps')
    assert errors['ours'] * 1.5 < errors['sep']
    assert errors['ours'] < 0.1


def test_galaxy_flux_kept():
    """The flux stolen from an extended galaxy is at least halved."""
    image, truth, _, extra = make_scene('galaxy', shape=SHAPE)
    y, x = np.indices(SHAPE)
    inner = np.hypot(y - extra['centre'][0], x - extra['centre'][1]) \
        < 3 * extra['scale_length']
    raw = sep.Background(np.ascontiguousarray(image)).back()
    auto = estimate_background(image, source_mask='auto')
    assert np.mean((auto.data - truth)[inner]) * 2 < np.mean((raw - truth)[inner])
    assert auto.header['BKGSRCM'] == 'auto'


def test_no_false_sources_in_noise():
    """Pure noise is (almost) not masked, so the sky is not biased low."""
    rng = np.random.default_rng(5)
    image = rng.normal(100.0, 5.0, (256, 256))
    assert make_source_mask(image).mean() < 0.01


def test_crowded_field_keeps_meshes_usable():
    """In a crowded field the mask leaves enough sky to estimate."""
    image, _, _, _ = make_scene('crowded', shape=SHAPE)
    assert make_source_mask(image).mean() <= 0.5


@pytest.mark.parametrize('name', SCENES)
def test_scenes_are_seeded(name):
    """The same seed gives the same scene."""
    first = make_scene(name, shape=(64, 64), seed=3)[0]
    second = make_scene(name, shape=(64, 64), seed=3)[0]
    np.testing.assert_array_equal(first, second)


@pytest.mark.parametrize('kwargs, match', [
    ({'threshold': 0}, 'threshold must be a positive number'),
    ({'min_area': 0}, 'min_area must be an int >= 1'),
    ({'dilate': -1}, 'dilate must be an int >= 0'),
    ({'wing_level': -1.0}, 'wing_level must be a positive number'),
])
def test_bad_mask_options(kwargs, match):
    """Bad source-mask options name the parameter."""
    with pytest.raises(ValueError, match=match):
        make_source_mask(np.ones((64, 64)), **kwargs)


def test_unknown_scene():
    """An unknown scene is refused."""
    with pytest.raises(ValueError, match='name must be one of'):
        make_scene('moon')


def test_auto_mask_settings_recorded(flat_sky):
    """Settings of the automatic mask are used and recorded."""
    loose = estimate_background(flat_sky[0], source_mask='auto',
                                source_mask_options={'threshold': 5.0})
    assert loose.header['BKGSMOPT'] == "{'threshold': 5.0}"
    with pytest.raises(ValueError, match='only used with'):
        estimate_background(flat_sky[0], source_mask_options={'dilate': 1})


class TestEdges:
    """edge='adaptive' removes spline overshoot and keeps gradients."""

    def test_interior_unchanged(self, flat_sky):
        """Only the border beyond the outer mesh centres changes."""
        spline = estimate_background(flat_sky[0])
        adaptive = estimate_background(flat_sky[0], edge='adaptive')
        np.testing.assert_array_equal(adaptive.data[32:-32, 32:-32],
                                      spline.data[32:-32, 32:-32])
        assert adaptive.header['BKGOPTS'] == "{'edge': 'adaptive'}"

    def test_gradient_followed(self, sky):
        """A real gradient is extrapolated to the edge."""
        image, truth = sky('gradient')
        spline = estimate_background(image)
        adaptive = estimate_background(image, edge='adaptive')
        border = np.abs(adaptive.data - truth)[:, :32].mean()
        assert border < 1.1 * np.abs(spline.data - truth)[:, :32].mean()
        assert border < 0.1 * 5.0

    def test_bad_edge(self, flat_sky):
        """Unknown edge modes are refused."""
        with pytest.raises(ValueError, match="edge must be one of 'spline', "
                           "'adaptive', got 'mirror'"):
            estimate_background(flat_sky[0], edge='mirror')
