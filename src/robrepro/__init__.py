"""robrepro: one package behind the reproduction of four robustness papers.

Modules, each with one job:
  config      load, merge and validate the workflow configuration (JSON schema)
  plan        expand the configuration into the runs the workflow builds
  data        datasets (torchvision MNIST/CIFAR-10, synthetic CIFAR-10) as in-memory tensors
  models      the model registry shared by all papers
  engine      the one training engine (checkpoints, resume, seeds)
  objectives  pluggable training objectives (natural, adversarial, certified, ...)
  attacks     the attack suite and the epsilon-grid robust-accuracy evaluation
  bounds      the bound engine (IBP, CROWN, CROWN-IBP)
  results     result files with provenance, written atomically
  tables_figures  tables and figures with published numbers beside reproduced ones
"""

from __future__ import annotations

import sys

__version__ = "0.1.0"

# Kept referenced for the life of the process: the operator definitions vanish when it is collected.
_TV_LIB = None


def import_torchvision():
    """Import torchvision, working around the CUDA-only wheel on CPU torch.

    PyPI's torchvision 0.28.0 is a CUDA build; with CPU torch its compiled ops cannot load and the
    import fails on ``register_fake("torchvision::nms")``. Defining the two operator schemas first
    lets the pure-Python parts (datasets, transforms, models) import. Where the compiled ops load,
    the first import succeeds and nothing is patched. This runs on import of robrepro, so every
    process that imports the package (workers, cluster jobs) gets it before torchvision.
    """
    global _TV_LIB
    import torch

    try:
        import torchvision

        return torchvision
    except RuntimeError as err:
        if "torchvision::nms" not in str(err):
            raise
    for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        del sys.modules[name]
    _TV_LIB = torch.library.Library("torchvision", "FRAGMENT")
    for op in ("nms", "qnms"):
        _TV_LIB.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    import torchvision

    return torchvision
