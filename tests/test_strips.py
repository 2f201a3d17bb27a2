# Licensed under a 3-clause BSD style license - see LICENSE
"""Tests of the parallel strip mode for one large frame."""

import numpy as np
import pytest

from ezbkg_ccd import estimate_background
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
