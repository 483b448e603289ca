"""Pictures: what a crystallographer looks at to trust (or not) a result.

matplotlib with the Agg backend (no screen needed); imported only when a
picture is written.
"""
from __future__ import annotations

import numpy as np


def _figure(**kwargs):
  """A Figure drawn by the Agg canvas: no pyplot, no screen, quicker to import."""
  from matplotlib.backends.backend_agg import FigureCanvasAgg
  from matplotlib.figure import Figure
  fig = Figure(**kwargs)
  FigureCanvasAgg(fig)
  return fig


def solve_figure(result, file_name):
  """Central sections of the Patterson input and the predicted atom map, and
  the final sites projected down z (Cartesian, about the centroid)."""
  fig = _figure(figsize=(13, 4.3))
  axes = fig.subplots(1, 3)
  p = result.patterson_grid
  a = result.atom_map
  n_in, n_out, v = p.shape[0], a.shape[0], result.voxel
  ext_in = [-(n_in / 2) * v, (n_in / 2) * v] * 2
  ext_out = [-(n_out / 2) * v, (n_out / 2) * v] * 2
  axes[0].imshow(p.max(axis=2).T, origin="lower", extent=ext_in, cmap="viridis")
  axes[0].set_title("Patterson input (max along z)")
  axes[1].imshow(a.max(axis=2).T, origin="lower", extent=ext_out, cmap="magma")
  axes[1].set_title("Network atom map (max along z)")
  xs = result.xray_structure
  uc = xs.unit_cell()
  cart = np.array([uc.orthogonalize(sc.site) for sc in xs.scatterers()])
  if len(cart):
    cart = cart - cart.mean(axis=0)
    axes[1].scatter(cart[:, 0], cart[:, 1], s=40, facecolors="none", edgecolors="cyan",
                    label="final sites, centroid at 0")
    axes[1].legend(loc="upper right", fontsize=7)
    axes[2].scatter(cart[:, 0], cart[:, 1], c=cart[:, 2], cmap="coolwarm", s=80, edgecolors="k")
    for sc, c in zip(xs.scatterers(), cart):
      axes[2].annotate(sc.label, (c[0], c[1]), fontsize=7, xytext=(3, 3), textcoords="offset points")
  axes[2].set_aspect("equal")
  axes[2].set_title("Final sites (colour = z)\nR1 = %.3f, CC = %.3f" % (result.r1, result.cc))
  for ax in axes:
    ax.set_xlabel("x (A)")
    ax.set_ylabel("y (A)")
  fig.suptitle("cctbx_p2a: %s" % ("solved" if result.solved else "NOT solved"))
  fig.tight_layout()
  fig.savefig(file_name, dpi=90)
  return file_name


def sweep_figure(rows, parameter, file_name, methods=None):
  """Success rate and time per case versus a swept parameter, one line per method.
  `rows`: dicts with 'method', parameter, 'success_rate', 'median_time_s'."""
  methods = methods or sorted({r["method"] for r in rows})
  fig = _figure(figsize=(10, 4))
  ax1, ax2 = fig.subplots(1, 2)
  for m in methods:
    pts = sorted((r[parameter], r["success_rate"], r["median_time_s"]) for r in rows if r["method"] == m)
    if not pts:
      continue
    x, s, t = zip(*pts)
    ax1.plot(x, [100 * v for v in s], marker="o", label=m)
    ax2.plot(x, t, marker="o", label=m)
  ax1.set_xlabel(parameter)
  ax1.set_ylabel("solved (%)")
  ax1.set_ylim(-5, 105)
  ax2.set_xlabel(parameter)
  ax2.set_ylabel("median time per case (s)")
  ax2.set_yscale("log")
  ax1.legend()
  fig.tight_layout()
  fig.savefig(file_name, dpi=90)
  return file_name


def loss_curves(histories, file_name, title="Training loss"):
  """Validation (and training) loss versus step for several runs: {label: history}."""
  fig = _figure(figsize=(6.5, 4.2))
  ax = fig.subplots()
  for label, history in histories.items():
    steps = [h["step"] for h in history if h.get("validation_loss") is not None]
    val = [h["validation_loss"] for h in history if h.get("validation_loss") is not None]
    line, = ax.plot(steps, val, marker="o", label="%s (validation)" % label)
    tr = [(h["step"], h["train_loss"]) for h in history]
    if tr:
      ax.plot(*zip(*tr), color=line.get_color(), alpha=0.35)
  ax.set_yscale("log")
  ax.set_xlabel("step")
  ax.set_ylabel("per-voxel MSE")
  ax.set_title(title, fontsize=9)
  ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(file_name, dpi=90)
  return file_name
