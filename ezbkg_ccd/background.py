# Licensed under a 3-clause BSD style license - see LICENSE
"""
The `Background` class: a background map, its RMS and its provenance.
"""

import dataclasses

import astropy.units as u
import numpy as np
from astropy.io import fits, registry
from astropy.nddata import CCDData, StdDevUncertainty

from ezbkg_ccd._dask import dask_array, is_dask
from ezbkg_ccd._mesh_plot import plot_mesh_grid
from ezbkg_ccd.meshes import poorly_covered
from ezbkg_ccd.provenance import REQUIRED_KEYWORDS

__all__ = ['Background', 'MeshValues']

#: Variance of SExtractor's mode ``2.5 median - 1.5 mean`` of n Gaussian
#: samples, in units of sigma**2 / n: 6.25 var(median) + 2.25 var(mean)
#: - 7.5 cov(median, mean), with var(median) = pi/2 and cov = 1.
MODE_VARIANCE_FACTOR = 6.25 * np.pi / 2 + 2.25 - 7.5


class BackgroundRead(registry.UnifiedReadWrite):
    """
    Read a background with astropy's unified I/O.

    The ``fits`` format (registered by `ezbkg_ccd.persistence`, and the
    default) reads a standalone background file or the background
    stored in a science file (`~ezbkg_ccd.read_background`); further
    formats can be registered with `astropy.io.registry` for
    `Background`.
    """

    def __init__(self, instance, cls):
        super().__init__(instance, cls, 'read', registry=None)

    def __call__(self, *args, format='fits', **kwargs):
        return self.registry.read(self._cls, *args, format=format, **kwargs)


class BackgroundWrite(registry.UnifiedReadWrite):
    """
    Write a background with astropy's unified I/O.

    The ``fits`` format (the default) writes a standalone background
    file, an empty primary HDU with ``BKG`` and ``BKGRMS``
    (`~ezbkg_ccd.write_background`: ``overwrite``, ``compress``,
    ``full_map``), whatever the file name (``.fits``, ``.fits.fz``, ...).
    """

    def __init__(self, instance, cls):
        super().__init__(instance, cls, 'write', registry=None)

    def __call__(self, *args, format='fits', **kwargs):
        if not args:
            msg = 'Background.write needs the file to write: write(path)'
            raise TypeError(msg)
        self.registry.write(self._instance, *args, format=format, **kwargs)


@dataclasses.dataclass(frozen=True)
class MeshValues:
    """
    A background's values per mesh: the low-resolution grids that the
    full-resolution maps interpolate (read-only copies).

    Attributes
    ----------
    background, rms : `~numpy.ndarray`
        Each mesh's level and RMS as the estimator interpolates them: for
        SEP's spline, after the meshes with too few usable pixels are
        filled from their neighbours and the median filter (SExtractor's
        ``MINIBACKGROUND`` and ``MINIBACK_RMS`` check-images); for the
        smooth fit, the fitted grid; for photutils, its
        ``background_mesh`` and ``background_rms_mesh``.
    n_pixels : `~numpy.ndarray` of int
        Each mesh's usable pixels (not invalid, not masked), before
        clipping, as the estimator was given them (a mesh that
        ``reject_skewed`` rejected has none).
    filled : `~numpy.ndarray` of bool, optional
        The meshes the estimator filled from their neighbours; `None`:
        by SExtractor's rule, under half their pixels usable
        (`~ezbkg_ccd.meshes.poorly_covered`).
    """

    background: np.ndarray
    rms: np.ndarray
    n_pixels: np.ndarray
    filled: np.ndarray | None = None

    def __post_init__(self):
        for name in ('background', 'rms', 'n_pixels', 'filled'):
            value = getattr(self, name)
            if value is not None:
                value = np.array(value)  # a copy: the maps' grids stay own
                value.flags.writeable = False
                object.__setattr__(self, name, value)

    def __setstate__(self, state):
        """Unpickled or deep-copied: read-only again."""
        for name, value in state.items():
            object.__setattr__(self, name, value)
        self.__post_init__()


def _held(value):
    """A map as a `Background` holds it: a callable or a Dask array as
    it is, anything else as an array."""
    return value if callable(value) or is_dask(value) else np.asanyarray(value)


class Background:
    """
    A sky background: full-resolution map, RMS map and provenance.

    Made by `~ezbkg_ccd.estimate_background`, read with
    `Background.read` and written with `Background.write` (astropy's
    unified I/O); every descriptive attribute (method, sizes, global
    level, unit) is read from the provenance ``header``, so what is
    written is exactly what is read back. A result holds no file state:
    the ezphot workflow's backgrounds, which know their file, are
    `~ezbkg_ccd.background_file.BackgroundFile`.

    Parameters
    ----------
    data : array_like, `dask.array.Array` or callable
        The background map, a lazy Dask map (of a frame processed in
        chunks), or a zero-argument callable computing it on first access
        (`data_load` is `False` until then, and for a Dask map).
    rms : array_like or callable
        The background RMS (sky noise per pixel) map, same shape.
    header : `~astropy.io.fits.Header`
        Provenance keywords (see `ezbkg_ccd.provenance.KEYWORDS`) and
        ``BUNIT``.
    source_mask : `~numpy.ndarray` of bool, optional
        The source mask the estimate excluded, if any.
    invalid_mask : `~numpy.ndarray` of bool, optional
        The invalid pixels the estimate excluded, if known.
    shape : (int, int), optional
        The image shape; required when a map is a callable.
    subtract_from : callable, optional
        In-place subtraction without a full-size map, used by
        `subtract_from` while `data` is not computed.
    meshes : `MeshValues`, optional
        The values per mesh, if the estimator has a mesh grid
        (`background_mesh`, `background_rms_mesh`, `n_pixels_mesh`).

    Raises
    ------
    ValueError
        If the maps are not 2-D arrays of one shape or ``header`` lacks a
        required keyword.

    Examples
    --------
    >>> import numpy as np
    >>> from ezbkg_ccd import estimate_background
    >>> rng = np.random.default_rng(0)
    >>> bkg = estimate_background(rng.normal(10.0, 1.0, (128, 128)),
    ...                           box_size=32)
    >>> bkg.method, bkg.box_size, bkg.is_2d
    ('sep', (32, 32), True)
    >>> round(bkg.global_back, 1), round(bkg.global_rms, 1), bkg.unit
    (10.0, 1.0, Unit("adu"))
    """

    read = registry.UnifiedReadWriteMethod(BackgroundRead)
    write = registry.UnifiedReadWriteMethod(BackgroundWrite)

    def __init__(self, data, rms, header, *, source_mask=None,
                 invalid_mask=None, shape=None, subtract_from=None,
                 meshes=None):
        self._data, self._rms = _held(data), _held(rms)
        self.meshes = meshes
        if callable(data) or callable(rms):
            if shape is None:
                msg = 'shape must be given when a map is computed lazily'
                raise ValueError(msg)
            self._shape = tuple(shape)
        elif self._data.ndim != 2 or self._rms.shape != self._data.shape:
            msg = ('data and rms must be 2-D arrays of one shape, got '
                   f'{self._data.shape} and {self._rms.shape}')
            raise ValueError(msg)
        else:
            self._shape = self._data.shape
        self._subtract_from = subtract_from
        missing = [key for key in REQUIRED_KEYWORDS if key not in header]
        if missing:
            msg = f'header lacks the provenance keywords {missing}'
            raise ValueError(msg)
        self.header = header
        self.source_mask = source_mask
        self.invalid_mask = invalid_mask

    @property
    def data(self):
        """The background map (computed on first access if lazy)."""
        if callable(self._data):
            self._data = np.asanyarray(self._data())
        return self._data

    @property
    def rms(self):
        """The background RMS map (computed on first access if lazy)."""
        if callable(self._rms):
            self._rms = np.asanyarray(self._rms())
        return self._rms

    def _fresh_rms(self):
        """
        A newly computed RMS map the caller may overwrite, or `None`.

        Only a map still to be computed qualifies; it is not kept, so this
        background stays whole.
        """
        return np.asanyarray(self._rms()) if callable(self._rms) else None

    def load(self):
        """Compute any lazily evaluated map now (Dask maps and masks into
        memory); return this background."""
        for name in ('_data', '_rms', 'source_mask', 'invalid_mask'):
            if is_dask(getattr(self, name)):
                setattr(self, name, np.asarray(getattr(self, name)))
        for name in ('data', 'rms'):
            getattr(self, name)
        return self

    def __getstate__(self):
        """
        The state to pickle or deep-copy: the maps computed, without the
        estimator's objects that computed them (a `sep.Background` cannot
        be pickled), so that a background can be sent to Dask or
        multiprocessing workers. This background is left as it was (maps
        not yet computed stay so).

        Examples
        --------
        >>> import copy, pickle
        >>> import numpy as np
        >>> from ezbkg_ccd import estimate_background
        >>> bkg = estimate_background(np.full((64, 64), 5.0), box_size=32)
        >>> again = pickle.loads(pickle.dumps(bkg))
        >>> bool((again.data == bkg.data).all()), again.header == bkg.header
        (True, True)
        >>> copy.deepcopy(bkg).global_back
        5.0
        """
        state = {**self.__dict__, '_subtract_from': None}
        for name in ('_data', '_rms'):  # computed for the copy only
            if callable(state[name]):
                state[name] = np.asanyarray(state[name]())
        return state

    def filled(self, where, value):
        """
        A copy whose maps hold ``value`` where ``where`` is `True` (areas
        with no data); maps still to compute, or Dask maps, stay so.

        Examples
        --------
        >>> import numpy as np
        >>> from ezbkg_ccd import estimate_background
        >>> bkg = estimate_background(np.full((64, 64), 3.0), box_size=32)
        >>> edge = np.zeros((64, 64), bool)
        >>> edge[:, -4:] = True
        >>> filled = bkg.filled(edge, np.nan)
        >>> bool(np.isnan(filled.data[0, -1])), float(filled.data[0, 0])
        (True, 3.0)
        """
        def fill(values):
            if callable(values):
                return lambda: fill(values())
            choose = (dask_array().where if is_dask(values) or is_dask(where)
                      else np.where)
            return choose(where, values.dtype.type(value), values)

        return Background(fill(self._data), fill(self._rms),
                          fits.Header(self.header),
                          source_mask=self.source_mask,
                          invalid_mask=self.invalid_mask, shape=self.shape,
                          meshes=self.meshes)

    @property
    def shape(self):
        """The image shape, ``(ny, nx)``."""
        return self._shape

    def _mesh(self, name):
        """A field of `meshes`, or `None`."""
        return None if self.meshes is None else getattr(self.meshes, name)

    @property
    def background_mesh(self):
        """
        The level of each ``box_size`` mesh as the map interpolates it
        (photutils' name; SExtractor's ``MINIBACK``), or `None` if the
        estimator has no mesh grid (``constant``) or the background was
        read from a file.

        Meshes tile the image from pixel (0, 0), the last row and column
        cut short (`~ezbkg_ccd.meshes.grid_shape`). For SEP's map, a mesh
        with under half its pixels usable (`n_pixels_mesh`) holds the
        value filled from its neighbours, and every mesh is after the
        median filter (`MeshValues` says what the other estimators
        hold). The arrays are read-only copies.

        Examples
        --------
        >>> import numpy as np
        >>> from ezbkg_ccd import estimate_background
        >>> data = np.random.default_rng(0).normal(10.0, 1.0, (100, 128))
        >>> bkg = estimate_background(data, box_size=32)
        >>> bkg.background_mesh.shape, bkg.n_pixels_mesh[-1].tolist()
        ((4, 4), [128, 128, 128, 128])
        >>> np.round(bkg.background_mesh[0], 1)
        array([9.9, 9.9, 9.9, 9.8], dtype=float32)
        """
        return self._mesh('background')

    @property
    def background_rms_mesh(self):
        """The RMS of each mesh (SExtractor's ``MINIBACK_RMS``), or `None`;
        see `background_mesh` and `MeshValues`."""
        return self._mesh('rms')

    @property
    def n_pixels_mesh(self):
        """The number of usable pixels (not invalid, not masked, before
        clipping) of each mesh, or `None`; see `background_mesh` and
        `MeshValues`."""
        return self._mesh('n_pixels')

    @property
    def npixels_mesh(self):
        """`n_pixels_mesh` by the name photutils used before 3.0 (which
        counts the pixels left after clipping)."""
        return self.n_pixels_mesh

    def plot_meshes(self, *, ax=None, marker='+', markersize=None,
                    color='blue', alpha=None, outlines=False,
                    excluded_color='red', **kwargs):
        """
        Mark the meshes on a matplotlib axes, as photutils'
        ``Background2D.plot_meshes`` does.

        Each mesh's centre is marked with ``marker``; a mesh whose value
        the estimator filled from its neighbours (for SEP, one with under
        half its pixels usable) with an ``x`` in ``excluded_color``. With
        ``outlines``, the mesh boxes are drawn too (``kwargs`` go to
        their `matplotlib.patches.Rectangle`).

        Parameters
        ----------
        ax : `matplotlib.axes.Axes`, optional
            Where to draw (default: the current axes).
        marker, markersize, color, alpha
            As for `matplotlib.axes.Axes.scatter` (``markersize`` in
            points squared).
        outlines : bool, optional
            Draw each mesh's box.
        excluded_color : str, optional
            Colour of the meshes filled from their neighbours.

        Returns
        -------
        ax : `matplotlib.axes.Axes`

        Raises
        ------
        ValueError
            If this background has no mesh values (`background_mesh` is
            `None`).
        """
        if self.meshes is None:
            msg = (f'this background (method {self.method!r}) has no mesh '
                   'values to plot: a constant level, a background read '
                   'from a file, or an estimator that keeps none')
            raise ValueError(msg)
        filled = self.meshes.filled
        if filled is None:
            filled = poorly_covered(self.n_pixels_mesh, self.shape,
                                    self.box_size)
        return plot_mesh_grid(self.shape, self.box_size, filled, ax=ax,
                              marker=marker, markersize=markersize,
                              color=color, alpha=alpha, outlines=outlines,
                              excluded_color=excluded_color, **kwargs)

    def subtract_from(self, array):
        """
        Subtract the background from a float ``array`` in place.

        While the map has not been computed, an estimator's own in-place
        subtraction (SEP's ``subfrom``) is used, so no full-size map is
        made.

        Examples
        --------
        >>> import numpy as np
        >>> from ezbkg_ccd import estimate_background
        >>> data = np.full((64, 64), 5.0, dtype=np.float32)
        >>> residual = data.copy()
        >>> estimate_background(data, box_size=32).subtract_from(residual)
        >>> float(np.abs(residual).max())
        0.0
        """
        if np.shape(array) != self.shape:
            msg = (f'array has shape {np.shape(array)}, but the background '
                   f'has shape {self.shape}')
            raise ValueError(msg)
        if array.dtype.kind != 'f':
            msg = f'array must hold floats, got dtype {array.dtype}'
            raise TypeError(msg)
        if (callable(self._data) and self._subtract_from is not None
                and array.dtype.isnative and array.flags.c_contiguous):
            self._subtract_from(array)
        else:  # a Dask map is computed
            np.subtract(array, np.asarray(self.data), out=array,
                        casting='unsafe')

    @property
    def unit(self):
        """The unit of the maps (``BUNIT``; dimensionless if absent)."""
        return u.Unit(self.header.get('BUNIT', ''))

    @property
    def method(self):
        """The estimator name (``BKGTYPE`` in lower case)."""
        return self.header['BKGTYPE'].lower()

    @property
    def is_2d(self):
        """Whether the background varies across the image."""
        return bool(self.header['BKGIS2D'])

    @property
    def box_size(self):
        """The mesh size, ``(ny, nx)``."""
        return (self.header['BKGBOX'], self.header['BKGBOXX'])

    @property
    def filter_size(self):
        """The median-filter size in meshes, ``(ny, nx)``."""
        return (self.header['BKGFILT'], self.header['BKGFILTX'])

    @property
    def filter_threshold(self):
        """The median-filter threshold."""
        return float(self.header['BKGFTHR'])

    @property
    def global_back(self):
        """The global background level."""
        return float(self.header['BKGVALU'])

    @property
    def global_rms(self):
        """The global background RMS."""
        return float(self.header['BKGSIG'])

    @property
    def error(self):
        """
        Standard error of the background model at each pixel.

        Each level is SExtractor's mode estimate ``2.5 median - 1.5 mean``
        of ``BKGNPIX`` pixels, whose variance for Gaussian noise is
        ``(6.25 pi / 2 + 2.25 - 7.5) rms**2 / BKGNPIX``, so the error is
        about ``2.14 rms / sqrt(BKGNPIX)`` (an upper bound where the
        median filter and the spline average meshes, and for the median
        or mean, whose variance is lower).
        """
        scale = np.sqrt(self.error_variance_scale)
        return self.rms * self.rms.dtype.type(scale)

    @property
    def error_variance_scale(self):
        """``(error / rms) ** 2``: the model variance per unit sky variance."""
        return MODE_VARIANCE_FACTOR / self.header['BKGNPIX']

    def to_ccddata(self):
        """
        Return the map as a `~astropy.nddata.CCDData`.

        The uncertainty is `~astropy.nddata.StdDevUncertainty` of the RMS;
        ``meta`` is a copy of the provenance header.

        Examples
        --------
        >>> import numpy as np
        >>> from ezbkg_ccd import estimate_background
        >>> bkg = estimate_background(np.full((64, 64), 2.0), box_size=32)
        >>> ccd = bkg.to_ccddata()
        >>> ccd.unit, ccd.meta['BKGTYPE'], float(ccd.data.mean())
        (Unit("adu"), 'SEP', 2.0)
        """
        data, rms = ((array if is_dask(array) else np.array(array))
                     for array in (self.data, self.rms))
        return CCDData(data, unit=self.unit,
                       uncertainty=StdDevUncertainty(rms),
                       meta=fits.Header(self.header))

    @property
    def is_dask(self):
        """Whether the maps are Dask arrays (of a frame processed in
        chunks), computed only when used."""
        return is_dask(self._data)

    @property
    def data_load(self):
        """Whether the background map is in memory (not still to compute,
        nor a Dask array)."""
        return not (callable(self._data) or is_dask(self._data))

    def _fields(self):
        """What `repr` shows."""
        return {'method': self.method, 'shape': self.shape,
                'global_back': f'{self.global_back:.6g}',
                'global_rms': f'{self.global_rms:.6g}', 'unit': self.unit,
                'data_load': self.data_load}

    def __repr__(self):
        lines = ',\n'.join(f'  {key} = {value}'
                           for key, value in self._fields().items())
        return f'Background(\n{lines}\n)'
