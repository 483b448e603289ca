"""Master PHIL scopes of cctbx_p2a, one file per stage of the data path.

The top-level ``phil/`` folder is installed as the package ``cctbx_p2a.phil``
(see pyproject.toml).  Programs build their master PHIL by joining the scopes
they need, so a parameter is defined once and means the same everywhere.
"""
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
  """Extracted parameters of the named scopes, with dotted ``key=value``
  overrides, e.g. ``extract("synthetic", **{"synthetic.n_atoms": 12})``."""
  import iotbx.phil
  master = master_phil(*names)
  if overrides:
    src = iotbx.phil.parse("\n".join("%s=%s" % (k, _phil_value(v)) for k, v in overrides.items()))
    master, unused = master.fetch(source=src, track_unused_definitions=True)
    if unused:
      from libtbx.utils import Sorry
      raise Sorry("Unknown parameter(s): %s" % ", ".join(u.path for u in unused))
  return master.extract()


def _phil_value(v):
  if isinstance(v, (list, tuple)):
    return " ".join(str(x) for x in v)
  return str(v)
