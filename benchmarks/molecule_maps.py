"""What a network's map holds on real molecules: each model's predicted map
against its own target (its output grid, sigma and inverses) on the cases
of `p2a.compare suite=molecules` (seed 7), beside the untrained control of
the first model.  For docs/molecules.md.

    python benchmarks/molecule_maps.py --d-min 2.0 --cases 20 MODEL [MODEL ...]

Rows: CC of the map with the target; the raw read-out's peaks (above 0.1,
as p2a.compare methods=network reads them) per true site and inverse; of
the 2N highest peaks, the fraction of true sites and inverses within 0.5 A
of one, and the fraction of those peaks within 1 A of a true site.
"""
import argparse

import cctbx_p2a  # noqa: F401  (import order)
import numpy as np
import torch

from cctbx_p2a import compare, evaluation, model_files, patterson, phasing, reflections, synthetic, train
from cctbx_p2a import sites as sites_stage


def scores(model, case, f_obs):
  card = model.card
  grid = patterson.GridSpec(card["grid"]["output_n"], card["grid"].get("output_voxel", card["grid"]["voxel"]))
  truth = np.concatenate([case.sites_centred, -case.sites_centred])
  target = synthetic.target_grid(case.sites_centred, grid, sigma=card["target"]["sigma"],
                                 inverses=card["target"].get("inverses", True))
  y = model.predict(phasing.network_input(f_obs, model)[0])
  raw, _ = sites_stage.find_peaks(y, model.output_voxel, threshold=0.1)
  top, _ = sites_stage.find_peaks(y, model.output_voxel, threshold=1e-6, max_peaks=len(truth))
  near = evaluation.match_to_peaks(truth, top)
  precision = np.mean(np.linalg.norm(top[:, None] - truth[None], axis=2).min(axis=1) <= 1.0) if len(top) else 0.0
  return (np.corrcoef(y.ravel(), target.ravel())[0, 1], len(raw) / len(truth), np.mean(near <= 0.5), precision)


def main():
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("models", nargs="+")
  ap.add_argument("--d-min", type=float, default=2.0)
  ap.add_argument("--cases", type=int, default=20)
  a = ap.parse_args()
  torch.set_num_threads(1)
  models = {name: model_files.load(name) for name in a.models}
  models["untrained control"] = compare.control_model("network_untrained", models[a.models[0]])
  params = compare.synthetic_params("molecules", {"d_min": a.d_min})
  rows = {name: [] for name in models}
  for k in range(a.cases):
    case = synthetic.make_case(train.example_seed(7, compare.COMPARE_STREAM, k), params)
    f_obs = reflections.prepare(case.f_obs, source="synthetic").f_obs
    for name, model in models.items():
      rows[name].append(scores(model, case, f_obs))
  print("suite=molecules, seed 7, cases 0-%d at d_min %.1f A (means over cases)\n" % (a.cases - 1, a.d_min))
  print("| | " + " | ".join(models) + " |")
  print("|---" * (len(models) + 1) + "|")
  labels = ("CC of the map with its own target", "raw read-out (peaks above 0.1) per true site and inverse",
            "2N highest peaks: true sites within 0.5 A", "2N highest peaks: peaks within 1 A of a true site")
  for i, label in enumerate(labels):
    print("| %s | %s |" % (label, " | ".join("%.3f" % np.mean([r[i] for r in rows[n]]) for n in models)))


if __name__ == "__main__":
  main()
