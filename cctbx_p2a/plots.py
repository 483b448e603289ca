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


BOND_MAX = 1.9          # A: atoms closer than this are drawn bonded
ORIGIN_RADIUS = 1.2     # A: the Patterson origin peak's voxels (centres 0.87 A out at 1 A voxels)


def molecule_cartesian(xray_structure, bond_max=BOND_MAX):
  """Cartesian sites (A, about their centroid) with each atom moved by
  lattice translations next to an atom it is bonded to, so a molecule cut by
  the cell faces is drawn whole; and the bonds [(i, j)] shorter than bond_max."""
  uc = xray_structure.unit_cell()
  frac = np.array([sc.site for sc in xray_structure.scatterers()], dtype=float).reshape(-1, 3)
  n = len(frac)
  if n == 0:
    return np.zeros((0, 3)), []
  orth = np.array(uc.orthogonalization_matrix()).reshape(3, 3)
  whole, placed, queue = frac.copy(), np.zeros(n, bool), []
  while not placed.all():
    if not queue:  # a new fragment: its first atom nearest the centroid of those placed
      j = int(np.flatnonzero(~placed)[0])
      if placed.any():
        centre = whole[placed].mean(axis=0)
        whole[j] = centre + (frac[j] - centre) - np.round(frac[j] - centre)
      placed[j] = True
      queue.append(j)
    i = queue.pop()
    for j in np.flatnonzero(~placed):
      d = frac[j] - whole[i]
      d -= np.round(d)
      if np.linalg.norm(orth @ d) < bond_max:
        whole[j], placed[j] = whole[i] + d, True
        queue.append(int(j))
  xyz = whole @ orth.T
  xyz -= xyz.mean(axis=0)
  bonds = [(i, j) for i in range(n) for j in range(i + 1, n)
           if np.linalg.norm(xyz[i] - xyz[j]) < bond_max]
  return xyz, bonds


def patterson_colour_limit(grid, voxel, radius=ORIGIN_RADIUS):
  """Highest Patterson value farther than `radius` from the origin: the top
  of the colour scale, so the origin peak (40-50 in the normalised input,
  against 5-15 for the highest interatomic peak) does not wash out the rest."""
  from cctbx_p2a import patterson
  c = patterson.grid_coordinates(grid.shape[0], voxel)
  x, y, z = np.meshgrid(c, c, c, indexing="ij")
  outside = np.sqrt(x * x + y * y + z * z) > radius
  return float(grid[outside].max()) if outside.any() else float(grid.max())


def solve_figure(result, file_name):
  """solve_plot written as a PNG."""
  solve_plot(result).savefig(file_name, dpi=90)
  return file_name


def solve_plot(result):
  """The Patterson input (origin peak clipped), the network's atom map with
  the final sites, and the final molecule (bonds, colour = height): a Figure."""
  from cctbx_p2a import patterson
  fig = _figure(figsize=(15, 4.8))
  axes = fig.subplots(1, 3)
  p, a, v = result.patterson_grid, result.atom_map, result.voxel or 1.0
  note = ""
  if p is None:  # a start without the network: the same window, made here
    p = patterson.model_input(result.f_obs, patterson.GridSpec(n=32, voxel=1.0))
    v, note = 1.0, " (not used: %s start)" % getattr(result, "start", "another")
  half = p.shape[0] / 2 * v
  top = patterson_colour_limit(p, v)
  im = axes[0].imshow(p.max(axis=2).T, origin="lower", extent=[-half, half] * 2, cmap="viridis",
                      vmax=top)
  fig.colorbar(im, ax=axes[0], shrink=0.8, label="Patterson (normalised)")
  axes[0].set_title("Patterson input, max along z%s\norigin peak clipped: scale tops at the highest "
                    "value beyond %.1f A" % (note, ORIGIN_RADIUS), fontsize=9)
  xyz, bonds = molecule_cartesian(result.xray_structure)
  if a is not None:
    half = a.shape[0] / 2 * (getattr(result, "atom_map_voxel", None) or result.voxel)
    im = axes[1].imshow(a.max(axis=2).T, origin="lower", extent=[-half, half] * 2, cmap="magma")
    fig.colorbar(im, ax=axes[1], shrink=0.8, label="atom map")
    if len(xyz):
      axes[1].scatter(xyz[:, 0], xyz[:, 1], s=40, facecolors="none", edgecolors="cyan",
                      label="final sites, centroid at 0")
      axes[1].legend(loc="upper right", fontsize=7)
    axes[1].set_title("Network atom map, max along z\n(atoms and their inverses)", fontsize=9)
  else:
    axes[1].text(0.5, 0.5, "no network map:\nthe sites came from %s" % getattr(result, "start", "another start"),
                 ha="center", va="center", transform=axes[1].transAxes)
    axes[1].set_xticks([])
    axes[1].set_yticks([])
  ax = axes[2]
  for i, j in bonds:
    ax.plot(xyz[[i, j], 0], xyz[[i, j], 1], color="0.45", lw=2, zorder=1)
  if len(xyz):
    types = [sc.scattering_type for sc in result.xray_structure.scatterers()]
    sizes = [160 if t not in ("H", "C", "N", "O") else 90 for t in types]
    sc = ax.scatter(xyz[:, 0], xyz[:, 1], c=xyz[:, 2], cmap="coolwarm", s=sizes, edgecolors="k",
                    zorder=2)
    fig.colorbar(sc, ax=ax, shrink=0.8, label="z (A)")
    for label, c in zip([s.label for s in result.xray_structure.scatterers()], xyz):
      ax.annotate(label, (c[0], c[1]), fontsize=7, xytext=(4, 4), textcoords="offset points")
  ax.set_aspect("equal", adjustable="datalim")
  ax.set_title("Final sites: %d atoms, %d bonds (< %.1f A)\nR1 = %.3f, CC = %.3f" % (
    len(xyz), len(bonds), BOND_MAX, result.r1, result.cc), fontsize=9)
  for ax in axes:
    ax.set_xlabel("x (A)")
    ax.set_ylabel("y (A)")
  fig.suptitle("cctbx_p2a: %s" % ("SOLVED" if result.solved else "NOT SOLVED"))
  fig.tight_layout()
  return fig


def sweep_figure(rows, parameter, file_name, methods=None, title=None):
  """sweep_plot written as a PNG."""
  sweep_plot(rows, parameter, methods=methods, title=title).savefig(file_name, dpi=90)
  return file_name


def sweep_plot(rows, parameter, methods=None, title=None):
  """Success rate and median time per case against a swept parameter.
  `rows`: dicts with 'method', parameter, 'cases', 'success_rate',
  'median_time_s'.  One sweep point: bars side by side; several: one line
  per method, each method's markers shifted a little sideways so methods
  with equal values stay visible."""
  rows = [r for r in rows if r.get("success_rate") is not None]
  methods = [m for m in (methods or sorted({r["method"] for r in rows}))
             if any(r["method"] == m for r in rows)]
  values = sorted({r[parameter] for r in rows})
  counts = sorted({r["cases"] for r in rows})
  fig = _figure(figsize=(11, 4.6))
  ax1, ax2 = fig.subplots(1, 2)
  colours = {m: "C%d" % k for k, m in enumerate(methods)}
  if len(values) == 1:
    x = np.arange(len(methods))
    by_method = {r["method"]: r for r in rows}
    rates = [100 * by_method[m]["success_rate"] for m in methods]
    times = [by_method[m]["median_time_s"] for m in methods]
    bars = ax1.bar(x, rates, color=[colours[m] for m in methods])
    for b, m, rate in zip(bars, methods, rates):
      n = by_method[m]["cases"]
      ax1.annotate("%.0f %%\n(%d/%d)" % (rate, round(rate * n / 100), n),
                   (b.get_x() + b.get_width() / 2, rate), ha="center", va="bottom", fontsize=8,
                   xytext=(0, 2), textcoords="offset points")
    bars = ax2.bar(x, times, color=[colours[m] for m in methods])  # linear: bars start at 0
    for b, t in zip(bars, times):
      ax2.annotate("%.3g s" % t, (b.get_x() + b.get_width() / 2, t), ha="center", va="bottom",
                   fontsize=8, xytext=(0, 2), textcoords="offset points")
    ax2.set_ylim(0, 1.15 * max(times + [1e-3]))
    for ax in (ax1, ax2):
      ax.set_xticks(x)
      ax.set_xticklabels(methods, rotation=20, ha="right", fontsize=9)
      ax.set_xlabel("method (%s = %s)" % (parameter, values[0]))
    ax1.set_ylim(0, 115)
  else:
    span = (max(values) - min(values)) or 1.0
    step = 0.012 * span
    for k, m in enumerate(methods):
      pts = sorted((r[parameter], r["success_rate"], r["median_time_s"]) for r in rows
                   if r["method"] == m)
      shift = (k - (len(methods) - 1) / 2) * step
      x, s, t = zip(*pts)
      x = [xi + shift for xi in x]
      ax1.plot(x, [100 * si for si in s], marker="o", label=m, color=colours[m], alpha=0.85)
      ax2.plot(x, t, marker="o", label=m, color=colours[m], alpha=0.85)
    for ax in (ax1, ax2):
      ax.set_xlabel(parameter)
      ax.set_xticks(values)
    ax1.set_ylim(-5, 105)
    ax1.legend(fontsize=8)
    ax2.set_yscale("log")
    from matplotlib.ticker import FormatStrFormatter
    ax2.yaxis.set_major_formatter(FormatStrFormatter("%g"))
    ax2.yaxis.set_minor_formatter(FormatStrFormatter("%g"))
  ax1.set_ylabel("solved (%)")
  ax2.set_ylabel("median time per case (s)")
  count = ("%d cases" % counts[0]) if len(counts) == 1 else ("%d-%d cases" % (counts[0], counts[-1]))
  fig.suptitle("%s; %s" % (title or "p2a.compare",
                           count + (" per point" if len(values) > 1 else " per method")), fontsize=10)
  fig.tight_layout()
  return fig


def cuts_figure(rows, methods, file_name, title=None):
  """Measured data: for each resolution cut, how many sets each method
  solved (bars side by side, 'k/n' on each), written as a PNG.  rows: the
  per-run dicts of cctbx_p2a.measured.run."""
  cuts = []
  for r in rows:
    if r["cut"] not in cuts:
      cuts.append(r["cut"])
  fig = _figure(figsize=(9, 4.6))
  ax = fig.subplots(1, 1)
  width = 0.8 / max(len(methods), 1)
  x = np.arange(len(cuts))
  for k, m in enumerate(methods):
    solved = [sum(r["solved"] for r in rows if r["cut"] == c and r["method"] == m) for c in cuts]
    total = [sum(1 for r in rows if r["cut"] == c and r["method"] == m) for c in cuts]
    bars = ax.bar(x + (k - (len(methods) - 1) / 2) * width, solved, width, label=m, color="C%d" % k)
    for b, s_, n in zip(bars, solved, total):
      ax.annotate("%d/%d" % (s_, n), (b.get_x() + b.get_width() / 2, s_), ha="center", va="bottom",
                  fontsize=7, xytext=(0, 2), textcoords="offset points")
  ax.set_xticks(x)
  ax.set_xticklabels([("%s A" % c) if c != "native" else "native" for c in cuts])
  ax.set_xlabel("data cut to")
  ax.set_ylabel("data sets solved")
  ax.set_ylim(0, 1.2 * max([1] + [sum(1 for r in rows if r["cut"] == c and r["method"] == methods[0])
                                  for c in cuts]))
  ax.legend(fontsize=8)
  ax.set_title(title or "Measured data sets solved per method", fontsize=10)
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
