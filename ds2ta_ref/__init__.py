"""ds2ta_ref: a pure-NumPy reference implementation of DS2TA.

DS2TA ("Denoising Spiking Transformer with Attenuated Spatiotemporal
Attention", Xu, Geng, Yin, Li, 2024) is a spiking vision transformer built on
Spikformer. Every forward here has a hand-written backward-through-time with
surrogate gradients, checked in float64 against finite differences and PyTorch.

One module per concept of the paper: :mod:`~ds2ta_ref.surrogate`,
:mod:`~ds2ta_ref.lif` (Eq. 2-3), :mod:`~ds2ta_ref.tasa` (Eq. 1, 4-5),
:mod:`~ds2ta_ref.nsad` (Eq. 6-7), :mod:`~ds2ta_ref.layers` (conv, BatchNorm,
pooling, linear, loss), :mod:`~ds2ta_ref.bnlif` (the BN+LIF unit),
:mod:`~ds2ta_ref.sps` (patch splitting), :mod:`~ds2ta_ref.attention` (the
attention block), :mod:`~ds2ta_ref.mlp`, :mod:`~ds2ta_ref.model` (the
transformer), :mod:`~ds2ta_ref.params` (names, shapes, initialization),
:mod:`~ds2ta_ref.spikformer` (checkpoint import), :mod:`~ds2ta_ref.optim`,
:mod:`~ds2ta_ref.data`, :mod:`~ds2ta_ref.checkpoint`, :mod:`~ds2ta_ref.gradcheck`.

The whole model::

    import numpy as np, ds2ta_ref
    cfg = ds2ta_ref.preset("tiny")
    params = ds2ta_ref.init_params(cfg, np.random.default_rng(0))
    state = ds2ta_ref.init_state(cfg)
    logits, state, cache = ds2ta_ref.model.forward(images, params, state, cfg, training=True)
    dimages, grads = ds2ta_ref.model.backward(dlogits, cache)

``ds2ta_ref.model_forward`` is :func:`ds2ta_ref.model.forward`; ``ds2ta_ref.model_backward``
is the old contract ``(dlogits, cache) -> grads``, kept with a ``DeprecationWarning``.
"""

from ._startup import interrupted_while_starting, tune_blas_for_command

tune_blas_for_command()  # before NumPy loads OpenBLAS: the command's process only

from ._version import __version__  # noqa: E402

try:  # Ctrl-C while the command starts is one line (ds2ta_ref._startup), not a traceback
    from . import (
        attention,
        bnlif,
        checkpoint,
        data,
        gradcheck,
        layers,
        lif,
        mlp,
        model,
        nsad,
        optim,
        params,
        spikformer,
        sps,
        surrogate,
        tasa,
    )
    from .config import PRESETS, ModelConfig, preset
    from .model import backward_grads as model_backward  # deprecated: model.backward returns (dx, grads)
    from .model import forward as model_forward
    from .params import count_params, init_params, init_state
    from .spikformer import load_spikformer_npz
except KeyboardInterrupt:
    interrupted_while_starting()
    raise

__all__ = [
    "attention",
    "bnlif",
    "checkpoint",
    "data",
    "gradcheck",
    "layers",
    "lif",
    "mlp",
    "model",
    "nsad",
    "optim",
    "params",
    "sps",
    "spikformer",
    "surrogate",
    "tasa",
    "ModelConfig",
    "PRESETS",
    "preset",
    "init_params",
    "init_state",
    "count_params",
    "model_forward",
    "model_backward",
    "load_spikformer_npz",
    "__version__",
]
