# Licensed under a 3-clause BSD style license - see LICENSE
"""
Where the tasks of a batch run: in this process, in local worker
processes that a crashing file cannot take down with the others, or on a
Dask cluster, one file per task; or one file after another here, each
frame's chunks spread over Dask's workers (`run_chunked`).

A task is ``(position, path, output)``; each runner yields ``(position,
report)`` as tasks finish, the report being what ``work(path, output)``
returned, or a failure report when the process running it died.

Stopping: when the caller stops early (Ctrl-C raises `KeyboardInterrupt`
where the caller waits, or it closes the generator), the queued tasks are
dropped and the local workers stopped at once: each removes the
temporary file it was writing and exits (after `GRACE` seconds it is
killed). A worker whose parent died ends itself the same way within
`PARENT_POLL` seconds. On Dask, the queued tasks are cancelled; the
running ones finish their file (Dask cannot stop a running task).
"""

import contextlib
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections import deque
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from multiprocessing.connection import wait as wait_for_ends

from ezbkg_ccd._fits import remove_own_temporaries

__all__ = []

#: Seconds a stopped worker has to end before it is killed.
GRACE = 0.5

#: Seconds between a worker's checks that its parent is alive.
PARENT_POLL = 0.2

#: The signals that stop a batch.
STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}

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


@contextlib.contextmanager
def dask_scheduler(client):
    """
    Run the Dask computations within on ``client`` (a
    `distributed.Client`, or the address of a scheduler, connected to
    here); with `None`, on Dask's default scheduler (local threads).
    """
    if client is None:
        yield
        return
    import dask
    from distributed import Client

    own = isinstance(client, str)
    if own:
        client = Client(client, set_as_default=False)
    try:
        with dask.config.set(scheduler=client.get):
            yield
    finally:
        if own:
            client.close()


def run_chunked(tasks, work, client=None):
    """
    Run every task in this process, in order, each frame's chunks on
    Dask: on ``client`` (see `dask_scheduler`), else on local threads.
    """
    with dask_scheduler(client):
        yield from run_here(tasks, work)


def _end_worker(status):
    remove_own_temporaries()
    os._exit(status)


def _watch_parent():
    """
    End this worker when its parent dies: the pipe multiprocessing keeps
    to the parent closes (forkserver and spawn, and a parent that died
    before this worker started), or this process is adopted (fork).
    """
    parent, ppid = multiprocessing.parent_process(), os.getppid()
    while os.getppid() == ppid and (parent is None or parent.is_alive()):
        if parent is None:
            time.sleep(PARENT_POLL)
        else:
            parent.join(PARENT_POLL)
    _end_worker(1)


def _start_worker():
    """
    Prepare a local worker process (the pool's initializer).

    A terminal sends Ctrl-C to every process of the group: the workers
    ignore it and leave it to the parent, which stops them with SIGTERM;
    on SIGTERM, or when the parent has died (killed), a worker removes
    its temporary files and exits at once. The parent holds both signals
    while it starts workers (`holding_stop_signals`); they are let in
    here, once handled.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM,
                  lambda signum, frame: _end_worker(128 + signum))
    if hasattr(signal, 'pthread_sigmask'):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    threading.Thread(target=_watch_parent, name='ezbkg-watch-parent',
                     daemon=True).start()


@contextlib.contextmanager
def handling_signals(handlers):
    """
    Within: the signal handlers ``{signal number: handler}``, restored on
    leaving. In the main thread only, the one where Python lets handlers
    be set; elsewhere it does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {number: signal.signal(number, handler)
                for number, handler in handlers.items()}
    try:
        yield
    finally:  # None: a handler set outside Python, which cannot be reset
        for number, handler in previous.items():
            signal.signal(number, signal.SIG_DFL if handler is None
                          else handler)


@contextlib.contextmanager
def holding_stop_signals():
    """
    Hold Ctrl-C and SIGTERM within, and deliver the first that came on
    leaving. In this thread at the system level (POSIX): a worker started
    here inherits the hold, and gets them only once its handlers are set
    (`_start_worker`). In the main thread also at the Python level,
    since another thread (a pool's manager) may receive them.
    """
    held = []
    try:
        with handling_signals(dict.fromkeys(
                STOP_SIGNALS, lambda number, frame: held.append(number))):
            mask = (signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
                    if hasattr(signal, 'pthread_sigmask') else None)
            try:
                yield
            finally:
                if mask is not None:  # those pending are recorded here
                    signal.pthread_sigmask(signal.SIG_SETMASK, mask)
    finally:
        if held:
            signal.raise_signal(held[0])


def _pool(n_jobs):
    """
    A pool of ``n_jobs`` local workers: forked on Linux, the platform's
    default elsewhere. Forked, a worker starts at once with the package
    imported, and a user's script without an ``if __name__ ==
    '__main__':`` guard is not run again in it (as it is by the fork
    server, Python 3.14's default). Forking a process that runs other
    threads can deadlock the child, so the batch starts none of its own
    (see ``batch._progress``).
    """
    context = multiprocessing.get_context(
        'fork' if sys.platform.startswith('linux') else None)
    return ProcessPoolExecutor(max_workers=n_jobs, mp_context=context,
                               initializer=_start_worker)


def _halt(pool):
    """
    Drop the pool's queued tasks and end its workers now: SIGTERM, then
    SIGKILL for those still running after `GRACE` seconds, waiting for
    them to end (so that their temporary files are known stale). Only
    then is the pool shut down: a broken pool's manager joins its workers
    holding the lock that ``shutdown`` takes (Python 3.12+), and the
    interpreter joins the manager at exit. A second Ctrl-C waits until
    this is done, at most ``2 * GRACE`` seconds.
    """
    # the workers: private, but there from Python 3.8 to 3.14 (3.14 has
    # terminate_workers(), which does not wait nor escalate)
    processes = list((getattr(pool, '_processes', None) or {}).values())
    with holding_stop_signals():
        for process in processes:
            process.terminate()
        stubborn = _wait_for_exit(processes, GRACE)
        for process in stubborn:
            process.kill()
        deadline = time.monotonic() + GRACE
        for process in stubborn:  # reaped, or really dead (not exiting)
            process.join(max(0, deadline - time.monotonic()))
        pool.shutdown(wait=False, cancel_futures=True)


def _wait_for_exit(processes, timeout):
    """Wait up to ``timeout`` seconds for ``processes`` to end; return
    those still running."""
    running = {process.sentinel: process for process in processes}
    deadline = time.monotonic() + timeout
    while running and (left := deadline - time.monotonic()) > 0:
        for end in wait_for_ends(list(running), timeout=left):
            del running[end]
    return list(running.values())


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
        pool = _pool(n_jobs)
        try:
            running = {}
            while (pending or running) and not suspects:
                while pending and len(running) < n_jobs:
                    task = pending.popleft()
                    try:
                        with holding_stop_signals():  # workers start here
                            future = pool.submit(work, *task[1:])
                    except BrokenProcessPool:  # a worker died just now
                        pending.appendleft(task)
                        if not running:  # none could be the cause
                            raise
                        break
                    running[future] = task
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
            if suspects:  # the pool is broken: end the other workers now
                suspects.extend(running.values())
                _halt(pool)
            else:
                pool.shutdown()
        except BaseException:  # Ctrl-C, or the caller stopped
            _halt(pool)
            raise
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
    futures = {}
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
    except BaseException:  # Ctrl-C, or the caller stopped
        client.cancel(list(futures))
        raise
    finally:
        if own:
            client.close()
