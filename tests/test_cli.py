# Licensed under a 3-clause BSD style license - see LICENSE
"""Tests of the ezbkg command line."""

import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from astropy.io import fits
from astropy.nddata import CCDData

from ezbkg_ccd import __version__, read_background, read_with_background
from ezbkg_ccd.cli import main


def ezbkg(*arguments, cwd):
    """Run the ezbkg command line in a subprocess."""
    return subprocess.run([sys.executable, '-m', 'ezbkg_ccd.cli', *arguments],
                          capture_output=True, text=True, cwd=cwd,
                          timeout=600, check=False)


def test_demo_subprocess(tmp_path):
    """The demo writes a readable subtracted frame with its background."""
    process = ezbkg('demo', '-o', 'out', cwd=tmp_path)
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
    """The ezbkg command, run as a user would."""

    def test_subtract_exit_code_and_summary(self, frames, tmp_path):
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

    def test_all_good_is_zero(self, frames, tmp_path):
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

    def test_estimate_and_info(self, frames, tmp_path):
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

    def test_info_readable_and_json(self, frames, tmp_path):
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

    def test_info_odd_values(self, frames, tmp_path):
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

    def test_info_of_plain_file(self, frames, tmp_path):
        """info on a file without a background fails with code 1."""
        process = ezbkg('info', str(frames / 'f0.fits'), cwd=tmp_path)
        assert process.returncode == 1
        assert 'holds no background' in process.stderr

    def test_all_hdus_cli(self, mosaic, tmp_path):
        """--all-hdus writes every CCD of a mosaic."""
        process = ezbkg('subtract', str(mosaic), '--all-hdus', '-o', 'out',
                        '--box-size', '32', cwd=tmp_path)
        assert process.returncode == 0, process.stderr
        with fits.open(tmp_path / 'out' / 'mosaic_bkgsub.fits') as hdulist:
            assert [h.name for h in hdulist].count('BKG') == 2

    def test_help_everywhere(self, tmp_path):
        """Every subcommand has --help."""
        for command in ('subtract', 'estimate', 'info', 'demo'):
            process = ezbkg(command, '--help', cwd=tmp_path)
            assert process.returncode == 0
            assert 'usage: ezbkg' in process.stdout

    def test_interrupt_then_resume(self, tmp_path):
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
