"""What every p2a program shares: file arguments as PHIL, the command-line
parser, one-line refusals and the exit status.

Reflection files are read by cctbx_p2a.reflections (where every input check
lives), not by the DataManager, which cannot read SHELX .hkl.  So a file named
on the command line becomes a PHIL assignment before iotbx's parser sees it:
data files -> input.data=..., .ins/.res -> reflections.symmetry_file=...,
models (.pdb/.cif/.res given as reference=) stay as written.  The parser
(Parser below) then keeps the DataManager away from those paths: it would
only report them as "Files not used by program", though they are used.
"""
from __future__ import annotations

import os
import sys
import textwrap

from iotbx.cli_parser import CCTBXParser
from libtbx.utils import Sorry

DATA_EXTENSIONS = (".mtz", ".hkl", ".sca", ".cif", ".hkl_cif", ".fcf", ".cv", ".xplor")
SYMMETRY_EXTENSIONS = (".ins", ".res")
MOLECULE_EXTENSIONS = (".xyz", ".mol", ".sdf")   # p2a.solve: a known molecule (solve.molecule)

# Exit status of every p2a program (also in the help text and the README).
EXIT_OK = 0          # ran to the end; for p2a.solve: and the data set is SOLVED
EXIT_REFUSED = 1     # a Sorry: bad input or outside a model's domain; nothing written
EXIT_NOT_SOLVED = 2  # p2a.solve ran to the end but NOT SOLVED; its files are written

EPILOG = """\
Exit status: 0 = ran to the end (p2a.solve: solved); 1 = refused with a
"Sorry:" line on stderr (bad input, nothing written); 2 = p2a.solve ran to the
end but did not solve (files written, marked NOT SOLVED).

Every parameter with its help: --show-defaults.  cctbx_p2a %s; documentation:
README.md and docs/ in the cctbx_p2a source; problems and questions: the
project's issue tracker.

"""


def file_arguments_as_phil(args, data_key="input.data", symmetry_key="reflections.symmetry_file",
                           molecule_key=None):
  """['x.mtz', 'd_min=2'] -> ['input.data=x.mtz', 'd_min=2'].  A data file
  that does not exist is passed on too, so the reader says it is missing.
  With molecule_key, an .xyz/.mol/.sdf file becomes that parameter (.pdb and
  .cif stay ambiguous: give them as solve.molecule=)."""
  out = []
  for arg in args:
    ext = os.path.splitext(arg)[1].lower()
    named = ext in DATA_EXTENSIONS or (molecule_key and ext in MOLECULE_EXTENSIONS)
    if "=" in arg or arg.startswith("-") or not (os.path.isfile(arg) or named):
      out.append(arg)
      continue
    if ext in MOLECULE_EXTENSIONS and molecule_key:
      out.append("%s=%s" % (molecule_key, arg))
    elif ext in SYMMETRY_EXTENSIONS and symmetry_key:
      out.append("%s=%s" % (symmetry_key, arg))
    elif ext in DATA_EXTENSIONS and data_key:
      out.append("%s=%s" % (data_key, arg))
    else:
      out.append(arg)  # .phil/.eff files go to the DataManager as usual
  return out


class Parser(CCTBXParser):
  """iotbx's parser with p2a's output scope, help footer and refusals.

  - phil/output.phil (output.prefix, output.overwrite) replaces
    ProgramTemplate's generic output scope, whose file name, suffix and serial
    no p2a program uses (and whose filename/file_name were two names for one
    unused thing);
  - files named by PHIL parameters are not handed to the DataManager: the
    programs read them (cctbx_p2a.reflections, cctbx_p2a.files);
  - a bad command-line option is a Sorry like any other bad input (argparse
    would exit 2, the status p2a.solve gives a finished but unsolved run).
  """

  def __init__(self, program_class, **kwargs):
    super().__init__(program_class, **kwargs)
    import iotbx.phil
    from cctbx_p2a import __version__, phil
    self.master_phil = iotbx.phil.parse(program_class.master_phil_str, process_includes=True)
    self.master_phil.adopt_scope(iotbx.phil.parse(phil.scope("output")))
    border = "-" * self.text_width
    self.description = (border + textwrap.dedent(program_class.description) + border
                        + "\n\nPHIL arguments (--show-defaults: with their help):\n"
                        + self.master_phil.as_str(prefix="  ", expert_level=3, attributes_level=0))
    self.epilog = border + "\n" + EPILOG % __version__

  def process_files(self, file_list, message="Processing files:"):
    if message.startswith("Processing files from PHIL") or not file_list:
      return
    super().process_files(file_list, message=message)

  def process_dir(self, dir_list, message="Processing directories:"):
    return  # output directories (train.output_dir) are the program's business

  def raise_Sorry_for_unused_phil(self):
    """One line naming each unknown parameter and what it may have meant."""
    if not self.unused_phil or not self.unused_phil_raises_sorry or self.namespace.diff_params:
      return
    from cctbx_p2a import phil
    paths = [d.path for d in self.master_phil.all_definitions()]
    problems = []
    for unused in self.unused_phil:  # "name=value" from the command line, or a PHIL object
      name = unused.split("=")[0].strip() if isinstance(unused, str) else unused.path
      close = phil._close_matches(name, paths)
      problems.append("%s%s" % (name, " (did you mean %s?)" % " or ".join(close) if close else ""))
    raise Sorry("%s does not know the parameter(s) %s; %s --show-defaults lists them all."
                % (self.prog, ", ".join(problems), self.prog))

  def error(self, message):
    raise Sorry("%s (%s --help shows the usage)" % (message, self.prog))


def run(program_class, args=None, data_key="input.data", symmetry_key="reflections.symmetry_file",
        exit_status=None, molecule_key=None):
  """Console-script entry; returns the exit status (EXIT_* above).

  A refusal (Sorry) prints one "Sorry: ..." line on stderr, without the
  traceback and without the exception it was raised from (Python prints a
  chained exception's cause first: a Sorry re-raised from another showed
  its text twice).  `exit_status(result)` maps the program's results to a
  status; without it a finished run is EXIT_OK."""
  from iotbx.cli_parser import run_program
  if args is None:
    args = sys.argv[1:]
  args = file_arguments_as_phil(args, data_key, symmetry_key, molecule_key)
  if (any(a.split("=")[0] in ("--show-defaults", "--show_defaults") for a in args)
      and not any(a.split("=")[0] in ("--attributes-level", "--attributes_level") for a in args)):
    args.append("--attributes-level=1")  # show each parameter's .help
  try:
    result = run_program(program_class=program_class, parser_class=Parser, args=args)
  except Sorry as e:
    sys.stdout.flush()
    print("Sorry: %s" % e, file=sys.stderr)
    sys.stderr.flush()
    return EXIT_REFUSED
  except BrokenPipeError:  # `p2a.solve --show-defaults | head`: the reader left; no traceback
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return EXIT_REFUSED
  if exit_status is None or result is None:  # result None: --dry-run
    return EXIT_OK
  return exit_status(result)
