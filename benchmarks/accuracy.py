# Licensed under a 3-clause BSD style license - see LICENSE
"""
Accuracy of background estimates against a known truth, ours against
the peers a user would otherwise run.

Run by hand (not part of the test suite)::

    python benchmarks/accuracy.py                  # 1024^2, 3 seeds
    python benchmarks/accuracy.py --seeds 1        # quicker
    python benchmarks/accuracy.py --scenes vignetting gaps --size 512

The external peers are SExtractor and Gnuastro's NoiseChisel
(``apt-get install source-extractor gnuastro``); a peer whose program is
missing is skipped, with a message saying so (see ``peers.py``).

Scenes (`ezbkg_ccd.synthetic`, noise sigma 10, sky 1000): ``flat``,
``gradient``, ``vignetting`` (the ``dome`` scene: 50 % fall-off in the
corners), ``moonlight``, ``gaps`` (a NaN block, a zeroed corner and a
zeroed 6-column chip gap), ``crowded``, ``disc``, ``big_galaxy``,
``cluster``, ``bright_star`` and ``saturated`` (bleed trails, hot
columns). Contenders (`CONTENDERS`, name -> ``callable(image,
invalid_guess) -> background``):

- ``sep``: raw ``sep.Background`` (64 px, 3x3) with the NaN masked;
- ``photutils``: ``Background2D`` (64 px, 3x3, SExtractor estimator,
  ``exclude_percentile=50``, the NaN masked);
- ``sextractor``, ``noisechisel``, ``noisechisel_relaxed``: the
  programs, given the invalid guess (``peers.py``);
- ``ours``: ``estimate_background(image)`` (its own invalid-pixel rule);
- ``smooth``: ``estimate_background(image, interpolation='smooth')``
  (the noise-aware fit of the mesh grid, no source mask);
- ``auto``: ``estimate_background(image, source_mask='auto')``.

The invalid guess given to the peers is the same for all: non-finite
pixels, pixels at or above 60000, and zeroed regions
(``invalid_pixel_mask(image, saturation=59000.0)``).

Errors are in units of sigma, over the scored pixels: those holding sky
data (not the scene's ``invalid``) and not in the invalid guess (the
saturated core of ``bright_star``, where NoiseChisel's sky is blank).
Per scene and contender: the RMS and worst-pixel error; for ``disc``
and ``big_galaxy`` the mean error within 3 scale lengths (elliptical
radius), for ``cluster`` within 3 core radii (``bias``: the flux the
background steals); all averaged over seeds; and the median wall time
of a call (for the peers including their FITS I/O). A peer run that
fails (e.g. NoiseChisel aborting) is recorded with its reason, and the
warnings a contender gives are recorded and printed.

RST tables are printed, with a summary of the targets, and everything
goes to ``benchmarks/results/accuracy.json``.
"""

import argparse
import json
import shlex
import shutil
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import photutils
import sep
from _table import rst_table  # the scripts' own folder
from peers import INSTALL, PEERS, peer_version
from photutils.background import Background2D, SExtractorBackground

import ezbkg_ccd
from ezbkg_ccd import estimate_background, invalid_pixel_mask
from ezbkg_ccd.synthetic import elliptical_radius, make_scene

RESULTS = Path(__file__).parent / 'results' / 'accuracy.json'
SIGMA = 10.0
SKY = 1000.0

#: Benchmark scene -> `ezbkg_ccd.synthetic` scene.
SCENES = {'flat': 'flat', 'gradient': 'gradient', 'vignetting': 'dome',
          'moonlight': 'moonlight', 'gaps': 'gaps', 'crowded': 'crowded',
          'disc': 'disc', 'big_galaxy': 'big_galaxy', 'cluster': 'cluster',
          'bright_star': 'bright_star', 'saturated': 'saturated'}
EASY = ('flat', 'vignetting', 'gradient', 'moonlight', 'gaps', 'saturated')
HARD = ('crowded', 'disc', 'big_galaxy', 'cluster', 'bright_star')
PEER_NAMES = ('sep', 'photutils', 'sextractor', 'noisechisel',
              'noisechisel_relaxed')


def _sep(image, invalid_guess):
    """Raw SEP, the NaN masked."""
    return sep.Background(np.ascontiguousarray(image),
                          mask=~np.isfinite(image), bw=64, bh=64,
                          fw=3, fh=3).back()


def _photutils(image, invalid_guess):
    """photutils' Background2D, the NaN masked."""
    return Background2D(image, 64, filter_size=3,
                        bkg_estimator=SExtractorBackground(),
                        exclude_percentile=50,
                        mask=~np.isfinite(image)).background


#: Contender -> ``callable(image, invalid_guess) -> background map``.
CONTENDERS = {
    'sep': _sep,
    'photutils': _photutils,
    **{name: function for name, (_, function) in PEERS.items()},
    'ours': lambda image, invalid_guess: estimate_background(image).data,
    'smooth': lambda image, invalid_guess: estimate_background(
        image, interpolation='smooth').data,
    'auto': lambda image, invalid_guess: estimate_background(
        image, source_mask='auto').data,
}


def invalid_guess(image):
    """The pixels every peer is told to leave out."""
    return (~np.isfinite(image) | (image >= 60000.0)
            | invalid_pixel_mask(image, saturation=59000.0))


def inner_region(extra, shape):
    """Pixels within 3 scale lengths of a galaxy or 3 core radii of a
    cluster, or None."""
    if 'scale_length' in extra:
        radius = elliptical_radius(shape, extra['centre'],
                                   extra.get('axis_ratio', 1.0),
                                   extra.get('angle', 0.0))
        return radius < 3 * extra['scale_length']
    if 'core_radius' in extra:
        return elliptical_radius(shape, extra['centre']) \
            < 3 * extra['core_radius']
    return None


def _run(function, image, guess):
    """A contender's map, seconds and the warnings it gave."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        start = time.perf_counter()
        background = function(image, guess)
        seconds = time.perf_counter() - start
    return np.asarray(background, dtype=float), seconds, caught


def _errors(background, truth, scored, inner):
    """RMS, worst and inner-region mean error in sigma."""
    error = (background - truth) / SIGMA
    if not np.isfinite(error[scored]).all():
        count = int((~np.isfinite(error[scored])).sum())
        msg = f'{count} non-finite pixels in the map'
        raise ValueError(msg)
    errors = {'rms': float(np.sqrt(np.mean(error[scored] ** 2))),
              'worst': float(np.abs(error[scored]).max())}
    if inner is not None:
        errors['bias'] = float(error[inner & scored].mean())
    return errors


def score(scene, seeds, shape, contenders):
    """Errors and times of each contender on one scene, over seeds."""
    runs = {name: {'errors': [], 'seconds': [], 'failed': [],
                   'warnings': set()} for name in contenders}
    for seed in range(seeds):
        image, truth, invalid, extra = make_scene(
            SCENES[scene], shape=shape, sigma=SIGMA, sky=SKY, seed=seed)
        guess = invalid_guess(image)
        scored, inner = ~invalid & ~guess, inner_region(extra, shape)
        for name, function in contenders.items():
            run = runs[name]
            start = time.perf_counter()
            try:
                background, seconds, caught = _run(function, image, guess)
                run['errors'].append(_errors(background, truth, scored, inner))
            except Exception as error:  # a failed run is a result
                run['failed'].append(f'seed {seed}: {type(error).__name__}: '
                                     f'{error}')
                run['seconds'].append(time.perf_counter() - start)
                continue
            run['seconds'].append(seconds)
            run['warnings'].update(str(w.message).splitlines()[0]
                                   for w in caught)
    return {name: _summary(run) for name, run in runs.items()}


def _summary(run):
    """Mean errors and median seconds of a contender's runs."""
    summary = {key: float(np.mean([errors[key] for errors in run['errors']]))
               for key in (run['errors'][0] if run['errors'] else ())}
    if run['seconds']:
        summary['seconds'] = statistics.median(run['seconds'])
    if run['failed']:
        summary['failed'] = run['failed']
    if run['warnings']:
        summary['warnings'] = sorted(run['warnings'])
    return summary


def available_contenders():
    """The contenders whose programs are installed; the skipped ones
    with the reason."""
    contenders, skipped = dict(CONTENDERS), {}
    for name, (program, _) in PEERS.items():
        if shutil.which(program) is None:
            del contenders[name]
            skipped[name] = f'{program} not found (install with {INSTALL})'
    return contenders, skipped


def _cell(result, key, digits):
    """A table cell: the value, 'failed' or 'skipped'."""
    if result is None:
        return 'skipped'
    if key not in result:
        return 'failed' if 'failed' in result else '-'
    flag = '*' if 'failed' in result else ''
    return f'{result[key]:.{digits}f}{flag}'


def metric_table(results, key, digits):
    """One metric of every contender (columns) on every scene (rows)."""
    lines = [['scene', *CONTENDERS]]
    for scene, row in results.items():
        if key == 'bias' and 'bias' not in row['auto']:
            continue
        lines.append([scene, *(_cell(row.get(name), key, digits)
                               for name in CONTENDERS)])
    return rst_table(lines)


def _best_peer(row, key):
    """The peer with the smallest (absolute) value of a metric."""
    values = {name: abs(row[name][key]) for name in PEER_NAMES
              if name in row and key in row[name]}
    if not values:
        return None, float('nan')
    best = min(values, key=values.get)
    return best, values[best]


def targets(results):
    """auto against the best peer and against the plain map (``ours``)."""
    summary = {}
    for scene, row in results.items():
        auto, ours = row['auto'] or {}, row['ours'] or {}
        entry = {}
        if 'rms' in auto and 'rms' in ours:
            entry['auto_vs_plain_rms'] = auto['rms'] / ours['rms']
        for key in ('rms', 'worst', 'bias'):
            peer, value = _best_peer(row, key)
            if key in auto and peer is not None:
                entry[f'best_peer_{key}'] = [peer, value]
                entry[f'auto_vs_best_peer_{key}'] = abs(auto[key]) / value
        summary[scene] = entry
    return summary


def _against_peer(results, summary, scene, key):
    """auto's value, the best peer's and their ratio, as cells."""
    entry = summary[scene]
    if f'best_peer_{key}' not in entry:
        return ['-', '-', '-']
    peer, value = entry[f'best_peer_{key}']
    return [f"{results[scene]['auto'][key]:.3f}", f'{value:.3f} ({peer})',
            f"{entry[f'auto_vs_best_peer_{key}']:.2f}"]


def _met(value, limit):
    """Whether a target is met."""
    return '-' if value is None else 'yes' if value <= limit else 'NO'


def targets_tables(results, summary):
    """The targets as RST tables: easy scenes, hard scenes, auto vs plain."""
    easy = [['easy scene', 'auto rms', 'best peer rms', 'ratio', 'auto worst',
             'best peer worst', 'ratio']]
    easy += [[scene, *_against_peer(results, summary, scene, 'rms'),
              *_against_peer(results, summary, scene, 'worst')]
             for scene in EASY if scene in results]
    hard = [['hard scene', 'auto rms', 'best peer rms', 'ratio', '<= 0.5',
             'auto bias', 'least peer |bias|']]
    hard += [[scene, *_against_peer(results, summary, scene, 'rms'),
              _met(summary[scene].get('auto_vs_best_peer_rms'), 0.5),
              *_against_peer(results, summary, scene, 'bias')[:2]]
             for scene in HARD if scene in results]
    plain = [['scene', 'auto rms / ours rms', '<= 1.10']]
    plain += [[scene, f"{entry.get('auto_vs_plain_rms', float('nan')):.2f}",
               _met(entry.get('auto_vs_plain_rms'), 1.10)]
              for scene, entry in summary.items()]
    seconds = total_seconds(results)
    speed = [['contender', 'seconds, all scenes', 'auto / it']]
    speed += [[name, f'{value:.2f}', f"{seconds['auto'] / value:.2f}"]
              for name, value in seconds.items()]
    return [rst_table(easy), rst_table(hard), rst_table(plain),
            rst_table(speed)]


def total_seconds(results):
    """Each contender's median seconds per frame, summed over the
    scenes (a failed run counts its time until it failed: NoiseChisel
    aborting is what a user waits for)."""
    return {name: sum(row[name].get('seconds', 0.0)
                      for row in results.values() if row.get(name))
            for name in CONTENDERS
            if any(row.get(name) for row in results.values())}


def _versions():
    """Versions of the contenders, and where ezbkg_ccd came from."""
    return {'ezbkg_ccd': getattr(ezbkg_ccd, '__version__', 'unknown'),
            'imported_from': str(Path(ezbkg_ccd.__file__).parent),
            'sep': sep.__version__, 'photutils': photutils.__version__,
            'numpy': np.__version__,
            **{program: peer_version(program)
               for program, _ in PEERS.values()}}


def report(results, skipped, arguments):
    """Print the tables, the failures, the warnings and the targets."""
    print(f'errors in units of sigma ({SIGMA:g}; sky {SKY:g}), '
          f'{arguments.size}x{arguments.size}, mean of {arguments.seeds} '
          'seeds; * = some seeds failed')
    for key, title, digits in [
            ('rms', 'RMS error', 3), ('worst', 'worst-pixel |error|', 2),
            ('bias', 'mean error within 3 scale lengths / core radii', 3),
            ('seconds', 'seconds per call (median)', 3)]:
        print(f'\n{title}\n{metric_table(results, key, digits)}')
    for name, reason in skipped.items():
        print(f'skipped {name}: {reason}')
    for scene, row in results.items():
        for name, result in row.items():
            for reason in (result or {}).get('failed', []):
                print(f'failed {name} on {scene}, {reason}')
            for message in (result or {}).get('warnings', []):
                print(f'warning from {name} on {scene}: {message}')
    summary = targets(results)
    print('\ntargets')
    print('\n\n'.join(targets_tables(results, summary)))
    return summary


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[1])
    parser.add_argument('--size', type=int, default=1024)
    parser.add_argument('--seeds', type=int, default=3)
    parser.add_argument('--scenes', nargs='+', choices=SCENES,
                        default=list(SCENES))
    parser.add_argument('--output', type=Path, default=RESULTS)
    argv = sys.argv[1:] if argv is None else argv
    arguments = parser.parse_args(argv)
    contenders, skipped = available_contenders()
    shape = (arguments.size, arguments.size)
    results = {}
    for scene in arguments.scenes:
        row = score(scene, arguments.seeds, shape, contenders)
        results[scene] = {name: row.get(name) for name in CONTENDERS}
        print('done', scene, flush=True)
    summary = report(results, skipped, arguments)
    arguments.output.parent.mkdir(parents=True, exist_ok=True)
    arguments.output.write_text(json.dumps({
        'command': shlex.join(['python', 'benchmarks/accuracy.py', *argv]),
        'versions': _versions(), 'shape': list(shape), 'sigma': SIGMA,
        'sky': SKY, 'seeds': arguments.seeds, 'scenes': {
            scene: SCENES[scene] for scene in arguments.scenes},
        'skipped': skipped, 'results': results, 'targets': summary},
        indent=1) + '\n')


if __name__ == '__main__':
    main()
