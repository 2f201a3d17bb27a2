# Licensed under a 3-clause BSD style license - see LICENSE
"""The documentation builds cleanly and its shell examples run."""

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

DOCS = Path(__file__).parent.parent / 'docs'


def bash_blocks(page):
    """The commands of every ``.. code-block:: bash`` of a page."""
    text = (DOCS / page).read_text()
    blocks = re.findall(r'\.\. code-block:: bash\n\n((?:    .*\n|\n)+)', text)
    return [line.strip() for block in blocks for line in block.splitlines()
            if line.strip()]


def test_cli_page_commands_run(tmp_path):
    """Every command on the command-line page exits with code 0."""
    commands = bash_blocks('cli.rst')
    assert commands[0].startswith('ezbkg demo')
    for command in commands:
        words = shlex.split(command)
        assert words[0] == 'ezbkg'
        process = subprocess.run(
            [sys.executable, '-m', 'ezbkg_ccd.cli', *words[1:]],
            capture_output=True, text=True, cwd=tmp_path, timeout=600,
            check=False)
        assert process.returncode == 0, (command, process.stderr)


def test_sphinx_build_without_warnings(tmp_path):
    """sphinx-build -W builds every page and the API reference."""
    pytest.importorskip('sphinx_automodapi')
    pytest.importorskip('numpydoc')
    source = tmp_path / 'docs'  # automodapi writes stubs beside the pages
    shutil.copytree(DOCS, source,
                    ignore=shutil.ignore_patterns('_build', 'api'))
    process = subprocess.run(
        [sys.executable, '-m', 'sphinx', '-W', '--keep-going', '-q', '-b',
         'html', '-d', str(tmp_path / 'doctrees'), str(source),
         str(tmp_path / 'html')],
        capture_output=True, text=True, timeout=900, check=False)
    assert process.returncode == 0, process.stderr[-5000:]
    built = {path.name for path in (tmp_path / 'html').glob('*.html')}
    assert {'index.html', 'cli.html', 'masks.html', 'performance.html',
            'plugins.html', 'api.html'} <= built
