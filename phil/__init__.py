"""Master PHIL scopes of cctbx_p2a, one file per stage of the data path.

The top-level ``phil/`` folder is installed as the package ``cctbx_p2a.phil``
(see pyproject.toml).  Programs build their master PHIL by joining the scopes
they need, so a parameter is defined once and means the same everywhere.
"""
import difflib
from importlib import resources


def scope(name):
  """Text of phil/<name>.phil (one top-level scope)."""
  return resources.files(__name__).joinpath(name + ".phil").read_text()


def master_phil_str(*names):
  return "\n".join(scope(n) for n in names)


def master_phil(*names):
  import iotbx.phil  # knows the crystallographic types (unit_cell, space_group)
  return iotbx.phil.parse(master_phil_str(*names), process_includes=True)


def extract(*names, **overrides):
  """Extracted parameters of the named scopes, with keyword overrides named
  as in resolve_names, e.g. ``extract("synthetic", **{"synthetic.n_atoms": 12})``
  or ``extract("synthetic", n_atoms=12)``."""
  return apply_overrides(master_phil(*names), None, overrides)


def apply_overrides(master, params, overrides):
  """`params` (an extract of `master`, or None for its defaults) with
  `overrides` ({name: value}, names as in resolve_names) set; the values are
  checked by PHIL exactly as on the command line."""
  import iotbx.phil
  working = master if params is None else master.format(python_object=params)
  if overrides:
    resolved = resolve_names(master, overrides)
    src = iotbx.phil.parse("\n".join("%s=%s" % (path, _phil_value(v)) for path, v in resolved.items()))
    working = working.fetch(source=src)
  try:
    return working.extract()
  except RuntimeError as e:  # PHIL's words for a value of the wrong type
    from libtbx.utils import Sorry
    raise Sorry("Bad parameter value: %s" % e) from None


def resolve_names(master, overrides):
  """{name: value} -> {full dotted path: value}.  A name is a full path
  ("solve.composition"), the same with '__' for each dot
  ("solve__composition"), or its last part(s) when they match one parameter
  only ("composition"), as the command line takes short names.  Every name
  that matches no parameter, several, or one already given, is listed in a
  single Sorry with the parameters it may have meant."""
  from libtbx.utils import Sorry
  paths = [d.path for d in master.all_definitions()]
  resolved, given_as, problems = {}, {}, []
  for key, value in overrides.items():
    name = key.replace("__", ".")
    if name in paths:
      matches = [name]
    else:
      matches = [p for p in paths if p.endswith("." + name)]
    if len(matches) == 1:
      path = matches[0]
      if path in resolved:
        problems.append("%s and %s both set %s: give it once" % (given_as[path], key, path))
      resolved[path], given_as[path] = value, key
    elif matches:
      problems.append("%s is ambiguous (%s): give the full name" % (key, " or ".join(matches)))
    else:
      close = _close_matches(name, paths)
      problems.append("%s is not a parameter%s" % (
        key, " (did you mean %s?)" % " or ".join(close) if close else ""))
  if problems:
    raise Sorry("%s. A name is a full PHIL path (solve.composition), the same with '__' for "
                "'.', or a last part that names one parameter only (composition); "
                "--show-defaults lists them all." % "; ".join(problems))
  return resolved


def _close_matches(name, paths, n=4):
  """Full paths whose whole name or last part(s) look like `name`."""
  depth = name.count(".") + 1
  tails = {}
  for p in paths:
    for tail in (".".join(p.split(".")[-depth:]), p):
      tails.setdefault(tail, [])
      if p not in tails[tail]:
        tails[tail].append(p)
  out = []
  for tail in difflib.get_close_matches(name, list(tails), n=n, cutoff=0.6):
    for p in tails[tail]:
      if p not in out:
        out.append(p)
  return out[:n]


def _phil_value(v):
  if isinstance(v, (list, tuple)):
    return " ".join(str(x) for x in v)
  return str(v)
