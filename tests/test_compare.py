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


def test_read_out_control_is_scored_like_the_network(tmp_cwd):
  """network_untrained: the raw read-out of the untrained control, scored as
  the paper's metric; the shipped paper model must beat it on its own cases."""
  run(["methods=network network_untrained", "cases=4", "nproc=1", "model=paper", "seed=1"])
  saved = json.load(open("p2a_compare.json"))
  for m in ("network", "network_untrained"):
    for key in ("mean_error_A", "atoms_within_0.5A", "atoms_within_1.0A", "peak_precision"):
      assert saved[m][key] is not None
  assert saved["network"]["atoms_within_1.0A"] > saved["network_untrained"]["atoms_within_1.0A"] + 0.1
  assert saved["network"]["mean_error_A"] < saved["network_untrained"]["mean_error_A"]


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


def test_controls_run_beside_p2a_and_are_scored_alike(tmp_cwd):
  """p2a_untrained and p2a_patterson run p2a's whole pipeline with another
  atom map and get the same scoring (cases, success, R1, atom count)."""
  report = run([EXAMPLE + ".mtz", "reference=%s.pdb" % EXAMPLE,
                "methods=p2a p2a_untrained p2a_patterson"])
  for method in ("p2a", "p2a_untrained", "p2a_patterson"):
    entry = report[method]
    assert entry["cases"] == 1 and 0.0 <= entry["success_rate"] <= 1.0
    assert entry["mean_r1"] is not None and entry["median_time_s"] > 0
    assert "atom_count_right" in entry
  assert report["p2a"]["success_rate"] == 1.0


def test_controls_are_on_by_default():
  from cctbx_p2a import phil
  methods = phil.extract("compare").compare.methods
  assert methods[0] == "p2a" and "p2a_untrained" in methods and "p2a_patterson" in methods


def test_untrained_control_is_the_trained_architecture_seeded():
  import numpy as np
  from cctbx_p2a import model_files, patterson
  trained = model_files.load("default")
  a, b = compare.untrained_model(trained), compare.untrained_model(trained)
  other = compare.untrained_model(trained, seed=1)
  assert a.card["grid"] == trained.card["grid"]
  assert a.card["architecture"] == trained.card["architecture"]
  assert "metrics" not in a.card and a.card["training"]["steps"] == 0
  wa, wt = a.forward.w, trained.forward.w
  assert sorted(wa) == sorted(wt) and all(wa[k].shape == wt[k].shape for k in wa)
  assert all(np.array_equal(wa[k], b.forward.w[k]) for k in wa)
  assert not np.array_equal(wa["stem.0.weight"], other.forward.w["stem.0.weight"])
  assert not np.array_equal(wa["stem.0.weight"], wt["stem.0.weight"])
  # both control maps are on the trained map's scale, centrosymmetric
  x = np.random.default_rng(0).normal(size=(trained.card["grid"]["input_n"],) * 3).astype(np.float32)
  x = 0.5 * (x + x[::-1, ::-1, ::-1])
  for method in ("p2a_untrained", "p2a_patterson"):
    y = compare.control_model(method, trained).predict(x)
    assert y.shape == (trained.card["grid"]["output_n"],) * 3
    assert y.max() == np.float32(0.5) and y.min() == 0.0
    assert np.allclose(y, y[::-1, ::-1, ::-1], atol=1e-6)
  assert compare.control_model("network_untrained", trained) is compare.control_model("p2a_untrained", trained)
  # the Patterson control has no origin peak
  y = compare.control_model("p2a_patterson", trained).predict(x)
  c = patterson.grid_coordinates(y.shape[0], trained.voxel)
  assert y[np.ix_(np.abs(c) < 1.0, np.abs(c) < 1.0, np.abs(c) < 1.0)].max() == 0.0


def test_unknown_methods_are_refused_before_any_case(tmp_cwd):
  with pytest.raises(Sorry, match="p2a_untrained"):
    run(["methods=p2a,p2a_untrained", "cases=1", "nproc=1"])


def test_molecules_suite_scores_non_h_atoms(tmp_cwd):
  """suite=molecules: real molecules with hydrogens in the data; the
  reference, composition and atom counts hold the non-H atoms only."""
  pytest.importorskip("rdkit")
  run(["suite=molecules", "methods=p2a_untrained", "cases=1", "nproc=1",
       "fix=d_min=2.5 n_atoms=8"])
  saved = json.load(open("p2a_compare.json"))
  assert saved["settings"]["suite"] == "molecules"
  assert saved["p2a_untrained"]["cases"] == 1 and saved["p2a_untrained"]["crashed"] == 0
  row, = saved["rows"]  # every case is kept in the JSON
  assert row["method"] == "p2a_untrained" and row["n_atoms"] == row["n_reference"] == 8
  assert "atom_count_right" in saved["p2a_untrained"]
  params = compare.synthetic_params("molecules", {"n_atoms": 8, "d_min": 2.5})
  assert params.molecule_source == "molecules" and list(params.n_atoms) == [8, 8]


def test_p2a_phil_reaches_every_route_of_compare(tmp_cwd):
  """p2a's own PHIL (here the verdict's success.r1_max) is applied to p2a in
  a synthetic suite and on a user's file, so an ablation is one argument:
  with R1 allowed no higher than 0, nothing is claimed solved."""
  for args in (["suite=paper", "methods=p2a", "cases=1", "nproc=1"],
               [EXAMPLE + ".mtz", "reference=%s.pdb" % EXAMPLE, "methods=p2a"]):
    claimed = {}
    for r1_max in (0.25, 0.0):
      report = run(args + ["success.r1_max=%s" % r1_max, "output.overwrite=True"])
      claimed[r1_max] = [row["claimed_solved"] for row in report["rows"]]
    assert claimed == {0.25: [True], 0.0: [False]}, (args, claimed)


def test_summary_says_where_heavy_atoms_land_in_solved_cases():
  """The molecules issue's atom-type target: of the solved cases' P/S/Cl/
  Br/I/metal atoms, the share placed on their site with their element.
  Unsolved cases and cases without a heavy atom do not count."""
  base = dict(method="p2a", mean_error_A=0.1, time_s=1.0, n_reference=10, r1=0.05)
  rows = [dict(base, solved=True, n_matched=10, heavy_reference=2, heavy_right=2),
          dict(base, solved=True, n_matched=10, heavy_reference=1, heavy_right=0),
          dict(base, solved=False, n_matched=4, heavy_reference=3, heavy_right=0),
          dict(base, solved=True, n_matched=10, heavy_reference=0, heavy_right=0)]
  out = compare.summarise(rows)
  assert out["solved_with_heavy_atoms"] == 2
  assert abs(out["heavy_atoms_right_when_solved"] - 2 / 3) < 1e-12
  assert "heavy_atoms_right_when_solved" not in compare.summarise(rows[2:])


def test_kept_rows_survive_a_kill_and_are_reused_only_under_the_same_settings(tmp_cwd):
  """Each finished case goes to p2a_compare.rows.jsonl as it finishes; a rerun
  reuses them (here: one row cut short by a kill runs again) and runs only
  the rest; a rows file of another seed is refused, not mixed in, and
  replaced only with output.overwrite=True."""
  run(["methods=network", "cases=2", "nproc=1", "seed=3"])
  first = json.load(open("p2a_compare.json"))["network"]
  lines = open("p2a_compare.rows.jsonl").read().splitlines()
  assert len(lines) == 3 and "fingerprint" in json.loads(lines[0])
  with open("p2a_compare.rows.jsonl", "w") as f:   # the second case killed half-written
    f.write("\n".join(lines[:2] + [lines[2][:20]]) + "\n")
  os.remove("p2a_compare.json")
  run(["methods=network", "cases=3", "nproc=1", "seed=3"])
  grown = json.load(open("p2a_compare.json"))["network"]
  rows = [json.loads(x) for x in open("p2a_compare.rows.jsonl").read().splitlines()[1:] if x.endswith("}")]
  assert sorted(r["case"] for r in rows) == [0, 1, 2] and grown["cases"] == 3
  assert grown["mean_error_A"] != first["mean_error_A"]
  os.remove("p2a_compare.json")
  with pytest.raises(Sorry, match="other settings"):
    run(["methods=network", "cases=3", "nproc=1", "seed=4"])
  run(["methods=network", "cases=1", "nproc=1", "seed=4", "output.overwrite=True"])   # replaced
  assert len(open("p2a_compare.rows.jsonl").read().splitlines()) == 2
