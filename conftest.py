# Licensed under a 3-clause BSD style license - see LICENSE
"""
The coverage floor (``--cov-fail-under`` in setup.cfg) is for the whole
suite, as ``pytest`` runs it without arguments (the README's command,
which CI runs): a run of some of the tests (some files, ``-k``, ``-m``,
``--deselect``, ``--lf``) still reports the coverage, but cannot reach
the floor and is not held to it.
"""

import pytest

#: The floor a run of some of the tests is not held to.
_UNCHECKED = pytest.StashKey[float]()


def _some_tests(config):
    """Whether this run selects some of the tests, not the whole suite."""
    selecting = ('keyword', 'markexpr', 'deselect', 'ignore', 'ignore_glob',
                 'lf', 'stepwise')
    return (config.args_source is not pytest.Config.ArgsSource.TESTPATHS
            or any(config.getoption(name, None) for name in selecting))


@pytest.hookimpl(trylast=True)
def pytest_configure(config):
    """No floor for a run of some of the tests (pytest-cov reads its
    options at the end of the run)."""
    coverage = config.pluginmanager.getplugin('_cov')  # pytest-cov's
    options = getattr(coverage, 'options', None)
    if options is not None and _some_tests(config):
        config.stash[_UNCHECKED] = options.cov_fail_under
        options.cov_fail_under = None


@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(terminalreporter, config):
    """Say that the floor was not checked."""
    floor = config.stash.get(_UNCHECKED, None)
    if floor:
        terminalreporter.write_line(
            f'coverage floor {floor:g}% not checked: the run selects some '
            'of the tests')
