# Licensed under a 3-clause BSD style license - see LICENSE
"""
SEP's C library without its Python wrapper: the ctypes binding
(`~ezbkg_ccd._sep.binding`) and the threaded strips built on it
(`~ezbkg_ccd._sep.strips`), which give SEP's single-call maps bit for
bit from threads that do not hold the GIL.
"""

__all__ = []
