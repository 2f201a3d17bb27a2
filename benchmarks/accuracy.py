# Licensed under a 3-clause BSD style license - see LICENSE
"""
Accuracy of background estimates against a known truth.

Run by hand (not part of the test suite)::

    python benchmarks/accuracy.py             # 512x512, 5 seeds per scene
    python benchmarks/accuracy.py --seeds 2   # quicker

For each scene of `ezbkg_ccd.synthetic` (flat, gradient, vignetting,
crowded, galaxy, bright_star, gaps), the RMS and worst-case error of
(estimate - truth) over the pixels holding sky data, in units of the
noise sigma, averaged over seeds, for:

- ``sep``: raw ``sep.Background`` with default settings (64 px, 3x3);
- ``photutils``: ``Background2D`` (64 px, 3x3, SExtractor estimator;
  ``exclude_percentile=50`` so that crowded frames do not fail);
- ``ours``: ``estimate_background(method='sep')``, invalid pixels
  (NaN, zeroed regions, saturation) masked by ``invalid_pixel_mask``;
- ``ours+reject``: the same with ``reject_skewed=True`` (meshes skewed
  by unmasked sources rejected), no source mask;
- ``ours+auto``: the same with ``source_mask='auto'``,
  ``reject_skewed=True`` and ``edge='adaptive'`` (our recommended
  settings for accuracy).

For the galaxy scene also the mean error within 3 scale lengths (the
flux the background steals). Results go to
``benchmarks/results/accuracy.json``; an RST table is printed.
"""

import argparse
import json
import warnings
from pathlib import Path

import numpy as np
import sep
from _table import rst_table as format_table  # the scripts' own folder
from photutils.background import Background2D, SExtractorBackground

from ezbkg_ccd import estimate_background, invalid_pixel_mask
from ezbkg_ccd.synthetic import SCENES, make_scene

RESULTS = Path(__file__).parent / 'results'
SIGMA = 5.0
CONTENDERS = ('sep', 'photutils', 'ours', 'ours+reject', 'ours+auto')


def estimates(image):
    """Background maps of every contender."""
    invalid = invalid_pixel_mask(image, saturation=59000.0)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # photutils on NaN pixels
        photutils_map = Background2D(
            image, 64, filter_size=3, bkg_estimator=SExtractorBackground(),
            mask=~np.isfinite(image), exclude_percentile=50).background
    return {'sep': sep.Background(np.ascontiguousarray(image)).back(),
            'photutils': photutils_map,
            'ours': estimate_background(image, mask=invalid).data,
            'ours+reject': estimate_background(image, mask=invalid,
                                               reject_skewed=True).data,
            'ours+auto': estimate_background(image, mask=invalid,
                                             source_mask='auto',
                                             reject_skewed=True,
                                             edge='adaptive').data}


def score(name, seeds, shape=(512, 512)):
    """Mean over seeds of each contender's errors on one scene."""
    totals = {contender: {'rms': [], 'worst': [], 'stolen': []}
              for contender in CONTENDERS}
    for seed in range(seeds):
        image, truth, invalid, extra = make_scene(name, shape=shape,
                                                  sigma=SIGMA, seed=seed)
        valid = ~invalid
        inner = None
        if 'scale_length' in extra:
            y, x = np.indices(shape)
            inner = np.hypot(y - extra['centre'][0], x - extra['centre'][1]) \
                < 3 * extra['scale_length']
        for contender, estimate in estimates(image).items():
            error = (estimate - truth) / SIGMA
            totals[contender]['rms'].append(np.sqrt(np.mean(error[valid]**2)))
            totals[contender]['worst'].append(np.abs(error[valid]).max())
            if inner is not None:
                totals[contender]['stolen'].append(error[inner].mean())
    return {contender: {key: float(np.mean(values))
                        for key, values in errors.items() if values}
            for contender, errors in totals.items()}


def results_table(results):
    head = ['scene', *[f'{c} rms / worst' for c in CONTENDERS],
            'auto vs best peer']
    lines = [head]
    for scene, errors in results.items():
        best_peer = min(errors['sep']['rms'], errors['photutils']['rms'])
        row = [scene] + [f"{errors[c]['rms']:.3f} / {errors[c]['worst']:.2f}"
                         for c in CONTENDERS]
        row.append(f"{best_peer / errors['ours+auto']['rms']:.2f}x better")
        lines.append(row)
    return format_table(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description='background accuracy')
    parser.add_argument('--seeds', type=int, default=5)
    arguments = parser.parse_args(argv)
    results = {scene: score(scene, arguments.seeds) for scene in SCENES}
    galaxy = results['galaxy']
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / 'accuracy.json').write_text(json.dumps(
        {'sigma': SIGMA, 'seeds': arguments.seeds, 'shape': [512, 512],
         'results': results}, indent=2) + '\n')
    print(f'errors in units of the noise sigma, mean of {arguments.seeds} seeds')
    print(results_table(results))
    print('\ngalaxy: mean error within 3 scale lengths (stolen flux, sigma): '
          + ', '.join(f"{c} {galaxy[c]['stolen']:.3f}" for c in CONTENDERS))
    print(f"stolen flux, raw SEP / ours+auto: "
          f"{galaxy['sep']['stolen'] / galaxy['ours+auto']['stolen']:.1f}x")


if __name__ == '__main__':
    main()
