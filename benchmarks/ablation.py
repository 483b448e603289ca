"""The paper's key finding, measured: the network learns only when the
training pairs are unambiguous.  Three short trainings, identical but for the
target: the full recipe (centred on the centroid, atoms + inverses), no
centring (the molecule shifted by a random translation of up to 4 A, as it
would lie in the crystal), no inverses
(atoms only: the Patterson cannot tell them from their inverses).

    python benchmarks/ablation.py [steps] [cases]

Prints validation loss relative to predicting nothing (1.0 = learned nothing)
and the read-out scored against each run's own target convention, and writes
docs/ablation_loss.png.
"""
import cctbx_p2a  # noqa: F401

import json
import os
import sys


from cctbx_p2a import evaluation, network, patterson, phil, plots, synthetic, train

steps = int(sys.argv[1]) if len(sys.argv) > 1 else 600
n_cases = int(sys.argv[2]) if len(sys.argv) > 2 else 50
out_dir = os.path.join("runs", "ablation")
RUNS = {"full recipe": {}, "no centring": {"target.centre": False},
        "no inverses": {"target.inverses": False}}


def zero_baseline(params, geometry):
  """Loss of predicting an empty map on the validation set."""
  import torch
  ys = [torch.from_numpy(train.make_pair(params, geometry, train.VALIDATION_STREAM, k)[1])
        for k in range(params.train.validation_cases)]
  y = torch.stack(ys)
  return train.peak_weighted_mse(torch.zeros_like(y), y, params.train.peak_weight).item()


def score(model, params, n):
  scores = []
  for k in range(n):
    case = synthetic.make_case(train.example_seed(params.train.seed, train.EVALUATION_STREAM, k),
                               params.synthetic)
    x = patterson.model_input_from_params(synthetic.as_amplitudes(case.f_obs), params.patterson)
    y = model.predict(x)
    sites = case.sites_centred if params.target.centre else \
      case.sites_centred + synthetic.ablation_offset(case.seed)
    scores.append(evaluation.score_read_out(sites, y, model.voxel, inverses=params.target.inverses))
  return evaluation.summarise(scores, [0.0])


rows, histories = [], {}
for label, overrides in RUNS.items():
  name = label.replace(" ", "_")
  settings = {"train.name": name, "train.output_dir": out_dir, "train.steps": steps,
              "train.validate_every": max(steps // 6, 1), "train.checkpoint_every": 100,
              "train.evaluation_cases": 0, "train.seed": 31, "train.data_workers": 1,
              "train.threads": 1}
  settings.update(overrides)
  params = phil.extract("train", "synthetic", "patterson", **settings)
  if os.path.exists(os.path.join(out_dir, name + ".pt")):  # trained before: score it again
    card = json.load(open(os.path.join(out_dir, name + ".json")))
  else:
    card = train.run(params, progress=False)
  model = network.load(os.path.join(out_dir, name))
  baseline = zero_baseline(params, train.Geometry(params))
  history = card["training"]["history"]
  val = [h["validation_loss"] for h in history if h["validation_loss"] is not None][-1]
  for h in history:  # relative to predicting nothing, so the three are comparable
    h["train_loss"] /= baseline
    if h["validation_loss"] is not None:
      h["validation_loss"] /= baseline
  histories[label] = history
  s = score(model, params, n_cases)
  rows.append((label, val / baseline, s, card["wall_time_s"]))

print("%-12s %17s %11s %12s %12s %15s %8s" % ("target", "val. loss/empty", "mean err A", "within 0.5A",
                                              "within 1.0A", "peak precision", "train s"))
for label, rel, s, t in rows:
  print("%-12s %17.3f %11s %12.3f %12.3f %15.3f %8.0f" % (
    label, rel, "%.3f" % s["mean_error_A"] if s["mean_error_A"] is not None else "-",
    s["atoms_within_0.5A"], s["atoms_within_1.0A"], s["peak_precision"], t))
os.makedirs("docs", exist_ok=True)
plots.loss_curves(histories, os.path.join("docs", "ablation_loss.png"),
                  title="Ablation: loss relative to an empty prediction (%d steps)" % steps)
with open(os.path.join(out_dir, "ablation.json"), "w") as f:
  json.dump([{"target": l, "validation_loss_relative": r, **s, "time_s": t} for l, r, s, t in rows], f,
            indent=2)
