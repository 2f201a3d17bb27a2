# Licensed under a 3-clause BSD style license - see LICENSE
"""
Dask, where a frame is processed lazily: recognising its arrays, importing
it with a clear message, and sizing a frame's chunks.
"""

from ezbkg_ccd._optional import optional_module

__all__ = []

#: Bytes of one chunk of a lazily processed frame (in its working dtype)
#: when the chunks are chosen automatically: small enough that a few per
#: worker thread, and their maps, fit in memory; large enough that the
#: rows each chunk also reads for SEP's median filter (two rows of
#: meshes, with the default filter) cost little.
CHUNK_BYTES = 64 * 2**20

#: The smallest share of the available memory above which a frame read
#: from a FITS file by the command line is processed in chunks.
LARGE_FRAME_SHARE = 0.25


def is_dask(value):
    """
    Whether ``value`` is a Dask collection (a `dask.array.Array`).

    Examples
    --------
    >>> import numpy as np
    >>> from ezbkg_ccd._dask import is_dask
    >>> is_dask(np.zeros(3)), is_dask([1, 2])
    (False, False)
    """
    return callable(getattr(value, '__dask_graph__', None))


def dask_array():
    """`dask.array`, or an `ImportError` saying how to install it."""
    return optional_module('dask.array', extra='dask',
                           purpose='processing a frame in chunks')


def chunk_rows(width, itemsize, chunk_bytes=CHUNK_BYTES):
    """
    Rows of a chunk of about ``chunk_bytes`` of an image ``width`` pixels
    wide (at least one row).

    Examples
    --------
    >>> from ezbkg_ccd._dask import chunk_rows
    >>> chunk_rows(32768, 4), chunk_rows(10**9, 8)
    (512, 1)
    """
    return max(1, chunk_bytes // (width * itemsize))


def mesh_rows(rows, box_height):
    """
    ``rows`` rounded to whole rows of meshes ``box_height`` high (at
    least one).

    Examples
    --------
    >>> from ezbkg_ccd._dask import mesh_rows
    >>> mesh_rows(300, 64), mesh_rows(10, 64)
    (320, 64)
    """
    return max(1, round(rows / box_height)) * box_height


def available_memory():
    """
    Bytes of memory available to new work (``MemAvailable`` of
    ``/proc/meminfo``), or `None` where that is not known.
    """
    try:
        with open('/proc/meminfo') as meminfo:
            for line in meminfo:
                if line.startswith('MemAvailable:'):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def with_mask(ccd, mask):
    """
    ``ccd`` (a `~astropy.nddata.CCDData`) given ``mask``, a Dask array
    kept lazy: CCDData's own setter would compute it into memory.
    """
    if mask is not None:
        ccd._mask = mask  # CCDData.mask's setter calls np.asarray
    return ccd
