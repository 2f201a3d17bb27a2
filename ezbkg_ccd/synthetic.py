# Licensed under a 3-clause BSD style license - see LICENSE
"""
Synthetic skies with a known background, for tests and benchmarks.

Every scene is made from a seeded `numpy.random.Generator`: the same
seed gives the same image. Each returns ``(image, truth, invalid,
extra)``: the noisy image, the true background, the pixels that hold no
sky data (NaN, zeroed regions, chip gaps), which a fair comparison
leaves out, and the scene's details.
"""

import numpy as np

__all__ = ['SCENES', 'make_scene', 'exponential_disk', 'moffat_star']

#: The scenes `make_scene` knows.
SCENES = ('flat', 'gradient', 'vignetting', 'crowded', 'galaxy',
          'bright_star', 'gaps')


def exponential_disk(shape, centre, scale_length, peak):
    """An exponential disk ``peak * exp(-r / scale_length)``."""
    y, x = np.indices(shape)
    radius = np.hypot(y - centre[0], x - centre[1])
    return peak * np.exp(-radius / scale_length)


def moffat_star(shape, centre, flux, fwhm, beta=2.5):
    """A Moffat star: a compact core with broad power-law wings."""
    alpha = fwhm / (2 * np.sqrt(2 ** (1 / beta) - 1))
    y, x = np.indices(shape)
    radius2 = (y - centre[0]) ** 2 + (x - centre[1]) ** 2
    profile = (beta - 1) / (np.pi * alpha**2) * (1 + radius2 / alpha**2) ** -beta
    return flux * profile


def _stars(shape, rng, count, flux_range, fwhm=3.0):
    """Gaussian stars with a power-law flux distribution."""
    image = np.zeros(shape)
    sigma = fwhm / 2.355
    size = int(np.ceil(5 * sigma))
    y0 = rng.uniform(0, shape[0], count)
    x0 = rng.uniform(0, shape[1], count)
    low, high = flux_range
    flux = low * (high / low) ** rng.uniform(0, 1, count) ** 2
    offsets = np.arange(-size, size + 1)
    for yc, xc, f in zip(y0, x0, flux, strict=True):
        rows = np.clip(int(yc) + offsets, 0, shape[0] - 1)
        cols = np.clip(int(xc) + offsets, 0, shape[1] - 1)
        gy = np.exp(-0.5 * ((rows - yc) / sigma) ** 2)
        gx = np.exp(-0.5 * ((cols - xc) / sigma) ** 2)
        image[np.ix_(rows, cols)] += f * np.outer(gy, gx) / (2 * np.pi * sigma**2)
    return image


def _sources(name, shape, rng, sigma):
    """The light of a scene's stars and galaxies, and its details."""
    ny, nx = shape
    area = ny * nx / 512**2
    faint = (30 * sigma, 3e3 * sigma)
    if name == 'crowded':
        return _stars(shape, rng, int(3000 * area), (30 * sigma, 3e4 * sigma)), {}
    if name == 'galaxy':
        centre, scale = (ny / 2 + 3.3, nx / 2 - 7.1), 40.0
        light = exponential_disk(shape, centre, scale, 6.0 * sigma)
        light += _stars(shape, rng, int(40 * area), faint)
        return light, {'centre': centre, 'scale_length': scale}
    if name == 'bright_star':
        centre = (ny * 0.45, nx * 0.55)
        light = moffat_star(shape, centre, 4e8 * sigma / 5, fwhm=4.0)
        light += _stars(shape, rng, int(150 * area), faint)
        return light, {'centre': centre}
    return _stars(shape, rng, int(150 * area), faint), {}


def make_scene(name, *, shape=(512, 512), sigma=5.0, seed=0, sources=True):
    """
    Make one synthetic scene.

    Parameters
    ----------
    name : str
        One of `SCENES`: ``flat``; ``gradient`` (linear); ``vignetting``
        (radial fall-off); ``crowded`` (thousands of stars); ``galaxy``
        (an exponential disk of 40 px scale length, set by ``shape``);
        ``bright_star`` (a saturated Moffat star with broad wings);
        ``gaps`` (a gradient with a NaN block, a zeroed corner and a chip
        gap).
    shape : (int, int), optional
        Image shape (default 512x512).
    sigma : float, optional
        Noise sigma (default 5).
    seed : int, optional
        Seed of the generator.
    sources : bool, optional
        Add the scene's stars and galaxies (default); `False` gives sky
        and noise only (and the scene's invalid pixels).

    Returns
    -------
    image, truth : `~numpy.ndarray` of float32
        The noisy image and the true background.
    invalid : `~numpy.ndarray` of bool
        Pixels holding no sky data.
    extra : dict
        Scene details (e.g. the galaxy's centre and scale length).

    Examples
    --------
    >>> from ezbkg_ccd.synthetic import make_scene
    >>> image, truth, invalid, extra = make_scene('gaps', shape=(128, 128))
    >>> image.dtype, bool(invalid.any()), float(truth.min()) > 0
    (dtype('float32'), True, True)
    """
    if name not in SCENES:
        msg = f'name must be one of {SCENES}, got {name!r}'
        raise ValueError(msg)
    rng = np.random.default_rng(seed)
    ny, nx = shape
    y, x = np.indices(shape)
    truth = np.full(shape, 100.0)
    if name in ('gradient', 'gaps'):
        truth += 20.0 * x / nx + 12.0 * y / ny
    elif name == 'vignetting':
        radius2 = ((y - ny / 2) ** 2 + (x - nx / 2) ** 2) / (0.75 * max(shape)) ** 2
        truth *= 1.0 - 0.3 * radius2
    light, extra = (_sources(name, shape, rng, sigma) if sources
                    else (0.0, {}))
    image = truth + light + rng.normal(0.0, sigma, shape)
    invalid = np.zeros(shape, bool)
    if name == 'bright_star':
        image = np.minimum(image, 60000.0)
    if name == 'gaps':
        image[ny // 5:ny // 5 + ny // 8, nx // 3:nx // 3 + nx // 6] = np.nan
        image[:ny // 10, -nx // 10:] = 0.0
        image[:, nx // 2:nx // 2 + 6] = 0.0
        invalid = ~np.isfinite(image) | (image == 0.0)
    return image.astype(np.float32), truth.astype(np.float32), invalid, extra
