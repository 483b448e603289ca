"""The command-line programs as a user meets them: what the log says about the
files, one "Sorry:" line per refusal, the exit status, the help."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from cctbx.array_family import flex
from libtbx.utils import Sorry

from cctbx_p2a import phil, reflections
from cctbx_p2a.programs import common, compare, simulate, solve
from cctbx_p2a.programs import train as train_program

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLE = os.path.join(REPO, "examples", "paper_case.mtz")
P2A_SOLVE = os.path.join(os.path.dirname(sys.executable), "p2a.solve")


def console(*args, cwd):
  """The installed p2a.solve console script, as a user runs it."""
  return subprocess.run([P2A_SOLVE] + list(args), cwd=str(cwd), capture_output=True, text=True,
                        timeout=300)


def sorry_lines(text):
  return [line for line in text.splitlines() if "Sorry" in line]


def test_a_solve_reports_the_file_it_read_and_exits_0(tmp_path):
  out = console(EXAMPLE, cwd=tmp_path)
  assert out.returncode == common.EXIT_OK, out.stderr[-2000:]
  log = out.stdout
  for misleading in ("Files not used by program", "No files found", "Processing files from PHIL"):
    assert misleading not in log
  assert "data = %s" % EXAMPLE in log
  assert "Observed data: paper_case.mtz:FP,SIGFP" in log
  assert json.load(open(str(tmp_path / "paper_case_p2a.json")))["solved"]
  assert "Sorry" not in out.stderr and "Traceback" not in out.stderr


@pytest.mark.parametrize("args,expected", [
  (["missing.mtz"], "Reflection file not found: missing.mtz"),
  (["broken.mtz"], "Could not read broken.mtz"),            # raised while handling a decode error
  ([EXAMPLE, "compositon=C10"], "did you mean solve.composition?"),
  ([EXAMPLE, "--no-such-option"], "unrecognized arguments: --no-such-option"),
  ([EXAMPLE, "output.filename=x"], "output.filename (did you mean output.prefix?)"),
])
def test_a_refusal_is_one_sorry_line_and_exit_1(tmp_path, args, expected):
  with open(EXAMPLE, "rb") as f:
    (tmp_path / "broken.mtz").write_bytes(f.read()[:3000])
  out = console(*args, cwd=tmp_path)
  assert out.returncode == common.EXIT_REFUSED
  both = out.stdout + out.stderr
  assert len(sorry_lines(both)) == 1, both[-3000:]
  assert sorry_lines(out.stderr)[0].startswith("Sorry: ")
  assert expected in out.stderr
  assert "Traceback" not in both and "During handling" not in both
  assert not [n for n in os.listdir(str(tmp_path)) if n.startswith("paper_case_p2a")]


def test_a_sorry_raised_from_a_sorry_is_printed_once(tmp_path, monkeypatch, capfd):
  """Python prints a chained exception's cause first: a Sorry re-raised from
  another Sorry used to show its text twice."""
  def read(path, params=None):
    try:
      raise Sorry("inner reason")
    except Sorry as e:
      raise Sorry("Could not read %s: %s" % (path, e))
  monkeypatch.chdir(tmp_path)
  monkeypatch.setattr(reflections, "read", read)
  assert solve.main([EXAMPLE]) == common.EXIT_REFUSED
  captured = capfd.readouterr()
  assert sorry_lines(captured.out + captured.err) == [
    "Sorry: Could not read %s: inner reason" % EXAMPLE]


def shuffled_amplitudes(path):
  """The example's amplitudes in random order (to 2.8 A): data no structure explains."""
  f = reflections.read(EXAMPLE).f_obs.resolution_filter(d_min=2.8)
  order = flex.size_t(np.random.default_rng(1).permutation(f.size()).tolist())
  f.customized_copy(data=f.data().select(order), sigmas=f.sigmas().select(order)) \
    .as_mtz_dataset(column_root_label="FP").mtz_object().write(str(path))


@pytest.mark.slow
def test_not_solved_exits_2_with_its_files_forced_or_not(tmp_path, monkeypatch, capsys):
  monkeypatch.chdir(tmp_path)
  shuffled_amplitudes(tmp_path / "shuffled.mtz")
  assert solve.main(["shuffled.mtz"]) == common.EXIT_NOT_SOLVED
  assert "NOT SOLVED: the files hold the best attempt; exit status 2." in capsys.readouterr().out
  assert json.load(open("shuffled_p2a.json"))["solved"] is False
  assert all(os.path.exists("shuffled_p2a" + s) for s in (".pdb", ".cif", ".res", ".mtz", ".png"))

  # more atoms than the model was trained on: refused with atom_count_domain=refuse; by default
  # run and warned of, and a wrong count (30 for 10 atoms) does not explain the data: NOT SOLVED
  assert solve.main([EXAMPLE, "composition=C30", "atom_count_domain=refuse"]) == common.EXIT_REFUSED
  assert not os.path.exists("paper_case_p2a.json")
  assert solve.main([EXAMPLE, "composition=C30"]) == common.EXIT_NOT_SOLVED
  summary = json.load(open("paper_case_p2a.json"))
  assert summary["solved"] is False
  assert any("30 atoms is outside the model's range" in w for w in summary["warnings"])


def test_other_programs_exit_0_or_1(tmp_path, monkeypatch, capsys):
  monkeypatch.chdir(tmp_path)
  assert simulate.main(["seed=3", "--quiet"]) == common.EXIT_OK
  assert simulate.main(["seed=3", "--quiet"]) == common.EXIT_REFUSED  # files exist
  assert compare.main(["cases=0"]) == common.EXIT_REFUSED
  assert "Sorry: compare.cases must be at least 1." in capsys.readouterr().err


def test_help_names_exit_status_and_this_project_not_the_cctbx_list():
  out = subprocess.run([P2A_SOLVE], capture_output=True, text=True, timeout=120)
  assert out.returncode == 0
  assert "cctbxbb" not in out.stdout and "Exit status: 0" in out.stdout
  shown = subprocess.run([P2A_SOLVE, "--show-defaults"], capture_output=True, text=True, timeout=120)
  assert ".help" in shown.stdout and "file_name" not in shown.stdout


PROGRAM_SCOPES = {"p2a.solve": solve.master_phil_str, "p2a.compare": compare.master_phil_str,
                  "p2a.simulate": simulate.Program.master_phil_str,
                  "p2a.train": train_program.master_phil_str}


@pytest.mark.parametrize("name", sorted(f[:-5] for f in os.listdir(os.path.join(REPO, "phil"))
                                        if f.endswith(".phil")))
def test_every_parameter_and_scope_has_help(name):
  master = phil.master_phil(name)
  missing = [d.path for d in master.all_definitions() if not (d.object.help or "").strip()]
  missing += [s.full_path() for s in _scopes(master) if not (s.help or "").strip()]
  assert not missing, "no .help in phil/%s.phil: %s" % (name, ", ".join(missing))


def _scopes(scope):
  for obj in scope.objects:
    if obj.is_scope:
      yield obj
      yield from _scopes(obj)


@pytest.mark.parametrize("program", sorted(PROGRAM_SCOPES))
def test_every_program_parameter_has_help(program):
  """The scopes as each program sees them, its output scope included."""
  import iotbx.phil
  master = iotbx.phil.parse(PROGRAM_SCOPES[program], process_includes=True)
  master.adopt_scope(phil.master_phil("output"))
  missing = [d.path for d in master.all_definitions() if not (d.object.help or "").strip()]
  assert not missing, "%s: no .help for %s" % (program, ", ".join(missing))


def test_intensity_input_is_announced_as_intensities_then_amplitudes():
  from io import StringIO
  out = StringIO()
  reflections.read(os.path.join(REPO, "examples", "paper_case_intensities.mtz")).show(out=out)
  line = [l for l in out.getvalue().splitlines() if l.strip().startswith("reflections:")][0]
  assert "16691 unique intensities read, used as 16691 amplitudes" in line
  assert "French-Wilson: 16691 intensities -> 16691 amplitudes" in out.getvalue()
  out = StringIO()
  reflections.read(EXAMPLE).show(out=out)
  line = [l for l in out.getvalue().splitlines() if l.strip().startswith("reflections:")][0]
  assert line.split() == ["reflections:", "16691", "unique", "amplitudes", "read"]
