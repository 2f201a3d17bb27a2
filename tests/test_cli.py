# Licensed under a 3-clause BSD style license - see LICENSE
"""Tests of the ezbkg command line."""

import subprocess
import sys

import numpy as np
import pytest

from ezbkg_ccd import __version__, read_with_background
from ezbkg_ccd.cli import main


def run(*arguments, cwd):
    """Run ``ezbkg`` in a subprocess and return the completed process."""
    return subprocess.run([sys.executable, '-m', 'ezbkg_ccd.cli', *arguments],
                          capture_output=True, text=True, cwd=cwd,
                          timeout=300, check=False)


def test_demo_subprocess(tmp_path):
    """The demo writes a readable subtracted frame with its background."""
    process = run('demo', '-o', 'out', cwd=tmp_path)
    assert process.returncode == 0, process.stderr
    assert 'global_back: 163.040' in process.stdout
    ccd, bkg = read_with_background(tmp_path / 'out'
                                    / 'raw_ccd_a8280271_bkgsub.fits')
    assert ccd.unit == 'electron' and bkg.unit == 'electron'
    assert ccd.shape == bkg.shape == (520, 512)
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
