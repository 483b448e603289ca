"""cctbx_p2a: Patterson to atoms.

Ab initio phasing of a small isolated molecule: the Patterson synthesis of the
measured amplitudes goes through a trained 3D convolutional network that draws
the atoms (Hurwitz 2020, arXiv:2003.13767); sites are read from that map, one
hand is chosen, and the structure is refined against the data with cctbx.

The import-order fix below must stay first: importing torch, gemmi, scipy or
matplotlib before cctbx's extensions crashes the interpreter.
"""
from cctbx_p2a import _import_order  # noqa: F401  (must be first)

__version__ = "0.1.0"
