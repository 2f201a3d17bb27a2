# Licensed under a 3-clause BSD style license - see LICENSE
"""
`BackgroundGenerator`: the ezphot-style background workflow.
"""

import inspect
import os
from pathlib import Path

import numpy as np
from astropy.nddata import CCDData
from astropy.utils.decorators import deprecated

from ezbkg_ccd._inputs import work_dtype
from ezbkg_ccd.background import Background
from ezbkg_ccd.paths import fill_savedir, fits_stem
from ezbkg_ccd.persistence import (
    recorded_target,
    same_file,
    write_with_background,
)
from ezbkg_ccd.provenance import record_target
from ezbkg_ccd.science_image import ScienceImage
from ezbkg_ccd.steps import _estimate, estimate_background, subtract_background

__all__ = ['BackgroundGenerator']


def _refuse_other_image(path, image):
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
    if recorded is not None and not same_file(recorded, image.path):
        msg = (f'{str(path)!r} holds the product of another image, '
               f'{recorded!r}, not of {str(image.path)!r}: their output '
               'names collide (same file name, or header values that give '
               'one save folder); not replaced. Use another output_root or '
               'savedir_template')
        raise FileExistsError(msg)


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
                summary = (inspect.getdoc(member) or '').split('\n')[0]
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
        background.load()
        background.path = self._output_path(image, '.bkg.fits')
        if image.path is not None:
            record_target(background.header, image.path)
        image.link_background(background)
        if save:
            if background.path is None:
                msg = ('save=True needs a file-backed target_img (a path or '
                       'ScienceImage) or BackgroundGenerator(output_root=...)')
                raise ValueError(msg)
            _refuse_other_image(background.path, image)
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
        background, estimate = _estimate(image.ccd, method='sep',
                                         filter_threshold=0.0, **options)
        if not is_2D_bkg:
            background = _global_level(background, image.ccd.dtype)
        background = self._finish(image, background, save=save,
                                  overwrite=overwrite, visualize=visualize,
                                  save_fig=save_fig, verbose=verbose)
        return background, estimate.extra['sep_background']

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
            image.ccd, method='photutils', box_size=box_size,
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
            target_bkg = estimate_background(image.ccd)
            if image.path is not None:
                record_target(target_bkg.header, image.path)
        result = subtract_background(image.ccd, target_bkg)
        path = self._output_path(image, '_bkgsub.fits')
        if save:
            if path is None:
                msg = 'save=True needs a file-backed target_img'
                raise ValueError(msg)
            _refuse_other_image(path, image)
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
