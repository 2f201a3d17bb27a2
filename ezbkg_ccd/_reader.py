# Licensed under a 3-clause BSD style license - see LICENSE
"""
Reading a `~astropy.nddata.CCDData` from any FITS file a user has.

What `astropy.nddata.CCDData.read` reads, and also: the first image HDU
found whatever its kind (a tile-compressed ``.fits.fz`` frame in
extension 1), the ``MASK`` and ``UNCERT`` of an extension paired by its
``EXTVER``, data in native byte order, headers with unwritable cards
repaired (`ezbkg_ccd._headers`) and WCS distortion cards that crash
``astropy.wcs`` left out (`ezbkg_ccd._wcs`). Every failure names the
file.
"""

import astropy.units as u
import numpy as np
from astropy.io import fits
from astropy.nddata import (
    CCDData,
    InverseVariance,
    StdDevUncertainty,
    VarianceUncertainty,
)
from astropy.nddata.ccddata import _generate_wcs_and_update_header

from ezbkg_ccd._conditioning import work_dtype
from ezbkg_ccd._dask import chunk_rows, dask_array, mesh_rows, with_mask
from ezbkg_ccd._fits import open_fits
from ezbkg_ccd._headers import writable_header
from ezbkg_ccd._wcs import without_unsafe_distortion

__all__ = ['AUXILIARY_HDUS', 'hdulist_ccddata', 'image_hdus', 'image_index',
           'read_ccddata']

#: HDUs that belong to an image (CCDData's and ezbkg-ccd's own) and are
#: never images to process themselves.
AUXILIARY_HDUS = ('MASK', 'UNCERT', 'PSFIMAGE', 'BKG', 'BKGRMS')

#: Uncertainty classes by the name CCDData records in ``UTYPE``.
_UNCERTAINTIES = {kind.__name__: kind for kind in
                  (StdDevUncertainty, VarianceUncertainty, InverseVariance)}


def _is_image(hdu):
    """An image HDU with 2-D or larger data that is not auxiliary."""
    return (hdu.is_image and hdu.name not in AUXILIARY_HDUS
            and hdu.header.get('NAXIS', 0) >= 2
            and all(hdu.header.get(f'NAXIS{axis}', 0) > 0
                    for axis in range(1, hdu.header['NAXIS'] + 1)))


def image_hdus(hdulist):
    """
    Indices of the HDUs of ``hdulist`` that hold an image to process.

    Primary and extension images, tile-compressed ones included; not
    tables, empty HDUs or the auxiliary HDUs (`AUXILIARY_HDUS`).
    """
    return [index for index, hdu in enumerate(hdulist) if _is_image(hdu)]


def image_index(hdulist, hdu, path):
    """The index of the image HDU ``hdu`` (`None`: the first one), with a
    clear error."""
    if hdu is None:
        found = image_hdus(hdulist)
        if not found:
            kinds = ', '.join(f'{index}: {type(item).__name__} '
                              f'{item.name!r}'
                              for index, item in enumerate(hdulist))
            msg = (f'{str(path)!r} has no image HDU to read ({kinds}); name '
                   'one with hdu=')
            raise ValueError(msg)
        return found[0]
    if isinstance(hdu, bool):
        msg = f'hdu must be an int, a str or a (str, int) pair, got {hdu!r}'
        raise TypeError(msg)
    try:
        index = hdulist.index_of(hdu)
        item = hdulist[index]
    except (KeyError, IndexError, ValueError, TypeError) as exc:
        msg = f'{str(path)!r} has no HDU {hdu!r}'
        raise ValueError(msg) from exc
    if not (item.is_image and item.size):
        msg = (f'HDU {hdu!r} of {str(path)!r} is a {type(item).__name__} '
               'without image data')
        raise ValueError(msg)
    if item.name in AUXILIARY_HDUS:
        msg = (f'HDU {hdu!r} of {str(path)!r} is the {item.name} of an image, '
               f'not an image to process; the images are HDUs '
               f'{image_hdus(hdulist)}')
        raise ValueError(msg)
    return index


def _unit(header, unit, path):
    """The explicit ``unit``, else ``BUNIT``, else ``adu``."""
    text = str(header.get('BUNIT', '')).strip()
    if unit is not None or not text:
        return u.adu if unit is None else unit
    known = CCDData.known_invalid_fits_unit_strings  # 'ELECTRONS/S', ...
    if text in known:
        return u.Unit(known[text])
    try:
        return u.Unit('adu' if text.lower() == 'adu' else text)
    except ValueError as exc:
        msg = (f'the BUNIT {text!r} of {str(path)!r} is not a unit; give '
               'the unit another way: a CCDData with its unit, unit= of '
               'process_files, or the --unit option of ezbkg')
        raise ValueError(msg) from exc


def _physical(data, header):
    """
    The values of stored integer ``data`` that ``BSCALE`` and ``BZERO``
    still describe (an HDU scaled in memory, or a file opened with
    ``do_not_scale_image_data``): ``BSCALE * data + BZERO`` in float64,
    and the header without the two cards. Data astropy has scaled are
    returned as they are (its unsigned integers keep ``BZERO``).
    """
    bscale, bzero = header.get('BSCALE', 1), header.get('BZERO', 0)
    unsigned = (data.dtype.kind == 'u' and bscale == 1
                and bzero == 2 ** (8 * data.dtype.itemsize - 1))
    if data.dtype.kind not in 'iu' or (bscale, bzero) == (1, 0) or unsigned:
        return data, header
    header = header.copy()
    for key in ('BSCALE', 'BZERO'):
        header.remove(key, ignore_missing=True)
    return data * np.float64(bscale) + np.float64(bzero), header


def _native(data):
    """A copy in native byte order (nothing refers to the file after)."""
    return np.array(data, dtype=data.dtype.newbyteorder('='))


def _companion(hdulist, name, extver, shape, path):
    """The data of HDU ``(name, extver)``, `None` without one; an error
    naming the file if it does not fit the image."""
    if (name, extver) not in hdulist:
        return None
    data = hdulist[name, extver].data
    if data is None or data.shape != shape:
        found = None if data is None else data.shape
        msg = (f'the {name} HDU (EXTVER {extver}) of {str(path)!r} has shape '
               f'{found}, but its image has shape {shape}')
        raise ValueError(msg)
    return data


def _companions(hdulist, extver, shape, path):
    """The ``MASK`` and uncertainty of the image of version ``extver``."""
    mask = _companion(hdulist, 'MASK', extver, shape, path)
    if mask is not None:
        mask = mask.astype(bool)
    uncertainty = _companion(hdulist, 'UNCERT', extver, shape, path)
    if uncertainty is not None:
        kind = _UNCERTAINTIES.get(hdulist['UNCERT', extver].header.get('UTYPE'),
                                  StdDevUncertainty)
        uncertainty = kind(_native(uncertainty), copy=False)
    return mask, uncertainty


def read_ccddata(path, *, hdu=None, unit=None):
    """
    Read a `~astropy.nddata.CCDData` from ``path`` with clear errors.

    Parameters
    ----------
    path : str or `~pathlib.Path`
    hdu : int, str or (str, int), optional
        The image HDU; by default the first HDU with image data (see
        `image_hdus`), whose header is completed by the primary header's
        cards, as `~astropy.nddata.CCDData.read` does.
    unit : `~astropy.units.Unit` or str, optional
        The data unit; by default ``BUNIT``, or ``adu`` without one.

    Raises
    ------
    FileNotFoundError, OSError
        If the file is missing or not readable FITS.
    ValueError
        If it has no such HDU, that HDU holds no image (or is a ``MASK``,
        ``UNCERT``, ``BKG`` or ``BKGRMS``), its ``MASK`` or ``UNCERT``
        does not fit it, or its ``BUNIT`` is not a unit.
    """
    with open_fits(path) as hdulist:
        return hdulist_ccddata(hdulist, hdu=hdu, unit=unit, path=path)


def hdulist_ccddata(hdulist, *, hdu=None, unit=None, path='the HDU list'):
    """
    `read_ccddata` of an open `~astropy.io.fits.HDUList` (``path`` names
    it in messages); the data are not copied unless their byte order is
    not native.
    """
    source = repr(str(path))
    try:
        index = image_index(hdulist, hdu, path)
    except ValueError as exc:
        if getattr(getattr(hdulist, '_file', None), 'closed', False):
            msg = (f'{source} was closed before its HDUs were read; use it '
                   'inside its "with fits.open(...)" block, or pass the path')
            raise ValueError(msg) from exc
        raise
    item = hdulist[index]
    data, header = _physical(_native(item.data), item.header.copy())
    extver = item.header.get('EXTVER', 1) if index else 1
    mask, uncertainty = _companions(hdulist, extver, data.shape, path)
    header, wcs = _image_meta(hdulist, index, hdu, header, source)
    return CCDData(data, unit=_unit(header, unit, path), meta=header,
                   mask=mask, uncertainty=uncertainty, wcs=wcs, copy=False)


def _image_meta(hdulist, index, hdu, header, source):
    """The header and WCS of image HDU ``index`` (its ``header`` as
    read): completed by the primary header's cards when ``hdu`` was not
    chosen, made writable and readable by ``astropy.wcs``."""
    if hdu is None and index > 0:
        header.extend(hdulist[0].header, unique=True)
    header = writable_header(without_unsafe_distortion(header, source=source),
                             source=source)
    return _generate_wcs_and_update_header(header)


#: The box height the chunks of a lazily read file are fitted to.
_BOX_HEIGHT = 64

#: The first bytes of the compressed files astropy reads (gzip, bzip2,
#: zip), which cannot be read in part.
_COMPRESSED = (b'\x1f\x8b', b'BZh', b'PK\x03\x04')


def is_compressed_file(path):
    """Whether the file at ``path`` is gzip, bzip2 or zip compressed."""
    with open(path, 'rb') as file:
        start = file.read(4)
    return start.startswith(_COMPRESSED)


def _data_offset(hdu):
    """Where the data of an HDU read from a file start in it."""
    return hdu._data_offset  # fileinfo() has it too, but verifies headers


#: The stored dtype of each FITS ``BITPIX``.
_STORED = {8: 'u1', 16: '>i2', 32: '>i4', 64: '>i8', -32: '>f4', -64: '>f8'}


class FileRows:
    """
    The rows of an uncompressed FITS image, read from the file on demand
    in their physical values, for `dask.array.from_array`: it holds a
    path and offsets only, so Dask can send it to other processes.

    Integers scaled by ``BSCALE``/``BZERO`` become floats (float32 for 8
    and 16 bits, float64 otherwise, as astropy reads them), as do floats
    scaled so; unsigned integers stored with an offset ``BZERO`` become
    unsigned, and the ``BLANK`` value of integers becomes NaN.
    """

    ndim = 2

    def __init__(self, path, offset, header):
        self.path, self.offset = str(path), offset
        self.shape = (header['NAXIS2'], header['NAXIS1'])
        bitpix = header['BITPIX']
        self.stored = np.dtype(_STORED[bitpix])
        self.bscale = header.get('BSCALE', 1)
        self.bzero = header.get('BZERO', 0)
        self.blank = header.get('BLANK') if bitpix > 0 else None
        bits = 8 * self.stored.itemsize
        self.unsigned = (bitpix > 8 and self.bscale == 1
                         and self.bzero == 2 ** (bits - 1))
        self.scaled = (self.bscale, self.bzero) != (1, 0) and not self.unsigned
        if self.unsigned:
            self.dtype = np.dtype(f'u{self.stored.itemsize}')
        elif bitpix > 0 and (self.scaled or self.blank is not None):
            self.dtype = np.dtype(np.float32 if bits <= 16 else np.float64)
        else:
            self.dtype = self.stored.newbyteorder('=')

    def __getitem__(self, key):
        rows, columns = key
        first, stop, step = rows.indices(self.shape[0])
        stored = np.fromfile(self.path, dtype=self.stored,
                             count=max(stop - first, 0) * self.shape[1],
                             offset=self.offset + first * self.shape[1]
                             * self.stored.itemsize)
        if stored.size != max(stop - first, 0) * self.shape[1]:
            msg = f'{self.path!r} is truncated: its image ends early'
            raise OSError(msg)
        stored = stored.reshape(-1, self.shape[1])[::step, columns]
        if self.unsigned:
            return (stored.astype(self.stored.newbyteorder('='))
                    .view(self.dtype) ^ self.dtype.type(self.bzero))
        values = stored.astype(self.dtype)
        if self.scaled:
            values *= self.dtype.type(self.bscale)
            values += self.dtype.type(self.bzero)
        if self.blank is not None:
            values[stored == self.blank] = np.nan
        return values


def lazy_ccddata(path, *, hdu=None, unit=None, rows=None):
    """
    A `~astropy.nddata.CCDData` of the image of a FITS file whose data,
    ``MASK`` and ``UNCERT`` are Dask arrays read from the file on demand
    (see `FileRows`).

    Parameters
    ----------
    path : str or `~pathlib.Path`
    hdu, unit
        As for `read_ccddata`.
    rows : int, optional
        Rows per chunk (by default the chunks that
        `~ezbkg_ccd.estimate_background` makes with the default box:
        about 64 MiB in the dtype the frame is processed in).

    Raises
    ------
    ValueError
        As `read_ccddata`, and if the image is tile-compressed or the
        file gzipped (neither can be read in part).
    """
    array = dask_array()
    source = repr(str(path))
    with open_fits(path) as hdulist:
        index = image_index(hdulist, hdu, path)
        item = hdulist[index]
        if isinstance(item, fits.CompImageHDU) or is_compressed_file(path):
            what = ('its image is tile-compressed' if isinstance(
                item, fits.CompImageHDU) else 'the file is compressed')
            msg = (f'{source} cannot be read in chunks: {what}; uncompress '
                   'it (funpack, gunzip) or read it into memory')
            raise ValueError(msg)
        if item.header.get('NAXIS') != 2:
            msg = (f'{source} HDU {index} must be 2-D, got '
                   f'{item.header.get("NAXIS")} dimension(s)')
            raise ValueError(msg)
        extver = item.header.get('EXTVER', 1) if index else 1
        companions = {name: (_data_offset(hdulist[name, extver]),
                             hdulist[name, extver].header)
                      for name in ('MASK', 'UNCERT')
                      if (name, extver) in hdulist}
        header = item.header.copy()
        reader = FileRows(path, _data_offset(item), header)
        for key in ('BSCALE', 'BZERO', 'BLANK'):
            header.remove(key, ignore_missing=True)
        header, wcs = _image_meta(hdulist, index, hdu, header, source)

    def lazy(rows_of):
        size = rows or mesh_rows(chunk_rows(
            rows_of.shape[1], work_dtype(rows_of.dtype).itemsize),
            _BOX_HEIGHT)
        return array.from_array(rows_of, chunks=(size, -1), lock=False,
                                meta=np.empty((0, 0), rows_of.dtype),
                                name=False)

    data = lazy(reader)
    uncertainty = mask = None
    for name, (offset, companion) in companions.items():
        rows_of = FileRows(path, offset, companion)
        if rows_of.shape != reader.shape:
            msg = (f'the {name} HDU (EXTVER {extver}) of {source} has shape '
                   f'{rows_of.shape}, but its image has shape {reader.shape}')
            raise ValueError(msg)
        if name == 'MASK':
            mask = lazy(rows_of) != 0
        else:
            kind = _UNCERTAINTIES.get(companion.get('UTYPE'),
                                      StdDevUncertainty)
            uncertainty = kind(lazy(rows_of), copy=False)
    ccd = CCDData(data, unit=_unit(header, unit, path), meta=header,
                  uncertainty=uncertainty, wcs=wcs, copy=False)
    return with_mask(ccd, mask)
