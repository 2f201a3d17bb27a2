# Licensed under a 3-clause BSD style license - see LICENSE
"""
Frames larger than memory, on Dask: time, peak memory and exactness of
``chunks=`` against one SEP call, from 4096^2 to 32768^2.

Run by hand (not part of the test suite)::

    python benchmarks/mosaic.py            # full run: ~6 minutes, ~25 GB
                                           # of disk in the temp folder
    python benchmarks/mosaic.py --quick    # 4096^2 and 8192^2, compared
                                           # at 8192^2

The scene: a vignetted sky (1000 counts at the centre, 20 % lower in the
corners) with a moonlight gradient, stars and noise of 10, float32.

1. In memory, at ``--compare-size`` (16384^2), interleaved repeats of
   one SEP call (``sep.Background`` + ``back()`` + ``rms()``), the
   threaded strips (``estimate_background(data, n_threads=2)``) and the
   frame on Dask (``estimate_background(data, chunks='auto')``, the maps
   stored into two new arrays) on 2 local threads, each in a fresh
   process (on this VM, first touching the 2 GiB of new maps costs
   seconds, as much as SEP's statistics); the Dask maps and global
   values are checked bit for bit against the SEP call.
2. From FITS to FITS at every size, each run in a fresh process (for its
   peak resident memory, ``VmHWM``): read in chunks, estimate, subtract,
   write the result with ``MASK``, ``UNCERT``, ``BKG`` and ``BKGRMS``
   chunk by chunk, on 2 local threads; the written ``BKG`` and ``BKGRMS``
   are checked against one SEP call where the frame fits in memory
   (up to 16384^2). The I/O alone (reading the frame once, writing the
   same file of zeros) is timed the same way, as is the hand-written
   in-memory pipeline (``fits.getdata``, SEP, ``fits.writeto``) up to
   16384^2.
3. At ``--compare-size``, the same file-to-file run on a
   ``distributed.LocalCluster`` of 2 single-threaded worker processes,
   as Dask starts them and with glibc's memory trimming off (`TRIM`),
   alternating with the threaded run.

Results go to ``benchmarks/results/mosaic.json``; tables are printed.
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import sep
from _table import rst_table  # the scripts' own folder
from astropy.io import fits

import ezbkg_ccd

RESULTS = Path(__file__).parent / 'results'
THREADS = 2

#: Dask's nannies start workers with glibc's MALLOC_TRIM_THRESHOLD_ at
#: 64 KiB, so that they give memory back to the system at once; each new
#: chunk is then page-faulted in again, which costs SEP's statistics a
#: quarter more time on this VM. The cluster is run with and without it.
TRIM = 'distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_'


def scene_block(block, size, seed=0, block_info=None):
    """One chunk of rows of the benchmark scene (same for any chunking)."""
    (first, stop), (left, right) = block_info[None]['array-location']
    rng = np.random.default_rng([seed, first])
    y = np.arange(first, stop, dtype=np.float32)[:, None] / size - 0.5
    x = np.arange(left, right, dtype=np.float32)[None, :] / size - 0.5
    sky = 1000 * (1 - 0.4 * (x * x + y * y)) + 200 * (x + 0.5) ** 2
    out = rng.standard_normal(block.shape, dtype=np.float32)
    out *= 10
    out += sky
    count = block.size // 4000
    rows = rng.integers(0, block.shape[0], count)
    columns = rng.integers(0, block.shape[1], count)
    out[rows, columns] += rng.uniform(50, 5000, count).astype(np.float32)
    return out


def scene(size, rows=None):
    """The scene as a lazy Dask array."""
    import dask.array as da

    rows = rows or max(64, (64 << 20) // (4 * size)) // 64 * 64
    zeros = da.zeros((size, size), dtype=np.float32, chunks=(rows, size))
    return zeros.map_blocks(scene_block, size=size, dtype=np.float32)


def write_scene(path, size):
    from ezbkg_ccd._fits import write_streamed

    write_streamed(path, [(fits.PrimaryHDU(np.zeros((1, 1), np.float32)),
                           scene(size))], overwrite=True)


def peak_gib():
    """This process's peak resident memory, GiB."""
    with open('/proc/self/status') as status:
        for line in status:
            if line.startswith('VmHWM:'):
                return int(line.split()[1]) / 2**20
    return float('nan')


def child(kind, source, output, scheduler):
    """One file-to-file run in this (fresh) process; prints JSON."""
    import dask
    import dask.array as da

    from ezbkg_ccd import (
        estimate_background,
        subtract_background,
        write_with_background,
    )
    from ezbkg_ccd._fits import write_streamed
    from ezbkg_ccd._reader import lazy_ccddata

    times = {}
    client = None
    if scheduler.startswith('cluster'):
        from distributed import Client, LocalCluster

        if scheduler == 'cluster-untrimmed':  # see TRIM
            dask.config.set({TRIM: 2**40})

        cluster = LocalCluster(n_workers=THREADS, threads_per_worker=1,
                               processes=True, dashboard_address=':0',
                               silence_logs=50)
        client = Client(cluster)
    else:
        dask.config.set(scheduler='threads', num_workers=THREADS)
    start = time.perf_counter()
    if kind == 'ours':
        background = estimate_background(source, chunks='auto')
        times['estimate'] = time.perf_counter() - start
        result = subtract_background(source, background, chunks='auto')
        write_with_background(result, background, output, overwrite=True)
    elif kind == 'io':
        data = lazy_ccddata(source).data
        data.sum().compute()
        times['read'] = time.perf_counter() - start
        middle = time.perf_counter()
        stand_in = np.zeros((1, 1), np.float32)
        zeros = da.zeros(data.shape, dtype=np.float32, chunks=data.chunks)
        write_streamed(output, [
            (fits.PrimaryHDU(stand_in), zeros),
            (fits.ImageHDU(stand_in.astype(np.uint8)), zeros.astype(np.uint8)),
            *((fits.ImageHDU(stand_in), zeros) for _ in range(3))],
            overwrite=True)
        times['write'] = time.perf_counter() - middle
    else:  # the hand-written pipeline, in memory
        data = fits.getdata(source).astype('<f4')
        background = sep.Background(data)
        back, rms = background.back(), background.rms()
        fits.HDUList([fits.PrimaryHDU(data - back),
                      fits.ImageHDU(back, name='BKG'),
                      fits.ImageHDU(rms, name='BKGRMS')]).writeto(
            output, overwrite=True)
    times['total'] = time.perf_counter() - start
    if client is not None:
        client.close()
        cluster.close()
    print(json.dumps({**times, 'peak_gib': peak_gib()}))


def run_child(kind, source, output, scheduler='threads'):
    command = [sys.executable, __file__, '--child', kind, str(source),
               str(output), scheduler]
    done = subprocess.run(command, capture_output=True, text=True,
                          check=True)
    Path(output).unlink(missing_ok=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def median_of(runs, key):
    return statistics.median(run[key] for run in runs)


def timed_in_memory(kind, size):
    """One in-memory run in this (fresh) process: page faults of the
    new maps count as they do for any user; prints JSON."""
    import dask
    import dask.array as da

    from ezbkg_ccd import estimate_background

    data = scene(size).compute()
    dask.config.set(scheduler='threads', num_workers=THREADS)
    start = time.perf_counter()
    if kind == 'sep':
        single = sep.Background(data)
        maps = single.back(), single.rms()
    elif kind == 'strips':
        strips = estimate_background(data, n_threads=THREADS)
        maps = strips.data, strips.rms
    else:
        lazy = estimate_background(data, chunks='auto')
        maps = np.empty_like(data), np.empty_like(data)
        da.store([lazy.data, lazy.rms], list(maps), lock=False)
    seconds = time.perf_counter() - start
    exact = None
    if kind == 'dask':
        single = sep.Background(data)
        exact = bool(np.array_equal(maps[0], single.back())
                     and np.array_equal(maps[1], single.rms())
                     and lazy.global_back == single.globalback
                     and lazy.global_rms == single.globalrms)
    print(json.dumps({'seconds': seconds, 'exact': exact}))


def in_memory(size, repeats):
    """Part 1: one SEP call, the strips and the Dask frame, in memory,
    each run in a fresh process, interleaved."""
    times = {'sep': [], 'strips': [], 'dask': []}
    exact = True
    for _ in range(repeats):
        for kind in times:
            done = subprocess.run(
                [sys.executable, __file__, '--memory', kind, str(size)],
                capture_output=True, text=True, check=True)
            run = json.loads(done.stdout.strip().splitlines()[-1])
            times[kind].append(run['seconds'])
            exact &= run['exact'] is not False
    medians = {key: statistics.median(value) for key, value in times.items()}
    return {'size': size, 'times': times, 'medians': medians,
            'ratios': {key: medians[key] / medians['sep'] for key in times},
            'bit_identical_to_sep': exact}


def check_file(path, size):
    """Whether the written maps equal one SEP call on the frame."""
    data = scene(size).compute()
    single = sep.Background(data)
    with fits.open(path, memmap=True) as hdulist:
        return bool(np.array_equal(hdulist['BKG'].data, single.back())
                    and np.array_equal(hdulist['BKGRMS'].data, single.rms()))


def from_files(sizes, compare_size, repeats, folder):
    """Parts 2 and 3."""
    rows, cluster = [], None
    for size in sizes:
        source = folder / f'scene{size}.fits'
        write_scene(source, size)
        output = folder / f'out{size}.fits'
        ours = [run_child('ours', source, output) for _ in range(
            repeats if size == compare_size else 1)]
        row = {'size': size, 'gib': size * size * 4 / 2**30,
               'ours': ours, 'seconds': median_of(ours, 'total'),
               'estimate': median_of(ours, 'estimate'),
               'peak_gib': max(run['peak_gib'] for run in ours),
               'io': run_child('io', source, output)}
        if size <= 16384:
            memory = run_child('memory', source, output)
            row['memory'] = memory
            subprocess.run([sys.executable, __file__, '--child', 'ours',
                            str(source), str(output), 'threads'], check=True,
                           capture_output=True)
            row['bit_identical_to_sep'] = check_file(output, size)
            output.unlink()
        if size == compare_size:
            runs = {'threads': [], 'cluster': [], 'cluster-untrimmed': []}
            for _ in range(repeats):
                for kind, found in runs.items():
                    found.append(run_child('ours', source, output, kind))
            cluster = {'size': size, **runs, 'ratios': {
                kind: {key: median_of(found, key)
                       / median_of(runs['threads'], key)
                       for key in ('estimate', 'total')}
                for kind, found in runs.items()}}
        source.unlink()
        rows.append(row)
        print(f'{size}: {row["seconds"]:.1f} s, peak {row["peak_gib"]:.2f} '
              'GiB', flush=True)
    return rows, cluster


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[1])
    parser.add_argument('--quick', action='store_true')
    parser.add_argument('--sizes', type=int, nargs='+',
                        default=[4096, 8192, 16384, 32768])
    parser.add_argument('--compare-size', type=int, default=16384)
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--folder', type=Path, default=None,
                        help='where to write the FITS files (default: a '
                             'temporary folder)')
    parser.add_argument('--child', nargs=4, help=argparse.SUPPRESS)
    parser.add_argument('--memory', nargs=2, help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.child:
        child(*arguments.child)
        return
    if arguments.memory:
        timed_in_memory(arguments.memory[0], int(arguments.memory[1]))
        return
    if arguments.quick:
        arguments.sizes, arguments.compare_size = [4096, 8192], 8192
    with tempfile.TemporaryDirectory(dir=arguments.folder) as folder:
        memory = in_memory(arguments.compare_size, arguments.repeats)
        files, cluster = from_files(arguments.sizes, arguments.compare_size,
                                    arguments.repeats, Path(folder))
    report = {'command': ' '.join(['python', *sys.argv]),
              'machine': {'cpus': os.cpu_count(), 'threads': THREADS,
                          'python': platform.python_version()},
              'versions': {'ezbkg_ccd': ezbkg_ccd.__version__,
                           'sep': sep.__version__,
                           'numpy': np.__version__},
              'in_memory': memory, 'files': files, 'cluster': cluster}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / 'mosaic.json').write_text(json.dumps(report, indent=1))
    print(rst_table([
        ['in memory', 'seconds (median)', 'vs one SEP call'],
        *([name, f'{memory["medians"][name]:.2f}',
           f'{memory["ratios"][name]:.2f}'] for name in memory['medians'])]))
    print(f'Dask maps bit-identical to one SEP call: '
          f'{memory["bit_identical_to_sep"]}')
    lines = [['size', 'GiB', 'seconds', 'estimate', 'read', 'write zeros',
              'peak GiB', 'in memory s', 'in memory GiB', 'SEP maps']]
    for row in files:
        memory_run = row.get('memory', {})
        lines.append([
            f'{row["size"]}^2', f'{row["gib"]:.2f}', f'{row["seconds"]:.1f}',
            f'{row["estimate"]:.1f}', f'{row["io"]["read"]:.1f}',
            f'{row["io"]["write"]:.1f}', f'{row["peak_gib"]:.2f}',
            f'{memory_run.get("total", float("nan")):.1f}',
            f'{memory_run.get("peak_gib", float("nan")):.2f}',
            str(row.get('bit_identical_to_sep', 'not checked'))])
    print(rst_table(lines))
    if cluster:
        print(rst_table([
            [f'{cluster["size"]}^2 file to file', 'estimate / threads',
             'total / threads'],
            *([kind, f'{ratio["estimate"]:.2f}', f'{ratio["total"]:.2f}']
              for kind, ratio in cluster['ratios'].items())]))


if __name__ == '__main__':
    main()
