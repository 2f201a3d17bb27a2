# Licensed under a 3-clause BSD style license - see LICENSE
"""
Synthetic skies with a known background, for tests and benchmarks.

Every scene is made from a seeded `numpy.random.Generator`: the same
seed gives the same image. Each returns ``(image, truth, invalid,
extra)``: the noisy image, the true background, the pixels that hold no
sky data (NaN, zeroed regions, chip gaps, bleed trails, hot columns),
which a fair comparison leaves out, and the scene's details.
"""

import numpy as np

__all__ = ['SCENES', 'SATURATION', 'make_scene', 'elliptical_radius',
           'exponential_disk', 'gaussian_stars', 'moffat_star']

#: The scenes `make_scene` knows.
SCENES = ('flat', 'gradient', 'vignetting', 'crowded', 'galaxy',
          'bright_star', 'gaps', 'dome', 'moonlight', 'disc', 'big_galaxy',
          'cluster', 'saturated')

#: The level at which the pixels of the scenes saturate.
SATURATION = 60000.0


def elliptical_radius(shape, centre, axis_ratio=1.0, angle=0.0):
    """
    The elliptical radius of every pixel: its semi-major axis.

    Parameters
    ----------
    shape : (int, int)
        Image shape.
    centre : (float, float)
        Centre ``(y, x)`` in pixels.
    axis_ratio : float, optional
        Minor over major axis, in (0, 1] (default 1: circles).
    angle : float, optional
        Position angle of the major axis in degrees, counter-clockwise
        from the x axis (default 0).

    Returns
    -------
    radius : `~numpy.ndarray` of float
        The semi-major axis of the ellipse through each pixel.

    Raises
    ------
    ValueError
        If ``axis_ratio`` is not in (0, 1].

    Examples
    --------
    >>> from ezbkg_ccd.synthetic import elliptical_radius
    >>> radius = elliptical_radius((5, 5), (2, 2), axis_ratio=0.5)
    >>> float(radius[2, 4]), float(radius[4, 2])
    (2.0, 4.0)
    """
    if not 0 < axis_ratio <= 1:
        msg = f'axis_ratio must be in (0, 1], got {axis_ratio!r}'
        raise ValueError(msg)
    y, x = np.indices(shape)
    dy, dx = y - centre[0], x - centre[1]
    cos, sin = np.cos(np.deg2rad(angle)), np.sin(np.deg2rad(angle))
    major, minor = dx * cos + dy * sin, dy * cos - dx * sin
    return np.hypot(minor / axis_ratio, major)


def exponential_disk(shape, centre, scale_length, peak, *, axis_ratio=1.0,
                     angle=0.0):
    """An exponential disk ``peak * exp(-r / scale_length)``, ``r`` the
    `elliptical_radius` (circular by default)."""
    radius = elliptical_radius(shape, centre, axis_ratio, angle)
    return peak * np.exp(-radius / scale_length)


def moffat_star(shape, centre, flux, fwhm, beta=2.5):
    """A Moffat star: a compact core with broad power-law wings."""
    alpha = fwhm / (2 * np.sqrt(2 ** (1 / beta) - 1))
    y, x = np.indices(shape)
    radius2 = (y - centre[0]) ** 2 + (x - centre[1]) ** 2
    profile = (beta - 1) / (np.pi * alpha**2) * (1 + radius2 / alpha**2) ** -beta
    return flux * profile


def _per_frame(count, shape):
    """A count given per 1024x1024 frame, scaled to the area of ``shape``."""
    return int(count * shape[0] * shape[1] / 1024**2)


def _fluxes(rng, count, flux_range):
    """Fluxes with a power-law distribution (many faint, few bright)."""
    low, high = flux_range
    return low * (high / low) ** rng.uniform(0, 1, count) ** 2


def _paint_stars(shape, y0, x0, flux, fwhm):
    """Gaussian stars at the given centres."""
    image = np.zeros(shape)
    sigma = fwhm / 2.355
    size = int(np.ceil(5 * sigma))
    offsets = np.arange(-size, size + 1)
    for yc, xc, f in zip(y0, x0, flux, strict=True):
        rows = np.clip(int(yc) + offsets, 0, shape[0] - 1)
        cols = np.clip(int(xc) + offsets, 0, shape[1] - 1)
        gy = np.exp(-0.5 * ((rows - yc) / sigma) ** 2)
        gx = np.exp(-0.5 * ((cols - xc) / sigma) ** 2)
        image[np.ix_(rows, cols)] += f * np.outer(gy, gx) / (2 * np.pi * sigma**2)
    return image


def gaussian_stars(shape, rng, count, flux_range, fwhm=3.0):
    """
    Gaussian stars spread uniformly, with power-law fluxes (many faint,
    few bright) between ``flux_range``, drawn from the generator ``rng``.

    Examples
    --------
    >>> import numpy as np
    >>> from ezbkg_ccd.synthetic import gaussian_stars
    >>> light = gaussian_stars((64, 64), np.random.default_rng(0), 3,
    ...                        (100.0, 1000.0), fwhm=4.0)
    >>> light.shape, bool(light.max() > 0)
    ((64, 64), True)
    """
    y0 = rng.uniform(0, shape[0], count)
    x0 = rng.uniform(0, shape[1], count)
    return _paint_stars(shape, y0, x0, _fluxes(rng, count, flux_range), fwhm)


def _plummer(shape, centre, core_radius):
    """A projected Plummer profile, 1 at the centre."""
    radius = elliptical_radius(shape, centre)
    return (1 + (radius / core_radius) ** 2) ** -2


def _cluster(shape, rng, sigma):
    """A globular cluster: stars and unresolved light, Plummer profile."""
    centre, core = (shape[0] * 0.48, shape[1] * 0.53), 60.0
    count = _per_frame(3000, shape)
    radius = core * np.sqrt(1 / (1 - rng.uniform(0, 1, count)) - 1)
    phase = rng.uniform(0, 2 * np.pi, count)
    y0 = centre[0] + radius * np.sin(phase)
    x0 = centre[1] + radius * np.cos(phase)
    inside = (y0 >= 0) & (y0 < shape[0]) & (x0 >= 0) & (x0 < shape[1])
    flux = _fluxes(rng, count, (30 * sigma, 1e4 * sigma))[inside]
    light = _paint_stars(shape, y0[inside], x0[inside], flux, 3.0)
    light += 3.0 * sigma * _plummer(shape, centre, core)
    light += gaussian_stars(shape, rng, _per_frame(600, shape),
                            (30 * sigma, 3e3 * sigma))
    return light, {'centre': centre, 'core_radius': core,
                   'star_count': int(inside.sum())}


def _disc(shape, rng, sigma, *, centre, scale, peak, axis_ratio=1.0,
          angle=0.0):
    """An exponential disc galaxy and faint field stars."""
    light = exponential_disk(shape, centre, scale, peak * sigma,
                             axis_ratio=axis_ratio, angle=angle)
    light += gaussian_stars(shape, rng, _per_frame(600, shape),
                            (30 * sigma, 3e3 * sigma))
    return light, {'centre': centre, 'scale_length': scale,
                   'axis_ratio': axis_ratio, 'angle': angle}


def _saturating_stars(shape, rng, sigma):
    """Faint stars and a few stars far brighter than `SATURATION`."""
    light = gaussian_stars(shape, rng, _per_frame(600, shape),
                            (30 * sigma, 3e3 * sigma))
    count = max(1, _per_frame(8, shape))
    centres = rng.uniform(0.1, 0.9, (count, 2)) * shape
    for centre, flux in zip(centres, _fluxes(rng, count, (3e6, 3e7)), strict=True):
        light += moffat_star(shape, centre, flux, fwhm=4.0)
    return light, {'saturated_stars': [tuple(map(float, c)) for c in centres]}


def _sources(name, shape, rng, sigma):
    """The light of a scene's stars and galaxies, and its details."""
    ny, nx = shape
    area = ny * nx / 512**2
    faint = (30 * sigma, 3e3 * sigma)
    if name == 'crowded':
        return gaussian_stars(shape, rng, int(3000 * area),
                              (30 * sigma, 3e4 * sigma)), {}
    if name == 'galaxy':
        centre, scale = (ny / 2 + 3.3, nx / 2 - 7.1), 40.0
        light = exponential_disk(shape, centre, scale, 6.0 * sigma)
        light += gaussian_stars(shape, rng, int(40 * area), faint)
        return light, {'centre': centre, 'scale_length': scale}
    if name == 'bright_star':
        centre = (ny * 0.45, nx * 0.55)
        light = moffat_star(shape, centre, 4e8 * sigma / 5, fwhm=4.0)
        light += gaussian_stars(shape, rng, int(150 * area), faint)
        return light, {'centre': centre}
    if name == 'disc':
        return _disc(shape, rng, sigma, centre=(ny / 2 - 5.4, nx / 2 + 4.2),
                     scale=40.0, peak=20.0)
    if name == 'big_galaxy':
        return _disc(shape, rng, sigma, centre=(ny * 0.52, nx * 0.47),
                     scale=120.0, peak=10.0, axis_ratio=0.6, angle=30.0)
    if name == 'cluster':
        return _cluster(shape, rng, sigma)
    if name == 'saturated':
        return _saturating_stars(shape, rng, sigma)
    if name == 'dome':
        return gaussian_stars(shape, rng, _per_frame(200, shape), faint), {}
    return gaussian_stars(shape, rng, int(150 * area), faint), {}


def _sky(name, shape, sky):
    """The true background of a scene."""
    ny, nx = shape
    y, x = np.indices(shape)
    truth = np.full(shape, float(sky))
    if name in ('gradient', 'gaps', 'saturated'):
        truth += sky / 100 * (20.0 * x / nx + 12.0 * y / ny)
    elif name == 'vignetting':
        radius2 = ((y - ny / 2) ** 2 + (x - nx / 2) ** 2) / (0.75 * max(shape)) ** 2
        truth *= 1.0 - 0.3 * radius2
    elif name == 'dome':
        radius2 = (((y - (ny - 1) / 2) / (ny / 2)) ** 2
                   + ((x - (nx - 1) / 2) / (nx / 2)) ** 2)
        truth *= 1.0 - 0.25 * radius2
    elif name == 'moonlight':
        corner = np.hypot(y / max(ny - 1, 1), x / max(nx - 1, 1)) / np.sqrt(2)
        truth *= 1.0 + 0.3 * (1.0 - corner) ** 2
    return truth


def _saturate(image, rng, sigma, extra):
    """Clip at `SATURATION`, bleed the saturated stars along their columns
    and add hot columns; return the pixels without sky data."""
    ny, nx = image.shape
    image = np.minimum(image, SATURATION)
    for yc, xc in extra.get('saturated_stars', []):
        up, down = rng.integers(20, 200, 2)
        columns = slice(max(int(xc) - 1, 0), int(xc) + 2)
        image[max(int(yc) - down, 0):int(yc) + up, columns] = SATURATION
    count = max(1, _per_frame(3, image.shape))
    columns = rng.choice(nx, count, replace=False)
    starts = np.where(rng.uniform(0, 1, count) < 0.5, 0,
                      rng.integers(0, ny, count))
    hot = np.zeros(image.shape, bool)
    for column, start in zip(columns, starts, strict=True):
        hot[start:, column] = True
    image[hot] += 50.0 * sigma
    extra.update(saturation=SATURATION, hot_columns=sorted(map(int, columns)))
    return image, (image >= SATURATION) | hot


def _defects(name, image, rng, sigma, extra):
    """A scene's saturation and regions without sky data."""
    ny, nx = image.shape
    invalid = np.zeros(image.shape, bool)
    if name == 'bright_star':
        image = np.minimum(image, SATURATION)
    if name == 'saturated':
        image, invalid = _saturate(image, rng, sigma, extra)
    if name == 'gaps':
        image[ny // 5:ny // 5 + ny // 8, nx // 3:nx // 3 + nx // 6] = np.nan
        image[:ny // 10, -nx // 10:] = 0.0
        image[:, nx // 2:nx // 2 + 6] = 0.0
        invalid = ~np.isfinite(image) | (image == 0.0)
    return image, invalid


def _check_sky(sky):
    """Validate the ``sky`` argument of `make_scene`."""
    if isinstance(sky, bool) or not isinstance(sky, int | float | np.number):
        msg = f'sky must be a positive finite number, got {sky!r}'
        raise TypeError(msg)
    if not (np.isfinite(sky) and sky > 0):
        msg = f'sky must be a positive finite number, got {sky!r}'
        raise ValueError(msg)


def make_scene(name, *, shape=(512, 512), sigma=5.0, seed=0, sources=True,
               sky=100.0):
    """
    Make one synthetic scene.

    Parameters
    ----------
    name : str
        One of `SCENES` (see Notes).
    shape : (int, int), optional
        Image shape (default 512x512).
    sigma : float, optional
        Noise sigma (default 5).
    seed : int, optional
        Seed of the generator.
    sources : bool, optional
        Add the scene's stars and galaxies (default); `False` gives sky
        and noise only (and the scene's invalid pixels).
    sky : float, optional
        Base sky level (default 100); gradients and fall-offs scale with
        it. Stars and galaxies scale with ``sigma``.

    Returns
    -------
    image, truth : `~numpy.ndarray` of float32
        The noisy image and the true background.
    invalid : `~numpy.ndarray` of bool
        Pixels holding no sky data.
    extra : dict
        Scene details (e.g. the galaxy's centre and scale length).

    Raises
    ------
    TypeError
        If ``sky`` is not a number.
    ValueError
        If ``name`` is not in `SCENES` or ``sky`` is not positive and
        finite.

    Notes
    -----
    Star counts are per 512x512 frame unless said per 1024x1024, and
    scale with the area. Peaks are in units of ``sigma``.

    - ``flat``: a flat sky and 150 faint stars.
    - ``gradient``: a linear gradient of ``sky * (0.2 x/nx + 0.12 y/ny)``.
    - ``vignetting``: a radial fall-off of 30 % at 0.75 of the longer side.
    - ``crowded``: 3000 stars.
    - ``galaxy``: an exponential disk of 40 px scale length, peak 6.
    - ``bright_star``: a Moffat star clipped at `SATURATION`, broad wings.
    - ``gaps``: a gradient with a NaN block, a zeroed corner and a zeroed
      6-column chip gap.
    - ``dome``: strong vignetting, ``sky * (1 - 0.25 r**2)``, ``r`` the
      distance from the centre in half frames (0.5 sky at the corners),
      and 200 faint stars per 1024x1024.
    - ``moonlight``: ``sky * (1 + 0.3 (1 - d)**2)``, ``d`` the distance from
      the corner at pixel (0, 0) over the diagonal, and faint stars.
    - ``disc``: an exponential disc of 40 px scale length, peak 20, near
      the centre, and faint stars; ``extra`` has ``centre``,
      ``scale_length``, ``axis_ratio`` (1) and ``angle`` (0).
    - ``big_galaxy``: an exponential disc of 120 px scale length, axis
      ratio 0.6 at 30 degrees, peak 10; ``extra`` as for ``disc``.
    - ``cluster``: 3000 stars per 1024x1024 drawn from a Plummer profile
      of 60 px core radius, unresolved light of peak 3 with the same
      profile, and faint field stars; ``extra`` has ``centre``,
      ``core_radius`` and ``star_count`` (cluster stars in the frame).
    - ``saturated``: the gradient, faint stars, 8 stars per 1024x1024
      saturated at `SATURATION` with bleed trails of 20 to 200 px up and
      down their 3 central columns, and 3 hot columns per 1024x1024 (at
      least one; whole or from a row to the top) 50 sigma high;
      ``invalid`` holds the saturated pixels and the hot columns,
      ``extra`` has ``saturation``, ``saturated_stars`` and
      ``hot_columns``.

    Examples
    --------
    >>> from ezbkg_ccd.synthetic import make_scene
    >>> image, truth, invalid, extra = make_scene('gaps', shape=(128, 128))
    >>> image.dtype, bool(invalid.any()), float(truth.min()) > 0
    (dtype('float32'), True, True)
    >>> truth = make_scene('dome', shape=(1024, 1024), sky=1000.0,
    ...                    sources=False)[1]
    >>> round(float(truth.max())), round(float(truth.min()))
    (1000, 501)
    """
    if name not in SCENES:
        msg = f'name must be one of {SCENES}, got {name!r}'
        raise ValueError(msg)
    _check_sky(sky)
    rng = np.random.default_rng(seed)
    truth = _sky(name, shape, sky)
    light, extra = (_sources(name, shape, rng, sigma) if sources
                    else (0.0, {}))
    image = truth + light + rng.normal(0.0, sigma, shape)
    image, invalid = _defects(name, image, rng, sigma, extra)
    return image.astype(np.float32), truth.astype(np.float32), invalid, extra
