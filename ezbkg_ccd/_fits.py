# Licensed under a 3-clause BSD style license - see LICENSE
"""
Safe FITS file access: clear errors on read, atomic writes.
"""

import contextlib
import errno
import os
import re
import secrets
import socket
import warnings
from pathlib import Path

import numpy as np
from astropy.io import fits

__all__ = []


@contextlib.contextmanager
def open_fits(path, *, memmap=False):
    """
    Open ``path`` as an `~astropy.io.fits.HDUList`, failing clearly.

    Missing files raise `FileNotFoundError`; empty, truncated or non-FITS
    files raise `OSError`; both name the path. Every HDU header is read
    so that truncation is found here rather than later; with ``memmap``
    the data are not read (only use them inside the ``with`` block).
    ``path`` may also be an open binary file object.
    """
    if hasattr(path, 'read'):
        memmap = False  # a file object is read as it is
    else:
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


#: This machine's name as it appears in temporary file names.
_HOST = re.sub(r'[^A-Za-z0-9-]+', '-', socket.gethostname())[:32] or 'host'

#: ``.<name>.<host>.<pid>.<random>.tmp<suffixes>``
_TEMPORARY = re.compile(r'\.(?P<name>.+)\.(?P<host>[A-Za-z0-9-]+)\.'
                        r'(?P<pid>\d+)\.[0-9a-f]{8}\.tmp(\..*)?')


#: The temporary files being written: path -> writing process (a forked
#: worker inherits its parent's entries, which are not its own).
_WRITING = {}


def _temporary_file(path):
    """
    Create a new, empty temporary file beside ``path``; return its path.

    Its name, ``.<name>.<host>.<pid>.<random>.tmp<suffixes>``, keeps the
    target's suffixes (so ``.fits.gz`` is compressed and a figure's
    format is known) and says which process wrote it
    (`remove_stale_temporaries`). It is created exclusively with mode
    0666, which the process umask reduces as for any new file, without
    touching the umask.
    """
    suffix = ''.join(path.suffixes[-2:]) or '.fits'
    for _ in range(100):
        temporary = path.with_name(f'.{path.stem}.{_HOST}.{os.getpid()}.'
                                   f'{secrets.token_hex(4)}.tmp{suffix}')
        _WRITING[temporary] = os.getpid()  # before it exists: no gap
        try:
            handle = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL,
                             0o666)
        except FileExistsError:
            del _WRITING[temporary]
            continue
        except OSError as exc:
            del _WRITING[temporary]
            msg = f'cannot write {str(path)!r}: {exc.strerror}'
            raise OSError(exc.errno, msg) from exc
        os.close(handle)
        return temporary
    msg = f'cannot write {str(path)!r}: no free temporary name'
    raise FileExistsError(errno.EEXIST, msg)


def remove_own_temporaries():
    """
    Remove the temporary files this process is writing.

    For a process about to end abruptly (a worker told to stop): safe
    from a signal handler or another thread, since removing a file being
    written only unlinks it.
    """
    for temporary, pid in list(_WRITING.items()):
        if pid == os.getpid():
            with contextlib.suppress(OSError):
                os.remove(temporary)


def _alive(pid):
    """
    Whether a process ``pid`` runs on this machine (a zombie, dead but
    not yet reaped by its parent, does not). On Windows, where there is
    no harmless probe (``os.kill`` terminates), every process counts as
    alive, so no temporary file is ever taken for stale.
    """
    if os.name == 'nt':
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    with contextlib.suppress(OSError, IndexError):  # no /proc: not Linux
        state = Path(f'/proc/{pid}/stat').read_text().rsplit(')', 1)[1]
        return state.split()[0] not in ('Z', 'X')
    return True


def remove_stale_temporaries(folder):
    """
    Remove the temporary files in ``folder`` that a writer on this
    machine left when it died (killed, or its pool broken mid-write).

    Only files named as `_temporary_file` names them, by this host, by a
    process that no longer runs, are removed; writers on other machines
    sharing the folder are left alone.

    Returns
    -------
    removed : list of `~pathlib.Path`
    """
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        match = _TEMPORARY.fullmatch(entry.name)
        if (match and match['host'] == _HOST and entry.is_file()
                and not _alive(int(match['pid']))):
            with contextlib.suppress(FileNotFoundError):
                os.remove(entry.path)
                removed.append(Path(entry.path))
    return removed


def _publish(temporary, path, overwrite):
    """
    Move ``temporary`` to ``path``; without ``overwrite``, never replace
    a file that appeared there meanwhile (a hard link fails if the target
    exists; where links are not supported, the last check and a rename).
    """
    if overwrite:
        os.replace(temporary, path)
        return
    try:
        os.link(temporary, path)
    except FileExistsError:
        msg = (f'{str(path)!r} already exists; pass overwrite=True to '
               'replace it')
        raise FileExistsError(errno.EEXIST, msg) from None
    except OSError:  # no hard links on this file system
        check_writable(path)
        os.replace(temporary, path)
    else:
        os.remove(temporary)


def atomic_save(path, save, *, overwrite=False):
    """
    Write ``path`` with ``save(temporary_path)`` and a rename.

    The temporary file lives in the target directory (see
    `_temporary_file`); an interrupted write never leaves a partial file
    under the final name and never damages an existing one, and without
    ``overwrite`` a file created at ``path`` by someone else while this
    one was written is kept (`FileExistsError`).
    """
    path = Path(path)
    check_writable(path, overwrite=overwrite)
    temporary = _temporary_file(path)
    try:
        save(temporary)
        _publish(temporary, path, overwrite)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(temporary)
        raise
    finally:
        _WRITING.pop(temporary, None)


def atomic_write(hdulist, path, *, overwrite=False):
    """Write ``hdulist`` to ``path`` atomically (see `atomic_save`)."""
    atomic_save(path, lambda temporary: hdulist.writeto(
        temporary, overwrite=True, output_verify='exception'),
        overwrite=overwrite)


#: Endings of the file names astropy writes compressed.
_COMPRESSED_SUFFIXES = ('.gz', '.bz2', '.zip')

#: FITS files are made of blocks of this many bytes.
_BLOCK = 2880


class FileRegion:
    """
    The data of one image HDU in a FITS file being written, as a target
    of `dask.array.store`: each block of rows is written at its place
    with `os.pwrite` (in any order, from any thread or process that sees
    the file), converted to the stored type (big-endian; unsigned
    integers offset to signed, as the ``BZERO`` astropy writes for
    ``dtype`` says). It holds a path and offsets only, so Dask can send
    it to other processes.
    """

    def __init__(self, path, offset, shape, dtype):
        self.path, self.offset = str(path), offset
        self.shape, self.dtype = tuple(shape), np.dtype(dtype)
        # unsigned integers are stored signed, offset by BZERO = 2**(n-1)
        self.stored = (self.dtype.newbyteorder('>') if self.dtype.kind != 'u'
                       or self.dtype.itemsize == 1 else
                       np.dtype(f'>i{self.dtype.itemsize}'))

    def __setitem__(self, key, value):
        rows, columns = key
        first, stop, _ = rows.indices(self.shape[0])
        if columns.indices(self.shape[1]) != (0, self.shape[1], 1):
            msg = 'blocks must hold whole rows'
            raise ValueError(msg)
        value = np.asarray(value, dtype=self.dtype)
        if self.stored.kind != self.dtype.kind:
            sign = self.dtype.type(1 << (8 * self.dtype.itemsize - 1))
            value = (value ^ sign).view(self.stored.newbyteorder('='))
        block = memoryview(np.ascontiguousarray(value, dtype=self.stored)
                           ).cast('B')
        position = self.offset + first * self.shape[1] * self.stored.itemsize
        descriptor = os.open(self.path, os.O_WRONLY)
        try:
            while block:  # pwrite may write less than asked
                written = os.pwrite(descriptor, block, position)
                block, position = block[written:], position + written
        finally:
            os.close(descriptor)


def _stored(hdu, shape):
    """The header of image HDU ``hdu`` (made with stand-in data of the
    right dtype) for data of ``shape``, as bytes."""
    header = hdu.header.copy()
    header['NAXIS1'], header['NAXIS2'] = shape[1], shape[0]
    return header.tostring().encode('ascii')


def write_streamed(path, hdus, *, overwrite=False, store=None):
    """
    Write image HDUs whose data are larger than memory to ``path``,
    atomically (`atomic_save`), block by block.

    Parameters
    ----------
    path : str or `~pathlib.Path`
    hdus : list of (HDU, array)
        Each image HDU (primary first) made with stand-in data of the
        dtype to store (its header is kept, its size set to the array's),
        and its 2-D data: a Dask array, written chunk by chunk in place,
        or `None` for an HDU written as it is: in place if it has no
        data, else after the others.
    overwrite : bool, optional
        Replace an existing file.
    store : callable, optional
        ``store(sources, targets)`` writes the Dask arrays into the
        `FileRegion` targets (default `dask.array.store`, without a lock).
    """
    if str(path).lower().endswith(_COMPRESSED_SUFFIXES):
        msg = (f'{str(path)!r}: a file written in chunks cannot be '
               'compressed; write it uncompressed')
        raise ValueError(msg)

    def save(temporary):
        placed, position, streamed, later = [], 0, [], []
        for hdu, data in hdus:
            if data is None and hdu.data is not None:
                later.append(hdu)
                continue
            if data is None:
                placed.append((position, hdu.header.tostring().encode()))
                position += len(placed[-1][1])
                continue
            header = _stored(hdu, data.shape)
            start = position + len(header)
            size = int(np.prod(data.shape)) * hdu.data.dtype.itemsize
            placed.append((position, header))
            streamed.append((data, FileRegion(temporary, start, data.shape,
                                              hdu.data.dtype)))
            position = start + -(-size // _BLOCK) * _BLOCK
        with open(temporary, 'wb') as file:
            file.truncate(position)  # the data's zero padding included
            for offset, header in placed:
                file.seek(offset)
                file.write(header)
        if streamed:
            import dask.array

            sources, targets = zip(*streamed, strict=True)
            sources = [dask.array.asarray(source).rechunk({1: -1})
                       for source in sources]  # whole rows
            if store is None:
                dask.array.store(sources, list(targets), lock=False)
            else:
                store(sources, list(targets))
        if later:
            with fits.open(temporary, mode='append') as hdulist:
                for hdu in later:
                    hdulist.append(hdu)

    atomic_save(path, save, overwrite=overwrite)
