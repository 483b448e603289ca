"""cctbx_p2a.solve from a script: parameters as keywords, spelt as on the
command line (short names), with '__' for dots, or as full dotted names."""
import os

import pytest
from libtbx.utils import Sorry

import cctbx_p2a
from cctbx_p2a import phasing, phil, reflections

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def f_obs():
  return reflections.read(os.path.join(REPO, "examples", "paper_case.mtz")).f_obs


def sites_of(result):
  return sorted((sc.scattering_type, tuple(round(x, 4) for x in sc.site))
                for sc in result.xray_structure.scatterers())


def test_the_three_spellings_of_an_override_give_the_same_solve(f_obs):
  short = cctbx_p2a.solve(f_obs, composition="C10", model="paper")
  dunder = cctbx_p2a.solve(f_obs, solve__composition="C10", solve__model="paper")
  dotted = cctbx_p2a.solve(f_obs, **{"solve.composition": "C10", "solve.model": "paper"})
  for r in (short, dunder, dotted):
    assert r.model_name == "paper"          # model="paper" is the PHIL solve.model
    assert r.n_sites_source == "composition"
    assert r.n_sites == 10
    assert r.solved
  assert sites_of(short) == sites_of(dunder) == sites_of(dotted)


def test_model_object_and_params_with_keywords(f_obs):
  params = phasing.default_params()
  params.solve.model = "paper"
  r = cctbx_p2a.solve(f_obs, params=params, model=cctbx_p2a.load_model("paper"),
                      composition="C10")
  assert r.model_name == "paper" and r.n_sites_source == "composition"
  assert params.solve.composition is None  # the caller's params are not changed


def test_short_names_resolve_against_solve_and_reflections():
  master = phil.master_phil("solve", "reflections")
  assert phil.resolve_names(master, {"composition": "C6", "labels": "FP", "refinement__cycles": 3,
                                     "sites.peak_threshold": 0.2}) == {
    "solve.composition": "C6", "reflections.labels": "FP", "refinement.cycles": 3,
    "sites.peak_threshold": 0.2}
  p = phil.extract("solve", "reflections", composition="C6N2O2", force=True, labels=["I", "SIGI"])
  assert (p.solve.composition, p.solve.force, p.reflections.labels) == ("C6N2O2", True, ["I", "SIGI"])


def test_ambiguous_unknown_and_repeated_names_are_one_sorry(f_obs):
  with pytest.raises(Sorry) as e:
    cctbx_p2a.solve(f_obs, max_reflections=100, compositon="C10")
  text = str(e.value)
  assert "sites.max_reflections" in text and "refinement.max_reflections" in text
  assert "did you mean solve.composition" in text
  with pytest.raises(Sorry, match="both set solve.composition"):
    cctbx_p2a.solve(f_obs, composition="C10", solve__composition="C9")
  with pytest.raises(Sorry, match="both set solve.model"):
    cctbx_p2a.solve(f_obs, model="paper", solve__model="realistic")
  with pytest.raises(Sorry, match="not a parameter"):
    phil.extract("synthetic", bogus_name=1)


def test_values_are_checked_as_on_the_command_line(f_obs):
  with pytest.raises(Sorry):
    cctbx_p2a.solve(f_obs, force="perhaps")  # not a bool
