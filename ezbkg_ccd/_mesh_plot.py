# Licensed under a 3-clause BSD style license - see LICENSE
"""
The mesh grid drawn on matplotlib axes (optional extra).
"""

import numpy as np

from ezbkg_ccd._optional import optional_module

__all__ = ['plot_mesh_grid']


def _centres(size, box):
    """The centres of the meshes along one axis (the last cut short)."""
    starts = np.arange(0, size, box)
    return starts + (np.minimum(starts + box, size) - starts - 1) / 2


def plot_mesh_grid(shape, box_size, filled, *, ax=None, marker='+',
                   markersize=None, color='blue', alpha=None, outlines=False,
                   excluded_color='red', **kwargs):
    """
    Mark the ``box_size`` meshes of an image of ``shape``, those
    ``filled`` from their neighbours apart
    (`~ezbkg_ccd.Background.plot_meshes`).

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use('Agg')
    >>> import numpy as np
    >>> from ezbkg_ccd import estimate_background
    >>> data = np.random.default_rng(0).normal(10.0, 1.0, (128, 96))
    >>> mask = np.zeros(data.shape, bool)
    >>> mask[:32, :32] = True  # one mesh unusable
    >>> ax = estimate_background(data, mask=mask, box_size=32).plot_meshes(
    ...     outlines=True)
    >>> [len(markers.get_offsets()) for markers in ax.collections]
    [11, 1]
    >>> len(ax.patches)
    12
    """
    plt = optional_module('matplotlib.pyplot', extra='plot',
                          purpose='plotting')
    from matplotlib.patches import Rectangle

    ax = plt.gca() if ax is None else ax
    y, x = np.meshgrid(*(_centres(size, side) for size, side in
                         zip(shape, box_size, strict=True)), indexing='ij')
    excluded = np.asarray(filled, dtype=bool)
    ax.scatter(x[~excluded], y[~excluded], s=markersize, marker=marker,
               color=color, alpha=alpha)
    if excluded.any():
        ax.scatter(x[excluded], y[excluded], s=markersize, marker='x',
                   color=excluded_color, alpha=alpha)
    if outlines:
        kwargs.setdefault('fill', False)
        for top in range(0, shape[0], box_size[0]):
            for left in range(0, shape[1], box_size[1]):
                height = min(box_size[0], shape[0] - top)
                width = min(box_size[1], shape[1] - left)
                ax.add_patch(Rectangle((left - 0.5, top - 0.5), width, height,
                                       edgecolor=color, alpha=alpha,
                                       **kwargs))
    return ax
