# Licensed under a 3-clause BSD style license - see LICENSE
"""
A four-panel figure of an image and its background (optional extra).
"""

import logging

import numpy as np
from astropy.visualization import ImageNormalize, MinMaxInterval, ZScaleInterval

from ezbkg_ccd._conditioning import working_copy
from ezbkg_ccd._fits import atomic_save
from ezbkg_ccd._optional import optional_module
from ezbkg_ccd._validation import as_ccddata

__all__ = ['plot_background']

log = logging.getLogger(__name__)

#: Backends that cannot show a window.
_NON_INTERACTIVE = ('agg', 'pdf', 'ps', 'svg', 'pgf', 'cairo', 'template')


def _panel(figure, axes, image, title, interval, overlays=()):
    finite = image[np.isfinite(image)]
    norm = ImageNormalize(finite if finite.size else np.zeros(1),
                          interval=interval)
    shown = axes.imshow(image, origin='lower', cmap='gray', norm=norm,
                        interpolation='nearest')
    for mask, color in overlays:
        if mask is not None and mask.any():
            layer = np.zeros((*mask.shape, 4))
            layer[mask] = color
            axes.imshow(layer, origin='lower', interpolation='nearest')
    axes.set_title(title)
    figure.colorbar(shown, ax=axes, fraction=0.046, pad=0.02)


def plot_background(ccd, background, *, path=None, show=False):
    """
    Plot an image, its background, RMS and the subtracted image.

    The image and the subtracted image use a z-scale stretch; invalid
    pixels are drawn in red and source-masked pixels in translucent blue;
    the mesh grid is drawn over the background map.

    Parameters
    ----------
    ccd : `~astropy.nddata.CCDData`, array_like or path
        The image.
    background : `~ezbkg_ccd.Background`
        Its background.
    path : str or `~pathlib.Path`, optional
        Save the figure there (in the format of its suffix, written
        atomically; an existing figure is replaced).
    show : bool, optional
        Show it in a window (only with an interactive backend; otherwise
        logged and skipped).

    Returns
    -------
    figure : `matplotlib.figure.Figure`

    Raises
    ------
    ImportError
        If matplotlib is not installed (the ``plot`` extra).

    Examples
    --------
    >>> import numpy as np
    >>> from ezbkg_ccd import estimate_background
    >>> from ezbkg_ccd.plotting import plot_background
    >>> data = np.random.default_rng(0).normal(10.0, 1.0, (128, 128))
    >>> figure = plot_background(data, estimate_background(data, box_size=32),
    ...                          path=tmp_path / 'background.png')
    >>> len(figure.axes) // 2  # four panels, each with a colour bar
    4
    """
    matplotlib = optional_module('matplotlib', extra='plot',
                                 purpose='plotting')
    from matplotlib.figure import Figure

    ccd = as_ccddata(ccd)
    data = working_copy(ccd.data)
    residual = data - background.data
    invalid = ~np.isfinite(data)
    for extra in (ccd.mask, background.invalid_mask):
        if extra is not None:
            invalid |= np.asarray(extra, bool)
    overlays = ((invalid, (1.0, 0.0, 0.0, 1.0)),
                (background.source_mask, (0.2, 0.4, 1.0, 0.35)))
    backend = matplotlib.get_backend()
    interactive = show and backend.lower() not in _NON_INTERACTIVE
    if show and not interactive:
        log.info('backend %s cannot show figures; use save_fig=True', backend)
    if interactive:
        import matplotlib.pyplot as plt

        figure = plt.figure(figsize=(11, 9.5))
    else:
        figure = Figure(figsize=(11, 9.5))
    axes = figure.subplots(2, 2, sharex=True, sharey=True).ravel()
    unit = f' [{background.unit}]' if str(background.unit) else ''
    _panel(figure, axes[0], data, f'image{unit}', ZScaleInterval(), overlays)
    _panel(figure, axes[1], background.data,
           f'background ({background.method}){unit}', MinMaxInterval())
    _panel(figure, axes[2], background.rms, f'background RMS{unit}',
           MinMaxInterval())
    _panel(figure, axes[3], residual, 'image - background', ZScaleInterval(),
           overlays)
    if background.is_2d:
        box_y, box_x = background.box_size
        for y in np.arange(box_y, data.shape[0], box_y):
            axes[1].axhline(y - 0.5, color='tab:orange', lw=0.6)
        for x in np.arange(box_x, data.shape[1], box_x):
            axes[1].axvline(x - 0.5, color='tab:orange', lw=0.6)
    figure.suptitle(f'global background {background.global_back:.6g}, '
                    f'RMS {background.global_rms:.6g}{unit}')
    if path is not None:
        atomic_save(path, lambda temporary: figure.savefig(temporary, dpi=90),
                    overwrite=True)
    if interactive:
        plt.show()
    return figure

