# Licensed under a 3-clause BSD style license - see LICENSE
"""
Backgrounds in FITS files: ``BKG`` and ``BKGRMS`` image HDUs.

A science file written by `write_with_background` is what
`astropy.nddata.CCDData.write` makes (primary data, ``MASK``,
``UNCERT``, WCS in the header) plus the ``BKG`` map and ``BKGRMS`` map
HDUs, each with the provenance keywords. A standalone background file
(`write_background`) is an empty primary HDU and the same two HDUs.
A constant background is stored tile-compressed (a few kilobytes, and
shown by image viewers), unless ``full_map=True``; files that stored it
without data (its level and RMS in the header, ``BKGNAX1``/``BKGNAX2``,
as ezbkg-ccd 0.1 wrote it) are still read. A result or background held as
Dask arrays (a frame processed in chunks) is written chunk by chunk
(`~ezbkg_ccd._fits.write_streamed`), never whole in memory.

`read_background` and `write_background` are registered with astropy's
unified I/O as the ``fits`` format of `~ezbkg_ccd.Background`, behind
`Background.read <ezbkg_ccd.Background.read>` and
`Background.write <ezbkg_ccd.Background.write>`.
"""

import contextlib
import os
import warnings
import zlib
from pathlib import Path

import numpy as np
from astropy.io import fits, registry
from astropy.io.fits.connect import is_fits
from astropy.nddata import CCDData, StdDevUncertainty
from astropy.utils.exceptions import AstropyUserWarning

from ezbkg_ccd._dask import is_dask
from ezbkg_ccd._fits import atomic_write, check_writable, open_fits, write_streamed
from ezbkg_ccd._headers import writable_header
from ezbkg_ccd._reader import (
    AUXILIARY_HDUS,
    hdulist_ccddata,
    image_hdus,
    image_index,
)
from ezbkg_ccd._uncertainty import rebuilt_uncertainty
from ezbkg_ccd._validation import as_ccddata
from ezbkg_ccd._wcs import ccd_hdus
from ezbkg_ccd.background import Background
from ezbkg_ccd.provenance import KEYWORDS, REQUIRED_KEYWORDS, path_from_header

__all__ = ['write_with_background', 'read_with_background',
           'write_background', 'read_background', 'recorded_target',
           'same_file', 'BACKGROUND_HDUS']

#: Names of the HDUs that hold a background, map first.
BACKGROUND_HDUS = ('BKG', 'BKGRMS')

#: Lossless tile compression: floats unquantized, integers with RICE.
_FLOAT_COMPRESSION = {'compression_type': 'GZIP_2', 'quantize_level': 0.0}
_INT_COMPRESSION = {'compression_type': 'RICE_1'}


def image_hdu(data, header, name, compress):
    """An image HDU, tile-compressed losslessly when ``compress``."""
    if not compress or data is None:
        return fits.ImageHDU(data, header=header, name=name)
    options = (_FLOAT_COMPRESSION if data.dtype.kind == 'f'
               else _INT_COMPRESSION)
    return fits.CompImageHDU(data, header=header, name=name, **options)


def _is_constant(background):
    """A constant background whose maps are exactly its global values."""
    if background.is_2d:
        return False
    scalar = background.data.dtype.type
    return bool(np.all(background.data == scalar(background.global_back))
                and np.all(background.rms == scalar(background.global_rms)))


def _stand_in(array):
    """A 1x1 array of ``array``'s dtype: the data of an HDU whose
    header is made here and whose data are written chunk by chunk."""
    return np.zeros((1, 1), array.dtype)


def _lazy_background_hdus(background):
    """The ``BKG`` and ``BKGRMS`` HDUs of a background of Dask maps,
    with the maps (see `~ezbkg_ccd._fits.write_streamed`)."""
    return [(fits.ImageHDU(_stand_in(array), header=fits.Header(
        background.header), name=name), array)
        for name, array in zip(BACKGROUND_HDUS, (background.data,
                                                 background.rms),
                               strict=True)]


def _lazy_write(ccd, background, path, *, overwrite, compress):
    """`write_with_background` (``ccd`` `None`: `write_background`) of
    Dask arrays, chunk by chunk."""
    if compress:
        msg = ('compress=True is not available for a frame written in '
               'chunks (tile compression needs it whole)')
        raise ValueError(msg)
    hdus = [(fits.PrimaryHDU(), None)]
    if ccd is not None:
        uncertainty = ccd.uncertainty
        stand_in = CCDData(
            _stand_in(ccd.data), unit=ccd.unit, meta=ccd.meta, wcs=ccd.wcs,
            mask=None if ccd.mask is None else _stand_in(ccd.mask),
            uncertainty=None if uncertainty is None else type(uncertainty)(
                _stand_in(uncertainty.array), unit=uncertainty.unit))
        primary, *extensions = ccd_hdus(stand_in, hdu_mask='MASK',
                                        hdu_uncertainty='UNCERT')
        primary = fits.PrimaryHDU(primary.data, header=writable_header(
            primary.header, source=f'the image written to {str(path)!r}'))
        arrays = {'MASK': None if ccd.mask is None
                  else ccd.mask.astype(np.uint8),
                  'UNCERT': None if uncertainty is None else uncertainty.array}
        hdus = [(primary, ccd.data),
                *((hdu, arrays[hdu.name]) for hdu in extensions)]
    hdus += [*_lazy_background_hdus(background),
             *((hdu, None) for hdu in _foreign_hdus(path))]
    write_streamed(path, hdus, overwrite=overwrite)


def background_hdus(background, *, compress=False, full_map=False):
    """
    The ``BKG`` and ``BKGRMS`` HDUs of ``background``: tile-compressed
    losslessly with ``compress``, and for a constant background unless
    ``full_map`` (flat maps take almost no room so, and image viewers
    show them as the images they are).
    """
    header = fits.Header(background.header)
    compress = compress or (not full_map and _is_constant(background))
    return [image_hdu(np.ascontiguousarray(values), header, name, compress)
            for name, values in zip(BACKGROUND_HDUS, (background.data,
                                                      background.rms),
                                    strict=True)]


def _check_background(background, shape=None):
    if not isinstance(background, Background):
        msg = f'background must be a Background, got {type(background).__name__}'
        raise TypeError(msg)
    if shape is not None and background.shape != shape:
        msg = (f'background has shape {background.shape}, but ccd has '
               f'shape {shape}')
        raise ValueError(msg)


def _foreign_hdus(path):
    """HDUs of an existing file at ``path`` that are neither ours nor CCDData's."""
    if not Path(path).is_file():
        return []
    try:
        with open_fits(path) as hdulist:
            return [hdu.copy() for hdu in hdulist[1:]
                    if hdu.name not in AUXILIARY_HDUS]
    except OSError:
        return []


#: Header card of an image whose ``UNCERT`` was left out, to rebuild.
REBUILD_KEYWORD = 'BKGUNCR'


def without_rebuildable(ccd, background):
    """
    ``ccd`` to write without its uncertainty when that is exactly the one
    rebuilt from its data and ``background`` (``BKGUNC``; marked by
    ``BKGUNCR``, the CRC-32 of what rebuilds it), else ``ccd`` itself.
    """
    uncertainty = ccd.uncertainty
    if type(uncertainty) is not StdDevUncertainty or is_dask(ccd.data):
        return ccd
    rebuilt = rebuilt_uncertainty(ccd.data, ccd.unit, background, ccd.meta)
    if (rebuilt is None or uncertainty.unit != rebuilt.unit
            or not np.array_equal(np.asarray(uncertainty.array),
                                  rebuilt.array, equal_nan=True)
            or np.asarray(uncertainty.array).dtype != rebuilt.array.dtype):
        return ccd
    meta = ccd.meta.copy()
    meta[REBUILD_KEYWORD] = (_checksum(ccd, background),
                             'UNCERT left out: CRC-32 of what rebuilds it')
    return CCDData(ccd.data, unit=ccd.unit, mask=ccd.mask, meta=meta,
                   wcs=ccd.wcs, copy=False)


def _checksum(ccd, background):
    """
    The CRC-32, as 8 hexadecimal digits, of what the uncertainty of
    ``ccd`` is rebuilt from: its data, the RMS map and model error of
    ``background`` (values in native byte order), and ``BKGUNC`` and
    ``BKGGAIN``.
    """
    crc = 0
    for array in (ccd.data, background.rms):
        array = np.ascontiguousarray(array)
        crc = zlib.crc32(array.astype(array.dtype.newbyteorder('='),
                                      copy=False), crc)
    cards = (ccd.meta.get('BKGUNC'), ccd.meta.get('BKGGAIN'),
             background.error_variance_scale)
    return f'{zlib.crc32(repr(cards).encode(), crc):08x}'


def _unmarked(ccd, background):
    """``ccd``, or a copy of it without a ``BKGUNCR`` card (of a file it
    was read from) that would not be true of the file now written: unless
    the uncertainty is still left out and still rebuilt from the same."""
    marker = (ccd.meta or {}).get(REBUILD_KEYWORD)
    if marker is None or (ccd.uncertainty is None
                          and marker == _checksum(ccd, background)):
        return ccd
    meta = ccd.meta.copy()
    del meta[REBUILD_KEYWORD]
    return CCDData(ccd.data, unit=ccd.unit, mask=ccd.mask,
                   uncertainty=ccd.uncertainty, meta=meta, wcs=ccd.wcs,
                   copy=False)


def _with_rebuilt(ccd, background, path):
    """
    ``ccd`` read from a file, with the uncertainty left out of it rebuilt
    (`without_rebuildable`); if its data, its ``BKGUNC``/``BKGGAIN`` or
    its background no longer allow that, without one, and a warning.
    """
    marker = ccd.meta.pop(REBUILD_KEYWORD, None)
    if marker is None or ccd.uncertainty is not None:
        return ccd
    rebuilt = None
    if background is not None and marker == _checksum(ccd, background):
        rebuilt = rebuilt_uncertainty(ccd.data, ccd.unit, background,
                                      ccd.meta)
    if rebuilt is None:
        msg = (f'{str(path)!r} was written without its uncertainty, to be '
               'rebuilt from BKGRMS, but its data, BKGUNC/BKGGAIN or '
               'background have changed since: read without one')
        warnings.warn(msg, AstropyUserWarning, stacklevel=3)
        return ccd
    ccd.uncertainty = rebuilt
    return ccd


def write_with_background(ccd, background, path, *, overwrite=False,
                          compress=False, full_map=False,
                          omit_rebuildable=False):
    """
    Write an image and its background to one FITS file.

    Parameters
    ----------
    ccd : `~astropy.nddata.CCDData` or array_like
        The image (usually background-subtracted), written as
        `~astropy.nddata.CCDData.write` does (``MASK``, ``UNCERT``); Dask
        arrays (of a frame processed in chunks) are written chunk by
        chunk, never whole in memory.
    background : `~ezbkg_ccd.Background`
        Written as the ``BKG`` and ``BKGRMS`` HDUs.
    path : str or `~pathlib.Path`
        The file; a ``.gz`` suffix gzips it.
    overwrite : bool, optional
        Replace an existing file (default `False`). Its other HDUs are
        kept; its old ``BKG``/``BKGRMS`` are replaced, not duplicated.
    compress : bool, optional
        Tile-compress the extensions losslessly (GZIP_2 for floats, RICE_1
        for the mask). The default is `False`.
    full_map : bool, optional
        Store a constant background as plain arrays, not tile-compressed
        (default `False`).
    omit_rebuildable : bool, optional
        Leave out ``UNCERT`` when it is exactly what
        `~ezbkg_ccd.subtract_background` built from the background RMS
        (the input had no uncertainty; ``BKGUNC`` is ``sky`` or
        ``sky+poisson``), checked bit for bit, and mark the header with
        ``BKGUNCR``, the CRC-32 of what rebuilds it (the data, the RMS
        map, ``BKGUNC``, ``BKGGAIN``): `~ezbkg_ccd.read_with_background`
        rebuilds it, bit for bit, or, if any of those changed since,
        warns and reads no uncertainty. Any other uncertainty is
        written. The default is `False`. Not for a frame processed in
        chunks.

    Raises
    ------
    FileExistsError
        If ``path`` exists and ``overwrite`` is `False`.
    OSError
        If the directory is missing or not writable.
    ValueError
        If ``omit_rebuildable`` is given for a frame processed in chunks.

    Examples
    --------
    >>> import numpy as np
    >>> from ezbkg_ccd import (read_with_background, subtract_background,
    ...                        estimate_background, write_with_background)
    >>> rng = np.random.default_rng(3)
    >>> data = rng.normal(20.0, 1.0, (128, 128))
    >>> bkg = estimate_background(data, box_size=32)
    >>> result = subtract_background(data, bkg)
    >>> write_with_background(result, bkg, tmp_path / 'out.fits')
    >>> ccd, again = read_with_background(tmp_path / 'out.fits')
    >>> bool(np.array_equal(again.data, bkg.data)), again.method
    (True, 'sep')
    """
    ccd = as_ccddata(ccd)
    _check_background(background, ccd.shape)
    ccd = _unmarked(ccd, background)
    if is_dask(ccd.data) or background.is_dask:
        if omit_rebuildable:
            msg = ('omit_rebuildable is not available for a frame processed '
                   'in chunks (checking the rebuilt uncertainty needs it '
                   'whole)')
            raise ValueError(msg)
        _lazy_write(ccd, background, path, overwrite=overwrite,
                    compress=compress)
        return
    if omit_rebuildable:
        ccd = without_rebuildable(ccd, background)
    write_image(ccd, path, overwrite=overwrite, compress=compress,
                extra=background_hdus(background, compress=compress,
                                      full_map=full_map))


def image_hdus_of(ccd):
    """
    The HDUs of ``ccd`` as `~astropy.nddata.CCDData.write` makes them
    (``MASK``, ``UNCERT``), without the ``BKG`` and ``BKGRMS`` that a
    `~ezbkg_ccd.SubtractedCCDData` adds: the caller writes the background
    it is given.
    """
    return [hdu for hdu in ccd_hdus(ccd, hdu_mask='MASK',
                                    hdu_uncertainty='UNCERT')
            if hdu.name not in BACKGROUND_HDUS]


def write_image(ccd, path, *, overwrite=False, compress=False, extra=()):
    """
    Write a `~astropy.nddata.CCDData` as `~astropy.nddata.CCDData.write`
    does, safely: atomically, with a header that astropy can write and
    that ``astropy.wcs`` can read back (`ezbkg_ccd._headers`,
    `ezbkg_ccd._wcs`), keeping the other HDUs of a file it replaces,
    followed by the ``extra`` HDUs.
    """
    check_writable(path, overwrite=overwrite)
    primary, *extensions = image_hdus_of(ccd)
    primary = fits.PrimaryHDU(primary.data, header=writable_header(
        primary.header, source=f'the image written to {str(path)!r}'))
    extensions = [image_hdu(hdu.data, hdu.header, hdu.name, compress)
                  for hdu in extensions]
    hdulist = fits.HDUList([primary, *extensions, *_foreign_hdus(path),
                            *extra])
    atomic_write(hdulist, path, overwrite=overwrite)


def write_background(background, path, *, overwrite=False,
                     compress=False, full_map=False):
    """
    Write a background alone: an empty primary, ``BKG`` and ``BKGRMS``.

    Parameters
    ----------
    background : `~ezbkg_ccd.Background`
    path : str or `~pathlib.Path`
        The file.
    overwrite, compress, full_map : bool, optional
        As in `write_with_background`.

    Raises
    ------
    FileExistsError
        If the file exists and ``overwrite`` is `False`.

    Examples
    --------
    >>> import numpy as np
    >>> from ezbkg_ccd import Background, estimate_background
    >>> bkg = estimate_background(np.full((64, 64), 4.0), method='constant')
    >>> bkg.write(tmp_path / 'bkg.fits')
    >>> again = Background.read(tmp_path / 'bkg.fits')
    >>> again.shape, again.global_back, again.is_2d
    ((64, 64), 4.0, False)
    """
    _check_background(background)
    if not isinstance(path, (str, os.PathLike)):
        msg = ('path must be a file name (the file is written to a '
               f'temporary file, then renamed), got {type(path).__name__}')
        raise TypeError(msg)
    if background.is_dask:
        _lazy_write(None, background, path, overwrite=overwrite,
                    compress=compress)
        return
    hdulist = fits.HDUList([fits.PrimaryHDU(),
                            *background_hdus(background, compress=compress,
                                              full_map=full_map)])
    atomic_write(hdulist, path, overwrite=overwrite)


def _malformed(path, why):
    return ValueError(f'the BKG HDU of {str(path)!r} is malformed: {why}')


def _native(data):
    """A native-byte-order copy (so nothing refers to the open file)."""
    return np.array(data, dtype=data.dtype.newbyteorder('='))


def _background_from_hdulist(hdulist, path, extver=1):
    """
    The background of ``EXTVER = extver`` stored in ``hdulist``, or
    `None` if it holds no background at all.
    """
    name, rms_name = BACKGROUND_HDUS
    if name not in hdulist:
        return None
    if (name, extver) not in hdulist:
        versions = sorted(item.header.get('EXTVER', 1) for item in hdulist
                          if item.name == name)
        msg = (f'{str(path)!r} holds no background of the image with EXTVER '
               f'{extver}, only of EXTVER {versions}')
        raise ValueError(msg)
    map_hdu = hdulist[name, extver]
    source = map_hdu.header
    missing = [key for key in REQUIRED_KEYWORDS if key not in source]
    if missing:
        raise _malformed(path, f'it lacks the keywords {missing}')
    header = fits.Header([card for card in source.cards
                          if card.keyword in KEYWORDS
                          or card.keyword == 'BUNIT'])
    compact = [header.pop(key, None)
               for key in ('BKGNAX2', 'BKGNAX1', 'BKGBITPX')]
    if map_hdu.data is None:
        if None in compact:
            raise _malformed(path, 'it has no data and no BKGNAX1/BKGNAX2')
        dtype = np.dtype(fits.BITPIX2DTYPE[compact[2]])
        shape = tuple(compact[:2])
        data = np.full(shape, header['BKGVALU'], dtype=dtype)
        rms = np.full(shape, header['BKGSIG'], dtype=dtype)
    else:
        if (rms_name, extver) not in hdulist:
            raise _malformed(path, f'there is no BKGRMS HDU of EXTVER {extver}')
        data = _native(map_hdu.data)
        rms = _native(hdulist[rms_name, extver].data)
        if data.ndim != 2 or rms.shape != data.shape:
            raise _malformed(path, f'map shape {data.shape} and RMS shape '
                             f'{rms.shape} are not one 2-D shape')
    return Background(data, rms, header)


@contextlib.contextmanager
def _opened(path):
    """``path`` opened to copy its arrays: memory-mapped, unless an HDU
    is scaled (``BZERO``, ``BSCALE``, ``BLANK``: unsigned integers, say),
    which astropy cannot map."""
    with open_fits(path, memmap=True) as hdulist:
        if not any(key in hdu.header for hdu in hdulist
                   for key in ('BZERO', 'BSCALE', 'BLANK')):
            yield hdulist
            return
    with open_fits(path) as hdulist:
        yield hdulist


def read_background(path):
    """
    Read the background of a standalone or a science file.

    Parameters
    ----------
    path : str, `~pathlib.Path` or file object
        A FITS file (``.gz``, ``.bz2`` and tile-compressed HDUs too), or
        an open binary file object.

    Returns
    -------
    background : `~ezbkg_ccd.Background`

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    OSError
        If it is not a readable FITS file.
    ValueError
        If it has no ``BKG`` HDU or that HDU is malformed.
    """
    with _opened(path) as hdulist:
        background = _background_from_hdulist(hdulist, path)
    if background is None:
        msg = f'{str(path)!r} holds no background (no BKG HDU)'
        raise ValueError(msg)
    return background


def read_with_background(path, *, hdu=None):
    """
    Read an image and the background stored with it.

    The background is the one of the image's ``EXTVER`` (1 for the
    primary HDU): in a file of several images, each image's own.

    Parameters
    ----------
    path : str or `~pathlib.Path`
        A FITS file; ``.gz`` and tile-compressed HDUs are read too.
    hdu : int, str or (str, int), optional
        The image HDU (default: the first HDU with image data).

    Returns
    -------
    ccd : `~astropy.nddata.CCDData`
        With ``mask``, ``uncertainty`` (its type; rebuilt from ``BKGRMS``
        if it was left out, see ``omit_rebuildable`` of
        `write_with_background`), ``unit`` (``adu`` when the file has no
        ``BUNIT``), ``meta`` and ``wcs``.
    background : `~ezbkg_ccd.Background` or None
        `None` when the file holds no ``BKG`` HDU.

    Raises
    ------
    FileNotFoundError, OSError, ValueError
        As `read_background`, except that a missing background is `None`;
        also if the file holds backgrounds, but none of the image's
        ``EXTVER``.
    """
    with _opened(path) as hdulist:
        index = image_index(hdulist, hdu, path)
        extver = hdulist[index].header.get('EXTVER', 1) if index else 1
        background = _background_from_hdulist(hdulist, path, extver)
        ccd = hdulist_ccddata(hdulist, hdu=hdu, path=path)
    return _with_rebuilt(ccd, background, path), background


def is_standalone_background(path):
    """
    Whether the file at ``path`` is a standalone background file: a
    ``BKG`` HDU and no image (what `write_background` makes). `False`
    for a file that cannot be read.
    """
    try:
        with open_fits(path, memmap=True) as hdulist:
            return BACKGROUND_HDUS[0] in hdulist and not image_hdus(hdulist)
    except OSError:
        return False


def recorded_target(path):
    """
    The input file recorded in a file ezbkg-ccd wrote (``TGTPATH``).

    Parameters
    ----------
    path : str or `~pathlib.Path`

    Returns
    -------
    target : str or None
        From the first ``BKG`` HDU, else the primary header; `None` if
        the file records none or cannot be read.
    """
    try:
        with open_fits(path, memmap=True) as hdulist:
            for item in (*(hdu for hdu in hdulist
                           if hdu.name == BACKGROUND_HDUS[0]), hdulist[0]):
                if 'TGTPATH' in item.header:
                    return path_from_header(item.header['TGTPATH'])
    except OSError:
        pass
    return None


def same_file(recorded, path):
    """
    Whether a recorded input path (`recorded_target`) names ``path``,
    symbolic links and relative parts resolved.
    """
    return os.path.realpath(recorded) == os.path.realpath(path)


registry.register_reader('fits', Background, read_background)
registry.register_writer('fits', Background, write_background)
registry.register_identifier('fits', Background, is_fits)
