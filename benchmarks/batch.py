# Licensed under a 3-clause BSD style license - see LICENSE
"""
Batch throughput: frames per second on 2048x2048 frames.

Run by hand (not part of the test suite)::

    python benchmarks/batch.py               # 16 frames
    python benchmarks/batch.py --frames 40

Compared in one run on the same files: the hand-written serial loop
(``fits.getdata`` -> ``sep.Background`` -> subtract -> ``fits.writeto``),
``process_files`` with 1 job, with all cores, and on a Dask
``LocalCluster`` (one single-threaded worker process per core). Results
go to ``benchmarks/results/batch.json``.
"""

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import sep
from astropy.io import fits

from ezbkg_ccd import process_files

RESULTS = Path(__file__).parent / 'results'


def write_frames(folder, count, size=2048):
    rng = np.random.default_rng(0)
    paths = []
    for index in range(count):
        data = (500 + rng.normal(0, 10, (size, size))).astype(np.float32)
        path = folder / f'frame{index:03d}.fits'
        fits.writeto(path, data)
        paths.append(path)
    return paths


def hand_written(paths, output_dir):
    for path in paths:
        data = np.ascontiguousarray(fits.getdata(path).astype('<f4'))
        sep.Background(data).subfrom(data)
        fits.writeto(output_dir / path.name, data, overwrite=True)


def timed_run(function, paths, folder):
    output_dir = folder / 'out'
    shutil.rmtree(output_dir, ignore_errors=True)
    output_dir.mkdir()
    start = time.perf_counter()
    function(paths, output_dir)
    return len(paths) / (time.perf_counter() - start)


def main(argv=None):
    parser = argparse.ArgumentParser(description='batch throughput')
    parser.add_argument('--frames', type=int, default=16)
    arguments = parser.parse_args(argv)
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        paths = write_frames(folder, arguments.frames)
        runs = {
            'hand-written serial loop': hand_written,
            'process_files, 1 job': lambda p, o: process_files(
                p, output_dir=o, n_jobs=1),
            f'process_files, {cores} jobs': lambda p, o: process_files(
                p, output_dir=o, n_jobs=cores),
        }
        throughput = {name: timed_run(run, paths, folder)
                      for name, run in runs.items()}
        try:
            from distributed import Client, LocalCluster
        except ImportError:
            print('dask.distributed is not installed: no Dask row')
        else:
            with LocalCluster(n_workers=cores, threads_per_worker=1,
                              processes=True, dashboard_address=':0',
                              silence_logs=50) as cluster, \
                    Client(cluster) as client:
                client.run(lambda: None)  # workers up before timing
                throughput[f'Dask LocalCluster, {cores} workers'] = timed_run(
                    lambda p, o: process_files(p, output_dir=o, client=client),
                    paths, folder)
    base = throughput['hand-written serial loop']
    print(f'{arguments.frames} frames of 2048x2048 float32, {cores} cores')
    for name, value in throughput.items():
        print(f'  {name:<34} {value:6.2f} frames/s  {value / base:5.2f}x')
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / 'batch.json').write_text(json.dumps(
        {'frames': arguments.frames, 'cores': cores,
         'frames_per_second': throughput,
         'ratio_to_hand_written': {k: v / base for k, v in throughput.items()}},
        indent=2) + '\n')


if __name__ == '__main__':
    main()
