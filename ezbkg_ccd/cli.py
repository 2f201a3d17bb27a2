# Licensed under a 3-clause BSD style license - see LICENSE
"""
The ``ezbkg`` command line.

Exit codes: 0 when every frame succeeded (or was already done or not to
be processed), 1 when any frame failed (a summary says which and why), 2
for a usage error, 130 when interrupted (Ctrl-C), 143 when terminated
(SIGTERM, as a batch system sends at its time limit).
"""

import argparse
import contextlib
import json
import logging
import math
import os
import signal
import sys
import warnings

import astropy.units as u
from astropy.io.fits.verify import VerifyError

from ezbkg_ccd import __version__
from ezbkg_ccd._runners import handling_signals
from ezbkg_ccd.batch import MODES, OUTPUT_EXISTS, process_files
from ezbkg_ccd.demo import run_demo
from ezbkg_ccd.persistence import read_background
from ezbkg_ccd.provenance import KEYWORDS
from ezbkg_ccd.registry import estimator_options, get_estimator

__all__ = ['main']


class _Terminated(KeyboardInterrupt):
    """SIGTERM, stopping the run as Ctrl-C does."""


def _raise_terminated(signum, frame):
    raise _Terminated


def _hdu(value):
    return int(value) if value.lstrip('-').isdigit() else value


def _method(value):
    """A registered estimator name, or a usage error listing them."""
    try:
        get_estimator(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return value


def _positive(value, *, odd=False):
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1 or (odd and not number % 2):
        kind = 'an odd positive integer' if odd else 'a positive integer'
        msg = f'must be {kind}, got {value}'
        raise argparse.ArgumentTypeError(msg)
    return number


def _odd(value):
    return _positive(value, odd=True)


def _saturation(value):
    if value.strip().lower() in ('header', 'none'):
        return None if value.strip().lower() == 'none' else 'header'
    try:
        level = float(value)
    except ValueError:
        level = math.nan
    if not (math.isfinite(level) and level > 0):
        msg = f"must be a positive number, 'header' or 'none', got {value}"
        raise argparse.ArgumentTypeError(msg)
    return level


def _zero_area(value):
    return None if value.strip().lower() == 'none' else _positive(value)


def _unit(value):
    try:
        return u.Unit(value)
    except ValueError:
        msg = f'{value!r} is not a unit astropy knows'
        raise argparse.ArgumentTypeError(msg) from None


def _dask_threads(threads):
    """Dask's local threads for the frames processed in chunks (when
    ``threads`` is given and Dask installed)."""
    if threads is None:
        return contextlib.nullcontext()
    try:
        import dask
    except ImportError:
        return contextlib.nullcontext()
    return dask.config.set(num_workers=threads)


def _chunks(value):
    """``--chunks``: ``auto`` or a positive number of rows."""
    return value if value == 'auto' else _positive(value)


def _batch(arguments):
    options = {'method': arguments.method, 'box_size': arguments.box_size,
               'filter_size': arguments.filter_size}
    if arguments.mask_sources == 'auto':
        options['source_mask'] = 'auto'
    if arguments.reject_skewed:
        options['reject_skewed'] = True
    threads = arguments.threads
    if arguments.chunks is not None:
        options['chunks'] = arguments.chunks
    elif threads is not None and threads > 1:
        if 'n_threads' not in (estimator_options(
                get_estimator(arguments.method)) or ()):
            msg = (f'--threads applies to method sep (threaded strips), not '
                   f'--method {arguments.method}')
            raise ValueError(msg)
        options['n_threads'] = threads
        threads = None
    options['saturation'] = arguments.saturation
    options['zero_area'] = arguments.zero_area
    with _dask_threads(threads):
        reports = process_files(
            arguments.files, output_dir=arguments.output_dir,
            n_jobs=arguments.jobs, client=arguments.scheduler,
            mode=arguments.command, suffix=arguments.suffix,
            overwrite=arguments.overwrite, hdu=arguments.hdu,
            all_hdus=arguments.all_hdus, resubtract=arguments.resubtract,
            unit=arguments.unit, plot=arguments.plot, isolate=True,
            compress=arguments.compress,
            omit_rebuildable=getattr(arguments, 'omit_rebuildable', False),
            progress=not arguments.quiet and sys.stderr.isatty(), **options)
    counts = {status: sum(r.status == status for r in reports)
              for status in ('done', 'skipped', 'failed')}
    for report in reports:
        if report.status == 'failed':
            print(f'FAILED {report.input}: {report.error}', file=sys.stderr)
        elif report.status == 'skipped' and not arguments.quiet and (
                report.reason != OUTPUT_EXISTS):
            print(f'skipped {report.input}: {report.reason}', file=sys.stderr)
    if not arguments.quiet:
        print(f"{counts['done']} done, {counts['skipped']} skipped, "
              f"{counts['failed']} failed")
    return 1 if counts['failed'] else 0


#: Settings an estimator of one level ignores (not shown by ``info``).
_MESH_SETTINGS = ('BKGBOX', 'BKGBOXX', 'BKGFILT', 'BKGFILTX', 'BKGFTHR')


#: The widest value column of ``info`` (longer values run on).
_INFO_WIDTH = 24


def _shown(value):
    """A header value as ``info`` prints it: floats to 7 digits (float32
    precision), the rest as they are."""
    return repr(float(f'{value:.7g}')) if isinstance(value, float) else str(
        value)


def _json_value(value):
    """A header value as strict JSON takes it: a non-finite float, which
    JSON cannot hold, as its text ('nan', 'inf')."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value if isinstance(value, (bool, int, float, str)) else str(value)


def _info(arguments):
    header = read_background(arguments.file).header
    if arguments.json:
        keywords = {key: _json_value(header[key]) for key in header}
        print(json.dumps({'file': arguments.file, 'keywords': keywords},
                         indent=1, allow_nan=False))
        return 0
    constant = str(header['BKGTYPE']).strip().upper() == 'CONSTANT'
    rows = [(key, _shown(header[key]), KEYWORDS.get(key, 'unit'))
            for key in header if not (constant and key in _MESH_SETTINGS)]
    width = min(max(len(value) for _, value, _ in rows), _INFO_WIDTH)
    print(f'{arguments.file}')
    for key, value, meaning in rows:
        print(f'  {key:<8}  {value:<{width}}  {meaning}')
    return 0


def _demo(arguments):
    summary = run_demo(arguments.output_dir, overwrite=arguments.overwrite)
    for key, value in summary.items():
        text = f'{value:.3f}' if isinstance(value, float) else value
        print(f'{key:>12}: {text}')
    return 0


def _add_noise_options(parser, *, default):
    """-v and -q, before the command (``default=False``) or after it
    (``default=argparse.SUPPRESS``: not to hide the one given before)."""
    noise = parser.add_mutually_exclusive_group()
    noise.add_argument('-v', '--verbose', action='store_true', default=default,
                       help='log every frame')
    noise.add_argument('-q', '--quiet', action='store_true', default=default,
                       help='print only failures')


def _add_batch_parser(commands, name, help_text):
    parser = commands.add_parser(name, help=help_text, description=help_text)
    _add_noise_options(parser, default=argparse.SUPPRESS)
    parser.add_argument('files', nargs='+', help='input FITS files')
    parser.add_argument('-o', '--output-dir', default='.',
                        help='output folder (default: current folder)')
    parser.add_argument('--suffix', default=None,
                        help=f'output name ending (default: {MODES[name]})')
    parser.add_argument('--method', default='sep', type=_method,
                        help='estimator: sep, constant, photutils or a '
                             'registered name (default: sep)')
    parser.add_argument('--box-size', type=_positive, default=64,
                        help='mesh size in pixels (default: 64)')
    parser.add_argument('--filter-size', type=_odd, default=3,
                        help='odd median filter size in meshes (default: 3)')
    parser.add_argument('--unit', type=_unit, default=None,
                        help="data unit, instead of the header's BUNIT "
                             '(default: BUNIT, or adu without one)')
    parser.add_argument('--mask-sources', choices=['auto', 'none'],
                        default='none',
                        help='mask sources automatically (default: '
                             'none; auto costs 12-60 times the plain map)')
    parser.add_argument('--reject-skewed', action='store_true',
                        help='reject meshes skewed by unmasked sources')
    parser.add_argument('--saturation', type=_saturation, default='header',
                        metavar='LEVEL',
                        help="pixels at or above LEVEL are invalid: a number, "
                             "'header' (SATURATE, SATLEVEL or SATURATN; the "
                             "default) or 'none'")
    parser.add_argument('--zero-area', type=_zero_area, default=100,
                        metavar='N',
                        help="zeros in connected regions of N pixels or more "
                             "(chip gaps) are invalid (default: 100; 'none' "
                             'keeps them)')
    parser.add_argument('--hdu', type=_hdu, default=None,
                        help='image HDU index or name (default: the first '
                             'HDU with image data)')
    parser.add_argument('--all-hdus', action='store_true',
                        help='process every 2-D image HDU into one file')
    parser.add_argument('--overwrite', action='store_true',
                        help='replace existing outputs (default: skip those '
                             'made from the same input)')
    parser.add_argument('--resubtract', action='store_true',
                        help='also subtract frames that are already '
                             'background-subtracted (BKGSUB = T)')
    parser.add_argument('--compress', action='store_true',
                        help='tile-compress the extensions losslessly '
                             '(GZIP_2 for the maps and uncertainty, RICE_1 '
                             'for the mask; not with --chunks)')
    if name == 'subtract':
        parser.add_argument('--omit-rebuildable', action='store_true',
                            help='leave out UNCERT where it is exactly '
                                 'rebuilt from BKGRMS and the data (inputs '
                                 'without an uncertainty); '
                                 'read_with_background rebuilds it. Not '
                                 'with --chunks')
    parser.add_argument('--plot', action='store_true',
                        help='also write a PNG per frame (needs matplotlib)')
    parser.add_argument('-j', '--jobs', type=_positive,
                        default=os.cpu_count() or 1,
                        help='local worker processes (default: all cores); '
                             'a file that crashes its worker is reported '
                             'and the others go on')
    parser.add_argument('--threads', type=_positive, default=None,
                        help='threads within each frame (method sep: '
                             'strips, worth it for 4096x4096 frames or '
                             'more; default 1; with --chunks, the local '
                             'Dask threads, default all cores)')
    parser.add_argument('--chunks', type=_chunks, default=None,
                        metavar='ROWS',
                        help="read, process and write each frame in chunks "
                             "of about ROWS rows ('auto': about 64 MiB) on "
                             'Dask, one frame after another: for frames '
                             'larger than memory (needs the dask extra). '
                             'Without it, a frame larger than a quarter of '
                             'the available memory is processed so anyway')
    parser.add_argument('--scheduler', default=None, metavar='ADDRESS',
                        help='run on the Dask scheduler at ADDRESS: one task '
                             'per file, or with --chunks the chunks of each '
                             'frame')
    parser.set_defaults(run=_batch)


def _parser():
    parser = argparse.ArgumentParser(
        prog='ezbkg',
        description='Sky background estimation and subtraction for FITS '
                    'images (astropy CCDData, SEP). Exit codes: 0 all '
                    'frames done, 1 some frame failed, 2 usage error, 130 '
                    'interrupted (Ctrl-C), 143 terminated (SIGTERM).')
    parser.add_argument('--version', action='version',
                        version=f'%(prog)s {__version__}')
    _add_noise_options(parser, default=False)
    commands = parser.add_subparsers(dest='command', required=True)
    _add_batch_parser(commands, 'subtract',
                      'Subtract the background of each file and write it '
                      'with BKG/BKGRMS HDUs as <stem>_bkgsub.fits.')
    _add_batch_parser(commands, 'estimate',
                      'Write the background of each file as <stem>.bkg.fits.')
    info = commands.add_parser(
        'info', help='print the background provenance of a file',
        description='Print the background provenance of a processed file.')
    info.add_argument('file', help='a file with a BKG HDU')
    info.add_argument('--json', action='store_true',
                      help='print the keywords as JSON, values unrounded')
    info.set_defaults(run=_info)
    demo = commands.add_parser(
        'demo', help='run the whole pipeline on data shipped with ezbkg-ccd',
        description='Reduce the raw CCD frame shipped with ezbkg-ccd '
                    '(overscan, trim, gain, errors), subtract its '
                    'background, write it with BKG/BKGRMS HDUs and plot '
                    'it (with matplotlib).')
    demo.add_argument('-o', '--output-dir', default='ezbkg-demo',
                      help='where to write the outputs (default: '
                           '%(default)s)')
    demo.add_argument('--overwrite', action='store_true',
                      help='replace outputs of an earlier run')
    demo.set_defaults(run=_demo)
    return parser


def main(argv=None):
    """
    Run the ``ezbkg`` command line and return its exit code.

    Examples
    --------
    >>> from ezbkg_ccd.cli import main
    >>> main(['demo', '-o', str(tmp_path)])  # doctest: +ELLIPSIS
            file: raw_ccd_a8280271.fits
         reduced: .../raw_ccd_a8280271_reduced.fits
          output: .../raw_ccd_a8280271_bkgsub.fits
          method: sep
        box_size: (64, 64)
     global_back: 163.254
      global_rms: 13.984
            unit: electron
          masked: 0
          figure: .../raw_ccd_a8280271_bkgsub.png
    0
    """
    arguments = _parser().parse_args(argv)
    # every frame as it finishes with -v; failures are in the summary
    level = logging.INFO if arguments.verbose else logging.ERROR
    logger = logging.getLogger('ezbkg_ccd')
    handler = logging.StreamHandler(sys.stderr)  # one line per message
    handler.setFormatter(logging.Formatter('%(levelname)s: %(message)s'))
    previous_level = logger.level
    logger.setLevel(level)
    logger.addHandler(handler)
    propagate, logger.propagate = logger.propagate, False  # printed once
    try:
        with warnings.catch_warnings(), handling_signals(
                {signal.SIGTERM: _raise_terminated}):
            if arguments.quiet:
                warnings.simplefilter('ignore')
            return arguments.run(arguments)
    except (OSError, ValueError, TypeError, VerifyError) as exc:
        print(f'ezbkg: error: {exc}', file=sys.stderr)
        return 1
    except KeyboardInterrupt as exc:
        terminated = isinstance(exc, _Terminated)
        print(f"ezbkg: {'terminated' if terminated else 'interrupted'}; "
              'finished outputs are complete, a rerun resumes',
              file=sys.stderr)
        return 143 if terminated else 130
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate
        logger.setLevel(previous_level)


if __name__ == '__main__':  # pragma: no cover
    sys.exit(main())
