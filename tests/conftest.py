"""Import cctbx_p2a before anything else: it loads cctbx's libstdc++ so that
torch, gemmi, scipy and matplotlib can be imported afterwards (cctbx-notes §1)."""
import cctbx_p2a  # noqa: F401  (must stay the first import)

import os

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture
def tmp_cwd(tmp_path, monkeypatch):
  """Run a test inside an empty directory (programs write next to the cwd)."""
  monkeypatch.chdir(tmp_path)
  return tmp_path
