"""Crystals end to end: data in a space group are phased in that space group,
and the structure comes back as its asymmetric unit, in files that read back
with the same symmetry.  Real data first (thpp from cctbx, one published set
from shared/data/measured), then a real molecule packed in each of the common
small-molecule space groups."""
import json
import os

import gemmi
import numpy as np
import pytest
from cctbx import crystal, sgtbx, xray
from cctbx.array_family import flex
from iotbx.cli_parser import run_program

from cctbx_p2a import baselines, compare, files, finishing, measured, phasing, synthetic
from cctbx_p2a.programs import common, solve

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MEASURED = os.path.join(REPO, "..", "shared", "data", "measured")


def run_solve(args):
  return run_program(program_class=solve.Program, args=common.file_arguments_as_phil(args),
                     logger=open(os.devnull, "w"))


def fraction_placed(reference, found, tolerance=0.5):
  score = baselines.score_against_reference(reference, found, tolerance=tolerance)
  return score["n_matched"] / score["n_reference"], score


def moved_away(reference, crystal_symmetry, indices, rng, distance=2.0):
  """The reference's fractional sites with those at `indices` moved, one
  after another, to random spots at least `distance` A from every other
  atom: a half-wrong model to finish."""
  sites = np.array(reference.sites_frac())
  for i in indices:
    others = finishing.structure_of_sites(crystal_symmetry, np.delete(sites, i, 0))
    while True:
      sites[i] = rng.uniform(0, 1, 3)
      if finishing.distances_to_structure(others, [tuple(sites[i])], distance)[0] >= distance:
        break
  return sites


def test_thpp_from_shelx_files_solves_in_its_space_group(tmp_cwd):
  """cctbx's thpp: unmerged HKLF 4 + .ins (composition from SFAC/UNIT / Z,
  nothing typed by the user), P2_1/n, 0.70 A, with disorder."""
  thpp = measured.thpp_set()
  result = run_solve([thpp.data, os.path.splitext(thpp.data)[0] + ".ins", "output.prefix=thpp"])
  summary = json.load(open("thpp.json"))
  assert summary["solved"] and result.solved
  assert summary["start"] == "charge_flipping" and summary["space_group"] == "P 1 21/n 1"
  assert any("UNIT / Z" in n for n in summary["notes"]), summary["notes"]
  reference = measured.reference_sites(files.read_structure(thpp.reference))
  fraction, score = fraction_placed(reference, result.xray_structure)
  assert fraction >= 0.9, score
  # F (the heaviest element here) on both F sites; C/N share a disordered site
  assert score["elements_right"] >= 0.8, score
  is_f = lambda xs: xs.select(xs.scatterers().extract_scattering_types() == "F")
  assert baselines.score_against_reference(is_f(reference), is_f(result.xray_structure))["n_matched"] == 2
  for name in ("thpp.res", "thpp.cif", "thpp.pdb"):
    xs = files.read_structure(name)
    assert xs.space_group_info().type().number() == 14, name


@pytest.mark.skipif(not os.path.isdir(os.path.join(MEASURED, "ylid_p212121")),
                    reason="shared/data/measured is not beside this checkout")
def test_published_measured_set_solves():
  """The sulfur ylid (P2_12_12_1, Mo, 0.73 A): solved from the merged MTZ
  with its composition, the S on the S site."""
  s = next(x for x in measured.find_sets(MEASURED) if x.name == "ylid_p212121")
  observed, reference = measured.load(s)
  params = phasing.default_params()
  params.solve.composition = "C11O2S"
  result = phasing.solve(observed, params=params)
  assert result.solved and str(result.xray_structure.space_group_info()) == "P 21 21 21"
  fraction, score = fraction_placed(reference, result.xray_structure)
  assert fraction >= 0.9, score
  sulfur = [sc for sc in result.xray_structure.scatterers() if sc.scattering_type == "S"]
  ref_s = reference.select(reference.scatterers().extract_scattering_types() == "S")
  assert len(sulfur) == 1
  assert finishing.distances_to_structure(ref_s, [sulfur[0].site], 3.0)[0] < 3.0
  assert baselines.score_against_reference(ref_s, result.xray_structure.select(
    result.xray_structure.scatterers().extract_scattering_types() == "S"))["n_matched"] == 1


def test_wrong_atoms_are_not_called_solved_and_are_rebuilt():
  """thpp at 1.2 A with three of its 16 atoms moved 2+ A from every atom:
  refinement smears them out, the verdict names them, and the rebuild
  (drop, difference-map peaks elsewhere, refine) puts all 16 right."""
  observed, reference = measured.load(measured.thpp_set())
  f_obs = observed.f_obs.resolution_filter(d_min=1.2)
  params = phasing.default_params()
  sites = moved_away(reference, f_obs.crystal_symmetry(), (2, 7, 11), np.random.default_rng(5))
  xs = finishing.structure_of_sites(f_obs.crystal_symmetry(), sites, u_iso=0.03)
  for moved, published in zip(xs.scatterers(), reference.scatterers()):
    moved.scattering_type = published.scattering_type
  finishing.refine_with_params(xs, f_obs, params)
  fit = finishing.r1_and_cc(f_obs, xs)
  assert fraction_placed(reference, xs)[0] < 0.9
  suspect = finishing.suspect_atoms(xs, params.success)
  assert 1 <= suspect.sum() <= 3
  explained, reasons = phasing.verdict(xs, fit[0], fit[1], f_obs, params)
  assert not explained and any("the data do not see" in r for r in reasons), reasons
  rebuilt, fit, note = finishing.rebuild_suspect_atoms(xs, fit, f_obs, 16, "C", params)
  assert note and fraction_placed(reference, rebuilt)[0] == 1.0, note
  assert phasing.verdict(rebuilt, fit[0], fit[1], f_obs, params, n_expected=16) == (True, [])
  # one atom short of the composition is incomplete, however well it fits
  short = rebuilt.select(flex.size_t(range(15)))
  explained, reasons = phasing.verdict(short, fit[0], fit[1], f_obs, params, n_expected=16)
  assert not explained and reasons == [
    "15 of the composition's 16 non-H atoms placed: an incomplete structure (success.max_atoms_missing=0)"]


def test_rebuild_can_refill_a_site_it_dropped_earlier():
  """thpp at 1.2 A, every atom right but one smeared to U_iso 0.45: it is
  dropped as suspect, and its site is the difference map's strongest peak.
  Banned from refilling for good (the tabu as long as the rounds), the
  rebuild never fills it; banned for 3 rounds it comes back, 16 of 16."""
  observed, reference = measured.load(measured.thpp_set())
  f_obs = observed.f_obs.resolution_filter(d_min=1.2)
  params = phasing.default_params()
  xs = finishing.structure_of_sites(f_obs.crystal_symmetry(), reference.sites_frac(), u_iso=0.03)
  for sc, published in zip(xs.scatterers(), reference.scatterers()):
    sc.scattering_type = published.scattering_type
  xs.scatterers()[4].u_iso = 0.45
  fit = finishing.r1_and_cc(f_obs, xs)
  assert finishing.suspect_atoms(xs, params.success).nonzero()[0].tolist() == [4]
  assert params.refinement.rebuild_tabu_rounds == 3
  rebuilt, _, note = finishing.rebuild_suspect_atoms(xs.deep_copy_scatterers(), fit, f_obs, 16, "C", params)
  assert note and fraction_placed(reference, rebuilt)[0] == 1.0, note
  params.refinement.rebuild_tabu_rounds = params.refinement.rebuild_rounds
  _, _, note = finishing.rebuild_suspect_atoms(xs.deep_copy_scatterers(), fit, f_obs, 16, "C", params)
  assert note is None


@pytest.mark.parametrize("gains, expected_rounds", [
  ([0.01] * 4, 4),        # every round lowers R1: on past rebuild_rounds, until no suspect is left
  ([0.0] * 9, 2),         # no round helps: stop after rebuild_rounds (2) in a row
  ([0.01, 0.0, 0.0, 0.01, 0.0, 0.0, 0.0, 0.0, 0.0], 3),  # a gain must come within 2 rounds
  ([0.01] * 30, 5)])      # never more than rebuild_max_rounds (5)
def test_rebuild_goes_on_while_it_improves(monkeypatch, gains, expected_rounds):
  """How long the rebuild runs, with its map work stubbed out: a round that
  lowers R1 earns more rounds.  Found on the ylid at 1.5 A (solve.seed=7):
  its best trial went from 10 to 13 of 14 atoms right in 6 rounds, each
  lowering R1, and was cut off there (NOT SOLVED, an atom at U_iso 0.5); a
  7th round completed it (14/14, R1 0.062, solved)."""
  cs = crystal.symmetry(unit_cell=(10, 10, 10, 90, 90, 90), space_group_symbol="P 1")
  xs = finishing.structure_of_sites(cs, [(0.1, 0.1, 0.1), (0.3, 0.3, 0.3), (0.5, 0.5, 0.5)])
  params = phasing.default_params()
  params.refinement.rebuild_rounds, params.refinement.rebuild_max_rounds = 2, 5
  gains = list(gains)
  r1 = [0.3]
  def fit(f_obs, structure):
    r1[0] -= gains.pop(0) if gains else 0.0
    return (r1[0], 0.9, None)
  def suspect(structure, success_params, elements_known=True):
    return np.array([bool(gains)] + [False] * (structure.scatterers().size() - 1))
  rounds = []
  def complete(structure, *args, **kwargs):  # put the dropped atom back
    rounds.append(1)
    present = {tuple(round(x, 6) for x in sc.site) for sc in structure.scatterers()}
    structure.add_scatterer([sc for sc in xs.scatterers() if tuple(round(x, 6) for x in sc.site)
                             not in present][0])
    return structure, 1
  monkeypatch.setattr(finishing, "suspect_atoms", suspect)
  monkeypatch.setattr(finishing, "r1_and_cc", fit)
  monkeypatch.setattr(finishing, "refine_with_params", lambda *a, **k: None)
  monkeypatch.setattr(finishing, "complete", complete)
  monkeypatch.setattr(finishing, "drop_overlapping_atoms", lambda structure: (structure, 0))
  f_obs = xs.structure_factors(d_min=2.0, algorithm="direct").f_calc().amplitudes()
  _, _, note = finishing.rebuild_suspect_atoms(xs, (0.3, 0.9, None), f_obs, 3, "C", params)
  assert len(rounds) == expected_rounds, note


def test_expansion_pulls_a_half_right_model_towards_the_structure():
  """thpp cut to 1.5 A with 6 of its 16 atoms moved 2+ A from every atom
  (three draws): the finishing without expansion refines such a start into
  3-7 right atoms, R1 0.36-0.38; partial-structure expansion (drop the
  weakest quarter, refill from the difference map, keep the lowest R1)
  brings each to 12-14 right, R1 0.18-0.26 (measured)."""
  observed, reference = measured.load(measured.thpp_set())
  f_obs = observed.f_obs.resolution_filter(d_min=1.5)
  params = phasing.default_params()
  sites_of = {"C": 10, "N": 4, "F": 2}
  right = {True: [], False: []}
  for seed in (2, 3, 4):
    rng = np.random.default_rng(seed)
    sites = moved_away(reference, f_obs.crystal_symmetry(), rng.choice(16, 6, replace=False), rng)
    start = finishing.structure_of_sites(f_obs.crystal_symmetry(), sites, u_iso=0.03)
    for expand in (True, False):
      params.refinement.expand_rounds = 3 if expand else 0
      done = finishing.finish(start.deep_copy_scatterers(), f_obs, params, 16, composition=sites_of)
      right[expand].append(fraction_placed(reference, done.xray_structure)[1]["n_matched"])
      assert any("partial-structure expansion" in step for step in done.steps) == expand, done.steps
  assert sum(right[True]) >= 30 and sum(right[False]) <= 24, right


def test_fill_missing_atoms_restores_a_bonded_atom_and_refuses_a_ripple():
  """thpp at 1.5 A, published sites refined, one ring atom bonded to two
  others removed: fill_missing_atoms puts it back (within 0.3 A), R1 falls.
  With the model already complete and one atom too many asked for, the
  strongest difference peak is a ripple and the R1 gain rule refuses it."""
  observed, reference = measured.load(measured.thpp_set())
  params = phasing.default_params()
  f_obs, right = measured.refined_published(observed, reference, 1.5, params)
  sites_of = {"C": 10, "N": 4, "F": 2}
  cart = np.array(right.sites_cart())
  d = np.linalg.norm(cart[:, None] - cart[None], axis=2)
  bonded_twice = [i for i in range(len(cart)) if np.sum((d[i] > 0.5) & (d[i] < 1.6)) >= 2
                  and right.scatterers()[i].scattering_type == "C"]
  gone = bonded_twice[0]
  short = right.select(flex.size_t([i for i in range(len(cart)) if i != gone]))
  fit = finishing.r1_and_cc(f_obs, short)

  def retype(xs, fit):
    return finishing.assign_elements(xs, f_obs, sites_of, params, fit)

  filled, filled_fit, note = finishing.fill_missing_atoms(short, fit, f_obs, 16, "C", params, retype)
  assert note and filled.scatterers().size() == 16, note
  assert filled_fit[0] < fit[0] - 0.02, (fit[0], filled_fit[0])
  assert finishing.distances_to_structure(filled, [right.scatterers()[gone].site], 1.0)[0] < 0.3
  params.refinement.fill_missing = False
  assert finishing.fill_missing_atoms(short, fit, f_obs, 16, "C", params, retype)[2] is None
  params.refinement.fill_missing = True
  complete_fit = finishing.r1_and_cc(f_obs, right)
  same, same_fit, note = finishing.fill_missing_atoms(right, complete_fit, f_obs, 17, "C", params, retype)
  assert note is None and same is right and same_fit[0] == complete_fit[0]


def test_difference_completion_places_a_nitrile_nitrogen():
  """A C#N bond is 1.15 A: the difference-map completion of the rebuild
  must place an atom that close (finishing.SHORTEST_BOND), which the F_obs
  map's 1.2 A rule would refuse (a Fdd2 crystal kept 32 of 33 atoms)."""
  cs = crystal.symmetry(unit_cell=(9, 10, 11, 90, 100, 90), space_group_symbol="P 1 21/c 1")
  cart = np.array([[1.0, 1.0, 1.0], [2.5, 1.2, 1.1], [3.1, 2.5, 1.3], [4.6, 2.6, 1.4], [5.75, 2.65, 1.45]])
  frac = np.array(cs.unit_cell().fractionalize(flex.vec3_double(cart.tolist())))
  truth = finishing.structure_of_sites(cs, frac, u_iso=0.03)
  truth.scatterers()[4].scattering_type = "N"
  f_obs = truth.structure_factors(d_min=0.8, algorithm="direct").f_calc().amplitudes()
  without_n = truth.select(flex.size_t(range(4)))
  for min_distance, placed in ((finishing.SHORTEST_BOND, True), (1.2, False)):
    done, added = finishing.complete(without_n.deep_copy_scatterers(), f_obs, 5, difference=True,
                                     min_distance=min_distance)
    new = done.select(flex.size_t(range(4, done.scatterers().size())))
    at_n = finishing.distances_to_structure(new, [truth.scatterers()[4].site], 1.0)[0] < 0.2
    assert at_n == placed, (min_distance, added)


def test_impossible_contacts_in_the_verdict():
  """Right structures have no contact between main-group atoms that is too
  long for a bond and too short for anything else (thpp here; all measured
  sets at 0.7-2.0 A: benchmarks/chemistry_of_right_structures.py); moving
  one thpp atom to 1.85 A from its bonded neighbour makes one, and the
  verdict says so.  Metal-ligand distances are exempt."""
  observed, reference = measured.load(measured.thpp_set())
  f_obs = observed.f_obs
  params = phasing.default_params()
  xs = reference.deep_copy_scatterers()
  assert finishing.impossible_contacts(xs) == []
  uc = xs.unit_cell()
  i, (d, j) = next((i, nn) for i, nn in enumerate(finishing.nearest_neighbours(xs))
                   if xs.scatterers()[i].scattering_type == "C" and
                   xs.scatterers()[nn[1]].scattering_type == "C")
  a, b = np.array(uc.orthogonalize(xs.scatterers()[j].site)), np.array(uc.orthogonalize(xs.scatterers()[i].site))
  if np.linalg.norm(b - a) > 2.5:   # the neighbour is a symmetry copy: pick the copy nearby
    pytest.skip("nearest neighbour across symmetry")
  moved = a + (b - a) / np.linalg.norm(b - a) * 1.85
  xs.scatterers()[i].site = uc.fractionalize(tuple(moved))
  bad = finishing.impossible_contacts(xs)
  assert any({p, q} == {i, j} and abs(dist - 1.85) < 1e-6 for p, q, dist, _ in bad), bad
  explained, reasons = phasing.verdict(xs, 0.1, 0.95, f_obs, params)
  assert not explained and any("no molecule has" in r for r in reasons), reasons
  # below atomic resolution bonds come out longer: at 1.5 A the window
  # starts at the radii sum +0.35 A (a right ylid had C-O 1.65 A there)
  at_15 = finishing.contact_tolerances(1.5)
  assert at_15["above"] == pytest.approx(0.35) and finishing.contact_tolerances(0.8)["above"] == 0.20
  assert not any({p, q} == {i, j} for p, q, _, _ in finishing.impossible_contacts(xs, **at_15))
  # the same distance between a metal, or an iodine, and a carbon is not judged
  for element in ("Fe", "I"):
    xs.scatterers()[j].scattering_type = element
    assert not any({p, q} == {i, j} for p, q, _, _ in finishing.impossible_contacts(xs))


def test_a_model_without_the_compositions_elements_is_not_solved():
  """thpp's published model with its N typed C: at 1.5 A or better the
  verdict refuses it (a wrong light atom beside a heavy one left a bromide
  C5Br for C4NBr, R1 0.042); at 2.0 A, where right structures' typing is
  refused too, the rule is silent; the right elements pass."""
  observed, reference = measured.load(measured.thpp_set())
  params = phasing.default_params()
  composition = finishing.composition_counts(reference)
  xs = reference.deep_copy_scatterers()
  assert finishing.elements_differ(xs, composition) is None
  n = next(sc for sc in xs.scatterers() if sc.scattering_type == "N")
  n.scattering_type = "C"
  assert finishing.elements_differ(xs, composition) == ("F2 N3 C11", "F2 N4 C10")
  # a model short of a site is judged by the atom count rule, not this one
  assert finishing.elements_differ(xs.select(flex.size_t(range(15))), composition) is None
  for d_min, refused in ((1.5, True), (2.0, False)):
    f_obs = observed.f_obs.resolution_filter(d_min=d_min)
    reasons = phasing.verdict(xs, 0.1, 0.95, f_obs, params, composition=composition)[1]
    assert any("where the composition says F2 N4 C10" in r for r in reasons) == refused, reasons
  params.success.composition_elements_d_min = None
  reasons = phasing.verdict(xs, 0.1, 0.95, observed.f_obs, params, composition=composition)[1]
  assert not any("composition says" in r for r in reasons)


@pytest.mark.parametrize("seed", [0, 3])
def test_a_typed_model_with_an_iodine_keeps_the_compositions_elements(seed):
  """Right sites with I typed and one N typed C (difference-map moves bring
  atoms back as the main element): refined as all-C, the iodine smears and
  drags the rest (R1 0.36-0.56), and typing from there was refused (R1
  0.08-0.21 against 0.016), which left a right crystal in P4_1 outside the
  elements rule.  Ranked by its own map, it is typed right."""
  from cctbx import xray
  from test_baselines import easy_case
  xs, _ = easy_case(seed, d_min=1.0, n_atoms=12, space_group="P21/c", unit_cell=(9, 10, 11, 90, 100, 90))
  truth = xs.scatterers().deep_copy()
  truth[0].scattering_type, truth[1].scattering_type = "I", "N"
  truth = xray.structure(crystal_symmetry=xs.crystal_symmetry(), scatterers=truth)
  f_obs = truth.structure_factors(d_min=1.0, algorithm="direct").f_calc().amplitudes()
  model = truth.scatterers().deep_copy()
  model[1].scattering_type = "C"
  model = xray.structure(crystal_symmetry=xs.crystal_symmetry(), scatterers=model)
  params = phasing.default_params()
  typed, fit, note = finishing.assign_elements(model, f_obs, {"I": 1, "N": 1, "C": 10}, params)
  assert "elements from the composition" in note and fit[0] < 0.01, note
  assert [sc.scattering_type for sc in typed.scatterers()][:2] == ["I", "N"]


def test_u_iso_outliers_need_both_the_ratio_and_the_floor():
  params = phasing.default_params()
  cs = crystal.symmetry(unit_cell=(20, 20, 20, 90, 90, 90), space_group_symbol="P 1")
  xs = finishing.structure_of_sites(cs, np.random.default_rng(0).uniform(0, 1, (11, 3)))
  def suspects(u_values, elements_known=True):
    for sc, u in zip(xs.scatterers(), u_values):
      sc.u_iso = u
    return finishing.suspect_atoms(xs, params.success, elements_known).nonzero()[0].tolist()
  assert suspects([0.03] * 10 + [0.2]) == [10]  # 6.7x the median
  assert suspects([0.03] * 10 + [0.2], elements_known=False) == []  # U_iso absorbs the element
  assert suspects([0.03] * 10 + [0.35], elements_known=False) == [10]
  assert suspects([0.03] * 10 + [0.1]) == []    # 3.3x: a real atom can be that
  assert suspects([0.01] * 10 + [0.12]) == []   # 12x, but under the 0.15 floor (2 A data)
  assert suspects([0.08] * 10 + [0.31]) == [10]  # 3.9x, but above max_u_iso


def thpp_molecule_cartesian():
  """Non-H sites of thpp (one per disordered site), Cartesian, centred."""
  ref = measured.reference_sites(files.read_structure(measured.thpp_set().reference))
  sites = np.array(ref.sites_cart())
  return sites - sites.mean(axis=0), list(ref.scatterers().extract_scattering_types())


def contacts_with_copies(xs, cutoff):
  """Atom pairs closer than cutoff A that involve a symmetry copy."""
  pairs = crystal.pair_asu_table(xs.asu_mappings(buffer_thickness=cutoff))
  pairs.add_all_pairs(distance_cutoff=cutoff)
  return [(i, j) for i, row in enumerate(pairs.extract_pair_sym_table())
          for j, ops in row.items() for op in ops if op.as_xyz() != "x,y,z"]


def packed(space_group_symbol, sites_cart, elements):
  """The molecule as the asymmetric unit of a crystal in the space group, in
  a cell large enough that no symmetry copy comes within 3 A of it."""
  info = sgtbx.space_group_info(space_group_symbol)
  extent = float(np.ptp(sites_cart, axis=0).max())
  edge = 2 * extent + 4
  angles = {"monoclinic": (90, 101, 90), "triclinic": (84, 95, 101)}.get(
    info.group().crystal_system().lower(), (90, 90, 90))
  for grow in range(8):
    cell = [edge * f for f in (1.0, 1.07, 1.13)] + list(angles)
    cs = crystal.symmetry(unit_cell=cell, space_group_info=info)
    centre = cs.unit_cell().orthogonalize((0.23, 0.17, 0.31))
    xs = xray.structure(crystal_symmetry=cs, scatterers=flex.xray_scatterer([
      xray.scatterer(label="%s%d" % (e, i + 1), site=cs.unit_cell().fractionalize(tuple(s + centre)),
                     u=0.03, scattering_type=e) for i, (s, e) in enumerate(zip(sites_cart, elements))]))
    if not contacts_with_copies(xs, 3.0):
      return xs
    edge *= 1.15
  raise AssertionError("could not pack the molecule in %s" % space_group_symbol)


@pytest.mark.parametrize("space_group", ["P -1", "P 21/c", "C 2/c", "P 21 21 21", "P 21"])
def test_space_group_round_trip(tmp_cwd, space_group):
  """thpp's molecule packed in the space group, data to 1.0 A with 3 % noise:
  p2a.solve phases it in that space group; .res/.hkl/.cif/.pdb/.mtz read back
  (iotbx and gemmi) with the same space group."""
  sites, elements = thpp_molecule_cartesian()
  xs = packed(space_group, sites, elements)
  rng = np.random.default_rng(5)
  data = synthetic.simulated_data(xs, 1.0, rng, noise=0.03, observation="intensities")
  files.write_mtz(data, "case.mtz")
  composition = "".join("%s%d" % (e, elements.count(e)) for e in sorted(set(elements)))
  result = run_solve(["case.mtz", "composition=%s" % composition, "output.prefix=out"])
  number = xs.space_group_info().type().number()
  assert result.xray_structure.space_group_info().type().number() == number
  assert result.solved, result.notes
  fraction, score = fraction_placed(xs, result.xray_structure)
  assert fraction >= 0.9, score
  for name in ("out.res", "out.cif", "out.pdb"):
    assert files.read_structure(name).space_group_info().type().number() == number, name
  assert gemmi.read_structure("out.pdb").find_spacegroup().number == number
  assert gemmi.read_mtz_file("out.mtz").spacegroup.number == number
  doc = gemmi.cif.read("out.cif")
  assert gemmi.find_spacegroup_by_name(doc.sole_block().find_value("_symmetry_space_group_name_H-M")
                                       .strip("'")).number == number


@pytest.mark.skipif(not os.path.isdir(os.path.join(MEASURED, "ylid_p212121")),
                    reason="shared/data/measured is not beside this checkout")
def test_compare_on_a_measured_folder(tmp_cwd):
  """p2a.compare measured=FOLDER: every method on every set (thpp added) at
  every cut, scored by the >= 90 % rule, with a table, JSON and PNG."""
  from cctbx_p2a.programs import compare as compare_program
  os.mkdir("sets")
  os.symlink(os.path.abspath(os.path.join(MEASURED, "ylid_p212121")), os.path.join("sets", "ylid"))
  run_program(program_class=compare_program.Program,
              args=["compare.measured=sets", "cuts=native", "methods=p2a charge_flipping",
                    "output.prefix=cmp"], logger=open(os.devnull, "w"))
  report = json.load(open("cmp.json"))
  assert report["settings"]["sets"] == ["thpp_p21n", "ylid"]
  rows = report["rows"]
  assert {(r["set"], r["method"]) for r in rows} == {
    (s, m) for s in ("thpp_p21n", "ylid") for m in ("p2a", "charge_flipping")}
  assert all(r["solved"] == (r["fraction_matched"] >= 0.9) for r in rows)
  assert [r["space_group"] for r in rows if r["set"] == "ylid"] == ["P 21 21 21"] * 2
  assert os.path.getsize("cmp.png") > 1000


class OracleCrystalNetwork:
  """Stands in for a perfect crystal network (cctbx_p2a.crystal_data): its
  map holds the true molecule, centred, on 0.5 A voxels, whatever the
  input.  It pins the plumbing of the crystal route's network start, not
  any network's accuracy."""

  def __init__(self, image_sites, space_groups, d_min=(1.0, 2.5)):
    from cctbx_p2a import model_files
    self.card = {"name": "oracle", "architecture": {"name": "oracle"},
                 "grid": {"input_n": 32, "output_n": 48, "voxel": 1.0, "output_voxel": 0.5},
                 "patterson": {"input_d_min": 2.0, "resolution_factor": 0.25},
                 "domain": {"molecule_source": "packed crystals", "space_groups": list(space_groups),
                            "d_min": list(d_min)}}
    self.info = model_files.ModelInfo(self.card)
    self.sites = np.asarray(image_sites)
    self.inputs = []

  def __getattr__(self, name):
    return getattr(self.info, name)

  def predict(self, grid):
    self.inputs.append(grid)
    c = (np.arange(48) - 23.5) * 0.5
    g = np.exp(-(c[None, None, :] - self.sites[:, :, None]) ** 2 / (2 * 0.4 ** 2))   # (atoms, 3, 48)
    return np.einsum("ai,aj,ak->ijk", g[:, 0], g[:, 1], g[:, 2]).astype(np.float32)


def test_crystal_network_start_solves_thpp_when_its_image_is_right():
  """With a network that draws the molecule right, the crystal route's first
  start (image -> Laue orientations x translation function -> rigid body ->
  finishing) solves thpp cut to 1.5 A, where charge flipping does not."""
  from cctbx_p2a import placement
  observed, reference = measured.load(measured.thpp_set())
  f_obs = observed.f_obs.resolution_filter(d_min=1.5)
  image = placement.image_of_structure(reference)
  turned = image.sites_cart @ placement.rotation_about([1, 2, 3], 4).T   # a slightly wrong image
  oracle = OracleCrystalNetwork(turned, ["P 1 21/c 1"])
  composition = " ".join("%s%d" % kv for kv in compare.composition_counts(reference).items())
  result = phasing.solve(f_obs, crystal_model=oracle, **{"solve.composition": composition})
  assert result.start == "crystal_network", result.notes
  assert result.solved and str(result.xray_structure.space_group_info()) == "P 1 21/n 1"
  assert fraction_placed(reference, result.xray_structure)[0] >= 0.9
  assert len(oracle.inputs) == 1 and oracle.inputs[0].shape == (32, 32, 32)
  assert any("crystal network oracle: image of 16 peaks" in n for n in result.notes)


def test_crystal_network_domain_is_the_space_group_type_and_resolution():
  observed, reference = measured.load(measured.thpp_set())
  f_obs = observed.f_obs.resolution_filter(d_min=2.0)
  # P2_1/n is P2_1/c in another setting: same type (14), so inside
  assert phasing.crystal_domain_problems(f_obs, OracleCrystalNetwork(np.zeros((3, 3)), ["P 1 21/c 1"])) == []
  problems = phasing.crystal_domain_problems(f_obs, OracleCrystalNetwork(np.zeros((3, 3)), ["P 21 21 21"]))
  assert len(problems) == 1 and "No. 14" in problems[0]
  low = observed.f_obs.resolution_filter(d_min=2.8)
  assert "resolution" in phasing.crystal_domain_problems(low, OracleCrystalNetwork(
    np.zeros((3, 3)), ["P 1 21/c 1"]))[0]
  params = phasing.default_params()
  notes = []
  assert phasing.crystal_model_for(f_obs, params, notes, OracleCrystalNetwork(
    np.zeros((3, 3)), ["P -1"])) is None
  assert "crystal network oracle skipped" in notes[0]
  params.solve.crystal_model = "none"
  assert phasing.crystal_model_for(f_obs, params, []) is None
