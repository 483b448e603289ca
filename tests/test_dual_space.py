"""Dual-space recycling from random atoms (cctbx_p2a.dual_space): it solves
an easy crystal on its own, its rounds stop where the PHIL says, and in
p2a.solve it takes over where charge flipping stops."""
import cctbx_p2a  # noqa: F401  (import order, see conftest)

import os

import numpy as np
import pytest
from libtbx.utils import Sorry

from cctbx_p2a import baselines, compare, dual_space, finishing, measured, phasing, phil
from test_baselines import check_solution, easy_case

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MEASURED = os.path.join(REPO, "..", "shared", "data", "measured")


def ds_params(**overrides):
  return phil.extract("baselines", **{"baselines.dual_space." + k: v for k, v in overrides.items()}).baselines


def test_solves_an_easy_centrosymmetric_crystal():
  xs, f_obs = easy_case(3, d_min=1.0, n_atoms=8, space_group="P21/c", unit_cell=(9, 10, 11, 90, 100, 90))
  result = dual_space.dual_space(f_obs, 8, seed=0, params=ds_params(n_trials=20, trials_per_round=10))
  check_solution(result, xs, f_obs, "dual_space")
  assert result.n_trials == 20 and "CC" in result.notes[0]


def test_tiny_data_give_a_map_and_no_crash():
  """17 reflections to 3 A: fewer strong E's than a map needs are topped up
  with the largest; cctbx's quasi-normalisation fails on such data."""
  _, f_obs = easy_case(1, d_min=3.0, n_atoms=4, space_group="P-1", unit_cell=(5, 6, 7, 90, 90, 90))
  e, strong = dual_space.strong_normalised(f_obs, 1.2)
  assert f_obs.size() == e.size() == strong.size() == 17
  result = dual_space.dual_space(f_obs, 4, params=ds_params(n_trials=2, cycles_per_trial=3))
  assert 1 <= result.xray_structure.scatterers().size() <= 4


def test_normalised_amplitudes_average_one_in_every_shell():
  _, f_obs = easy_case(2, d_min=0.9, n_atoms=10, space_group="P21/c", unit_cell=(9, 10, 11, 90, 100, 90))
  e = dual_space.normalised(f_obs).data().as_numpy_array()
  s = f_obs.d_star_sq().data().as_numpy_array()
  for half in (s < np.median(s), s >= np.median(s)):
    assert 0.85 < np.mean(e[half] ** 2) < 1.15


def test_same_seed_same_trials_and_another_seed_others():
  _, f_obs = easy_case(4, d_min=1.2, n_atoms=6, space_group="P-1", unit_cell=(7, 8, 9, 80, 85, 95))
  p = ds_params(cycles_per_trial=5).dual_space
  e_map = dual_space.EMap(dual_space.strong_normalised(f_obs, p.e_min)[1], p.resolution_factor, 1.0)
  first = [dual_space.run_trial(f_obs, e_map, 6, p, "C", s, 0) for s in (1, 1, 2)]
  assert list(first[0].xray_structure.sites_frac()) == list(first[1].xray_structure.sites_frac())
  assert list(first[0].xray_structure.sites_frac()) != list(first[2].xray_structure.sites_frac())


def test_rounds_yield_the_best_of_each_and_stop_at_the_limits():
  _, f_obs = easy_case(5, d_min=1.5, n_atoms=5, space_group="P-1", unit_cell=(7, 8, 9, 80, 85, 95))
  p = ds_params(cycles_per_trial=3, n_trials=7, trials_per_round=3, finish_per_round=2, processes=1).dual_space
  got = list(dual_space.best_of_rounds(f_obs, 5, p))
  # rounds of 3, 3 and 1 trials; two from each full round, one from the last
  assert [n for _, n, _ in got] == [3, 3, 6, 6, 7]
  assert got[0][0].cc >= got[1][0].cc and got[2][0].cc >= got[3][0].cc
  # a clock past max_seconds after the first trial: one trial, then stop
  ticks = iter([0.0, 0.0] + [1000.0] * 10)
  p = ds_params(cycles_per_trial=3, n_trials=50, max_seconds=10, processes=1).dual_space
  got = list(dual_space.best_of_rounds(f_obs, 5, p, clock=lambda: next(ticks)))
  assert [n for _, n, _ in got] == [1]


@pytest.mark.skipif(not os.path.isdir(os.path.join(MEASURED, "ylid_p212121")),
                    reason="shared/data/measured is not beside this checkout")
def test_solves_measured_data_cut_to_1p2_where_charge_flipping_fails():
  """The sulfur ylid (P2_12_12_1) cut to 1.2 A: charge flipping's start
  does not refine to a solution, the dual-space trials that follow do."""
  s = next(x for x in measured.find_sets(MEASURED) if x.name == "ylid_p212121")
  observed, reference = measured.load(s)
  f_obs = observed.f_obs.resolution_filter(d_min=1.2)
  params = phasing.default_params()
  params.solve.composition = compare.composition_of(reference)
  result = phasing.solve(f_obs, params=params)
  assert result.solved and result.start == "dual_space", result.notes
  assert result.as_json_dict()["start"] == "dual_space"
  assert "dual-space trial" in result.start_detail
  score = baselines.score_against_reference(reference, result.xray_structure)
  assert score["n_matched"] >= 0.9 * score["n_reference"], score
  assert str(result.xray_structure.space_group_info()) == "P 21 21 21"
  # charge flipping alone (start=charge_flipping) does not solve it
  params.solve.start = "charge_flipping"
  assert not phasing.solve(f_obs, params=params).solved


def test_trials_do_not_depend_on_the_number_of_processes():
  _, f_obs = easy_case(6, d_min=1.5, n_atoms=5, space_group="P21/c", unit_cell=(7, 8, 9, 90, 95, 90))
  got = {}
  for nproc in (1, 2):
    p = ds_params(cycles_per_trial=4, n_trials=6, trials_per_round=6, finish_per_round=6, processes=nproc).dual_space
    got[nproc] = [(t.index, round(t.cc, 6)) for t, _, _ in dual_space.best_of_rounds(f_obs, 5, p, seed=3)]
  assert got[1] == got[2] and len(got[1]) == 6


def test_trials_refine_u_iso_before_they_are_ranked_unless_told_not_to():
  """refine_u_iso: a trial's atoms get their own U_iso before its CC ranks
  it (wrong atoms' U_iso rise; docs/crystals.md), and keep the start's
  common U_iso without it."""
  _, f_obs = easy_case(4, d_min=1.5, n_atoms=6, space_group="P-1", unit_cell=(7, 8, 9, 80, 85, 95))
  got = {}
  for refine_u_iso in (True, False):
    p = ds_params(cycles_per_trial=5, refine_u_iso=refine_u_iso).dual_space
    e_map = dual_space.EMap(dual_space.strong_normalised(f_obs, p.e_min)[1], p.resolution_factor, 1.0)
    trial = dual_space.run_trial(f_obs, e_map, 6, p, "C", 1, 0)
    got[refine_u_iso] = {round(sc.u_iso, 6) for sc in trial.xray_structure.scatterers()}
  assert len(got[True]) > 1 and len(got[False]) == 1


def test_candidates_are_finished_side_by_side_with_the_same_results():
  """finish= runs on the trials' processes (a closure: the pool is forked)
  and gives what finishing them one by one in this process gives."""
  _, f_obs = easy_case(6, d_min=1.5, n_atoms=5, space_group="P21/c", unit_cell=(7, 8, 9, 90, 95, 90))
  calls = []

  def finish(xs):
    calls.append(1)  # counted in this process only
    return os.getpid(), round(finishing.r1_and_cc(f_obs, xs)[0], 6)

  got = {}
  for nproc in (1, 2):
    p = ds_params(cycles_per_trial=4, n_trials=6, trials_per_round=3, finish_per_round=2,
                  processes=nproc).dual_space
    got[nproc] = [(t.index, r1) for t, _, (pid, r1) in dual_space.best_of_rounds(f_obs, 5, p, seed=3,
                                                                                 finish=finish)]
  assert got[1] == got[2] and len(got[1]) == 4
  assert len(calls) == 4  # with 2 processes none ran here


@pytest.mark.parametrize("space_group", ["P212121", "C2/c", "R-3c:H"])
def test_e_map_phases_are_those_of_cctbx_structure_factors(space_group):
  """The numpy phases of equal atoms (EMap.phases) agree with cctbx's direct
  summation, lattice centring and screw/glide translations included."""
  cells = {"P212121": (7, 9, 11, 90, 90, 90), "C2/c": (15, 8, 12, 90, 105, 90),
           "R-3c:H": (10, 10, 25, 90, 90, 120)}
  xs, f_obs = easy_case(7, d_min=1.5, n_atoms=4, space_group=space_group, unit_cell=cells[space_group])
  e_map = dual_space.EMap(f_obs, resolution_factor=0.3, min_distance=1.0)
  f_calc = f_obs.structure_factors_from_scatterers(xs, algorithm="direct").f_calc()
  strong = np.abs(f_calc.data().as_numpy_array()) > 0.1 * f_obs.data().as_numpy_array().max()
  phase = np.angle(f_calc.data().as_numpy_array())
  diff = np.angle(np.exp(1j * (e_map.phases(np.array(xs.sites_frac())) - phase)))
  assert strong.sum() > 20 and np.abs(diff[strong]).max() < 1e-6
  peaks = e_map.peaks(np.array(xs.sites_frac()), 4)[0]  # the map of true phases peaks at the atoms
  from cctbx_p2a import finishing
  found = finishing.structure_of_sites(f_obs.crystal_symmetry(), peaks)
  assert baselines.score_against_reference(xs, found)["solved"]


def test_a_trial_stops_at_the_deadline():
  """Hundreds of atoms (a large cell without a composition) make one trial
  take minutes: trials check the wall clock every cycle."""
  import time
  _, f_obs = easy_case(8, d_min=1.5, n_atoms=6, space_group="P21/c", unit_cell=(9, 10, 11, 90, 95, 90))
  p = ds_params(cycles_per_trial=1000, processes=1).dual_space
  e_map = dual_space.EMap(dual_space.strong_normalised(f_obs, 1.2)[1], 0.3, 1.0)
  t0 = time.time()
  assert dual_space.run_trial(f_obs, e_map, 6, p, "C", 0, 0, deadline=t0 + 0.5) is None
  assert time.time() - t0 < 5
  result = dual_space.dual_space(f_obs, 6, params=ds_params(cycles_per_trial=1000, max_seconds=0.5))
  assert result.n_trials == 0 and result.xray_structure.scatterers().size() == 0
  assert "no trial finished" in result.notes[0]


def test_an_atom_on_a_special_position_is_counted_once():
  """A peak on a four-fold axis is one atom, not four: counted once per
  operation it scatters four-fold and traps the trial on the axis."""
  _, f_obs = easy_case(9, d_min=1.2, n_atoms=4, space_group="P4", unit_cell=(10, 10, 10, 90, 90, 90))
  e_map = dual_space.EMap(f_obs, resolution_factor=0.3, min_distance=1.0)
  weights = e_map.site_weights(np.array([[0, 0, 0.3], [0.5, 0.5, 0.1], [0.5, 0, 0.2], [0.2, 0.3, 0.4],
                                         [0.02, 0.01, 0.7]]))
  assert list(weights) == [0.25, 0.25, 0.5, 1.0, 0.25]  # 4, 4, 2 (two-fold at 1/2,0,z), 1; 0.22 A off the axis


def test_trials_solve_an_exact_crystal_with_rotation_axes():
  """Measured with every site counted once per operation: 0 of 10 trials
  of this P4 crystal solved, P4_1 (screw axes only) 6 of 10."""
  xs, f_obs = easy_case(1, d_min=0.8, n_atoms=8, space_group="P4", unit_cell=(12, 12, 12, 90, 90, 90))
  p = ds_params().dual_space
  e_map, seeds = dual_space.trial_setup(f_obs, p)
  solved = [baselines.score_against_reference(
    xs, dual_space.run_trial(f_obs, e_map, 8, p, "C", 0, i).xray_structure)["solved"] for i in range(6)]
  assert sum(solved) >= 3, solved


def test_patterson_seeds_place_pairs_of_right_atoms():
  """Two atoms one Patterson vector apart, placed by their symmetry
  vectors: both right (origin shifts and hand allowed) far more often than
  two random sites (measured on this case: 5 of 20 against 0)."""
  from cctbx_p2a import finishing
  xs, f_obs = easy_case(4, d_min=1.2, n_atoms=8, space_group="P21/c", unit_cell=(9, 10, 11, 90, 100, 90))
  p = ds_params(seeding="patterson").dual_space
  e_map, seeds = dual_space.trial_setup(f_obs, p)
  assert 1 <= len(seeds.vectors) <= p.patterson_vectors
  lengths = [f_obs.unit_cell().length(tuple(v)) for v in seeds.vectors]
  assert min(lengths) >= p.min_vector and max(lengths) <= p.max_vector

  def n_right(sites):
    return baselines.score_against_reference(
      xs, finishing.structure_of_sites(f_obs.crystal_symmetry(), sites))["n_matched"]
  pairs = [n_right(seeds.seed_pair(np.random.default_rng([0, i]))) for i in range(20)]
  randoms = [n_right(np.random.default_rng([1, i]).uniform(0, 1, (2, 3))) for i in range(20)]
  assert pairs.count(2) >= 3 and randoms.count(2) <= 1, (pairs, randoms)
  # the minimum function of a pair gives the trial's first sites
  assert len(seeds.sites(np.random.default_rng(0), 8)) == 8


def test_patterson_seeded_trials_solve_an_easy_crystal():
  xs, f_obs = easy_case(3, d_min=1.0, n_atoms=8, space_group="P21/c", unit_cell=(9, 10, 11, 90, 100, 90))
  result = dual_space.dual_space(f_obs, 8, seed=0, params=ds_params(n_trials=20, trials_per_round=10,
                                                                    seeding="patterson"))
  check_solution(result, xs, f_obs, "dual_space")


def test_the_log_says_when_the_time_budget_ended_the_search():
  """max_seconds is wall time: the same data on a loaded machine run fewer
  trials, and the log says so."""
  from cctbx.array_family import flex
  _, f_obs = easy_case(10, d_min=1.5, n_atoms=6, space_group="P21/c", unit_cell=(8, 9, 10, 90, 100, 90))
  noise = f_obs.customized_copy(data=flex.double(np.abs(np.random.RandomState(0).normal(size=f_obs.size())))
                                 ).set_observation_type_xray_amplitude()
  params = phasing.default_params()
  params.solve.start = "dual_space"
  params.solve.composition = "C6"
  params.baselines.dual_space.max_seconds = 1
  params.baselines.dual_space.processes = 1
  result = phasing.solve(noise, params=params)
  assert not result.solved
  assert any("ended the search" in n and "max_seconds=1" in n for n in result.notes), result.notes
  # a budget spent before the first trial finished: a Sorry that says what
  # to change, not a traceback
  params.baselines.dual_space.max_seconds = 0
  with pytest.raises(Sorry, match="max_seconds"):
    phasing.solve(noise, params=params)


def test_the_trial_budget_decides_the_result():
  """The search's budget is n_trials, not the clock (max_seconds is a safety
  net): the same data and seed run the same trials and give the same
  structure, and the notes say the whole budget ran."""
  from cctbx.array_family import flex
  _, f_obs = easy_case(10, d_min=1.5, n_atoms=6, space_group="P21/c", unit_cell=(8, 9, 10, 90, 100, 90))
  noise = f_obs.customized_copy(data=flex.double(np.abs(np.random.RandomState(1).normal(size=f_obs.size())))
                                 ).set_observation_type_xray_amplitude()
  params = phasing.default_params()
  assert params.baselines.dual_space.max_seconds >= 300  # a net that ordinary solves never reach
  params.solve.start = "dual_space"
  params.solve.composition = "C6"
  params.baselines.dual_space.n_trials = 10
  params.baselines.dual_space.trials_per_round = 5
  params.baselines.dual_space.cycles_per_trial = 5
  params.baselines.dual_space.processes = 1
  first, second = phasing.solve(noise, params=params), phasing.solve(noise, params=params)
  assert any(n == "dual-space: 10 trials run" for n in first.notes), first.notes
  assert first.start_detail == second.start_detail
  assert np.allclose(first.xray_structure.sites_frac().as_numpy_array(),
                     second.xray_structure.sites_frac().as_numpy_array())
