# Licensed under a 3-clause BSD style license - see LICENSE
"""
The ezphot-style workflow: `ScienceImage`, `BackgroundGenerator` and the
file-backed backgrounds they make
(`~ezbkg_ccd.background_file.BackgroundFile`).

The estimates themselves are `~ezbkg_ccd.estimate_background` and
`~ezbkg_ccd.subtract_background`; this module adds what ezphot users
know: images and backgrounds that know their files, default file names
beside the science file (or in a folder filled from header keywords),
``BKGPATH`` links, figures and printed summaries.
"""

import inspect
import os
from pathlib import Path

import numpy as np
from astropy.nddata import CCDData
from astropy.utils.decorators import deprecated

from ezbkg_ccd._conditioning import work_dtype
from ezbkg_ccd._reader import read_ccddata
from ezbkg_ccd._validation import as_ccddata, as_rule
from ezbkg_ccd.background import Background
from ezbkg_ccd.background_file import (
    BackgroundFile,
    find_background,
    link_path,
    refuse_other_image,
)
from ezbkg_ccd.masks import invalid_pixel_mask, make_source_mask
from ezbkg_ccd.paths import fill_savedir, fits_stem
from ezbkg_ccd.persistence import write_with_background
from ezbkg_ccd.provenance import path_to_header, record_target
from ezbkg_ccd.steps import _estimate, estimate_background, subtract_background

__all__ = ['ScienceImage', 'BackgroundGenerator']


class ScienceImage:
    """
    A science frame backed by a FITS file, over `~astropy.nddata.CCDData`.

    The file is read on first use of `ccd`; `invalidmask` and
    `sourcemask` are computed on first use and cached.

    Parameters
    ----------
    path : str or `~pathlib.Path`
        The FITS file.
    hdu : int, str or (str, int), optional
        The image HDU (default: the first HDU with image data).
    saturation : float, 'header' or None, optional
        Saturation level for `invalidmask` (default: from the header);
        see `~ezbkg_ccd.masks.invalid_pixel_mask`.
    zero_area : int or None, optional
        Smallest zeroed region in `invalidmask` (default 100 pixels).
    ccd : `~astropy.nddata.CCDData` or array_like, optional
        The image already in memory; ``path`` is then where it is (or
        will be) stored and may be `None` or not exist yet. Its data are
        shared, its ``meta`` is copied (linking a background records
        ``BKGPATH`` there, never in the caller's header).

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist and no ``ccd`` is given.

    Examples
    --------
    >>> import numpy as np
    >>> from astropy.nddata import CCDData
    >>> from ezbkg_ccd import ScienceImage
    >>> CCDData(np.ones((64, 64)), unit='adu').write(tmp_path / 'sci.fits')
    >>> sci = ScienceImage(tmp_path / 'sci.fits')
    >>> sci.data.shape, sci.bkgmap
    ((64, 64), None)
    """

    def __init__(self, path, *, hdu=None, saturation='header', zero_area=100,
                 ccd=None):
        self.path = None if path is None else Path(path)
        if ccd is None and (self.path is None or not self.path.is_file()):
            msg = f'no such FITS file: {str(path)!r}'
            raise FileNotFoundError(msg)
        self.hdu = hdu
        rule = as_rule(saturation, zero_area)  # checked now, not at first use
        self.saturation, self.zero_area = rule.saturation, rule.zero_area
        self._ccd = None if ccd is None else _own_meta(as_ccddata(ccd))
        self._invalidmask = None
        self._sourcemask = None
        self._background = None

    @property
    def ccd(self):
        """The image as a `~astropy.nddata.CCDData` (read on first use)."""
        if self._ccd is None:
            self._ccd = read_ccddata(self.path, hdu=self.hdu)
        return self._ccd

    @property
    def data(self):
        """The pixel array."""
        return self.ccd.data

    @property
    def header(self):
        """The header (``ccd.meta``)."""
        return self.ccd.meta

    @property
    def invalidmask(self):
        """Invalid pixels by the rule of `~ezbkg_ccd.masks.invalid_pixel_mask`."""
        if self._invalidmask is None:
            self._invalidmask = invalid_pixel_mask(self.ccd, **self.rule)
        return self._invalidmask

    @property
    def sourcemask(self):
        """An automatic source mask (`~ezbkg_ccd.make_source_mask`)."""
        if self._sourcemask is None:
            self._sourcemask = make_source_mask(self.ccd, **self.rule,
                                                mask=self.invalidmask)
        return self._sourcemask

    @property
    def rule(self):
        """The settings of the invalid-pixel rule, as keywords for
        `~ezbkg_ccd.estimate_background` and the other steps."""
        return {'saturation': self.saturation, 'zero_area': self.zero_area}

    @property
    def bkgpath(self):
        """The default background file: ``<stem>.bkg.fits`` beside the image."""
        if self.path is None:
            return None
        return self.path.with_name(f'{fits_stem(self.path)}.bkg.fits')

    def link_background(self, background):
        """
        Link ``background`` to this image; record ``BKGPATH`` when it has
        a file (relative to the image's folder when inside it).
        """
        self._background = background
        path = getattr(background, 'path', None)
        if path is not None:
            self.header['BKGPATH'] = path_to_header(
                link_path(path, self.path))

    @property
    def bkgmap(self):
        """
        The linked `~ezbkg_ccd.background_file.BackgroundFile` once written,
        else `None`.

        Looks at the linked background, then at the file ``BKGPATH``
        names in the image's folder, then at the default `bkgpath`, and
        returns the first whose file exists. A background found through
        ``BKGPATH`` can be read but not removed: ezbkg-ccd never deletes
        a file because a header names it.
        """
        if getattr(self._background, 'is_exists', False):
            return self._background
        if self.path is None:
            return None
        found = find_background(self.path, self.header, self.data.shape,
                                default=self.bkgpath)
        if found is not None:
            self._background = found
        return found

    def calculate_bkg(self, *, generator=None, **options):
        """
        Estimate this image's background with a `BackgroundGenerator`.

        Keywords are those of `BackgroundGenerator.estimate_with_sep`;
        returns the `~ezbkg_ccd.Background` only.
        """
        generator = BackgroundGenerator() if generator is None else generator
        background, _ = generator.estimate_with_sep(self, **options)
        return background

    def __repr__(self):
        return f'ScienceImage(path={self.path})'


def _own_meta(ccd):
    """``ccd`` sharing its data, with a copy of its ``meta``."""
    return CCDData(ccd.data, unit=ccd.unit, mask=ccd.mask,
                   uncertainty=ccd.uncertainty, wcs=ccd.wcs,
                   meta=ccd.meta.copy(), copy=False)


def _as_science_image(target_img):
    if isinstance(target_img, ScienceImage):
        return target_img
    if isinstance(target_img, (str, os.PathLike)):
        return ScienceImage(target_img)
    if isinstance(target_img, CCDData):
        return ScienceImage(None, ccd=target_img)
    msg = ('target_img must be a ScienceImage, CCDData or FITS path, got '
           f'{type(target_img).__name__}')
    raise TypeError(msg)


def _global_level(background, dtype):
    """
    ``background`` as one level: its global background and RMS (SEP's
    ``globalback`` and ``globalrms``) everywhere, ``BKGIS2D = F``, in the
    float type the maps of ``dtype`` data have.
    """
    header = background.header.copy()
    header['BKGIS2D'] = False
    dtype = work_dtype(dtype)
    return Background(
        *(np.broadcast_to(np.asarray(level, dtype), background.shape)
          for level in (background.global_back, background.global_rms)),
        header, source_mask=background.source_mask,
        invalid_mask=background.invalid_mask)


class BackgroundGenerator:
    """
    Estimate and subtract backgrounds the way ezphot users know.

    Parameters
    ----------
    output_root : str or `~pathlib.Path`, optional
        Folder for background and subtracted files; by default each goes
        beside its science file.
    savedir_template : str, optional
        Sub-folders of ``output_root`` (default: the science file's
        folder) filled from the header, e.g.
        ``"{OBSERVAT}/{TELESCOP}/{OBJECT}/{INSTRUME}/{FILTER}"``; header
        values are sanitised (see `~ezbkg_ccd.paths.fill_savedir`).

    Examples
    --------
    >>> from ezbkg_ccd import BackgroundGenerator
    >>> bkggenerator = BackgroundGenerator()
    >>> print(bkggenerator)
    Method class: BackgroundGenerator
    For help, run bkggenerator.help()
    """

    def __init__(self, *, output_root=None, savedir_template=None):
        self.output_root = None if output_root is None else Path(output_root)
        self.savedir_template = savedir_template

    def __repr__(self):
        return ('Method class: BackgroundGenerator\n'
                'For help, run bkggenerator.help()')

    def help(self):
        """Print the public methods with their signatures."""
        for name, member in inspect.getmembers(type(self), inspect.isfunction):
            if not name.startswith('_'):
                lines = (inspect.getdoc(member) or '').splitlines()
                summary = next((line for line in lines
                                if line and not line.startswith('..')), '')
                print(f'{name}{inspect.signature(member)}\n    {summary}')

    def output_dir(self, image):
        """The folder for files derived from ``image`` (`None` if unknown)."""
        if image.path is None and self.output_root is None:
            return None
        root = self.output_root or image.path.parent
        if self.savedir_template is None:
            return root
        return fill_savedir(self.savedir_template, image.header, root)

    def _output_path(self, image, suffix):
        folder = self.output_dir(image)
        if folder is None or image.path is None:
            return None
        return folder / f'{fits_stem(image.path)}{suffix}'

    @staticmethod
    def _figure_path(path, save_fig):
        if not save_fig:
            return None
        if path is None:
            msg = 'save_fig=True needs a file-backed target_img'
            raise ValueError(msg)
        return path.with_suffix('.png')

    def _finish(self, image, background, *, save, overwrite, visualize,
                save_fig, verbose):
        """Load, place, link, save, plot and report a new background."""
        background = BackgroundFile(background.load(),
                                    self._output_path(image, '.bkg.fits'))
        if image.path is not None:
            record_target(background.header, image.path)
        image.link_background(background)
        if save:
            if background.path is None:
                msg = ('save=True needs a file-backed target_img (a path or '
                       'ScienceImage) or BackgroundGenerator(output_root=...)')
                raise ValueError(msg)
            refuse_other_image(background.path, image.path)
            background.path.parent.mkdir(parents=True, exist_ok=True)
            background.write(overwrite=overwrite)
        if visualize or save_fig:
            from ezbkg_ccd.plotting import plot_background

            plot_background(image.ccd, background, show=visualize,
                            path=self._figure_path(background.path, save_fig))
        if verbose:
            print(f'{background.method} background of {image.path}: '
                  f'{background.global_back:.6g} +- '
                  f'{background.global_rms:.6g} {background.unit}')
        return background

    def estimate_with_sep(self, target_img, *, target_srcmask=None,
                          target_ivpmask=None, is_2D_bkg=True, box_size=64,
                          filter_size=3, save=False, overwrite=True,
                          visualize=False, save_fig=False, verbose=False):
        """
        Estimate the background with SEP (or a constant level).

        Parameters
        ----------
        target_img : `~ezbkg_ccd.ScienceImage`, `~astropy.nddata.CCDData` or path
            The image.
        target_srcmask : array_like of bool, optional
            Source pixels, excluded from the statistics.
        target_ivpmask : array_like of bool, optional
            Invalid pixels, excluded and flagged.
        is_2D_bkg : bool, optional
            `True` (default) for a SEP mesh map, `False` for SEP's global
            background and RMS as one level everywhere (``BKGIS2D = F``;
            the ``globalback`` and ``globalrms`` of the `sep.Background`
            returned with it).
        box_size, filter_size : int or (int, int), optional
            Mesh size (64) and median-filter size (3).
        save : bool, optional
            Write the background to ``<stem>.bkg.fits`` in `output_dir`.
        overwrite : bool, optional
            Replace an earlier background file of this image (default
            `True`: it is a derived product).
        visualize, save_fig : bool, optional
            Show the four-panel figure; save it as ``<stem>.bkg.png``.
        verbose : bool, optional
            Print the global level and RMS.

        Returns
        -------
        background : `~ezbkg_ccd.Background`
            Linked to the image (``BKGPATH`` in its header).
        sep_background : `sep.Background`
            The underlying SEP object.
        """
        image = _as_science_image(target_img)
        options = {'box_size': box_size, 'filter_size': filter_size,
                   'mask': target_ivpmask, 'source_mask': target_srcmask}
        background, estimate = _estimate(image.ccd, method='sep', **image.rule,
                                         filter_threshold=0.0, **options)
        if not is_2D_bkg:
            background = _global_level(background, image.ccd.dtype)
        background = self._finish(image, background, save=save,
                                  overwrite=overwrite, visualize=visualize,
                                  save_fig=save_fig, verbose=verbose)
        return background, estimate.extra['sep_background']()

    def estimate_constant(self, target_img, *, target_srcmask=None,
                          target_ivpmask=None, save=False, overwrite=True,
                          visualize=False, save_fig=False, verbose=False):
        """
        Estimate one sigma-clipped background level (a 1-D background).

        Keywords as in `estimate_with_sep`; returns the
        `~ezbkg_ccd.Background` (``BKGIS2D = F``).
        """
        image = _as_science_image(target_img)
        background = estimate_background(image.ccd, method='constant',
                                         **image.rule,
                                         mask=target_ivpmask,
                                         source_mask=target_srcmask)
        return self._finish(image, background, save=save,
                            overwrite=overwrite, visualize=visualize,
                            save_fig=save_fig, verbose=verbose)

    @deprecated('0.1', alternative='BackgroundGenerator.estimate_with_sep')
    def estimate_with_photutils(self, target_img, *, target_srcmask=None,
                                target_ivpmask=None, box_size=64,
                                filter_size=3, save=False, overwrite=True,
                                visualize=False, save_fig=False,
                                verbose=False):
        """
        Estimate the background with photutils ``Background2D``.

        Obsolete, as in ezphot: use `estimate_with_sep`. Keywords as
        there; returns ``(Background, photutils.background.Background2D)``.
        """
        image = _as_science_image(target_img)
        background, estimate = _estimate(
            image.ccd, method='photutils', **image.rule, box_size=box_size,
            filter_size=filter_size, filter_threshold=0.0,
            mask=target_ivpmask, source_mask=target_srcmask)
        background = self._finish(image, background, save=save,
                                  overwrite=overwrite, visualize=visualize,
                                  save_fig=save_fig, verbose=verbose)
        return background, estimate.extra['photutils_background']

    def subtract_background(self, target_img, target_bkg=None, *, save=False,
                            overwrite=False, visualize=False, save_fig=False):
        """
        Return a new image with the background removed.

        Parameters
        ----------
        target_img : `~ezbkg_ccd.ScienceImage`, `~astropy.nddata.CCDData` or path
            The image; never modified.
        target_bkg : `~ezbkg_ccd.Background`, optional
            Its background (estimated with SEP defaults if not given).
        save : bool, optional
            Write ``<stem>_bkgsub.fits`` with ``BKG``/``BKGRMS`` HDUs.
        overwrite : bool, optional
            Replace an existing output (default `False`).
        visualize, save_fig : bool, optional
            Show the figure; save it as ``<stem>_bkgsub.png``.

        Returns
        -------
        subtracted : `~ezbkg_ccd.ScienceImage`
            In memory, with ``path`` set to the output file.
        """
        image = _as_science_image(target_img)
        if target_bkg is None:
            target_bkg = estimate_background(image.ccd, **image.rule)
            if image.path is not None:
                record_target(target_bkg.header, image.path)
        result = subtract_background(image.ccd, target_bkg)
        path = self._output_path(image, '_bkgsub.fits')
        if save:
            if path is None:
                msg = 'save=True needs a file-backed target_img'
                raise ValueError(msg)
            refuse_other_image(path, image.path)
            path.parent.mkdir(parents=True, exist_ok=True)
            write_with_background(result, target_bkg, path,
                                  overwrite=overwrite)
        if visualize or save_fig:
            from ezbkg_ccd.plotting import plot_background

            plot_background(image.ccd, target_bkg, show=visualize,
                            path=self._figure_path(path, save_fig))
        subtracted = ScienceImage(path, ccd=result)
        subtracted.link_background(target_bkg)
        return subtracted
