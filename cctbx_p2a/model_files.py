"""Model files and cards, without torch: where models live, which file a name
means, and loading one for phasing.

A model is ``<name>.pt`` (torch state dict, for training and fine-tuning),
``<name>.json`` (its card) and, for the unet, ``<name>.npz`` (the same weights
as numpy arrays, run by cctbx_p2a.inference so that phasing needs no torch).
The card holds the sha256 of both weight files; a mismatch is refused.
"""
from __future__ import annotations

import hashlib
import json
import os

from libtbx.utils import Sorry

MODELS_DIR = os.path.join(os.path.dirname(__file__), "models")
DEFAULT_MODEL = "realistic"   # what model=default means; "paper" stays loadable by name


def sha256_of(path):
  h = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      h.update(block)
  return h.hexdigest()


def resolve_model_path(name_or_path):
  """'default', a shipped model name, or a path to a .pt/.npz/.json -> path stem."""
  name = name_or_path or "default"
  if name == "default":
    name = DEFAULT_MODEL
  if name.endswith((".pt", ".npz", ".json")):
    stem = name.rsplit(".", 1)[0]
  elif os.path.exists(name + ".json"):
    stem = name
  else:
    stem = os.path.join(MODELS_DIR, name)
  if not os.path.exists(stem + ".pt") or not os.path.exists(stem + ".json"):
    shipped = sorted(f[:-3] for f in os.listdir(MODELS_DIR) if f.endswith(".pt")) \
      if os.path.isdir(MODELS_DIR) else []
    raise Sorry("Model %r not found (need %s.pt and its card %s.json). Shipped models: %s."
                % (name, stem, stem, ", ".join(shipped) or "none"))
  return stem


def is_crystal_model(card):
  """A crystal network (cctbx_p2a.crystal_data): Patterson of a packed
  crystal -> one copy of its molecule, read out by cctbx_p2a.placement."""
  return card.get("domain", {}).get("molecule_source") == "packed crystals"


def shipped_crystal_models():
  """Names of the shipped crystal networks, in name order."""
  if not os.path.isdir(MODELS_DIR):
    return []
  names = sorted(f[:-5] for f in os.listdir(MODELS_DIR) if f.endswith(".json"))
  return [n for n in names if is_crystal_model(read_card(os.path.join(MODELS_DIR, n)))]


def read_card(stem):
  with open(stem + ".json") as f:
    return json.load(f)


def check_weights(path, expected_sha256):
  if expected_sha256 != sha256_of(path):
    raise Sorry("The weights %s do not match the sha256 in their card: the file is damaged "
                "or was replaced. Re-install or retrain." % path)


class ModelInfo:
  """What a loaded model knows from its card (both engines share it)."""

  def __init__(self, card, path=None):
    self.card, self.path = card, path

  @property
  def name(self):
    return self.card.get("name", "unnamed")

  @property
  def voxel(self):
    return self.card["grid"]["voxel"]

  @property
  def output_voxel(self):
    """Voxel of the atom map: the input's, or half of it for a network that
    upsamples once more (the crystal network, so bonded atoms separate)."""
    return self.card["grid"].get("output_voxel", self.voxel)

  @property
  def input_box_edge(self):
    return self.card["grid"]["input_n"] * self.voxel

  @property
  def output_box_edge(self):
    return self.card["grid"]["output_n"] * self.output_voxel

  @property
  def domain(self):
    return self.card.get("domain", {})

  def __repr__(self):
    return "<cctbx_p2a %s %s: %s, %d parameters, grid %d->%d at %.2f A>" % (
      type(self).__name__, self.name, self.card["architecture"]["name"],
      self.card["architecture"].get("parameters", 0), self.card["grid"]["input_n"],
      self.card["grid"]["output_n"], self.voxel)


def load(name_or_path=None):
  """A model for phasing: numpy weights when the card has them (no torch
  import), else the torch model."""
  stem = resolve_model_path(name_or_path)
  card = read_card(stem)
  numpy_weights = card.get("numpy_weights")
  if numpy_weights and card["architecture"]["name"] == "unet":
    import numpy as np
    from cctbx_p2a import inference
    path = os.path.join(os.path.dirname(stem), numpy_weights["file"])
    check_weights(path, numpy_weights["sha256"])
    with np.load(path) as weights:
      return inference.NumpyModel(dict(weights), card, path=path)
  from cctbx_p2a import network
  return network.load(stem)
