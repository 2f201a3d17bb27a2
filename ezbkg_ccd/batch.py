# Licensed under a 3-clause BSD style license - see LICENSE
"""
Many FITS files at once: processes on this machine or a Dask cluster.

Each file is one task that reads its frame, estimates (and subtracts)
the background and writes its output atomically; tasks return plain
dicts, so nothing unpicklable (such as a `sep.Background`) crosses a
process boundary, and a worker holds one frame at a time. A failing
file is reported and the others go on; an existing output is skipped
unless ``overwrite``, so a rerun resumes an interrupted batch.
"""

import logging
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.nddata import CCDData

from ezbkg_ccd._fits import atomic_write, open_fits, read_ccddata
from ezbkg_ccd.paths import fits_stem
from ezbkg_ccd.persistence import (
    background_hdus,
    write_background,
    write_with_background,
)
from ezbkg_ccd.steps import estimate_background, subtract_background

__all__ = ['process_files', 'FileReport', 'MODES']

log = logging.getLogger(__name__)

#: What a batch writes for each input: the subtracted frame with its
#: background HDUs, or the background alone.
MODES = {'subtract': '_bkgsub.fits', 'estimate': '.bkg.fits'}


@dataclass(frozen=True)
class FileReport:
    """
    The outcome for one input file.

    Attributes
    ----------
    input, output : str
        The input and output paths.
    status : str
        ``'done'``, ``'skipped'`` (output already there) or ``'failed'``.
    error : str or None
        Why it failed.
    hdus : int
        Image HDUs processed.
    global_back, global_rms : float or None
        The (first HDU's) global background and RMS.
    seconds : float
        Time spent on the file.
    """

    input: str
    output: str
    status: str
    error: str | None = None
    hdus: int = 0
    global_back: float | None = None
    global_rms: float | None = None
    seconds: float = 0.0


def _frames(path, hdu, all_hdus):
    """``(index, name, CCDData)`` of the image HDU(s) to process."""
    if not all_hdus:
        return [(hdu, None, read_ccddata(path, hdu=hdu))]
    with open_fits(path) as hdulist:
        frames = [(index, item.name,
                   CCDData(item.data, unit=item.header.get('BUNIT') or 'adu',
                           meta=item.header.copy()))
                  for index, item in enumerate(hdulist)
                  if item.is_image and item.data is not None
                  and item.data.ndim == 2]
    if not frames:
        msg = 'no 2-D image HDU'
        raise ValueError(msg)
    return frames


def _process(path, output, settings):
    """Process one file; raise on any problem."""
    results = []
    for index, name, ccd in _frames(path, settings['hdu'],
                                    settings['all_hdus']):
        background = estimate_background(ccd, **settings['options'])
        result = (subtract_background(ccd, background)
                  if settings['mode'] == 'subtract' else None)
        results.append((index, name, ccd, background, result))
    overwrite = settings['overwrite']
    if settings['all_hdus']:
        atomic_write(_multi_hdulist(results), output, overwrite=overwrite)
    elif settings['mode'] == 'subtract':
        write_with_background(results[0][4], results[0][3], output,
                              overwrite=overwrite)
    else:
        write_background(results[0][3], output, overwrite=overwrite)
    _, _, ccd, background, _ = results[0]
    if settings['plot']:
        from ezbkg_ccd.plotting import plot_background

        plot_background(ccd, background, path=Path(output).with_suffix('.png'))
    return len(results), background.global_back, background.global_rms


def _multi_hdulist(results):
    """One file for several HDUs: per HDU, its image (if subtracted),
    ``BKG`` and ``BKGRMS``, told apart by ``EXTVER`` (1, 2, ...)."""
    hdus = [fits.PrimaryHDU()]
    for version, (index, name, _, background, result) in enumerate(results, 1):
        if result is not None:
            header = result.to_hdu()[0].header
            header['EXTNAME'] = name or f'HDU{index}'
            header['EXTVER'] = version
            hdus.append(fits.ImageHDU(result.data, header=header))
            mask = fits.ImageHDU(result.mask.astype(np.uint8), name='MASK')
            mask.header['EXTVER'] = version
            hdus.append(mask)
        for item in background_hdus(background):
            item.header['EXTVER'] = version
            item.header['SRCHDU'] = (index, 'input HDU of this background')
            hdus.append(item)
    return fits.HDUList(hdus)


def process_one(path, output, settings):
    """
    Process one file and return its `FileReport` as a dict.

    Never raises for a bad file: the error is in the report.
    """
    start = time.perf_counter()
    report = {'input': str(path), 'output': str(output)}
    if Path(output).exists() and not settings['overwrite']:
        return {**report, 'status': 'skipped'}
    try:
        hdus, global_back, global_rms = _process(path, output, settings)
    except (OSError, ValueError, TypeError, MemoryError,
            ArithmeticError) as exc:
        return {**report, 'status': 'failed', 'error': str(exc),
                'seconds': time.perf_counter() - start}
    return {**report, 'status': 'done', 'hdus': hdus,
            'global_back': global_back, 'global_rms': global_rms,
            'seconds': time.perf_counter() - start}


def _input_paths(paths):
    """Paths from a list, one path, or an `~ccdproc.ImageFileCollection`."""
    from ccdproc import ImageFileCollection

    if isinstance(paths, ImageFileCollection):
        found = paths.files_filtered(include_path=True)
        return [Path(path) for path in found]
    if isinstance(paths, (str, os.PathLike)):
        return [Path(paths)]
    return [Path(path) for path in paths]


def _outputs(inputs, output_dir, suffix):
    """Output path of each input; the second of two that collide is `None`."""
    outputs, seen = [], set()
    for path in inputs:
        output = Path(output_dir) / f'{fits_stem(path)}{suffix}'
        outputs.append(None if output in seen else output)
        seen.add(output)
    return outputs


def _progress(total, enabled):
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        log.info('install tqdm (the progress extra) for a progress bar')
        return None
    return tqdm(total=total, unit='frame')


def process_files(paths, *, output_dir, n_jobs=1, client=None,
                  mode='subtract', suffix=None, overwrite=False, hdu=0,
                  all_hdus=False, plot=False, progress=False, **options):
    """
    Estimate or subtract the background of many FITS files.

    Parameters
    ----------
    paths : iterable of path, path or `~ccdproc.ImageFileCollection`
        The input files (a collection contributes its filtered files).
    output_dir : str or `~pathlib.Path`
        Created if missing; each input gives ``<stem><suffix>`` there.
    n_jobs : int, optional
        Local worker processes (default 1: in this process).
    client : `distributed.Client` or str, optional
        Run on this Dask client, or on the scheduler at this address,
        instead of local processes.
    mode : {'subtract', 'estimate'}, optional
        Write the subtracted frame with ``BKG``/``BKGRMS`` HDUs (default)
        or the background alone.
    suffix : str, optional
        Output name ending; ``'_bkgsub.fits'`` or ``'.bkg.fits'`` by mode.
    overwrite : bool, optional
        Replace existing outputs; by default they are skipped (resume).
    hdu : int or str, optional
        The image HDU of each input (default 0).
    all_hdus : bool, optional
        Process every 2-D image HDU into one output file, the HDUs of
        each input HDU told apart by ``EXTVER``.
    plot : bool, optional
        Also write ``<output stem>.png`` (needs matplotlib).
    progress : bool, optional
        Show a progress bar (needs tqdm).
    **options
        Keywords of `~ezbkg_ccd.estimate_background`.

    Returns
    -------
    reports : list of `FileReport`
        One per input, in input order.

    Examples
    --------
    >>> import numpy as np
    >>> from astropy.nddata import CCDData
    >>> from ezbkg_ccd import process_files
    >>> for name in ('a', 'b'):
    ...     CCDData(np.full((64, 64), 3.0),
    ...             unit='adu').write(tmp_path / f'{name}.fits')
    >>> _ = (tmp_path / 'c.fits').write_text('not FITS')
    >>> reports = process_files(sorted(tmp_path.glob('*.fits')),
    ...                         output_dir=tmp_path / 'out', box_size=32)
    >>> [(report.status, report.global_back) for report in reports]
    [('done', 3.0), ('done', 3.0), ('failed', None)]
    """
    if mode not in MODES:
        msg = f'mode must be one of {sorted(MODES)}, got {mode!r}'
        raise ValueError(msg)
    if not isinstance(n_jobs, int) or n_jobs < 1:
        msg = f'n_jobs must be a positive int, got {n_jobs!r}'
        raise ValueError(msg)
    inputs = _input_paths(paths)
    Path(output_dir).mkdir(parents=True, exist_ok=True)
    outputs = _outputs(inputs, output_dir, MODES[mode] if suffix is None
                       else suffix)
    settings = {'mode': mode, 'overwrite': overwrite, 'hdu': hdu,
                'all_hdus': all_hdus, 'plot': plot, 'options': options}
    reports = [None] * len(inputs)
    tasks = []
    for position, (path, output) in enumerate(zip(inputs, outputs,
                                                  strict=True)):
        if output is None:
            reports[position] = {'input': str(path), 'output': '',
                                 'status': 'failed',
                                 'error': 'its output name collides with an '
                                          'earlier input of the same name'}
        else:
            tasks.append((position, path, output))
    bar = _progress(len(inputs), progress)
    for position, report in _run(tasks, settings, n_jobs, client):
        reports[position] = report
        level = logging.WARNING if report['status'] == 'failed' else logging.INFO
        log.log(level, '%s %s%s', report['status'], report['input'],
                f": {report['error']}" if report.get('error') else '')
        if bar is not None:
            bar.update()
    if bar is not None:
        bar.update(len(inputs) - bar.n)
        bar.close()
    return [FileReport(**report) for report in reports]


def _run(tasks, settings, n_jobs, client):
    """Yield ``(position, report)`` as tasks finish."""
    if client is not None:
        yield from _run_dask(tasks, settings, client)
    elif n_jobs == 1 or len(tasks) <= 1:
        for position, path, output in tasks:
            yield position, process_one(path, output, settings)
    else:
        with ProcessPoolExecutor(max_workers=n_jobs) as pool:
            futures = {pool.submit(process_one, path, output, settings):
                       (position, path, output)
                       for position, path, output in tasks}
            for future in as_completed(futures):
                position, path, output = futures[future]
                yield position, _result(future, path, output)


def _result(future, path, output):
    """A future's report, or a failure report if its worker died."""
    try:
        return future.result()
    except Exception as exc:  # a crashed worker must not stop the batch
        return {'input': str(path), 'output': str(output),
                'status': 'failed', 'error': f'worker failed: {exc!r}'}


def _run_dask(tasks, settings, client):
    from distributed import Client
    from distributed import as_completed as dask_completed

    own = isinstance(client, str)
    if own:
        client = Client(client)
    try:
        futures = {client.submit(process_one, path, output, settings,
                                 pure=False): (position, path, output)
                   for position, path, output in tasks}
        for future in dask_completed(futures):
            position, path, output = futures[future]
            yield position, _result(future, path, output)
    finally:
        if own:
            client.close()
