# Licensed under a 3-clause BSD style license - see LICENSE
"""
SEP's C background functions, called through `ctypes`.

SEP's Python API holds the GIL for the whole computation and always
allocates new full-size maps. Its C library, which is the same shared
object, does neither when called through `ctypes`: each call releases
the GIL, and the maps are written one row at a time into arrays the
caller owns. That lets strips of one frame run in threads and write
their own rows of one result (`ezbkg_ccd.strips`).

Only SEP versions whose ``sep_image`` layout is known are bound (its
current layout dates from SEP 1.3.0); with any other version
`AVAILABLE` is False.
"""

import ctypes

import numpy as np
import sep

__all__ = ['AVAILABLE', 'background_rows']

#: (major, minor) versions of SEP whose ``sep_image`` layout is below.
KNOWN_VERSIONS = ((1, 3), (1, 4))

_TYPE_CODES = {np.dtype('float32'): 42, np.dtype('float64'): 82}
_BYTE_CODE = 11
_MESSAGE_BYTES = 512


class _Image(ctypes.Structure):
    """SEP's ``sep_image`` (sep.h, SEP 1.3 and 1.4)."""

    _fields_ = [('data', ctypes.c_void_p), ('noise', ctypes.c_void_p),
                ('mask', ctypes.c_void_p), ('segmap', ctypes.c_void_p),
                ('dtype', ctypes.c_int), ('ndtype', ctypes.c_int),
                ('mdtype', ctypes.c_int), ('sdtype', ctypes.c_int),
                ('segids', ctypes.c_void_p), ('idcounts', ctypes.c_void_p),
                ('numids', ctypes.c_int64), ('w', ctypes.c_int64),
                ('h', ctypes.c_int64), ('noiseval', ctypes.c_double),
                ('noise_type', ctypes.c_short), ('gain', ctypes.c_double),
                ('maskthresh', ctypes.c_double)]


def _version(text):
    """``(major, minor)`` of a version string, or None if it has none."""
    try:
        major, minor = text.split('.')[:2]
        return int(major), int(minor)
    except ValueError:
        return None


def _bind(module):
    """The SEP C library with the background prototypes, or None."""
    if _version(module.__version__) not in KNOWN_VERSIONS:
        return None
    try:
        library = ctypes.CDLL(module.__file__)
        library.sep_background.argtypes = [
            ctypes.POINTER(_Image), ctypes.c_int64, ctypes.c_int64,
            ctypes.c_int64, ctypes.c_int64, ctypes.c_double,
            ctypes.POINTER(ctypes.c_void_p)]
        for name in ('sep_bkg_line', 'sep_bkg_rmsline'):
            getattr(library, name).argtypes = [
                ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p, ctypes.c_int]
        library.sep_bkg_free.argtypes = [ctypes.c_void_p]
        library.sep_bkg_free.restype = None
        library.sep_get_errmsg.argtypes = [ctypes.c_int, ctypes.c_char_p]
        library.sep_get_errmsg.restype = None
        library.sep_get_errdetail.argtypes = [ctypes.c_char_p]
        library.sep_get_errdetail.restype = None
    except (OSError, AttributeError):
        return None
    return library


_LIBRARY = _bind(sep)

#: Whether `background_rows` can be used with the installed SEP.
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


def background_rows(data, mask, *, rows, own, back, rms, bw, bh, fw, fh,
                    fthresh):
    """
    SEP's maps of ``data[rows]``, written into ``back[own]``, ``rms[own]``.

    Parameters
    ----------
    data : `~numpy.ndarray`
        Native, C-contiguous float32 or float64 image.
    mask : `~numpy.ndarray` of bool or None
        C-contiguous, ``data``'s shape; True excludes a pixel.
    rows : slice
        Rows SEP computes with (a strip with its overlap).
    own : slice
        Rows, within ``rows``, whose maps are written.
    back, rms : `~numpy.ndarray`
        C-contiguous, ``data``'s shape and dtype; written in ``own``.
    bw, bh, fw, fh, fthresh
        As for `sep.Background`.

    Examples
    --------
    >>> import numpy as np
    >>> import sep
    >>> from ezbkg_ccd._sep_c import background_rows
    >>> data = np.random.default_rng(0).normal(5, 1, (256, 64)).astype('f4')
    >>> back, rms = np.zeros_like(data), np.zeros_like(data)
    >>> background_rows(data, None, rows=slice(0, 256), own=slice(64, 128),
    ...                 back=back, rms=rms, bw=32, bh=32, fw=3, fh=3,
    ...                 fthresh=0.0)
    >>> bool((back[64:128] == sep.Background(data, bw=32, bh=32).back()[64:128]).all())
    True
    >>> bool((back[:64] == 0).all())
    True
    """
    if data.dtype not in _TYPE_CODES or {back.dtype, rms.dtype} != {data.dtype}:
        msg = ('data, back and rms must share a native float32 or float64 '
               f'dtype, got {data.dtype}, {back.dtype}, {rms.dtype}')
        raise TypeError(msg)
    if mask is not None and mask.dtype != bool:
        msg = f'mask must be bool, got {mask.dtype}'
        raise TypeError(msg)
    code = _TYPE_CODES[data.dtype]
    for array in (data, back, rms) if mask is None else (data, mask, back, rms):
        if not array.flags.c_contiguous or array.shape != data.shape:
            msg = 'data, mask, back and rms must be C-contiguous and of one shape'
            raise ValueError(msg)
    image = _Image(data=_address(data, rows.start), dtype=code,
                   w=data.shape[1], h=rows.stop - rows.start)
    if mask is not None:
        image.mask = _address(mask, rows.start)
        image.mdtype = _BYTE_CODE
    background = ctypes.c_void_p()
    _check(_LIBRARY.sep_background(ctypes.byref(image), bw, bh, fw, fh,
                                   fthresh, ctypes.byref(background)))
    back_line, rms_line = _LIBRARY.sep_bkg_line, _LIBRARY.sep_bkg_rmsline
    back_address, rms_address = _address(back, 0), _address(rms, 0)
    step = back.strides[0]
    try:
        for row in range(own.start, own.stop):
            offset = row * step
            status = (back_line(background, row - rows.start,
                                back_address + offset, code)
                      or rms_line(background, row - rows.start,
                                  rms_address + offset, code))
            _check(status)
    finally:
        _LIBRARY.sep_bkg_free(background)
