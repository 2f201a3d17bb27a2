# Licensed under a 3-clause BSD style license - see LICENSE
"""
Which statistic and which interpolation: the choices of ezbkg-ccd against
a known truth, for the docs' page on choosing (``docs/choosing.rst``).

Run by hand (not part of the test suite)::

    python benchmarks/choosing.py              # 1024^2, 2 seeds, ~2 min
    python benchmarks/choosing.py --seeds 1 --size 512

Scenes (`ezbkg_ccd.synthetic`, noise sigma 10, sky 1000) with strong
large-scale structure and with sources: ``flat``, ``vignetting`` (50 %
fall-off in the corners), ``moonlight``, ``crowded``, ``big_galaxy``,
``bright_star``. Choices, all through ``estimate_background`` on the same
images, 64-pixel meshes and a 3x3 filter:

- ``sep mode``: the default (SEP: SExtractor's mode, bicubic spline);
- ``sep smooth``: ``interpolation='smooth'``;
- ``sep auto``: ``source_mask='auto'`` (which also smooths);
- ``photutils <statistic>``: ``method='photutils'``,
  ``bkg_estimator=<statistic>`` for mode, median, mean, mmm, biweight;
- ``constant mode``: ``method='constant'``.

Errors are in units of sigma over the sky pixels (`accuracy.score`, the
same scoring as ``accuracy.py``): the RMS error, and for ``big_galaxy``
the mean error within 3 scale lengths (the galaxy light taken as sky).
Results go to ``benchmarks/results/choosing.json``, an RST table is
printed, and the figure to ``docs/_static/choosing.png``.
"""

import argparse
import json
from pathlib import Path

import numpy as np
from _table import rst_table  # the scripts' own folder
from accuracy import SIGMA, SKY, score

from ezbkg_ccd import estimate_background
from ezbkg_ccd.synthetic import make_scene

HERE = Path(__file__).parent
RESULTS = HERE / 'results' / 'choosing.json'
FIGURE = HERE.parent / 'docs' / '_static' / 'choosing.png'
SCENES = ('flat', 'vignetting', 'moonlight', 'crowded', 'big_galaxy',
          'bright_star')
STATISTICS = ('mode', 'median', 'mean', 'mmm', 'biweight')


def _choice(**options):
    """A contender: the map of ``estimate_background(image, **options)``."""
    return lambda image, guess: estimate_background(image, box_size=64,
                                                    **options).data


#: Choice -> contender, in the order shown.
CHOICES = {
    'sep mode': _choice(),
    'sep smooth': _choice(interpolation='smooth'),
    'sep auto': _choice(source_mask='auto'),
    **{f'photutils {name}': _choice(method='photutils', bkg_estimator=name)
       for name in STATISTICS},
    'constant mode': _choice(method='constant'),
}

#: Choices whose error maps the figure shows.
SHOWN = ('sep mode', 'sep smooth', 'photutils median')


def _figure(size, results):
    """The vignetted scene, three error maps and the RMS errors."""
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    image, truth, invalid, _ = make_scene('dome', shape=(size, size),
                                          sigma=SIGMA, sky=SKY, seed=0)
    figure = plt.figure(figsize=(12, 7.5), layout='constrained')
    top = figure.subfigures(2, 1, height_ratios=(1, 1.1))
    axes = top[0].subplots(1, 1 + len(SHOWN))
    shown = axes[0].imshow(image, origin='lower', cmap='gray',
                           vmin=np.percentile(image, 1),
                           vmax=np.percentile(image, 99))
    axes[0].set_title('vignetting scene')
    top[0].colorbar(shown, ax=axes[0], shrink=0.8)
    for ax, name in zip(axes[1:], SHOWN, strict=True):
        error = (CHOICES[name](image, None) - truth) / SIGMA
        error[invalid] = np.nan
        last = ax.imshow(error, origin='lower', cmap='RdBu_r', vmin=-0.15,
                         vmax=0.15)
        ax.set_title(f'{name}: error / sigma')
    top[0].colorbar(last, ax=axes[1:], shrink=0.8)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    bars = top[1].subplots()
    width = 0.8 / len(CHOICES)
    for index, name in enumerate(CHOICES):
        values = [results[scene][name].get('rms', np.nan) for scene in SCENES]
        bars.bar(np.arange(len(SCENES)) + (index - len(CHOICES) / 2) * width,
                 values, width, label=name)
    bars.set_xticks(np.arange(len(SCENES)), SCENES)
    bars.set_yscale('log')
    bars.set_ylabel('RMS error / sigma')
    bars.legend(ncols=3, fontsize='small')
    FIGURE.parent.mkdir(exist_ok=True)
    figure.savefig(FIGURE, dpi=80)
    plt.close(figure)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--size', type=int, default=1024)
    parser.add_argument('--seeds', type=int, default=2)
    parser.add_argument('--no-figure', action='store_true')
    arguments = parser.parse_args(argv)
    shape = (arguments.size, arguments.size)
    results = {}
    for scene in SCENES:
        results[scene] = score(scene, arguments.seeds, shape, CHOICES)
        print('done', scene, flush=True)
    header = ['choice', *SCENES, 'galaxy bias', 's (flat)']
    rows = [[name, *(f"{results[scene][name].get('rms', np.nan):.4f}"
                     for scene in SCENES),
             f"{results['big_galaxy'][name].get('bias', np.nan):+.3f}",
             f"{results['flat'][name]['seconds']:.3f}"] for name in CHOICES]
    print(rst_table([header, *rows]))
    command = 'python benchmarks/choosing.py' + (
        f' --size {arguments.size}' if arguments.size != 1024 else '') + (
        f' --seeds {arguments.seeds}' if arguments.seeds != 2 else '')
    RESULTS.write_text(json.dumps(
        {'command': command, 'shape': list(shape), 'seeds': arguments.seeds,
         'sigma': SIGMA, 'sky': SKY, 'results': results}, indent=1) + '\n')
    if not arguments.no_figure:
        _figure(arguments.size, results)


if __name__ == '__main__':
    main()
