# Licensed under a 3-clause BSD style license - see LICENSE
"""
Many FITS files at once: processes on this machine or a Dask cluster; or
frames larger than memory one after another, each in chunks on Dask.

Each file is one task that reads its frame, estimates (and subtracts)
the background and writes its output atomically; tasks return plain
dicts, so nothing unpicklable (such as a `sep.Background`) crosses a
process boundary, and a worker holds one frame at a time. A failing
file is reported and the others go on, even when it crashes its worker
process. An existing output made from the same input is skipped unless
``overwrite``, so a rerun resumes an interrupted batch; one made from
another input is a failure, never silently kept.
"""

import contextlib
import functools
import inspect
import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from astropy.io import fits

from ezbkg_ccd._dask import (
    LARGE_FRAME_SHARE,
    available_memory,
    dask_array,
    is_dask,
)
from ezbkg_ccd._fits import atomic_write, open_fits, remove_stale_temporaries
from ezbkg_ccd._reader import (
    hdulist_ccddata,
    image_hdus,
    image_index,
    is_compressed_file,
    lazy_ccddata,
)
from ezbkg_ccd._runners import (
    holding_stop_signals,
    run_chunked,
    run_dask,
    run_here,
    run_isolated,
)
from ezbkg_ccd._validation import as_choice, as_int, as_rule, as_settings
from ezbkg_ccd.lazy import check_lazy
from ezbkg_ccd.paths import fits_stem
from ezbkg_ccd.persistence import (
    BACKGROUND_HDUS,
    background_hdus,
    image_hdu,
    image_hdus_of,
    recorded_target,
    same_file,
    without_rebuildable,
    write_background,
    write_with_background,
)
from ezbkg_ccd.provenance import record_target
from ezbkg_ccd.registry import keyword_names
from ezbkg_ccd.steps import (
    PUBLIC_OPTIONS,
    check_keywords,
    estimate_background,
    is_subtracted,
    subtract_background,
)

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
        ``'done'``, ``'skipped'`` (see `reason`) or ``'failed'``.
    error : str or None
        Why it failed.
    hdus : int
        Image HDUs processed.
    global_back, global_rms : float or None
        The (first HDU's) global background and RMS.
    seconds : float
        Time spent on the file.
    reason : str or None
        Why it was skipped: its output exists (made from this input), it
        is already background-subtracted, or it is a background file.
    """

    input: str
    output: str
    status: str
    error: str | None = None
    hdus: int = 0
    global_back: float | None = None
    global_rms: float | None = None
    seconds: float = 0.0
    reason: str | None = None


#: Reason of a skip because the output is already there.
OUTPUT_EXISTS = 'output exists'


class _Skip(Exception):
    """An input that is not to be processed, and why."""


def _chunked_automatically(hdulist, path, settings):
    """
    Whether to process the image of an uncompressed file in chunks
    without being asked: it is larger than `LARGE_FRAME_SHARE` of the
    available memory, Dask is installed, and the settings can be
    computed in chunks (else it is processed in memory, as asked).
    """
    index = image_index(hdulist, settings['hdu'], path)
    header, available = hdulist[index].header, available_memory()
    if (isinstance(hdulist[index], fits.CompImageHDU) or available is None
            or is_compressed_file(path) or settings['plot']
            or settings['compress']):
        return False
    shape = (header['NAXIS2'], header['NAXIS1'])
    size = abs(header['BITPIX']) // 8 * shape[0] * shape[1]
    if size <= LARGE_FRAME_SHARE * available:
        return False
    options = {**_ESTIMATE_DEFAULTS, **settings['options']}
    try:
        dask_array()
        check_lazy(as_settings(
            options['method'], shape=shape, box_size=options['box_size'],
            filter_size=options['filter_size'],
            filter_threshold=options['filter_threshold'],
            reject_skewed=options['reject_skewed'],
            options={key: value for key, value in options.items()
                     if key not in PUBLIC_OPTIONS}), options['source_mask'])
    except (ImportError, TypeError, ValueError) as why:
        log.info('%s: a frame of %.1f GiB, processed in memory (not in '
                 'chunks: %s)', path, size / 2**30, why)
        return False
    log.info('%s: a frame of %.1f GiB, processed in chunks', path,
             size / 2**30)
    return True


#: The defaults of `estimate_background`, for the settings of a batch.
_ESTIMATE_DEFAULTS = {
    name: parameter.default for name, parameter in
    inspect.signature(estimate_background).parameters.items()
    if parameter.default is not inspect.Parameter.empty}


def _frames(path, settings):
    """``(index, CCDData)`` of the image HDU(s) to process, and the
    chunks to process them in (`None`: in memory)."""
    chunks = settings['options'].get('chunks')
    with open_fits(path) as hdulist:  # once, for every HDU read
        found = image_hdus(hdulist)
        if not found and BACKGROUND_HDUS[0] in hdulist:
            raise _Skip('a background file (BKG/BKGRMS, no image)')
        indices = found if settings['all_hdus'] else [settings['hdu']]
        if not indices:
            msg = 'no 2-D image HDU'
            raise ValueError(msg)
        if chunks is None and not settings['all_hdus'] and (
                _chunked_automatically(hdulist, path, settings)):
            chunks = 'auto'
        frames = [] if chunks is not None else [
            (index, hdulist_ccddata(hdulist, hdu=index, path=path,
                                    unit=settings['unit']))
            for index in indices]
    if chunks is not None:
        frames = [(indices[0], lazy_ccddata(path, hdu=settings['hdu'],
                                            unit=settings['unit']))]
    if (settings['mode'] == 'subtract' and not settings['resubtract']
            and any(is_subtracted(ccd.meta) for _, ccd in frames)):
        raise _Skip('already background-subtracted (BKGSUB = T); pass '
                    'resubtract=True (--resubtract) to subtract again')
    return frames, chunks


def _process(path, output, settings):
    """Process one file; raise on any problem."""
    results = []
    frames, chunks = _frames(path, settings)
    options = {**settings['options'], 'chunks': chunks}
    if chunks is not None and settings['plot']:
        msg = 'plot is not available for a frame processed in chunks'
        raise ValueError(msg)
    with _frame_threads(settings, chunks):
        for index, ccd in frames:
            background = estimate_background(ccd, **options)
            record_target(background.header, path)
            result = (subtract_background(ccd, background, chunks=chunks,
                                          resubtract=settings['resubtract'])
                      if settings['mode'] == 'subtract' else None)
            results.append((index, ccd, background, result))
        _write(results, output, settings)
    _, ccd, background, _ = results[0]
    if settings['plot']:
        from ezbkg_ccd.plotting import plot_background

        plot_background(ccd, background, path=Path(output).with_suffix('.png'))
    return len(results), background.global_back, background.global_rms


def _frame_threads(settings, chunks):
    """The Dask threads of a frame processed in chunks automatically in
    a worker process: the cores shared among the workers."""
    if chunks is None or settings['options'].get('chunks') is not None:
        return contextlib.nullcontext()
    import dask

    return dask.config.set(scheduler='threads',
                           num_workers=settings['frame_threads'])


def _write(results, output, settings):
    """Write what `_process` computed."""
    overwrite, compress = settings['overwrite'], settings['compress']
    if settings['all_hdus']:
        atomic_write(_multi_hdulist(results, compress,
                                    settings['omit_rebuildable']), output,
                     overwrite=overwrite)
    elif settings['mode'] == 'subtract':
        result, background = results[0][3], results[0][2]
        omit = settings['omit_rebuildable']
        if omit and is_dask(result.data):  # chunked as too large for memory
            log.warning('%s: processed in chunks, so UNCERT is written (it '
                        'is left out only for frames processed whole)',
                        output)
            omit = False
        write_with_background(result, background, output,
                              overwrite=overwrite, compress=compress,
                              omit_rebuildable=omit)
    else:
        write_background(results[0][2], output, overwrite=overwrite,
                         compress=compress)


def _multi_hdulist(results, compress, omit_rebuildable):
    """
    One file for several HDUs: per input HDU, its subtracted image (with
    ``MASK`` and ``UNCERT``, unless ``omit_rebuildable`` leaves it out)
    and ``BKG``/``BKGRMS``, all told apart by ``EXTVER`` (1, 2, ...).
    """
    hdus = [fits.PrimaryHDU()]
    for version, (index, ccd, background, result) in enumerate(results, 1):
        group = []
        if result is not None:
            if omit_rebuildable:
                result = without_rebuildable(result, background)
            image, *extras = image_hdus_of(result)
            name = ccd.meta.get('EXTNAME') or f'HDU{index}'
            group = [image_hdu(hdu.data, hdu.header, hdu.name, compress)
                     for hdu in (fits.ImageHDU(image.data, header=image.header,
                                               name=name), *extras)]
        group += background_hdus(background, compress=compress)
        for item in group:
            item.header['EXTVER'] = version
            item.header['SRCHDU'] = (index, 'input HDU of this image')
        hdus += group
    return fits.HDUList(hdus)


def _existing(path, output, report):
    """The report for an input whose output exists (no overwrite)."""
    recorded = recorded_target(output)
    if recorded is not None and same_file(recorded, path):
        return {**report, 'status': 'skipped', 'reason': OUTPUT_EXISTS}
    origin = (f'was made from {recorded!r}, not from this file'
              if recorded is not None else
              "records no input file (TGTPATH): it may not be this file's")
    return {**report, 'status': 'failed',
            'error': f'{str(output)!r} exists and {origin}; pass '
                     'overwrite=True (--overwrite) to replace it, or choose '
                     'another output folder'}


def process_one(path, output, settings):
    """
    Process one file and return its `FileReport` as a dict.

    Never raises for a bad file: the error is in the report.
    """
    start = time.perf_counter()
    report = {'input': str(path), 'output': str(output)}
    try:
        if Path(output).exists() and not settings['overwrite']:
            return _existing(path, output, report)
        hdus, global_back, global_rms = _process(path, output, settings)
    except _Skip as skip:
        return {**report, 'status': 'skipped', 'reason': str(skip)}
    except Exception as exc:  # a bad file must never stop the batch
        if (isinstance(exc, FileExistsError) and not settings['overwrite']
                and Path(output).exists()):
            return _existing(path, output, report)  # a concurrent run's
        return {**report, 'status': 'failed', 'error': _message(exc),
                'seconds': time.perf_counter() - start}
    return {**report, 'status': 'done', 'hdus': hdus,
            'global_back': global_back, 'global_rms': global_rms,
            'seconds': time.perf_counter() - start}


def _message(exc):
    """An exception as one line; its type where that says more."""
    text = ' '.join(str(exc).split())
    if isinstance(exc, (OSError, ValueError, TypeError)):
        return text
    return f'{type(exc).__name__}: {text}'


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

    class Bar(tqdm):
        monitor_interval = 0  # no monitor thread: workers are forked

    return Bar(total=total, unit='frame')


def _chunk_progress(enabled):
    """Dask's progress bar of each step of a frame processed in chunks
    on local threads (on a cluster, its dashboard shows the progress)."""
    if not enabled:
        return contextlib.nullcontext()
    from dask.diagnostics import ProgressBar

    return ProgressBar(out=sys.stderr)


def _log(report):
    level = logging.WARNING if report['status'] == 'failed' else logging.INFO
    detail = report.get('error') or report.get('reason')
    log.log(level, '%s %s%s', report['status'], report['input'],
            f': {detail}' if detail else '')


def process_files(paths, *, output_dir, n_jobs=1, client=None,
                  mode='subtract', suffix=None, overwrite=False, hdu=None,
                  all_hdus=False, unit=None, resubtract=False, plot=False,
                  progress=False, isolate=False, compress=False,
                  omit_rebuildable=False, **options):
    """
    Estimate or subtract the background of many FITS files.

    Parameters
    ----------
    paths : iterable of path, path or `~ccdproc.ImageFileCollection`
        The input files (a collection contributes its filtered files).
    output_dir : str or `~pathlib.Path`
        Created if missing; each input gives ``<stem><suffix>`` there.
    n_jobs : int, optional
        Local worker processes (default 1: in this process, unless
        ``isolate``).
    client : `distributed.Client` or str, optional
        Run on this Dask client, or on the scheduler at this address,
        instead of local processes.
    mode : {'subtract', 'estimate'}, optional
        Write the subtracted frame with ``BKG``/``BKGRMS`` HDUs (default)
        or the background alone.
    suffix : str, optional
        Output name ending; ``'_bkgsub.fits'`` or ``'.bkg.fits'`` by mode.
    overwrite : bool, optional
        Replace existing outputs. By default an output made from the same
        input (its ``TGTPATH``) is skipped, so a rerun resumes, and one
        made from another input is reported as failed.
    hdu : int, str or (str, int), optional
        The image HDU of each input (default: the first HDU with image
        data, tile-compressed ones included).
    all_hdus : bool, optional
        Process every 2-D image HDU into one output file, the HDUs of
        each input HDU told apart by ``EXTVER``; the ``MASK``,
        ``UNCERT``, ``BKG`` and ``BKGRMS`` HDUs of a processed file are
        not images to process.
    unit : `~astropy.units.Unit` or str, optional
        The data unit of every input, instead of its ``BUNIT`` (default:
        ``BUNIT``, or ``adu`` without one).
    resubtract : bool, optional
        Subtract frames that are already background-subtracted
        (``BKGSUB = T``); by default they are skipped, as are background
        files, so a batch never processes its own outputs.
    plot : bool, optional
        Also write ``<output stem>.png`` (needs matplotlib).
    progress : bool, optional
        Show a progress bar with the time left (needs tqdm), and each
        failure above it as it happens.
    isolate : bool, optional
        Run even one job in a worker process, so that a file that crashes
        the interpreter is reported as failed instead of ending the
        batch (the command line always does; with ``n_jobs > 1`` files
        are always isolated).
    compress : bool, optional
        Tile-compress the outputs' extensions losslessly (see
        `~ezbkg_ccd.write_with_background`; not for frames processed in
        chunks).
    omit_rebuildable : bool, optional
        Leave out each output's ``UNCERT`` where it is exactly rebuilt
        from ``BKGRMS`` and the data (see
        `~ezbkg_ccd.write_with_background`; not for frames processed in
        chunks).
    **options
        Keywords of `~ezbkg_ccd.estimate_background`. With ``chunks``,
        the files are processed one after another in this process, each
        frame read, processed and written in chunks on Dask (on
        ``client`` when given, else on local threads; ``n_jobs`` and
        ``isolate`` do not apply). Without it, a frame larger than a
        quarter of the available memory is processed so anyway, on the
        cores left to its worker, when Dask is installed and the options
        allow it (else in memory, as asked).

    Returns
    -------
    reports : list of `FileReport`
        One per input, in input order.

    Notes
    -----
    A `KeyboardInterrupt` (Ctrl-C) while the batch runs drops the files
    not yet started, stops the local workers at once (each removes the
    temporary file it was writing) or cancels the queued Dask tasks, and
    propagates; the outputs already written are complete, and a rerun
    resumes.

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

    A rerun skips what is done, and never processes its own outputs:

    >>> outputs = sorted((tmp_path / 'out').glob('*.fits'))
    >>> again = process_files([tmp_path / 'a.fits', *outputs],
    ...                       output_dir=tmp_path / 'out', box_size=32)
    >>> for report in again:
    ...     print(report.status, report.reason[:29])
    skipped output exists
    skipped already background-subtracted
    skipped already background-subtracted
    """
    as_choice(mode, name='mode', choices=tuple(MODES))
    as_int(n_jobs, name='n_jobs')
    as_rule(options.get('saturation', 'header'), options.get('zero_area', 100))
    check_keywords(  # once, not in every worker
        options.get('method', 'sep'), options,
        options.get('source_mask_options'), function='process_files',
        public=(*PUBLIC_OPTIONS, *keyword_names(process_files)))
    if omit_rebuildable and (mode != 'subtract'
                             or options.get('chunks') is not None):
        msg = ("omit_rebuildable applies to mode='subtract' of frames "
               'processed whole, not in chunks')
        raise ValueError(msg)
    inputs = _input_paths(paths)
    Path(output_dir).mkdir(parents=True, exist_ok=True)
    outputs = _outputs(inputs, output_dir, MODES[mode] if suffix is None
                       else suffix)
    settings = {'mode': mode, 'overwrite': overwrite, 'hdu': hdu,
                'all_hdus': all_hdus, 'unit': unit, 'plot': plot,
                'resubtract': resubtract, 'options': options,
                'compress': compress, 'omit_rebuildable': omit_rebuildable,
                'frame_threads': max(1, (os.cpu_count() or 1) // n_jobs)}
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
    remove_stale_temporaries(output_dir)  # of an earlier, killed run
    work = functools.partial(process_one, settings=settings)
    if options.get('chunks') is not None:
        if all_hdus:
            msg = 'all_hdus is not available for frames processed in chunks'
            raise ValueError(msg)
        finished = run_chunked(tasks, work, client)
    elif client is not None:
        finished = run_dask(tasks, work, client)
    elif n_jobs > 1 or isolate:
        finished = run_isolated(tasks, work, n_jobs)
    else:
        finished = run_here(tasks, work)
    chunked = options.get('chunks') is not None
    bar = _progress(len(inputs), progress and not chunked)
    if bar is not None:
        bar.update(len(inputs) - len(tasks))  # failed before they ran
    try:
        with contextlib.closing(finished), _chunk_progress(  # Ctrl-C here
                progress and chunked and client is None):  # stops workers
            for position, report in finished:
                reports[position] = report
                _log(report)
                if bar is not None:
                    if report['status'] == 'failed':  # now, above the bar
                        bar.write(f"FAILED {report['input']}: "
                                  f"{report['error']}", file=sys.stderr)
                    bar.update()
    finally:
        with holding_stop_signals():  # a second Ctrl-C waits for this
            if bar is not None:
                bar.close()
            remove_stale_temporaries(output_dir)  # of workers that died
    return [FileReport(**report) for report in reports]
