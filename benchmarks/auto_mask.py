# Licensed under a 3-clause BSD style license - see LICENSE
"""
Cost of the automatic source mask against the plain map, raw SEP and
photutils, on the same frames in the same run.

Run by hand (not part of the test suite)::

    python benchmarks/auto_mask.py              # 1024^2, 3 rounds
    python benchmarks/auto_mask.py --rounds 5

For each scene of `ezbkg_ccd.synthetic` at 1024x1024 and noise 10
(flat, gradient, vignetting, crowded, galaxy, bright_star, gaps), each
round times, in turn:

- ``sep``: ``sep.Background`` with its maps (64 px, 3x3);
- ``photutils``: ``Background2D`` with the SExtractor estimator;
- ``plain``: ``estimate_background`` with its maps;
- ``auto``: ``estimate_background(source_mask='auto')`` with its maps.

The median over rounds of each time and of the ratios auto/plain,
auto/sep and photutils/sep are printed as an RST table and written to
``benchmarks/results/auto_mask.json``, with the ezbkg-ccd version and
the file it was imported from (so an A/B run against another checkout,
``PYTHONPATH=<checkout> python benchmarks/auto_mask.py --output ...``,
says which code it timed).
"""

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import sep
from _table import rst_table  # the scripts' own folder
from photutils.background import Background2D, SExtractorBackground

import ezbkg_ccd
from ezbkg_ccd import estimate_background
from ezbkg_ccd.synthetic import SCENES, make_scene

RESULTS = Path(__file__).parent / 'results' / 'auto_mask.json'


def _maps(background):
    return background.data, background.rms


CASES = {
    'sep': lambda image: (lambda b: (b.back(), b.rms()))(
        sep.Background(np.ascontiguousarray(image), bw=64, bh=64)),
    'photutils': lambda image: Background2D(
        image, 64, mask=~np.isfinite(image), filter_size=3,
        bkg_estimator=SExtractorBackground(),
        exclude_percentile=50).background,
    'plain': lambda image: _maps(estimate_background(image)),
    'auto': lambda image: _maps(estimate_background(image,
                                                    source_mask='auto')),
}


def _time(function, image):
    start = time.perf_counter()
    function(image)
    return time.perf_counter() - start


def run(rounds, shape):
    """Median seconds per scene and case."""
    rows = {}
    for name in SCENES:
        image = make_scene(name, shape=shape, sigma=10.0, seed=1)[0]
        times = {case: [] for case in CASES}
        for _ in range(rounds):
            for case, function in CASES.items():
                times[case].append(_time(function, image))
        rows[name] = {case: statistics.median(values)
                      for case, values in times.items()}
        print('done', name, flush=True)
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[1])
    parser.add_argument('--rounds', type=int, default=3)
    parser.add_argument('--size', type=int, default=1024)
    parser.add_argument('--output', type=Path, default=RESULTS)
    arguments = parser.parse_args()
    rows = run(arguments.rounds, (arguments.size, arguments.size))
    table = [['scene', 'sep [s]', 'photutils [s]', 'plain [s]', 'auto [s]',
              'auto/plain', 'auto/sep', 'photutils/sep']]
    for name, seconds in rows.items():
        table.append([name, *(f'{seconds[case]:.3f}' for case in CASES),
                      f"{seconds['auto'] / seconds['plain']:.1f}",
                      f"{seconds['auto'] / seconds['sep']:.1f}",
                      f"{seconds['photutils'] / seconds['sep']:.1f}"])
    total = {case: sum(seconds[case] for seconds in rows.values())
             for case in CASES}
    table.append(['all scenes', *(f'{total[case]:.3f}' for case in CASES),
                  f"{total['auto'] / total['plain']:.1f}",
                  f"{total['auto'] / total['sep']:.1f}",
                  f"{total['photutils'] / total['sep']:.1f}"])
    print(rst_table(table))
    arguments.output.parent.mkdir(parents=True, exist_ok=True)
    arguments.output.write_text(json.dumps({
        'ezbkg_ccd': getattr(ezbkg_ccd, '__version__', 'unknown'),
        'imported_from': str(Path(ezbkg_ccd.__file__).parent),
        'shape': [arguments.size] * 2, 'rounds': arguments.rounds,
        'seconds': rows, 'total': total}, indent=1))


if __name__ == '__main__':
    main()
