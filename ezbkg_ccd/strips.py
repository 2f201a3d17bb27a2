# Licensed under a 3-clause BSD style license - see LICENSE
"""
One large frame on several cores: SEP in overlapping horizontal strips.

SEP's Python API holds the GIL; its C library, called through
`ezbkg_ccd._sep_c`, does not, so the strips run in threads that read the
frame in place and write the rows they own straight into the result:
nothing is copied, pickled or shared between processes. Strips start and
end on mesh boundaries and overlap by ``overlap`` meshes on each side, so
every mesh, the median filter and the bad-mesh filling see what a single
call sees; the only difference is the reach of the natural cubic spline
along y, whose influence falls by a factor of about 3.7 per mesh, so the
stitched map matches the single-call map to a small fraction of the RMS.
"""

from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ezbkg_ccd._sep_c import AVAILABLE, background_rows

__all__ = ['AVAILABLE', 'sep_strips', 'strip_rows']

#: Meshes of overlap on each side of a strip: 3.7**-8 ~ 3e-5 of the
#: spline's reach is left (measured: 1.9e-5 of the RMS on 8192**2).
DEFAULT_OVERLAP = 8


def strip_rows(ny, box_height, n_jobs, overlap):
    """
    Split ``ny`` rows into strips aligned to meshes.

    Returns
    -------
    strips : list of (int, int, int, int)
        For each strip: the first and end row it computes with (overlap
        included), and the first and end row it owns in the result.

    Examples
    --------
    >>> from ezbkg_ccd.strips import strip_rows
    >>> strip_rows(1000, 64, 2, 2)
    [(0, 640, 0, 512), (384, 1000, 512, 1000)]
    """
    meshes = -(-ny // box_height)
    edges = np.linspace(0, meshes, min(n_jobs, meshes) + 1).round()
    edges = [int(edge) for edge in edges]
    strips = []
    for first, last in zip(edges[:-1], edges[1:], strict=True):
        strips.append((max(first - overlap, 0) * box_height,
                       min((last + overlap) * box_height, ny),
                       first * box_height, min(last * box_height, ny)))
    return strips


def sep_strips(data, mask, *, n_jobs, overlap=DEFAULT_OVERLAP, **options):
    """
    SEP background and RMS maps of ``data`` computed in strips.

    Needs `AVAILABLE` (a SEP version whose C library is bound).

    Parameters
    ----------
    data : `~numpy.ndarray`
        Native, C-contiguous float image.
    mask : `~numpy.ndarray` of bool or None
        Pixels to exclude.
    n_jobs : int
        Number of strips, each run in its own thread.
    overlap : int, optional
        Meshes of overlap on each side of a strip.
    **options
        ``bw``, ``bh``, ``fw``, ``fh``, ``fthresh`` for `sep.Background`.

    Returns
    -------
    back, rms : `~numpy.ndarray`
        Full-size maps.
    global_back, global_rms : float
        Medians of the maps at the mesh centres (SEP's global values are
        the medians of the filtered meshes).
    """
    strips = strip_rows(data.shape[0], options['bh'], n_jobs, overlap)
    data = np.ascontiguousarray(data)
    mask = None if mask is None else np.ascontiguousarray(mask, dtype=bool)
    back, rms = np.empty_like(data), np.empty_like(data)

    def run(strip):
        start, stop, own_start, own_stop = strip
        background_rows(data, mask, rows=slice(start, stop),
                        own=slice(own_start, own_stop), back=back, rms=rms,
                        **options)

    with ThreadPoolExecutor(max_workers=len(strips)) as pool:
        for _ in pool.map(run, strips):
            pass  # re-raises a strip's exception here
    centres = (slice(options['bh'] // 2, None, options['bh']),
               slice(options['bw'] // 2, None, options['bw']))
    return (back, rms, float(np.median(back[centres])),
            float(np.median(rms[centres])))
