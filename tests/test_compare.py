"""p2a.compare: the same data and the same scoring for every method."""
import json
import os

import pytest
from iotbx.cli_parser import run_program
from libtbx.utils import Sorry

from cctbx_p2a import compare
from cctbx_p2a.programs import common
from cctbx_p2a.programs import compare as compare_program

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLE = os.path.join(REPO, "examples", "paper_case")


def run(args):
  return run_program(program_class=compare_program.Program, args=common.file_arguments_as_phil(args),
                     logger=open(os.devnull, "w"))


def test_compare_on_a_users_file_scores_every_method(tmp_cwd):
  report = run([EXAMPLE + ".mtz", "reference=%s.pdb" % EXAMPLE, "methods=p2a charge_flipping"])
  saved = json.load(open("p2a_compare.json"))
  for method in ("p2a", "charge_flipping"):
    assert saved[method]["cases"] == 1
    assert 0.0 <= saved[method]["success_rate"] <= 1.0
    assert saved[method]["median_time_s"] > 0
  assert report["p2a"]["success_rate"] == 1.0


def test_synthetic_sweep_writes_table_json_and_plot(tmp_cwd):
  run(["methods=network charge_flipping", "cases=2", "nproc=1", "sweep=d_min=1.5,2.5"])
  saved = json.load(open("p2a_compare.json"))
  assert [p["d_min"] for p in saved["network"]["points"]] == [1.5, 2.5]
  assert saved["charge_flipping"]["cases"] == 4
  for key in ("cases", "success_rate", "mean_error_A", "atoms_within_0.5A", "median_time_s"):
    assert key in saved["network"]
  assert os.path.getsize("p2a_compare.png") > 5000


def test_sweep_parsing():
  assert compare.parse_sweep("d_min=1.0,1.5") == ("d_min", [1.0, 1.5])
  assert compare.parse_sweep("n_atoms=6,10") == ("n_atoms", [6, 10])
  with pytest.raises(Sorry):
    compare.parse_sweep("colour=1,2")
  with pytest.raises(Sorry):
    compare.parse_sweep("d_min=a,b")


def test_a_file_needs_a_reference(tmp_cwd):
  with pytest.raises(Sorry, match="reference="):
    run([EXAMPLE + ".mtz"])


def test_realistic_sweep_with_a_fixed_parameter(tmp_cwd):
  """suite=realistic, one parameter swept and another held: every case at
  the held value; p2a_estimated_count reports how often it found the count."""
  run(["suite=realistic", "methods=p2a_estimated_count", "cases=1", "nproc=1",
       "sweep=noise=0,0.1", "fix=d_min=2.5", "seed=3"])
  saved = json.load(open("p2a_compare.json"))
  assert saved["settings"]["fixed"] == {"d_min": 2.5}
  assert [p["noise"] for p in saved["p2a_estimated_count"]["points"]] == [0.0, 0.1]
  assert "atom_count_right" in saved["p2a_estimated_count"]
  with pytest.raises(Sorry, match="both swept and fixed"):
    run(["suite=realistic", "methods=p2a", "sweep=d_min=2,3", "fix=d_min=2.5",
         "output.overwrite=True"])
