"""``ds2ta_ref.torch``: the DS2TA model in PyTorch, equal to the NumPy reference (optional extra ``torch``).

Importing :mod:`ds2ta_ref` never imports this package (nor torch); import it
explicitly::

    import ds2ta_ref.torch as dt
    model = dt.DS2TA(ds2ta_ref.preset("cifar10")).to("cuda")
    logits = model(images)                          # (B, C, H, W) or (T, B, C, H, W)
    params, state = dt.to_numpy(model)              # NumPy arrays, the reference's names
    model = dt.from_numpy(params, state, cfg)       # and back
    model = dt.from_spikformer(state_dict, cfg)     # a Spikformer checkpoint (norm1/norm2 dropped)

See ``docs/torch.md`` for training (single process, GPU, DistributedDataParallel).
"""

try:
    import torch as _torch  # noqa: F401  (the top-level torch, not this package)
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError('ds2ta_ref.torch needs PyTorch: pip install "ds2ta_ref[torch]"') from exc

from . import functional
from .model import DS2TA, Record, from_numpy, from_spikformer, load_numpy, to_numpy
from .train import evaluate_torch, train_torch

__all__ = [
    "DS2TA",
    "Record",
    "from_numpy",
    "from_spikformer",
    "load_numpy",
    "to_numpy",
    "functional",
    "train_torch",
    "evaluate_torch",
]
