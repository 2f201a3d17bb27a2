# Licensed under a 3-clause BSD style license - see LICENSE
"""
Safe FITS file access: clear errors on read, atomic writes.
"""

import contextlib
import os
import tempfile
import warnings
from pathlib import Path

import astropy.units as u
from astropy.io import fits
from astropy.nddata import CCDData

__all__ = []


def _file_mode():
    """Permissions of a new file under the process umask (mkstemp uses 0600)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextlib.contextmanager
def open_fits(path, *, memmap=False):
    """
    Open ``path`` as an `~astropy.io.fits.HDUList`, failing clearly.

    Missing files raise `FileNotFoundError`; empty, truncated or non-FITS
    files raise `OSError`; both name the path. Every HDU header is read
    so that truncation is found here rather than later; with ``memmap``
    the data are not read (only use them inside the ``with`` block).
    """
    path = Path(path)
    if not path.is_file():
        msg = f'no such FITS file: {str(path)!r}'
        raise FileNotFoundError(msg)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        try:
            hdulist = fits.open(path, memmap=memmap, lazy_load_hdus=False)
        except (OSError, ValueError, TypeError, IndexError) as exc:
            msg = f'cannot read {str(path)!r} as FITS: {exc}'
            raise OSError(msg) from exc
    problems = [str(w.message) for w in caught
                if 'truncated' in str(w.message)]
    if problems:
        hdulist.close()
        msg = f'cannot read {str(path)!r} as FITS: {problems[0]}'
        raise OSError(msg)
    with hdulist:
        yield hdulist


def read_ccddata(path, *, hdu=0, unit=None):
    """
    Read a `~astropy.nddata.CCDData` from ``path`` with clear errors.

    ``unit`` is used when the header has no (or a blank) ``BUNIT``;
    without either, the data are taken to be in ``adu``.
    """
    with open_fits(path, memmap=True) as hdulist:
        try:
            header = hdulist[hdu].header
        except (IndexError, KeyError) as exc:
            msg = f'{str(path)!r} has no HDU {hdu!r}'
            raise ValueError(msg) from exc
        has_unit = bool(str(header.get('BUNIT', '')).strip())
    if unit is None and not has_unit:
        unit = u.adu
    return CCDData.read(path, hdu=hdu, unit=unit if not has_unit else None)


def check_writable(path, *, overwrite=False):
    """
    Raise unless ``path`` may be written.

    `FileExistsError` if it exists and not ``overwrite``;
    `FileNotFoundError` if its directory does not exist.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        msg = f'{str(path)!r} already exists; pass overwrite=True to replace it'
        raise FileExistsError(msg)
    directory = path.parent
    if not directory.is_dir():
        msg = f'cannot write {str(path)!r}: no such directory {str(directory)!r}'
        raise FileNotFoundError(msg)


def atomic_save(path, save, *, overwrite=False):
    """
    Write ``path`` with ``save(temporary_path)`` and a rename.

    The temporary file lives in the target directory and keeps the
    target's suffixes (so ``.fits.gz`` is compressed and a figure's
    format is known); an interrupted write never leaves a partial file
    under the final name and never damages an existing one.
    """
    path = Path(path)
    check_writable(path, overwrite=overwrite)
    suffix = ''.join(path.suffixes[-2:]) or '.fits'
    try:
        handle, temporary = tempfile.mkstemp(prefix=f'.{path.stem}.',
                                             suffix=f'.tmp{suffix}',
                                             dir=path.parent)
    except OSError as exc:
        msg = f'cannot write {str(path)!r}: {exc.strerror}'
        raise OSError(exc.errno, msg) from exc
    os.close(handle)
    try:
        os.chmod(temporary, _file_mode())
        save(temporary)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(temporary)
        raise


def atomic_write(hdulist, path, *, overwrite=False):
    """Write ``hdulist`` to ``path`` atomically (see `atomic_save`)."""
    atomic_save(path, lambda temporary: hdulist.writeto(
        temporary, overwrite=True, output_verify='exception'),
        overwrite=overwrite)
