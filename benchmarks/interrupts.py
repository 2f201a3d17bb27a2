# Licensed under a 3-clause BSD style license - see LICENSE
"""
How a batch stops: Ctrl-C, SIGTERM and SIGKILL during ``ezbkg subtract``.

Run by hand (not part of the test suite)::

    python benchmarks/interrupts.py                  # 3 repeats
    python benchmarks/interrupts.py --repeats 5 --signals SIGINT SIGTERM

Two batches of real work (``--mask-sources auto``, 2 workers) on scenes
with strong large-scale sky (vignetting, gradients, chip gaps, a bright
star): 60 frames of 1024x1024 (about 0.2 s each) and 8 of 4096x4096
(several seconds each, so that workers are always mid-frame). Each run
is signalled 2.5 s after its start (1024) or once the first frame is
written (4096); measured, median over the repeats: seconds from the
signal to the command's exit, outputs at exit and 3 s later (none may
appear after the exit), temporary files left, workers still running 3 s
later. Then an interrupted run is resumed and its outputs compared with
an uninterrupted run's, pixel for pixel. Results go to
``benchmarks/results/interrupts.json``.
"""

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.nddata import CCDData

from ezbkg_ccd._fits import _alive
from ezbkg_ccd.synthetic import make_scene

RESULTS = Path(__file__).parent / 'results'
SCENES = ('vignetting', 'gradient', 'gaps', 'bright_star')
SIGNALS = {'SIGINT': lambda pid: os.kill(pid, signal.SIGINT),
           'Ctrl-C (group)': lambda pid: os.killpg(pid, signal.SIGINT),
           'SIGTERM': lambda pid: os.kill(pid, signal.SIGTERM),
           'SIGKILL': lambda pid: os.kill(pid, signal.SIGKILL)}


def write_frames(folder, count, size):
    folder.mkdir(parents=True)
    for index in range(count):
        image, *_ = make_scene(SCENES[index % len(SCENES)],
                               shape=(size, size), seed=index)
        CCDData(image, unit='adu').write(folder / f'f{index:02d}.fits')
    return sorted(str(path) for path in folder.glob('*.fits'))


def command(paths, out):
    return [sys.executable, '-m', 'ezbkg_ccd.cli', 'subtract', *paths,
            '-o', str(out), '-j', '2', '--mask-sources', 'auto']


def _children(pid):
    found = []
    for stat in Path('/proc').glob('[0-9]*/stat'):
        try:
            fields = stat.read_text().rsplit(')', 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _outputs(out):
    return len(list(out.glob('*_bkgsub.fits'))) if out.is_dir() else 0


def stop_once(paths, out, send, *, after_first):
    """Start a batch, signal it, and measure how it ends."""
    process = subprocess.Popen(command(paths, out), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    start = time.monotonic()
    while time.monotonic() - start < 120 and (
            _outputs(out) == 0 if after_first
            else time.monotonic() - start < 2.5):
        time.sleep(0.01)
    workers = _children(process.pid)
    signalled = time.monotonic()
    send(process.pid)
    _, stderr = process.communicate(timeout=300)
    seconds = time.monotonic() - signalled
    at_exit = _outputs(out)
    time.sleep(3)
    return {'seconds': seconds, 'exit': process.returncode,
            'outputs_at_exit': at_exit, 'outputs_3s_later': _outputs(out),
            'temporary_files': len(list(out.glob('.*.tmp*'))),
            'workers_alive_3s_later': sum(map(_alive, workers)),
            'stderr': stderr.strip()}


def same_file(first, second):
    """Whether two FITS files hold the same HDUs, pixel for pixel."""
    with fits.open(first) as one, fits.open(second) as other:
        return len(one) == len(other) and all(
            np.array_equal(a.data, b.data, equal_nan=True)
            for a, b in zip(one, other, strict=True))


def resumed_equals_uninterrupted(paths, folder):
    """Interrupt, rerun, and compare with a run never interrupted."""
    stop_once(paths, folder / 'resumed', SIGNALS['SIGINT'], after_first=False)
    subprocess.run(command(paths, folder / 'resumed'), check=True,
                   capture_output=True)
    subprocess.run(command(paths, folder / 'straight'), check=True,
                   capture_output=True)
    names = sorted(path.name for path in (folder / 'straight').iterdir())
    return names == sorted(path.name for path in (folder / 'resumed').iterdir()
                           ) and all(same_file(folder / 'resumed' / name,
                                               folder / 'straight' / name)
                                     for name in names)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[1])
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--signals', nargs='+', choices=SIGNALS,
                        default=list(SIGNALS), help='default: all')
    arguments = parser.parse_args()
    results = {'repeats': arguments.repeats, 'cases': {}}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        batches = {'60 x 1024^2': (write_frames(tmp / 'small', 60, 1024),
                                   False),
                   '8 x 4096^2': (write_frames(tmp / 'large', 8, 4096), True)}
        for batch, (paths, after_first) in batches.items():
            for name in arguments.signals:
                runs = [stop_once(paths, tmp / f'out{time.time_ns()}',
                                  SIGNALS[name],
                                  after_first=after_first)
                        for _ in range(arguments.repeats)]
                case = {key: statistics.median(run[key] for run in runs)
                        for key in runs[0] if key != 'stderr'}
                case['max_seconds'] = max(run['seconds'] for run in runs)
                case['stderr'] = sorted({run['stderr'] for run in runs})
                results['cases'][f'{batch}, {name}'] = case
                print(f'{batch:>12}, {name:<15} exit {case["exit"]:>4} '
                      f'in {case["seconds"]:.2f} s (max '
                      f'{case["max_seconds"]:.2f}); outputs '
                      f'{case["outputs_at_exit"]:g} -> '
                      f'{case["outputs_3s_later"]:g}; temporary files '
                      f'{case["temporary_files"]:g}; workers alive '
                      f'{case["workers_alive_3s_later"]:g}', flush=True)
        identical = resumed_equals_uninterrupted(batches['60 x 1024^2'][0],
                                                 tmp / 'resume')
        results['resumed_identical'] = identical
        print(f'interrupted then resumed == uninterrupted: {identical}')
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / 'interrupts.json').write_text(json.dumps(results, indent=1))


if __name__ == '__main__':
    main()
