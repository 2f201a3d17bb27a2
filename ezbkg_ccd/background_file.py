# Licensed under a 3-clause BSD style license - see LICENSE
"""
Backgrounds that know their file: the file state of the ezphot workflow.

A `~ezbkg_ccd.Background` is a result and holds no file state. The
workflow (`ezbkg_ccd.workflow`) wraps it in a `BackgroundFile`, which
adds its path, whether it is saved, and `~BackgroundFile.remove`; this
module also finds the background of an image on disk (`find_background`)
without ever trusting a header's path outside the image's folder.
"""

import os
import warnings
from pathlib import Path

from astropy.utils.exceptions import AstropyUserWarning

from ezbkg_ccd.background import Background
from ezbkg_ccd.persistence import (
    is_standalone_background,
    read_background,
    recorded_target,
    same_file,
)
from ezbkg_ccd.provenance import path_from_header

__all__ = ['BackgroundFile']


class BackgroundFile(Background):
    """
    A `~ezbkg_ccd.Background` and the file it belongs to.

    What `BackgroundGenerator` returns and `ScienceImage.bkgmap` finds:
    it shares the maps of ``background`` and adds the file state ezphot
    users know (`path`, `is_saved`, `is_exists`, `savedir`, `write`
    without a path, `remove`).

    Parameters
    ----------
    background : `~ezbkg_ccd.Background`
        The estimate (its maps are shared, not copied).
    path : str or `~pathlib.Path`, optional
        Its file.
    is_saved : bool, optional
        Whether this background is what the file holds.
    removable : bool, optional
        Whether `remove` may delete the file (`False` for a background
        found through a header's ``BKGPATH``).
    """

    def __init__(self, background, path=None, *, is_saved=False,
                 removable=True):
        self.__dict__.update(vars(background))
        self.path = None if path is None else Path(path)
        self.is_saved = is_saved
        self.removable = removable

    @classmethod
    def read(cls, path, **options):
        """
        Read the background of a file (`~ezbkg_ccd.Background.read`, with
        its ``options``) as a saved `BackgroundFile` at ``path``.
        """
        return cls(Background.read(path, **options), path, is_saved=True)

    @property
    def is_exists(self):
        """Whether a file exists at `path`."""
        return self.path is not None and self.path.is_file()

    @property
    def header_load(self):
        """Whether the provenance header is in memory."""
        return self.header is not None

    @property
    def savedir(self):
        """The folder of `path` (`None` without a path)."""
        return None if self.path is None else self.path.parent

    def write(self, path=None, **options):
        """
        Write this background to a standalone FITS file, by default at
        `path` (`~ezbkg_ccd.Background.write`, with its ``options``:
        ``overwrite``, ``compress``, ``full_map``, ``format``); `path`
        becomes the file written.

        Raises
        ------
        ValueError
            If neither ``path`` nor `path` is set.
        """
        path = self.path if path is None else Path(path)
        if path is None:
            msg = 'path must be given when the background has no path'
            raise ValueError(msg)
        super().write(path, **options)
        self.path, self.is_saved = path, True

    def remove(self):
        """
        Delete the file at `path`; the object itself is kept.

        Returns
        -------
        removed : bool
            Whether a file was deleted.

        Raises
        ------
        PermissionError
            If this background was found through a header's ``BKGPATH``
            (`removable` is `False`: a header never steers a delete), or
            the file holds more than a background (an image): only
            standalone background files are deleted.
        """
        if not self.removable:
            msg = (f'{str(self.path)!r} was found through a BKGPATH header '
                   'keyword; ezbkg-ccd never deletes a file a header names. '
                   'Delete it yourself if it is yours')
            raise PermissionError(msg)
        if self.is_exists and not is_standalone_background(self.path):
            msg = (f'{str(self.path)!r} is not a standalone background file '
                   '(it holds an image, or cannot be read); ezbkg-ccd deletes '
                   'only the background files it writes')
            raise PermissionError(msg)
        self.is_saved = False
        if not self.is_exists:
            return False
        self.path.unlink()
        return True

    def _fields(self):
        return {'is_exists': self.is_exists, 'is_saved': self.is_saved,
                'data_load': self.data_load, 'header_load': self.header_load,
                'path': self.path, 'savedir': self.savedir,
                **super()._fields()}


def link_path(path, image_path):
    """
    ``path`` as ``BKGPATH`` records it beside ``image_path``: relative to
    the image's folder when inside it, else absolute.
    """
    path = Path(path).resolve()
    if image_path is not None:
        folder = Path(image_path).parent.resolve()
        if path.is_relative_to(folder):
            return Path(os.path.relpath(path, folder))
    return path


def _recorded(image_path, header):
    """
    The file ``BKGPATH`` names, if it is safe to open, else `None`.

    A header is untrusted input: a relative path is resolved against
    the image's folder (never the working directory), and a path that
    leads out of that folder is ignored with a warning.
    """
    value = header.get('BKGPATH')
    if value is None:
        return None
    folder = Path(image_path).parent.resolve()
    candidate = (folder / path_from_header(value)).resolve()
    if not candidate.is_relative_to(folder):
        msg = (f'BKGPATH {value!r} in the header of {str(image_path)!r} '
               f'leads out of the image folder {str(folder)!r}; ignored '
               '(a header never makes ezbkg-ccd open or delete files '
               'elsewhere)')
        warnings.warn(msg, AstropyUserWarning, stacklevel=4)
        return None
    return candidate


def find_background(image_path, header, shape, *, default):
    """
    The background of the image at ``image_path``, from disk, or `None`.

    The file ``BKGPATH`` in ``header`` names (in the image's folder) is
    tried first, then ``default``; the first that holds a background of
    ``shape`` is returned as a saved `BackgroundFile`. One found through
    ``BKGPATH`` is not removable: a header never steers a delete.
    Candidates that hold no such background are skipped with a warning.
    """
    recorded = _recorded(image_path, header)
    for candidate in (recorded, default):
        if candidate is None or not candidate.is_file():
            continue
        try:
            background = read_background(candidate)
        except (OSError, ValueError) as exc:
            problem = str(exc)
        else:
            if background.shape == tuple(shape):
                return BackgroundFile(background, candidate, is_saved=True,
                                      removable=candidate is not recorded)
            problem = (f"shape {background.shape}, not the image's "
                       f'{tuple(shape)}')
        which = ('BKGPATH in the header' if candidate is recorded
                 else 'the default background file')
        msg = (f'{which} of {str(image_path)!r}, {str(candidate)!r}, is no '
               f'background of this image ({problem}); ignored')
        warnings.warn(msg, AstropyUserWarning, stacklevel=3)
    return None


def refuse_other_image(path, image_path):
    """
    Raise unless ``path`` is free or holds a product of ``image`` itself.

    Sanitised template folders are many-to-one ('M 51' and 'M_51' give
    one folder) and frames of one name come from many nights: a file made
    from another image (its ``TGTPATH``) is never replaced, overwrite or
    not.
    """
    if not path.exists():
        return
    recorded = recorded_target(path)
    if recorded is not None and not same_file(recorded, image_path):
        msg = (f'{str(path)!r} holds the product of another image, '
               f'{recorded!r}, not of {str(image_path)!r}: their output '
               'names collide (same file name, or header values that give '
               'one save folder); not replaced. Use another output_root or '
               'savedir_template')
        raise FileExistsError(msg)
