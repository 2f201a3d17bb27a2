# Licensed under a 3-clause BSD style license - see LICENSE
"""
Speed and memory of ezbkg-ccd against the hand-written SEP baseline and
photutils, on the same images in the same run (interleaved repeats).

Run by hand (not part of the test suite)::

    python benchmarks/speed.py            # full run, ~4 minutes on 2 cores
    python benchmarks/speed.py --quick    # 1024^2 and 2048^2 only

Cases, per image size:

a. baseline: ``np.ascontiguousarray(data.astype('<f4'))``,
   ``sep.Background``, ``back()``, ``rms()``, subtract;
b. ``subtract_background(ccd)`` on a CCDData with mask and uncertainty;
c. photutils ``Background2D`` with the SExtractor estimator;
d. files: ``CCDData.read`` -> ``subtract_background`` ->
   ``write_with_background`` against ``fits.getdata`` -> sep ->
   ``fits.writeto``;
e. the checks of what SEP cannot take (``_conditioning.condition``: -1e30
   markers, float32 range and precision) and of a negative RMS map, part
   of (b), timed alone.

And one frame in strips: ``estimate_background(data, n_threads=2)``
against one job, on 4096^2 and 8192^2 (2048^2 with ``--quick``), with
the largest difference between their maps.

(a) and (b) run first and last in each round, in mirrored order (twice
the repeats of the others). Peak memory is measured with ``tracemalloc``
in separate runs (numpy reports its buffers to it) and given over the
input array's size.
Results go to ``benchmarks/results/speed.json``; an RST table is printed.
"""

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import tracemalloc
import warnings
from pathlib import Path

import numpy as np
import sep
from _table import rst_table as format_table  # the scripts' own folder
from astropy.io import fits
from astropy.nddata import CCDData, StdDevUncertainty
from photutils.background import Background2D, SExtractorBackground

import ezbkg_ccd
from ezbkg_ccd import estimate_background, subtract_background, write_with_background
from ezbkg_ccd._conditioning import _nonnegative, condition

RESULTS = Path(__file__).parent / 'results'


def make_frame(size, seed=0):
    """A float32 sky with structure, stars and noise."""
    rng = np.random.default_rng(seed)
    y, x = np.ogrid[:size, :size]
    sky = 1000 + 50 * np.sin(x / (size / 3)) * np.cos(y / (size / 4))
    data = (sky + rng.normal(0, 10, (size, size))).astype(np.float32)
    stars = rng.integers(0, size, (size // 8, 2))
    data[stars[:, 0], stars[:, 1]] += rng.uniform(100, 5000, len(stars))
    return data


def value_checks(work, invalid, rms):
    condition(work, invalid)
    _nonnegative(rms)


def baseline(data):
    work = np.ascontiguousarray(data.astype('<f4'))
    background = sep.Background(work)
    back = background.back()
    background.rms()
    return work - back


def ours(ccd):
    return subtract_background(ccd)


def photutils_background(data):
    background = Background2D(data, 64, filter_size=3,
                              bkg_estimator=SExtractorBackground())
    return background.background


def files_baseline(path, output):
    data = fits.getdata(path)
    work = np.ascontiguousarray(data.astype('<f4'))
    background = sep.Background(work)
    background.subfrom(work)
    fits.writeto(output, work, overwrite=True)


def files_ours(path, output):
    ccd = CCDData.read(path, unit='adu')
    background = estimate_background(ccd)
    result = subtract_background(ccd, background)
    write_with_background(result, background, output, overwrite=True)


def timed(function, *arguments):
    start = time.perf_counter()
    function(*arguments)
    return time.perf_counter() - start


def peak_memory(function, *arguments):
    tracemalloc.start()
    try:
        function(*arguments)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def bench_size(size, repeats, folder, *, big_endian_int16=False):
    """Time all cases on one frame, interleaved; return a result row."""
    data = make_frame(size)
    label = f'{size}^2 float32'
    if big_endian_int16:
        label = f'{size}^2 int16 (big-endian FITS)'
        path = folder / f'frame_{size}_i2.fits'
        fits.writeto(path, np.clip(data, 0, 32767).astype('>i2'), overwrite=True)
        data = fits.getdata(path)
    else:
        path = folder / f'frame_{size}.fits'
        fits.writeto(path, data, overwrite=True)
    mask = np.zeros(data.shape, bool)
    mask[:8] = True
    ccd = CCDData(data, unit='adu', mask=mask,
                  uncertainty=StdDevUncertainty(np.full(data.shape, 10, np.float32)))
    work = np.ascontiguousarray(data, dtype=np.float32)
    cases = {'a': (baseline, data), 'b': (ours, ccd),
             'c': (photutils_background, data),
             'e': (value_checks, work, mask, sep.Background(work).rms()),
             'd_base': (files_baseline, path, folder / 'base_out.fits'),
             'd_ours': (files_ours, path, folder / 'ours_out.fits')}
    times = {name: [] for name in cases}
    for function, *arguments in cases.values():
        function(*arguments)  # warm-up
    # (a) and (b) run twice per round, first and last in mirrored order,
    # so that drifts of this machine's speed fall on both alike.
    order = ['a', 'b', 'c', 'd_base', 'd_ours', 'e', 'b', 'a']
    for _ in range(repeats):
        for name in order:
            if name == 'c' and size >= 8192 and times['c']:
                continue  # photutils at 8192^2 takes long; one run is enough
            function, *arguments = cases[name]
            times[name].append(timed(function, *arguments))
    median = {name: statistics.median(values) for name, values in times.items()}
    input_bytes = data.nbytes
    return {
        'frame': label, 'input_mb': input_bytes / 2**20, 'repeats': repeats,
        'seconds': median,
        'b_over_a': median['b'] / median['a'],
        'c_over_b': median['c'] / median['b'],
        'd_ours_over_d_base': median['d_ours'] / median['d_base'],
        'checks_over_a': median['e'] / median['a'],
        'peak_memory_over_input': {
            'a': peak_memory(baseline, data) / input_bytes,
            'b': peak_memory(ours, ccd) / input_bytes},
    }


def bench_strips(size, repeats):
    """
    Speed-up of one frame in 2 strips against the single SEP call, and
    the largest difference of their maps.

    The two run back to back in each round (in mirrored order), and the
    speed-up is the median of the rounds' ratios, so the machine's drift
    between rounds cancels.
    """
    data = make_frame(size)
    single, parallel = [], []
    estimate_background(data, n_threads=2)
    cases = [(single, lambda: estimate_background(data).load()),
             (parallel, lambda: estimate_background(data, n_threads=2))]
    for round_ in range(repeats):
        for times, function in cases[::-1] if round_ % 2 else cases:
            times.append(timed(function))
    ratios = [one / two for one, two in zip(single, parallel, strict=True)]
    one_call = estimate_background(data)
    stitched = estimate_background(data, n_threads=2)
    difference = {name: np.abs(getattr(stitched, name) - getattr(one_call, name))
                  for name in ('data', 'rms')}
    return {'frame': f'{size}^2 float32', 'rounds': repeats,
            'max_difference_over_rms': {
                name: float(value.max() / one_call.global_rms)
                for name, value in difference.items()},
            'single_s': statistics.median(single),
            'two_jobs_s': statistics.median(parallel),
            'speedup': statistics.median(ratios),
            'speedup_range': [min(ratios), max(ratios)]}


def results_table(rows):
    head = ('frame', '(a) SEP by hand [s]', '(b) ours [s]', '(b)/(a)',
            '(c) photutils [s]', '(c)/(b)', '(d) files ours/base',
            'peak mem (a)', 'peak mem (b)')
    lines = [head]
    for row in rows:
        seconds = row['seconds']
        memory = row['peak_memory_over_input']
        lines.append((row['frame'], f"{seconds['a']:.3f}", f"{seconds['b']:.3f}",
                      f"{row['b_over_a']:.2f}", f"{seconds['c']:.2f}",
                      f"{row['c_over_b']:.1f}", f"{row['d_ours_over_d_base']:.2f}",
                      f"{memory['a']:.1f}x", f"{memory['b']:.1f}x"))
    return format_table(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[1])
    parser.add_argument('--quick', action='store_true', help='small frames only')
    arguments = parser.parse_args(argv)
    sizes = [(1024, 7), (2048, 5)] if arguments.quick else [
        (1024, 7), (2048, 5), (4096, 5), (8192, 3)]
    rows = []
    with tempfile.TemporaryDirectory() as folder, warnings.catch_warnings():
        warnings.simplefilter('ignore')
        for size, repeats in sizes:
            rows.append(bench_size(size, repeats, Path(folder)))
            print(f'done {size}', file=sys.stderr)
        rows.append(bench_size(4096 if not arguments.quick else 2048, 5,
                               Path(folder), big_endian_int16=True))
    strips = [bench_strips(size, 16)
              for size in ([2048] if arguments.quick else [4096, 8192])]
    machine = {'python': platform.python_version(), 'cpus': os.cpu_count(),
               'machine': platform.machine(), 'system': platform.system(),
               'ezbkg_ccd': ezbkg_ccd.__version__, 'sep': sep.__version__,
               'numpy': np.__version__}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / 'speed.json').write_text(json.dumps(
        {'machine': machine, 'rows': rows, 'strips': strips}, indent=2) + '\n')
    print(results_table(rows))
    print('value checks (e) / (a): ' + ', '.join(
        f"{row['frame']} {row['checks_over_a']:.3f}" for row in rows))
    for strip in strips:
        print(f"strips: {strip['frame']}, 1 job {strip['single_s']:.3f} s, "
              f"2 jobs {strip['two_jobs_s']:.3f} s, speed-up {strip['speedup']:.2f}x "
              "(rounds: {:.2f}-{:.2f}x); stitched - one call: {data:.1e} (map), "
              "{rms:.1e} (RMS map) of the RMS".format(
                  *strip['speedup_range'], **strip['max_difference_over_rms']))
    print(f'machine: {machine}')


if __name__ == '__main__':
    main()
