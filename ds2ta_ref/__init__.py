"""ds2ta_ref: a pure-NumPy reference implementation of DS2TA.

DS2TA ("Denoising Spiking Transformer with Attenuated Spatiotemporal
Attention", Xu, Geng, Yin, Li, 2024) is a spiking vision transformer built on
Spikformer. Every forward here has a hand-written backward-through-time with
surrogate gradients, checked in float64 against finite differences and PyTorch.

Modules, one per concept of the paper: :mod:`~ds2ta_ref.surrogate`,
:mod:`~ds2ta_ref.lif` (Eq. 2-3), :mod:`~ds2ta_ref.gradcheck`.
"""
from . import gradcheck, lif, surrogate

__version__ = "0.1.0"

__all__ = ["gradcheck", "lif", "surrogate", "__version__"]
