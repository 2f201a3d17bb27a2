# Licensed under a 3-clause BSD style license - see LICENSE
"""
Batches stopped from outside (Ctrl-C, SIGTERM, a killed parent) and
batches run concurrently.

The signal tests drive the real command line in a subprocess; each is
bounded in time (every wait has a deadline) and stops by itself. The
workers run a plugin estimator that sleeps for a minute, so a run that
does not stop its workers at once cannot pass.
"""

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from astropy.nddata import CCDData

from ezbkg_ccd import read_with_background
from ezbkg_ccd._fits import _alive
from ezbkg_ccd._runners import STOP_SIGNALS, holding_stop_signals, run_dask
from ezbkg_ccd.batch import _progress

from .conftest import install_plugin

pytestmark = pytest.mark.skipif(not Path('/proc/self/stat').exists(),
                                reason='reads process states from /proc')

#: Most seconds a stopped run may take to end (the target is 1 s; the
#: margin is for a loaded CI machine).
STOP_WITHIN = 2.0

#: What a worker does with a frame, by the frame's first pixel: 1 sleeps
#: a minute in the estimator; 2 the same, deaf to SIGTERM (as if stuck
#: in compiled code); 3 stalls a minute half-way through writing its
#: output; 4 the same, deaf to SIGTERM; 5 crashes (after 0.5 s). Each
#: marks its pid in the folder $STARTED when it starts to wait.
SLOW_PLUGIN = textwrap.dedent("""
    import os
    import signal
    import time
    from pathlib import Path

    import numpy as np
    from astropy.io import fits
    from ezbkg_ccd import BackgroundEstimate

    def started():
        Path(os.environ['STARTED'], str(os.getpid())).touch()

    def stall(write):
        def stalled(self, *args, **kwargs):
            write(self, *args, **kwargs)
            started()
            time.sleep(60)
        return stalled

    def slow(data, *, mask, box_size, filter_size, filter_threshold):
        kind = data[0, 0]
        if kind == 5:
            time.sleep(0.5)
            os.abort()
        if kind in (2, 4):
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
        if kind in (3, 4):
            fits.HDUList.writeto = stall(fits.HDUList.writeto)
            return BackgroundEstimate(
                np.full(data.shape, 10, data.dtype),
                np.ones(data.shape, data.dtype), 10.0, 1.0, is_2d=False,
                samples_per_estimate=data.size)
        started()
        time.sleep(60)
        raise RuntimeError('the worker was not stopped')
""")

ASLEEP, DEAF, WRITING, DEAF_WRITING, CRASH = 1, 2, 3, 4, 5


def _running(pid):
    """Whether process ``pid`` exists and is not a zombie."""
    try:
        state = Path(f'/proc/{pid}/stat').read_text().rsplit(')', 1)[1]
    except OSError:
        return False
    return state.split()[0] not in ('Z', 'X')


def _until(condition, timeout, what):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f'timed out after {timeout} s waiting for {what}')
        time.sleep(0.02)


@pytest.fixture
def slow_batch(tmp_path):
    """
    Return ``start(kinds, waiting=2, within=120)``: it runs ``ezbkg
    subtract -j 2`` on one frame per kind (`SLOW_PLUGIN`), in a process
    group of its own as a terminal would, and returns, once ``waiting``
    workers wait (within ``within`` seconds), the process, their pids,
    and the output folder.
    """
    install_plugin(tmp_path, 'slowplugin', 'slow = slowplugin:slow',
                   SLOW_PLUGIN)
    folder, started = tmp_path / 'frames', tmp_path / 'started'
    folder.mkdir()
    started.mkdir()
    env = {**os.environ, 'STARTED': str(started), 'PYTHONPATH': os.pathsep.join(
        [str(tmp_path), os.environ.get('PYTHONPATH', '')])}
    out = tmp_path / 'out'
    processes = []

    def start(kinds, waiting=2, within=120):
        for index, kind in enumerate(kinds):
            data = np.full((64, 64), 10.0, np.float32)
            data[0, 0] = kind
            CCDData(data, unit='adu').write(folder / f'f{index}.fits')
        process = subprocess.Popen(
            [sys.executable, '-m', 'ezbkg_ccd.cli', 'subtract',
             *sorted(str(path) for path in folder.glob('*.fits')),
             '-o', str(out), '--method', 'slow', '-j', '2'],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, start_new_session=True)
        processes.append(process)
        _until(lambda: len(list(started.iterdir())) >= waiting, within,
               f'{waiting} workers to wait')
        return process, [int(path.name) for path in started.iterdir()], out

    yield start
    for process in processes:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.communicate(timeout=60)
    for path in started.iterdir():
        if _running(int(path.name)):
            os.kill(int(path.name), signal.SIGKILL)


def _twice(pid):
    """Ctrl-C, and again while the first stops the workers."""
    os.killpg(pid, signal.SIGINT)
    time.sleep(0.05)
    os.killpg(pid, signal.SIGINT)


SENDERS = [
    pytest.param(lambda pid: os.kill(pid, signal.SIGINT), 130, 'interrupted',
                 id='SIGINT to the parent'),
    pytest.param(lambda pid: os.killpg(pid, signal.SIGINT), 130,
                 'interrupted', id='Ctrl-C in a terminal'),
    pytest.param(_twice, 130, 'interrupted', id='Ctrl-C twice'),
    pytest.param(lambda pid: os.kill(pid, signal.SIGTERM), 143, 'terminated',
                 id='SIGTERM to the parent')]


class TestStop:
    """A signal stops the run within about a second, leaving nothing."""

    @pytest.mark.parametrize('kinds', [
        pytest.param([ASLEEP, DEAF, ASLEEP, ASLEEP], id='computing'),
        pytest.param([WRITING, DEAF_WRITING, ASLEEP], id='writing')])
    @pytest.mark.parametrize('send, code, word', SENDERS)
    def test_stops_at_once(self, slow_batch, kinds, send, code, word):
        """Queued frames are dropped and running workers end, those
        deaf to SIGTERM too: one line on stderr, the exit code, no output
        and no temporary file."""
        process, workers, out = slow_batch(kinds)
        start = time.monotonic()
        send(process.pid)
        stdout, stderr = process.communicate(timeout=30)
        elapsed = time.monotonic() - start
        assert elapsed < STOP_WITHIN, elapsed
        assert process.returncode == code, stderr
        assert stderr == (f'ezbkg: {word}; finished outputs are complete, '
                          'a rerun resumes\n')
        assert stdout == ''
        assert not any(_running(pid) for pid in workers)
        assert sorted(path.name for path in out.iterdir()) == []

    @pytest.mark.parametrize('kinds', [[ASLEEP, DEAF],
                                       [WRITING, DEAF_WRITING]])
    def test_killed_parent(self, slow_batch, kinds):
        """Workers of a parent killed with SIGKILL end by themselves, and
        remove the files they were writing."""
        process, workers, out = slow_batch(kinds)
        process.kill()
        process.wait(timeout=60)
        start = time.monotonic()
        _until(lambda: not any(_running(pid) for pid in workers), 30,
               'the orphaned workers to end')
        assert time.monotonic() - start < STOP_WITHIN
        assert sorted(path.name for path in out.iterdir()) == []

    def test_crash_then_interrupt(self, slow_batch):
        """A crash ends the broken pool's other worker (deaf to SIGTERM)
        at once, the files are retried one by one, and Ctrl-C during the
        retry stops the run as well."""
        process, workers, out = slow_batch([CRASH, DEAF], within=20)
        assert len(workers) == 2  # the deaf frame, before and after
        os.killpg(process.pid, signal.SIGINT)
        _, stderr = process.communicate(timeout=30)
        assert process.returncode == 130, stderr
        assert stderr.startswith('ezbkg: interrupted;')
        assert not any(_running(pid) for pid in workers)


WRITER = textwrap.dedent("""
    import os
    import sys
    import time
    from pathlib import Path

    from ezbkg_ccd._fits import atomic_save
    from ezbkg_ccd._runners import _start_worker

    def save(temporary):
        Path(temporary).write_bytes(bytes(2880 * 100))
        print('writing', flush=True)
        time.sleep(60)

    if sys.argv[2] == 'orphan' and os.fork():  # the parent to kill
        time.sleep(60)
    else:
        _start_worker()
        atomic_save(Path(sys.argv[1]) / 'frame.fits', save)
""")


class TestTemporaryFiles:
    """A worker stopped mid-write removes its temporary file."""

    @pytest.mark.parametrize('how', ['SIGTERM', 'orphan'])
    def test_write_in_progress(self, tmp_path, how):
        """SIGTERM to the worker, or SIGKILL to its parent: the worker
        ends within a second, and its hidden temporary file with it."""
        out = tmp_path / 'out'
        out.mkdir()
        process = subprocess.Popen(
            [sys.executable, '-c', WRITER, str(out), how],
            stdout=subprocess.PIPE, text=True)
        try:
            assert process.stdout.readline() == 'writing\n'
            temporaries = list(out.iterdir())
            assert len(temporaries) == 1
            assert temporaries[0].name.startswith('.frame.')
            start = time.monotonic()
            process.send_signal(signal.SIGTERM if how == 'SIGTERM'
                                else signal.SIGKILL)
            _until(lambda: not any(out.iterdir()), 30,
                   'the temporary file to go')
            assert time.monotonic() - start < STOP_WITHIN
            process.wait(timeout=60)
            if how == 'SIGTERM':
                assert process.returncode == 128 + signal.SIGTERM
        finally:
            process.kill()
            process.communicate(timeout=60)


def _slow_touch(path, output):
    """A batch task that takes 0.2 s and leaves a file."""
    time.sleep(0.2)
    Path(output).touch()
    return {'input': str(path), 'output': str(output), 'status': 'done'}


def test_dask_cancels_queued_tasks(tmp_path):
    """Ctrl-C during a Dask batch cancels the queued tasks, even while the
    interrupt's traceback keeps the futures referenced."""
    distributed = pytest.importorskip('distributed')
    tasks = [(index, f'in{index}', tmp_path / f'out{index}')
             for index in range(30)]
    with distributed.Client(processes=False, n_workers=1,
                            threads_per_worker=1,
                            dashboard_address=':0') as client:
        finished = run_dask(tasks, _slow_touch, client)
        next(finished)
        with pytest.raises(KeyboardInterrupt, match='^$') as info:
            finished.throw(KeyboardInterrupt)
        time.sleep(1.5)  # 7 more tasks would run in this time
        assert info.value.__traceback__ is not None
        assert len(list(tmp_path.iterdir())) <= 3


def test_two_runs_into_one_folder(tmp_path):
    """Two runs started together on the same frames into one folder both
    succeed; each frame is written once, by one of them, and the other
    counts it as skipped."""
    folder = tmp_path / 'frames'
    folder.mkdir()
    rng = np.random.default_rng(15)
    for index in range(12):  # 1024 x 1024: long enough for the runs to meet
        CCDData(rng.normal(100, 5, (1024, 1024)).astype(np.float32),
                unit='adu').write(folder / f'f{index:02d}.fits')
    command = [sys.executable, '-m', 'ezbkg_ccd.cli', 'subtract',
               *sorted(str(path) for path in folder.glob('*.fits')),
               '-o', str(tmp_path / 'out'), '-j', '1']
    runs = [subprocess.Popen(command, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
            for _ in range(2)]
    results = [run.communicate(timeout=300) for run in runs]
    counts = []
    for run, (stdout, stderr) in zip(runs, results, strict=True):
        assert run.returncode == 0, stderr
        done, skipped, failed = (int(word) for word in
                                 stdout.split()[0:6:2])
        assert (skipped, failed) == (12 - done, 0)
        counts.append(done)
    assert sum(counts) == 12
    outputs = sorted((tmp_path / 'out').iterdir())
    assert len(outputs) == 12
    for path in outputs:
        assert read_with_background(path)[0].meta['BKGSUB'] is True


def test_progress_bar_starts_no_thread():
    """Workers are forked, so the progress bar starts no thread (tqdm's
    monitor): forking a process with threads can deadlock the child."""
    pytest.importorskip('tqdm')
    before = threading.active_count()
    bar = _progress(4, enabled=True)
    try:
        assert threading.active_count() <= before
    finally:
        bar.close()


def test_zombie_is_not_alive():
    """A writer that died but is not yet reaped counts as dead, so its
    temporary files are removed."""
    process = subprocess.Popen([sys.executable, '-c', 'pass'])
    try:
        _until(lambda: not _running(process.pid), 60, 'the process to end')
        assert Path(f'/proc/{process.pid}').exists()  # a zombie
        assert not _alive(process.pid)
    finally:
        process.wait(timeout=60)
    assert _alive(os.getpid())


def test_holding_stop_signals():
    """A Ctrl-C within is held until the block ends, then raised; the
    handlers are restored."""
    before = {number: signal.getsignal(number) for number in STOP_SIGNALS}
    finished = False
    with pytest.raises(KeyboardInterrupt, match='^$'):
        with holding_stop_signals():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)
            finished = True
    assert finished
    assert {number: signal.getsignal(number)
            for number in STOP_SIGNALS} == before
