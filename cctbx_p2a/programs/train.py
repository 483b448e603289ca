"""p2a.train: train a Patterson-to-atoms model on synthetic data."""
from __future__ import annotations

import cctbx_p2a  # noqa: F401  (import-order fix before torch)

import os

from libtbx.program_template import ProgramTemplate
from libtbx.utils import Sorry

from cctbx_p2a import phil
from cctbx_p2a.programs import common

master_phil_str = phil.master_phil_str("train", "synthetic", "patterson")


class Program(ProgramTemplate):
  program_name = "p2a.train"
  description = """
Train a Patterson-to-atoms network on seeded synthetic data (made on the fly,
giving the network what the cctbx Patterson path gives it), with checkpoints, resume,
validation on a fixed held-out set and a final evaluation in the model card.

  p2a.train train.name=my_model train.steps=4000 [train.resume=my_model.ckpt]
  p2a.train network.architecture=hurwitz2020 patterson.box_edge=40 target.output_box_edge=40
  torchrun --nproc_per_node=4 -m cctbx_p2a.programs.train train.name=my_model ...

Writes <train.output_dir>/<train.name>.pt, .json (model card) and .ckpt.
Under torchrun each process trains a replica (gloo on CPUs, NCCL on GPUs)
and rank 0 writes the files; train.max_minutes= runs a long training in
chunks that each end with a checkpoint (docs/training.md).
"""
  datatypes = ["phil"]
  master_phil_str = master_phil_str

  def validate(self):
    t = self.params.train
    if t.steps < 1 or t.batch_size < 1:
      raise Sorry("train.steps and train.batch_size must be at least 1.")
    if t.resume and not os.path.isfile(t.resume):
      raise Sorry("Checkpoint %s not found (train.resume=)." % t.resume)
    stem = os.path.join(t.output_dir, t.name)
    # a resumed chunk replaces the snapshot its own run wrote at the end of the last chunk
    if os.path.exists(stem + ".pt") and not t.resume and not self.params.output.overwrite:
      raise Sorry("%s.pt already exists: choose another train.name= or set output.overwrite=True."
                  % stem)
    if os.path.exists(stem + ".ckpt") and not t.resume and not self.params.output.overwrite:
      raise Sorry("%s.ckpt exists from an earlier run: continue it with train.resume=%s.ckpt, or set "
                  "output.overwrite=True to start again." % (stem, stem))

  def run(self):
    from cctbx_p2a import train
    self.card = train.run(self.params, log=self.logger)

  def get_results(self):
    return self.card


def main(args=None):
  """Console script p2a.train; returns the exit status (0 done, 1 refused)."""
  import sys
  if int(os.environ.get("RANK", "0")) > 0:   # under torchrun, rank 0 alone reports (errors still reach stderr)
    sys.stdout = open(os.devnull, "w")
  return common.run(Program, args, data_key=None, symmetry_key=None)


if __name__ == "__main__":
  import sys
  sys.exit(main())
