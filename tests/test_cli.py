# Licensed under a 3-clause BSD style license - see LICENSE
"""Tests of the ezbkg command line."""

import contextlib
import functools
import json
import logging
import signal
import subprocess
import sys
import time
import warnings
from typing import NamedTuple

import numpy as np
import pytest
from astropy.io import fits
from astropy.nddata import CCDData

from ezbkg_ccd import __version__, read_background, read_with_background
from ezbkg_ccd.cli import main


class Run(NamedTuple):
    """What one ``ezbkg`` run gave, as `subprocess.CompletedProcess` has it."""

    returncode: int
    stdout: str
    stderr: str


def ezbkg_subprocess(*arguments, cwd):
    """Run the ezbkg command line in a subprocess (``python -m``)."""
    return subprocess.run([sys.executable, '-m', 'ezbkg_ccd.cli', *arguments],
                          capture_output=True, text=True, cwd=cwd,
                          timeout=600, check=False)


def _print_warning(message, category, filename, lineno, file=None,
                   line=None):
    """Print a warning to `sys.stderr`, as Python does by default."""
    sys.stderr.write(warnings.formatwarning(message, category, filename,
                                            lineno, line))


@contextlib.contextmanager
def interpreter_warnings():
    """
    Warnings as a plain ``python`` process, the ``ezbkg`` script, has
    them, instead of the tests' ``error``: printed to `sys.stderr` (not
    recorded by pytest) once per place, deprecation and resource warnings
    ignored.
    """
    with warnings.catch_warnings():
        warnings.resetwarnings()
        for category in (DeprecationWarning, PendingDeprecationWarning,
                         ImportWarning, ResourceWarning):
            warnings.simplefilter('ignore', category)
        warnings.showwarning = _print_warning
        yield


def run_cli(capfd, *arguments, cwd, shown_warnings=False):
    """
    Run the ezbkg command line in this process, as a shell in ``cwd``
    would: its exit code (a usage error's too) and what it printed.

    The output is captured at the file descriptors (``capfd``), so what
    its worker processes print is in it. With ``shown_warnings`` the
    warnings are printed as by the ``ezbkg`` script; otherwise any
    warning is an error, as everywhere in the tests (in a worker, it
    fails the frame).
    """
    capfd.readouterr()  # what came before is not this run's
    try:
        with contextlib.chdir(cwd), (interpreter_warnings() if shown_warnings
                                     else contextlib.nullcontext()):
            returncode = main([str(argument) for argument in arguments])
    except SystemExit as exc:  # argparse: --help, --version, usage errors
        returncode = exc.code
    return Run(returncode, *capfd.readouterr())


@pytest.fixture
def ezbkg(capfd):
    """``ezbkg(*arguments, cwd=...)``: the command line, in this process."""
    return functools.partial(run_cli, capfd)


def test_logger_left_as_it_was(tmp_path, ezbkg):
    """The command line sets the package logger's level for its run only,
    so a program calling main() keeps its own logging."""
    logger = logging.getLogger('ezbkg_ccd')
    logger.setLevel(logging.WARNING)
    try:
        run = ezbkg('-v', 'estimate', 'missing.fits', '-o', 'out',
                    cwd=tmp_path)
        assert run.returncode == 1
        assert logger.level == logging.WARNING
        assert not logger.handlers and logger.propagate
    finally:
        logger.setLevel(logging.NOTSET)


def test_demo_subprocess(tmp_path):
    """The demo writes a readable subtracted frame with its background;
    ``python -m ezbkg_ccd.cli`` is the command line."""
    process = ezbkg_subprocess('demo', '-o', 'out', cwd=tmp_path)
    assert process.returncode == 0, process.stderr
    assert 'global_back: 163.254' in process.stdout
    figure = tmp_path / 'out' / 'raw_ccd_a8280271_bkgsub.png'
    assert f'figure: out/{figure.name}' in process.stdout
    assert figure.read_bytes().startswith(b'\x89PNG\r\n\x1a\n')
    ccd, bkg = read_with_background(tmp_path / 'out'
                                    / 'raw_ccd_a8280271_bkgsub.fits')
    assert ccd.unit == 'electron' and bkg.unit == 'electron'
    assert ccd.shape == bkg.shape == (512, 512)
    assert abs(np.median(ccd.data)) < 0.5 * bkg.global_rms
    assert ccd.meta['BKGSUB'] is True


def test_demo_refuses_to_overwrite(tmp_path, capsys):
    """A second run without --overwrite fails with exit code 1."""
    assert main(['demo', '-o', str(tmp_path)]) == 0
    assert main(['demo', '-o', str(tmp_path)]) == 1
    assert 'already exists' in capsys.readouterr().err
    assert main(['demo', '-o', str(tmp_path), '--overwrite']) == 0


def test_version(capsys):
    """--version prints the package version."""
    with pytest.raises(SystemExit, match='0'):
        main(['--version'])
    assert __version__ in capsys.readouterr().out


def test_usage_error(capsys):
    """An unknown command exits with code 2."""
    with pytest.raises(SystemExit, match='2'):
        main(['frobnicate'])
    assert 'invalid choice' in capsys.readouterr().err


class TestCommandLine:
    """The ezbkg command, run as a user would (in this process)."""

    def test_subtract_exit_code_and_summary(self, ezbkg, frames, tmp_path):
        """A failing frame gives exit code 1 and names the file."""
        process = ezbkg('subtract', *sorted(str(p) for p in frames.glob('*.fits')),
                        '-o', 'out', '--box-size', '32', '--jobs', '2',
                        '--plot', cwd=tmp_path)
        assert process.returncode == 1
        assert '4 done, 0 skipped, 1 failed' in process.stdout
        assert 'FAILED' in process.stderr and 'broken.fits' in process.stderr
        ccd, bkg = read_with_background(tmp_path / 'out' / 'raw_bkgsub.fits')
        assert bkg.method == 'sep' and bkg.box_size == (32, 32)
        png = (tmp_path / 'out' / 'raw_bkgsub.png').read_bytes()
        assert png[:8] == b'\x89PNG\r\n\x1a\n'

    def test_all_good_is_zero(self, ezbkg, frames, tmp_path):
        """All frames done, then all skipped: exit code 0."""
        paths = [str(frames / 'f0.fits'), str(frames / 'f1.fits')]
        first = ezbkg('subtract', *paths, '-o', 'out', '--method', 'constant',
                      '--mask-sources', 'auto', cwd=tmp_path)
        assert first.returncode == 0, first.stderr
        second = ezbkg('subtract', *paths, '-o', 'out', cwd=tmp_path)
        assert second.returncode == 0
        assert '0 done, 2 skipped' in second.stdout
        bkg = read_background(tmp_path / 'out' / 'f1_bkgsub.fits')
        assert bkg.method == 'constant' and bkg.header['BKGSRCM'] == 'auto'

    def test_estimate_and_info(self, ezbkg, frames, tmp_path):
        """estimate writes backgrounds; info prints their provenance."""
        process = ezbkg('estimate', str(frames / 'f0.fits'), '-o', '.',
                        '--box-size', '32', '--filter-size', '1',
                        '--reject-skewed', cwd=tmp_path)
        assert process.returncode == 0, process.stderr
        info = ezbkg('info', 'f0.bkg.fits', cwd=tmp_path)
        assert info.returncode == 0
        assert 'BKGTYPE   SEP' in info.stdout
        assert 'BKGFILT   1' in info.stdout
        assert 'BKGREJT   5.0' in info.stdout
        assert 'global background level' in info.stdout

    def test_info_readable_and_json(self, ezbkg, frames, tmp_path):
        """info rounds floats to float32 precision, hides the mesh
        settings a constant background ignores, shows the input path;
        --json gives every keyword unrounded."""
        assert main(['-q', 'estimate', str(frames / 'f0.fits'), '-o',
                     str(tmp_path), '--method', 'constant']) == 0
        background = read_background(tmp_path / 'f0.bkg.fits')
        process = ezbkg('info', 'f0.bkg.fits', cwd=tmp_path)
        assert process.returncode == 0, process.stderr
        level = background.global_back
        assert f'BKGVALU   {float(f"{level:.7g}")!r} ' in process.stdout
        assert repr(level) not in process.stdout
        assert 'BKGBOX' not in process.stdout
        assert 'BKGFILT' not in process.stdout
        assert f"TGTPATH   {frames / 'f0.fits'}" in process.stdout
        process = ezbkg('info', '--json', 'f0.bkg.fits', cwd=tmp_path)
        assert process.returncode == 0, process.stderr
        report = json.loads(process.stdout)
        assert report['file'] == 'f0.bkg.fits'
        assert report['keywords'] == dict(background.header)

    def test_info_odd_values(self, ezbkg, frames, tmp_path):
        """A non-finite value is strict JSON text; a card astropy cannot
        parse is an error with exit code 1, not a traceback."""
        assert main(['-q', 'estimate', str(frames / 'f0.fits'), '-o',
                     str(tmp_path)]) == 0
        path = tmp_path / 'f0.bkg.fits'
        raw = path.read_bytes()
        start = raw.index(b'BKGSIG  =')

        def with_card(card):
            path.write_bytes(raw[:start] + card.ljust(80) + raw[start + 80:])

        with_card(b'BKGSIG  = 1E400')  # read as inf
        process = ezbkg('info', '--json', path.name, cwd=tmp_path)
        assert process.returncode == 0, process.stderr
        report = json.loads(process.stdout, parse_constant=pytest.fail)
        assert report['keywords']['BKGSIG'] == 'inf'
        with_card(b'BKGSIG  = NAN')  # not parsable
        process = ezbkg('info', path.name, cwd=tmp_path)
        assert process.returncode == 1
        assert process.stderr.startswith('ezbkg: error: ')
        assert 'Traceback' not in process.stderr

    def test_info_of_plain_file(self, ezbkg, frames, tmp_path):
        """info on a file without a background fails with code 1."""
        process = ezbkg('info', str(frames / 'f0.fits'), cwd=tmp_path)
        assert process.returncode == 1
        assert 'holds no background' in process.stderr

    def test_all_hdus_cli(self, ezbkg, mosaic, tmp_path):
        """--all-hdus writes every CCD of a mosaic."""
        process = ezbkg('subtract', str(mosaic), '--all-hdus', '-o', 'out',
                        '--box-size', '32', cwd=tmp_path)
        assert process.returncode == 0, process.stderr
        with fits.open(tmp_path / 'out' / 'mosaic_bkgsub.fits') as hdulist:
            assert [h.name for h in hdulist].count('BKG') == 2

    def test_help_everywhere(self, ezbkg, tmp_path):
        """Every subcommand has --help."""
        for command in ('subtract', 'estimate', 'info', 'demo'):
            process = ezbkg(command, '--help', cwd=tmp_path)
            assert process.returncode == 0
            assert 'usage: ezbkg' in process.stdout

    def test_interrupt_then_resume(self, ezbkg, tmp_path):
        """Ctrl-C leaves no partial output; a rerun finishes the rest."""
        folder = tmp_path / 'many'
        folder.mkdir()
        rng = np.random.default_rng(10)
        for index in range(12):
            CCDData(rng.normal(100, 5, (1024, 1024)).astype(np.float32),
                    unit='adu').write(folder / f'm{index:02d}.fits')
        paths = sorted(str(p) for p in folder.glob('*.fits'))
        command = [sys.executable, '-m', 'ezbkg_ccd.cli', 'subtract', *paths,
                   '-o', str(tmp_path / 'out'), '--jobs', '1',
                   '--mask-sources', 'auto']
        process = subprocess.Popen(command, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE)
        out = tmp_path / 'out'
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not (
                out.is_dir() and any(out.glob('*_bkgsub.fits'))):
            time.sleep(0.05)
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=120)
        assert process.returncode != 0
        written = sorted(out.glob('*'))
        assert all(path.name.endswith('_bkgsub.fits') for path in written)
        assert 0 < len(written) < 12
        for path in written:
            read_with_background(path)  # every file left is complete
        rerun = ezbkg('subtract', *paths, '-o', str(out), cwd=tmp_path)
        assert rerun.returncode == 0, rerun.stderr
        assert f'{12 - len(written)} done, {len(written)} skipped' in rerun.stdout
        assert len(list(out.glob('*_bkgsub.fits'))) == 12


@pytest.mark.parametrize(('flag', 'message'), [
    ('--compress', 'compress=True is not available for a frame written in '
                   'chunks'),
    ('--omit-rebuildable', "omit_rebuildable applies to mode='subtract' of "
                           'frames processed whole, not in chunks')])
def test_file_options_not_with_chunks(tmp_path, capsys, flag, message):
    """What a frame processed in chunks cannot be written with fails the
    file, saying why."""
    CCDData(np.ones((64, 64)), unit='adu').write(tmp_path / 'f.fits')
    assert main(['subtract', str(tmp_path / 'f.fits'), '-o',
                 str(tmp_path / 'o'), '--box-size', '32', '--chunks', '32',
                 flag]) == 1
    assert message in capsys.readouterr().err


def _subtract_variants(tmp_path, extra, **variants):
    """``ezbkg subtract`` of one frame with a mask (``f.fits``) into a
    folder per variant, each with its own flags besides ``extra``."""
    rng = np.random.default_rng(21)
    data = rng.normal(300.0, 5.0, (128, 96)).astype(np.float32)
    CCDData(data, unit='adu', mask=data > 310).write(tmp_path / 'f.fits')
    for folder, flags in variants.items():
        assert main(['-q', 'subtract', str(tmp_path / 'f.fits'), '-o',
                     str(tmp_path / folder), '--box-size', '32', *extra,
                     *flags]) == 0


class TestCompress:
    """``--compress``: lossless tile compression of every extension."""

    @pytest.mark.parametrize('extra', [[], ['--all-hdus']])
    def test_compressed_outputs_read_back_the_same(self, tmp_path, extra):
        _subtract_variants(tmp_path, extra, plain=[], packed=['--compress'])
        with fits.open(tmp_path / 'packed' / 'f_bkgsub.fits') as packed, \
                fits.open(tmp_path / 'plain' / 'f_bkgsub.fits') as plain:
            assert all(isinstance(hdu, fits.CompImageHDU)
                       for hdu in packed[1:])
            assert [hdu.name for hdu in packed] == [hdu.name for hdu in plain]
            for got, want in zip(packed, plain, strict=True):
                np.testing.assert_array_equal(got.data, want.data)



class TestOmitRebuildable:
    """``--omit-rebuildable``: no UNCERT where BKGRMS rebuilds it."""

    @pytest.mark.parametrize('extra', [[], ['--all-hdus'], ['--compress']])
    def test_rebuilt_on_reading(self, tmp_path, extra):
        _subtract_variants(tmp_path, extra, full=[],
                           lean=['--omit-rebuildable'])
        names = {}
        for folder in ('full', 'lean'):
            with fits.open(tmp_path / folder / 'f_bkgsub.fits') as hdulist:
                names[folder] = [hdu.name for hdu in hdulist]
        assert 'UNCERT' in names['full']
        assert names['lean'] == [name for name in names['full']
                                 if name != 'UNCERT']
        hdu = ('HDU0', 1) if extra == ['--all-hdus'] else None
        full, _ = read_with_background(tmp_path / 'full' / 'f_bkgsub.fits',
                                       hdu=hdu)
        lean, _ = read_with_background(tmp_path / 'lean' / 'f_bkgsub.fits',
                                       hdu=hdu)
        assert lean.uncertainty.array.dtype == full.uncertainty.array.dtype
        np.testing.assert_array_equal(lean.uncertainty.array,
                                      full.uncertainty.array)

    def test_not_for_estimate(self, tmp_path, capsys):
        """estimate writes no uncertainty: the flag is a usage error."""
        CCDData(np.ones((64, 64)), unit='adu').write(tmp_path / 'f.fits')
        with pytest.raises(SystemExit, match='2'):
            main(['estimate', str(tmp_path / 'f.fits'), '--omit-rebuildable'])
        assert 'unrecognized arguments: --omit-rebuildable' in \
            capsys.readouterr().err
