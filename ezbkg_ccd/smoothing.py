# Licensed under a 3-clause BSD style license - see LICENSE
"""
A noise-aware smooth fit of a mesh grid.

SExtractor's map passes exactly through its median-filtered mesh values,
so it carries the noise of every mesh, and the median filter biases a
curved sky (the top of a vignetted dome is always the largest of its
3 x 3 neighbours, never their median). `smooth_grid` instead fits the
grid by penalised least squares: the sum of squared residuals plus
``s`` times the squared second differences along both axes, whose
null space holds every plane (and bilinear surface), so gradients are
kept exactly and only curvature is smoothed. The smoothing ``s`` is
chosen from the data by generalised cross-validation (GCV): a flat sky
is fitted nearly by a plane, a sky with real structure keeps it.
Meshes without a value (weight 0) are filled by the fit, and meshes
that stray from it (a bright star's halo) are down-weighted by
Tukey's bisquare.

Without weights the fit is exact and fast in the eigenbases of the two
1-D penalties (the penalty of a grid is a Kronecker sum): a handful of
small matrix products per evaluation. With weights it is solved by
conjugate gradients, preconditioned by that exact unweighted fit.
"""

import functools

import numpy as np
from astropy.stats import mad_std

__all__ = ['smooth_grid']

#: Candidate smoothings ``s`` (searched by GCV): log-spaced.
_SMOOTHINGS = 10.0 ** np.arange(-3.0, 7.01, 0.125)

#: Tukey's bisquare constant: 95 % efficiency for Gaussian residuals.
_BISQUARE = 4.685

#: Rounds of robust re-weighting.
_ROBUST_ROUNDS = 3

#: The weighted fit's conjugate gradients: at most this many rounds, to
#: this relative residual; and its ridge (relative to the weights).
_CG_ROUNDS = 200
_TOLERANCE = 1e-9
_RIDGE = 1e-9


@functools.lru_cache(maxsize=16)
def _basis(size):
    """Eigenvalues and eigenvectors of the 1-D second-difference penalty
    ``D.T @ D`` on ``size`` nodes (none below 3 nodes)."""
    if size < 3:
        return np.zeros(size), np.eye(size)
    difference = np.diff(np.eye(size), 2, axis=0)
    values, vectors = np.linalg.eigh(difference.T @ difference)
    return np.clip(values, 0.0, None), vectors


class _Penalty:
    """The grid's penalty in its eigenbasis."""

    def __init__(self, shape):
        (rows, self.uy), (columns, self.ux) = _basis(shape[0]), _basis(shape[1])
        self.eigenvalues = rows[:, None] + columns[None, :]
        self.penalty_y = (self.uy * rows) @ self.uy.T
        self.penalty_x = (self.ux * columns) @ self.ux.T

    def coefficients(self, grid):
        return self.uy.T @ grid @ self.ux

    def grid(self, coefficients):
        return self.uy @ coefficients @ self.ux.T

    def gains(self, smoothing):
        return 1.0 / (1.0 + smoothing * self.eigenvalues)

    def best_smoothing(self, grid):
        """The ``s`` of least GCV score for the complete ``grid`` (0 when
        the grid is too small to have curvature: under 3 meshes a side)."""
        if not self.eigenvalues.any():
            return 0.0
        squared = self.coefficients(grid).ravel() ** 2
        gains = 1.0 / (1.0 + _SMOOTHINGS[:, None]
                       * self.eigenvalues.ravel()[None, :])
        residual = ((1.0 - gains) ** 2 @ squared) / grid.size
        scores = residual / (1.0 - gains.sum(axis=1) / grid.size) ** 2
        return float(_SMOOTHINGS[int(np.argmin(scores))])

    def fit(self, grid, weights, smoothing, start):
        """
        The weighted fit at ``smoothing``: the solution of ``(W + s P) z
        = W y`` by conjugate gradients, preconditioned by the unweighted
        fit (exact in the eigenbasis), from ``start``. A tiny ridge
        towards the weighted median keeps it defined when too few meshes
        have a value to fix a plane.
        """
        if (weights == 1).all():
            return self.grid(self.gains(smoothing) * self.coefficients(grid))
        ridge = _RIDGE * max(float(weights.mean()), _RIDGE)
        anchor = np.median(grid[weights > 0])
        mean_weight = float(weights.mean()) + ridge
        inverse = 1.0 / (mean_weight + smoothing * self.eigenvalues)

        def apply(values):
            return ((weights + ridge) * values + smoothing
                    * (self.penalty_y @ values + values @ self.penalty_x))

        fitted = start.copy()
        residual = weights * grid + ridge * anchor - apply(fitted)
        target = _TOLERANCE * max(float(np.linalg.norm(weights * grid)),
                                  1e-30)
        step = self.grid(inverse * self.coefficients(residual))
        product = float(np.sum(residual * step))
        for _ in range(_CG_ROUNDS):
            applied = apply(step)
            curvature = float(np.sum(step * applied))
            if np.linalg.norm(residual) < target or curvature <= 0:
                break
            length = product / curvature
            fitted += length * step
            residual -= length * applied
            preconditioned = self.grid(inverse * self.coefficients(residual))
            product, last = float(np.sum(residual * preconditioned)), product
            step = preconditioned + (product / last) * step
        return fitted


def _bisquare(residual, weights):
    """Tukey's bisquare weights of the ``residual`` of meshes that have
    a value (``weights > 0``); 1 where the spread is zero."""
    used = residual[weights > 0]
    spread = mad_std(used)
    if spread <= 0:
        return np.ones_like(residual)
    scaled = residual / (_BISQUARE * spread)
    return np.where(np.abs(scaled) < 1, (1 - scaled**2) ** 2, 0.0)


def smooth_grid(grid, weights=None, *, robust=True):
    """
    Fit a smooth surface to a grid of noisy values.

    Parameters
    ----------
    grid : array_like, 2-D
        The values (mesh backgrounds). Where ``weights`` is 0 any finite
        value serves as a start.
    weights : array_like, 2-D, optional
        Relative weights in [0, 1] (the usable fraction of each mesh);
        0 means no value. Default: all 1.
    robust : bool, optional
        Down-weight values that stray from the fit (default `True`).

    Returns
    -------
    fitted : `~numpy.ndarray` of float64
        The smooth surface on the grid.
    smoothing : float
        The ``s`` chosen by generalised cross-validation.

    Examples
    --------
    A plane is kept exactly, noise about it is smoothed away:

    >>> import numpy as np
    >>> from ezbkg_ccd.smoothing import smooth_grid
    >>> y, x = np.indices((16, 16))
    >>> plane = 100.0 + 0.5 * x - 0.2 * y
    >>> noisy = plane + np.random.default_rng(0).normal(0, 0.1, plane.shape)
    >>> fitted, smoothing = smooth_grid(noisy)
    >>> bool(np.abs(fitted - plane).max() < 0.1)
    True
    >>> bool(np.allclose(smooth_grid(plane)[0], plane))
    True
    """
    grid = np.asarray(grid, dtype=np.float64)
    weights = (np.ones_like(grid) if weights is None
               else np.clip(np.asarray(weights, dtype=np.float64), 0, 1))
    if not (weights > 0).any():
        msg = 'weights must have at least one positive value'
        raise ValueError(msg)
    penalty = _Penalty(grid.shape)
    start = np.where(weights > 0, grid,
                     np.median(grid[weights > 0]))
    current = weights
    fitted = start
    for _ in range(_ROBUST_ROUNDS + 1 if robust else 1):
        completed = current * grid + (1.0 - current) * fitted
        smoothing = penalty.best_smoothing(completed)
        fitted = penalty.fit(grid, current, smoothing, fitted)
        if robust:
            current = weights * _bisquare(grid - fitted, weights)
            if not (current > 0).any():
                current = weights
    return fitted, smoothing
