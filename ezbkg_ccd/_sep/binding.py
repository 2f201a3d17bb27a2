# Licensed under a 3-clause BSD style license - see LICENSE
"""
SEP's C background functions, called through `ctypes`.

SEP's Python API holds the GIL for the whole computation and always
allocates new full-size maps. Its C library, which is the same shared
object, does neither when called through `ctypes`: each call releases
the GIL, the filtered mesh grids can be read from the ``sep_bkg`` it
returns, and the maps can be interpolated one row at a time, from any
mesh grid, into arrays the caller owns. That lets strips of one frame
run in threads (`ezbkg_ccd._sep.strips`).

Only the SEP releases in `TESTED_VERSIONS` are bound: their ``sep_image``
and ``sep_bkg`` layouts and function signatures were compared with
``sep.h`` and their maps with `sep.Background`. With any other version
(a patch release could change a struct and corrupt memory before any
check runs) `AVAILABLE` is False; `ezbkg_ccd._sep.strips.usable` adds a
self-check on first use.
"""

import ctypes

import numpy as np
import sep

from ezbkg_ccd.meshes import grid_shape

__all__ = ['AVAILABLE', 'TESTED_VERSIONS', 'filtered_meshes', 'fill_map',
           'interpolate_rows', 'spline_grids', 'spline_second_derivatives',
           'subtract_maps']

#: SEP releases whose struct layouts and functions are those below.
TESTED_VERSIONS = ('1.4.0', '1.4.1')

_TYPE_CODES = {np.dtype('float32'): 42, np.dtype('float64'): 82}
_BYTE_CODE = 11
_MESSAGE_BYTES = 512


class _Image(ctypes.Structure):
    """SEP's ``sep_image`` (sep.h of SEP 1.4.0 and 1.4.1)."""

    _fields_ = [('data', ctypes.c_void_p), ('noise', ctypes.c_void_p),
                ('mask', ctypes.c_void_p), ('segmap', ctypes.c_void_p),
                ('dtype', ctypes.c_int), ('ndtype', ctypes.c_int),
                ('mdtype', ctypes.c_int), ('sdtype', ctypes.c_int),
                ('segids', ctypes.c_void_p), ('idcounts', ctypes.c_void_p),
                ('numids', ctypes.c_int64), ('w', ctypes.c_int64),
                ('h', ctypes.c_int64), ('noiseval', ctypes.c_double),
                ('noise_type', ctypes.c_short), ('gain', ctypes.c_double),
                ('maskthresh', ctypes.c_double)]


class _Background(ctypes.Structure):
    """SEP's ``sep_bkg`` (sep.h of SEP 1.4.0 and 1.4.1)."""

    _fields_ = [('w', ctypes.c_int64), ('h', ctypes.c_int64),
                ('bw', ctypes.c_int64), ('bh', ctypes.c_int64),
                ('nx', ctypes.c_int64), ('ny', ctypes.c_int64),
                ('n', ctypes.c_int64), ('global_back', ctypes.c_float),
                ('global_rms', ctypes.c_float),
                ('back', ctypes.POINTER(ctypes.c_float)),
                ('dback', ctypes.POINTER(ctypes.c_float)),
                ('sigma', ctypes.POINTER(ctypes.c_float)),
                ('dsigma', ctypes.POINTER(ctypes.c_float))]


def _bind(module):
    """The SEP C library with the background prototypes, or None."""
    if module.__version__ not in TESTED_VERSIONS:
        return None
    try:
        library = ctypes.CDLL(module.__file__)
        library.sep_background.argtypes = [
            ctypes.POINTER(_Image), ctypes.c_int64, ctypes.c_int64,
            ctypes.c_int64, ctypes.c_int64, ctypes.c_double,
            ctypes.POINTER(ctypes.POINTER(_Background))]
        for name in ('sep_bkg_line', 'sep_bkg_rmsline'):
            getattr(library, name).argtypes = [
                ctypes.POINTER(_Background), ctypes.c_int64, ctypes.c_void_p,
                ctypes.c_int]
        for name in ('sep_bkg_array', 'sep_bkg_rmsarray', 'sep_bkg_subarray'):
            getattr(library, name).argtypes = [
                ctypes.POINTER(_Background), ctypes.c_void_p, ctypes.c_int]
        library.sep_bkg_free.argtypes = [ctypes.POINTER(_Background)]
        library.sep_bkg_free.restype = None
        library.sep_get_errmsg.argtypes = [ctypes.c_int, ctypes.c_char_p]
        library.sep_get_errmsg.restype = None
        library.sep_get_errdetail.argtypes = [ctypes.c_char_p]
        library.sep_get_errdetail.restype = None
    except (OSError, AttributeError):
        return None
    return library


_LIBRARY = _bind(sep)

#: Whether the functions below can be used with the installed SEP.
AVAILABLE = _LIBRARY is not None


def _check(status):
    """Raise SEP's own message for a non-zero status."""
    if status:
        message = ctypes.create_string_buffer(_MESSAGE_BYTES)
        detail = ctypes.create_string_buffer(_MESSAGE_BYTES)
        _LIBRARY.sep_get_errmsg(status, message)
        _LIBRARY.sep_get_errdetail(detail)
        text = ': '.join(part.value.decode(errors='replace')
                         for part in (message, detail) if part.value)
        msg = f'SEP failed to compute the background: {text}'
        raise RuntimeError(msg)


def _address(array, row):
    """Address of ``array[row, 0]``."""
    return array.ctypes.data + row * array.strides[0]


def _require_contiguous(names, *arrays):
    """Raise unless the arrays are C-contiguous and of one shape."""
    for array in arrays:
        if not array.flags.c_contiguous or array.shape != arrays[0].shape:
            msg = f'{names} must be C-contiguous and of one shape'
            raise ValueError(msg)


def filtered_meshes(data, mask, *, rows, bw, bh, fw, fh, fthresh):
    """
    SEP's filtered mesh grids of ``data[rows]``.

    The grids are what `sep.Background` interpolates: each mesh's mode
    and sigma after bad meshes are filled and the median filter is
    applied.

    Parameters
    ----------
    data : `~numpy.ndarray`
        Native, C-contiguous float32 or float64 image.
    mask : `~numpy.ndarray` of bool or None
        C-contiguous, ``data``'s shape; True excludes a pixel.
    rows : slice
        Rows of ``data`` that SEP computes with.
    bw, bh, fw, fh, fthresh
        As for `sep.Background`.

    Returns
    -------
    back, sigma : `~numpy.ndarray`
        float32 grids, one row per mesh row of ``data[rows]``.

    Examples
    --------
    >>> import numpy as np
    >>> from ezbkg_ccd._sep.binding import filtered_meshes
    >>> data = np.full((96, 64), 5.0, dtype=np.float32)
    >>> back, sigma = filtered_meshes(data, None, rows=slice(0, 96), bw=32,
    ...                               bh=32, fw=3, fh=3, fthresh=0.0)
    >>> back.shape, float(back.max()), float(sigma.max())
    ((3, 2), 5.0, 0.0)
    """
    if data.dtype not in _TYPE_CODES:
        msg = f'data must be native float32 or float64, got {data.dtype}'
        raise TypeError(msg)
    if mask is not None and mask.dtype != bool:
        msg = f'mask must be bool, got {mask.dtype}'
        raise TypeError(msg)
    _require_contiguous('data and mask',
                        *(data,) if mask is None else (data, mask))
    image = _Image(data=_address(data, rows.start), dtype=_TYPE_CODES[data.dtype],
                   w=data.shape[1], h=rows.stop - rows.start)
    if mask is not None:
        image.mask = _address(mask, rows.start)
        image.mdtype = _BYTE_CODE
    background = ctypes.POINTER(_Background)()
    _check(_LIBRARY.sep_background(ctypes.byref(image), bw, bh, fw, fh,
                                   fthresh, ctypes.byref(background)))
    try:
        grid = background.contents
        shape = grid_shape((image.h, image.w), (bh, bw))
        if (grid.ny, grid.nx, grid.w, grid.h) != (*shape, image.w, image.h):
            msg = (f'sep {sep.__version__} returned a background of an '
                   'unexpected layout')
            raise RuntimeError(msg)
        return (np.ctypeslib.as_array(grid.back, shape).copy(),
                np.ctypeslib.as_array(grid.sigma, shape).copy())
    finally:
        _LIBRARY.sep_bkg_free(background)


def spline_second_derivatives(nodes):
    """
    The y-spline coefficients that SEP keeps with a mesh grid (its
    ``dback`` and ``dsigma``).

    SEP's ``makebackspline`` recurrence for a natural cubic spline
    along each column of meshes, in float32 and in the same order, so
    the result equals SEP's bit for bit.

    Examples
    --------
    >>> import numpy as np
    >>> from ezbkg_ccd._sep.binding import spline_second_derivatives
    >>> nodes = np.array([[0.0], [1.0], [0.0], [1.0]], dtype=np.float32)
    >>> spline_second_derivatives(nodes).ravel()
    array([ 0.       , -0.5277778,  0.6666667,  0.       ], dtype=float32)
    >>> float(abs(spline_second_derivatives(np.arange(4.0)[:, None])).max())
    0.0
    """
    nodes = np.asarray(nodes, dtype=np.float32)
    second = np.zeros_like(nodes)
    upper = np.zeros_like(nodes)
    four, six, two = np.float32(4), np.float32(6), np.float32(2)
    for y in range(1, len(nodes) - 1):
        factor = np.float32(-1) / (second[y - 1] + four)
        second[y] = factor
        upper[y] = factor * (upper[y - 1] - six * (nodes[y + 1] + nodes[y - 1]
                                                   - two * nodes[y]))
    for y in range(len(nodes) - 2, 0, -1):
        second[y] = (second[y] * second[y + 1] + upper[y]) / np.float64(6)
    return second


def _grid_background(grids, shape, *, bw, bh):
    """
    A ``sep_bkg`` of the mesh ``grids`` (which must outlive it) for an
    image of ``shape``.
    """
    if any(grid.dtype != np.float32 for grid in grids):
        msg = 'grids must be float32'
        raise TypeError(msg)
    _require_contiguous('grids', *grids)
    ny, nx = grids[0].shape
    if (ny, nx) != grid_shape(shape, (bh, bw)):
        msg = f'grids of shape {grids[0].shape} do not fit maps of {shape}'
        raise ValueError(msg)
    pointers = [grid.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
                for grid in grids]
    return _Background(w=shape[1], h=shape[0], bw=bw, bh=bh, nx=nx, ny=ny,
                       n=nx * ny, back=pointers[0], dback=pointers[1],
                       sigma=pointers[2], dsigma=pointers[3])


def _whole(function, grids, array, bw, bh):
    """Call SEP's ``function`` of a whole image ``array`` (``sep_bkg_array``,
    ``sep_bkg_rmsarray``, ``sep_bkg_subarray``) with the mesh ``grids``."""
    if array.dtype not in _TYPE_CODES:
        msg = f'array must be native float32 or float64, got {array.dtype}'
        raise TypeError(msg)
    _require_contiguous('array', array)
    background = _grid_background(grids, array.shape, bw=bw, bh=bh)
    _check(function(ctypes.byref(background), array.ctypes.data,
                    _TYPE_CODES[array.dtype]))


def fill_map(grids, out, *, which, bw, bh):
    """
    Write SEP's whole ``which`` map (``'back'`` or ``'rms'``) of the mesh
    ``grids`` into ``out``, in one call, as `sep.Background.back` and
    ``rms`` do.

    Examples
    --------
    >>> import numpy as np
    >>> import sep
    >>> from ezbkg_ccd._sep.binding import (
    ...     fill_map, filtered_meshes, spline_grids)
    >>> data = np.random.default_rng(0).normal(5, 1, (96, 64))
    >>> back, sigma = filtered_meshes(data, None, rows=slice(0, 96), bw=32,
    ...                               bh=32, fw=3, fh=3, fthresh=0.0)
    >>> grids = spline_grids(back, sigma)
    >>> rms = np.empty_like(data)
    >>> fill_map(grids, rms, which='rms', bw=32, bh=32)
    >>> bool((rms == sep.Background(data, bw=32, bh=32).rms()).all())
    True
    """
    function = {'back': _LIBRARY.sep_bkg_array,
                'rms': _LIBRARY.sep_bkg_rmsarray}[which]
    _whole(function, grids, out, bw, bh)


def subtract_maps(grids, array, *, bw, bh):
    """
    Subtract SEP's background map of the mesh ``grids`` from ``array``
    in place, row by row as `sep.Background.subfrom` does (no full-size
    map is made).

    Examples
    --------
    >>> import numpy as np
    >>> import sep
    >>> from ezbkg_ccd._sep.binding import (
    ...     filtered_meshes, spline_grids, subtract_maps)
    >>> data = np.random.default_rng(0).normal(5, 1, (96, 64))
    >>> back, sigma = filtered_meshes(data, None, rows=slice(0, 96), bw=32,
    ...                               bh=32, fw=3, fh=3, fthresh=0.0)
    >>> grids = spline_grids(back, sigma)
    >>> residual = data.copy()
    >>> subtract_maps(grids, residual, bw=32, bh=32)
    >>> expected = data.copy()
    >>> sep.Background(data, bw=32, bh=32).subfrom(expected)
    >>> bool((residual == expected).all())
    True
    """
    _whole(_LIBRARY.sep_bkg_subarray, grids, array, bw, bh)


def spline_grids(back, sigma):
    """
    The grids SEP interpolates, ``(back, dback, sigma, dsigma)``: the
    filtered mesh grids and their spline coefficients along y.
    """
    return (back, spline_second_derivatives(back),
            sigma, spline_second_derivatives(sigma))


def interpolate_rows(grids, *, rows, back, rms, bw, bh, first_row=0,
                     height=None):
    """
    SEP's bicubic maps of the mesh ``grids``, written into ``back[rows]``
    and ``rms[rows]``.

    Parameters
    ----------
    grids : (back, dback, sigma, dsigma)
        C-contiguous float32 mesh grids and their second derivatives
        along y (`spline_second_derivatives`), as SEP keeps them.
    rows : slice
        Rows of the image to write.
    back, rms : `~numpy.ndarray` or None
        C-contiguous float32 or float64 maps of the image, or of a block
        of its rows starting at ``first_row``; either may be `None` (not
        interpolated).
    bw, bh : int
        Mesh width and height.
    first_row : int, optional
        The image row that ``back[0]`` holds (0, the default: the maps
        are the whole image).
    height : int, optional
        The image height (by default that of ``back``).

    Examples
    --------
    SEP's own maps, rebuilt from its grids:

    >>> import numpy as np
    >>> import sep
    >>> from ezbkg_ccd._sep.binding import (
    ...     filtered_meshes, interpolate_rows, spline_second_derivatives)
    >>> data = np.random.default_rng(0).normal(5, 1, (128, 96)).astype('f4')
    >>> back, sigma = filtered_meshes(data, None, rows=slice(0, 128), bw=32,
    ...                               bh=32, fw=3, fh=3, fthresh=0.0)
    >>> grids = (back, spline_second_derivatives(back),
    ...          sigma, spline_second_derivatives(sigma))
    >>> maps = np.zeros_like(data), np.zeros_like(data)
    >>> interpolate_rows(grids, rows=slice(32, 128), back=maps[0],
    ...                  rms=maps[1], bw=32, bh=32)
    >>> single = sep.Background(data, bw=32, bh=32)
    >>> bool((maps[0][32:] == single.back()[32:]).all())
    True
    >>> bool((maps[1][:32] == 0).all())  # rows not asked for
    True
    >>> block = np.zeros((16, 96), 'f4'), np.zeros((16, 96), 'f4')
    >>> interpolate_rows(grids, rows=slice(100, 116), back=block[0],
    ...                  rms=block[1], bw=32, bh=32, first_row=100,
    ...                  height=128)
    >>> bool((block[1] == single.rms()[100:116]).all())
    True
    """
    maps = [array for array in (back, rms) if array is not None]
    if not maps or maps[0].dtype not in _TYPE_CODES or any(
            array.dtype != maps[0].dtype for array in maps):
        msg = ('back and rms must share a native float32 or float64 dtype, '
               f'got {getattr(back, "dtype", None)}, '
               f'{getattr(rms, "dtype", None)}')
        raise TypeError(msg)
    _require_contiguous('back and rms', *maps)
    shape = (maps[0].shape[0] if height is None else height, maps[0].shape[1])
    background = _grid_background(grids, shape, bw=bw, bh=bh)
    if not first_row <= rows.start <= rows.stop <= first_row + maps[0].shape[0]:
        msg = (f"rows {rows.start}:{rows.stop} are not within the maps' "
               f'rows {first_row}:{first_row + maps[0].shape[0]}')
        raise ValueError(msg)
    code = _TYPE_CODES[maps[0].dtype]
    reference = ctypes.byref(background)
    stride = maps[0].strides[0]
    lines = [(line, array.ctypes.data) for line, array in
             ((_LIBRARY.sep_bkg_line, back), (_LIBRARY.sep_bkg_rmsline, rms))
             if array is not None]
    for row in range(rows.start, rows.stop):
        offset = (row - first_row) * stride
        for line, start in lines:
            _check(line(reference, row, start + offset, code))
