# Licensed under a 3-clause BSD style license - see LICENSE
"""
Where the tasks of a batch run: in this process, in local worker
processes that a crashing file cannot take down with the others, or on a
Dask cluster.

A task is ``(position, path, output)``; each runner yields ``(position,
report)`` as tasks finish, the report being what ``work(path, output)``
returned, or a failure report when the process running it died.
"""

from collections import deque
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool

__all__ = []

#: Error reported for a file whose worker process died while running it.
CRASH_MESSAGE = ('the worker process died while processing this file (a '
                 'crash in compiled code, such as astropy.wcs on a malformed '
                 'WCS, or the out-of-memory killer); the other files were '
                 'processed')


def _failure(path, output, error):
    return {'input': str(path), 'output': str(output), 'status': 'failed',
            'error': error}


def run_here(tasks, work):
    """Run every task in this process, in order."""
    for position, path, output in tasks:
        yield position, work(path, output)


def run_isolated(tasks, work, n_jobs):
    """
    Run the tasks in ``n_jobs`` worker processes, isolating crashes.

    At most ``n_jobs`` tasks are in the pool at a time, so when a worker
    dies (the pool breaks) the tasks it may have been running are known:
    alone, it is reported failed; with others, each is run again in a
    pool of its own to find the culprit. The remaining tasks go on in a
    fresh pool.
    """
    pending = deque(tasks)
    while pending:
        suspects = []
        with ProcessPoolExecutor(max_workers=n_jobs) as pool:
            running = {}
            while (pending or running) and not suspects:
                while pending and len(running) < n_jobs:
                    task = pending.popleft()
                    running[pool.submit(work, *task[1:])] = task
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    task = running.pop(future)
                    try:
                        report = future.result()
                    except BrokenProcessPool:
                        suspects.append(task)
                        continue
                    except Exception as exc:  # e.g. an unpicklable result
                        report = _failure(*task[1:], f'worker failed: {exc!r}')
                    yield task[0], report
            suspects.extend(running.values())  # broken too
        if len(suspects) == 1:
            position, path, output = suspects[0]
            yield position, _failure(path, output, CRASH_MESSAGE)
        else:
            yield from run_isolated(sorted(suspects), work, 1)


def run_dask(tasks, work, client):
    """
    Run the tasks on a Dask client (or the scheduler at an address).

    A task whose workers keep dying is failed by Dask itself
    (``KilledWorker``) and reported here; the others are unaffected.
    """
    from distributed import Client
    from distributed import as_completed as dask_completed

    own = isinstance(client, str)
    if own:
        client = Client(client)
    try:
        futures = {client.submit(work, path, output, pure=False):
                   (position, path, output)
                   for position, path, output in tasks}
        for future in dask_completed(futures):
            position, path, output = futures[future]
            try:
                report = future.result()
            except Exception as exc:  # a lost worker must not stop the batch
                report = _failure(path, output, f'worker failed: {exc!r}')
            yield position, report
    finally:
        if own:
            client.close()
