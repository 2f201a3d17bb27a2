# Licensed under a 3-clause BSD style license - see LICENSE
"""
The ``ezbkg`` command line.

Exit codes: 0 on success, 1 when a frame failed, 2 for a usage error.
"""

import argparse
import sys

from ezbkg_ccd import __version__
from ezbkg_ccd.demo import run_demo

__all__ = ['main']


def _demo(arguments):
    summary = run_demo(arguments.output_dir, overwrite=arguments.overwrite)
    for key, value in summary.items():
        text = f'{value:.3f}' if isinstance(value, float) else value
        print(f'{key:>12}: {text}')
    return 0


def _parser():
    parser = argparse.ArgumentParser(
        prog='ezbkg',
        description='Sky background estimation and subtraction for FITS '
                    'images (astropy CCDData, SEP).')
    parser.add_argument('--version', action='version',
                        version=f'%(prog)s {__version__}')
    commands = parser.add_subparsers(dest='command', required=True)
    demo = commands.add_parser(
        'demo', help='run the whole pipeline on data shipped with ezbkg-ccd',
        description='Reduce the raw CCD frame shipped with ezbkg-ccd '
                    '(overscan, trim, gain, errors), subtract its '
                    'background and write it with BKG/BKGRMS HDUs.')
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
          output: .../raw_ccd_a8280271_bkgsub.fits
          method: sep
        box_size: (64, 64)
     global_back: 163.040
      global_rms: 13.935
            unit: electron
          masked: 0
    0
    """
    arguments = _parser().parse_args(argv)
    try:
        return arguments.run(arguments)
    except (OSError, ValueError, TypeError) as exc:
        print(f'ezbkg: error: {exc}', file=sys.stderr)
        return 1


if __name__ == '__main__':  # pragma: no cover
    sys.exit(main())
