"""Make torch, gemmi, scipy and matplotlib safe to import after cctbx.

cctbx-base ships a libstdc++ newer than the system's.  If any other extension
(torch, gemmi, scipy, matplotlib) loads the system libstdc++ first, cctbx's
extensions later crash the interpreter (segfault).  Loading cctbx's copy with
RTLD_GLOBAL before anything else makes every later extension bind to it.
This module must run before anything else in the package (see __init__).
"""
import ctypes
import glob
import importlib.util
import os


def load_cctbx_libstdcxx():
  spec = importlib.util.find_spec("cctbx")
  if spec is None or spec.origin is None:
    return
  libs = os.path.join(os.path.dirname(os.path.dirname(spec.origin)), "cctbx_base.libs")
  for lib in sorted(glob.glob(os.path.join(libs, "libstdc++*"))):
    ctypes.CDLL(lib, mode=ctypes.RTLD_GLOBAL)


load_cctbx_libstdcxx()
import boost_adaptbx.boost.python  # noqa: E402,F401  (cctbx's boost.python next)
