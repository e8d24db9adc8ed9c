"""DS2TA as a ``torch.nn.Module`` whose ``state_dict`` is the NumPy model's parameters and state.

The module tree mirrors the full names of :mod:`ds2ta_ref.params`, so that
``DS2TA(cfg).state_dict()`` has exactly the keys of
``param_shapes(cfg)`` and ``state_shapes(cfg)``::

    patch_embed.proj_conv.weight, patch_embed.proj_bn.{weight,bias,running_mean,...}, ...
    block.{i}.attn.q_linear.weight, ..., block.{i}.attn.tau, block.{i}.attn.nsad
    block.{i}.mlp.fc1_linear.weight, ...
    head.weight, head.bias

The forward computes what :func:`ds2ta_ref.model.forward` computes (docs/spec.md §4),
with the kernels of :mod:`ds2ta_ref.torch.functional`; ``self.training`` plays the
role of ``training`` (BatchNorm batch statistics and running-statistic updates).
A frozen ``tau`` (``cfg.frozen_tau``) is a parameter with ``requires_grad=False``; a frozen
NSAD threshold ``u`` (``cfg.frozen_u``, column 5 of ``nsad``) is detached in the forward, so
its gradient is exactly 0 while ``a .. e`` (columns 0-4) still get theirs.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .. import nsad as _nsad
from .. import params as _params
from .. import sps as _sps
from ..config import ModelConfig
from . import functional as TF

__all__ = ["DS2TA", "Record", "from_numpy", "to_numpy"]


class Record(NamedTuple):
    """What a forward with ``record=True`` measures besides the logits (as tensors, no host sync)."""

    spike_count: torch.Tensor  # 0-d, spikes of every LIF neuron over every time step
    neuron_count: int  # LIF neurons times time steps
    zeros: torch.Tensor  # (depth,) zero entries of each block's attention map A
    entries: list  # per block, the number of entries of A


def _lif_options(cfg: ModelConfig, v_threshold: float | None = None) -> dict:
    return dict(
        tau_m=cfg.tau_m,
        v_threshold=cfg.v_threshold if v_threshold is None else v_threshold,
        decay_input=cfg.decay_input,
        detach_reset=cfg.detach_reset,
        surrogate=cfg.surrogate,
        alpha=cfg.alpha,
    )


class _Counter:
    """Adds up spikes and neurons when recording; does nothing otherwise."""

    def __init__(self, enabled: bool):
        self.enabled, self.neurons = enabled, 0
        self.spikes: torch.Tensor | int = 0
        self.zeros: list[torch.Tensor] = []
        self.entries: list[int] = []

    def spikes_of(self, s: torch.Tensor) -> torch.Tensor:
        if self.enabled:
            self.spikes = self.spikes + s.detach().sum()
            self.neurons += s.numel()
        return s

    def attention_map(self, A: torch.Tensor) -> None:
        if self.enabled:
            self.zeros.append((A.detach() == 0).sum())
            self.entries.append(A.numel())


def _bn_lif(bn: nn.Module, z: torch.Tensor, cfg: ModelConfig, count: _Counter) -> torch.Tensor:
    """``LIF(BN(z))`` on tokens ``(T, B, N, C)``: BatchNorm over the flattened ``T*B*N`` rows."""
    y = bn(z.reshape(-1, z.shape[-1])).reshape(z.shape)
    return count.spikes_of(TF.lif(y, **_lif_options(cfg)))


class SPS(nn.Module):
    """Spiking patch splitting, :mod:`ds2ta_ref.sps`: frames ``(T, B, C, H, W)`` -> tokens ``(T, B, N, D)``."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        ch = _sps.channels(cfg)
        for i, (conv, bn) in enumerate(zip(_sps.CONVS, _sps.BNS)):
            self.add_module(conv, nn.Conv2d(ch[i], ch[i + 1], 3, padding=1, bias=False))
            self.add_module(bn, nn.BatchNorm2d(ch[i + 1], eps=cfg.bn_eps, momentum=cfg.bn_momentum))
        self.rpe_conv = nn.Conv2d(cfg.dim, cfg.dim, 3, padding=1, bias=False)
        self.rpe_bn = nn.BatchNorm2d(cfg.dim, eps=cfg.bn_eps, momentum=cfg.bn_momentum)

    def _unit(self, h, conv, bn, T, count):  # (TB, C, H, W) -> spikes (TB, C', H, W)
        z = bn(conv(h))  # BatchNorm2d over the T*B*H*W values of each channel
        s = TF.lif(z.reshape((T, -1) + z.shape[1:]), **_lif_options(self.cfg))  # (T, B, C', H, W)
        return count.spikes_of(s).reshape(z.shape)

    def forward(self, frames: torch.Tensor, count: _Counter) -> torch.Tensor:
        T, B = frames.shape[:2]
        h = frames.reshape((T * B,) + frames.shape[2:])  # (TB, C, H, W)
        for conv, bn, pool in zip(_sps.CONVS, _sps.BNS, _sps.pooled(self.cfg)):
            h = self._unit(h, getattr(self, conv), getattr(self, bn), T, count)
            if pool:
                h = F.max_pool2d(h, kernel_size=3, stride=2, padding=1)  # first maximum wins ties
        feat = h + self._unit(h, self.rpe_conv, self.rpe_bn, T, count)  # (TB, D, h, w), values {0, 1, 2}
        return feat.reshape(T, B, feat.shape[1], -1).transpose(2, 3)  # (T, B, N, D)


class Attention(nn.Module):
    """The DS2TA attention block, :mod:`ds2ta_ref.attention` (TASA inputs, NSAD on the score map)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        D = cfg.dim
        for site in ("q", "k", "v", "proj"):
            self.add_module(f"{site}_linear", nn.Linear(D, D, bias=site == "proj" or cfg.qkv_bias))
            self.add_module(f"{site}_bn", nn.BatchNorm1d(D, eps=cfg.bn_eps, momentum=cfg.bn_momentum))
        learn = not cfg.frozen_tau
        if cfg.tasa:
            self.tau = nn.Parameter(torch.tensor(float(cfg.tau0)), requires_grad=learn)
            if cfg.tau_per_site:
                self.proj_tau = nn.Parameter(torch.tensor(float(cfg.tau0)), requires_grad=learn)
        if cfg.nsad:  # NSAD's own initialization (a = 1, u = u0: A = S above u), as ds2ta_ref.nsad.init_params
            init = torch.from_numpy(_nsad.init_params(cfg.heads, cfg.u0))
            self.nsad = nn.Parameter(init.to(torch.get_default_dtype()))

    def _mix(self, x, site):
        """TASA's attenuated window sum of the input of ``site`` (the identity without TASA)."""
        if not self.cfg.tasa:
            return x
        tau = self.proj_tau if (site == "proj" and self.cfg.tau_per_site) else self.tau
        return TF.tasa_mix(x, tau, self.cfg.window)

    def forward(self, x: torch.Tensor, count: _Counter) -> torch.Tensor:
        cfg = self.cfg
        T, B, N, D = x.shape
        H, d = cfg.heads, cfg.head_dim
        x_mix = self._mix(x, "q")  # shared by q, k and v (one tau per block for these sites)
        q, k, v = (
            _bn_lif(getattr(self, f"{site}_bn"), getattr(self, f"{site}_linear")(x_mix), cfg, count)
            .reshape(T, B, N, H, d)
            .transpose(2, 3)
            for site in ("q", "k", "v")
        )  # (T, B, H, N, d)
        S = q @ k.transpose(-1, -2)  # (T, B, H, N, N) counts in [0, d]
        nsad: Any = self.nsad if cfg.nsad else None
        if cfg.nsad and cfg.frozen_u:  # u (column 5) is a constant: its gradient is exactly 0, as in NumPy
            nsad = torch.cat([nsad[:, :5], nsad[:, 5:].detach()], dim=1)  # (H, 6)
        A = (
            TF.nsad(S, nsad, head_dim=d, surrogate=cfg.surrogate, alpha=cfg.alpha, rounding=cfg.nsad_rounding)
            if cfg.nsad
            else S
        )
        count.attention_map(A)
        y = ((A @ v) * cfg.scale).transpose(2, 3).reshape(T, B, N, D)  # heads merged
        y = count.spikes_of(TF.lif(y, **_lif_options(cfg, cfg.attn_v_threshold)))
        return _bn_lif(self.proj_bn, self.proj_linear(self._mix(y, "proj")), cfg, count)  # type: ignore[arg-type,operator]


class MLP(nn.Module):
    """``LIF(BN(fc2(LIF(BN(fc1(x))))))``, :mod:`ds2ta_ref.mlp`."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        D, Dh = cfg.dim, cfg.dim * cfg.mlp_ratio
        self.fc1_linear = nn.Linear(D, Dh)
        self.fc1_bn = nn.BatchNorm1d(Dh, eps=cfg.bn_eps, momentum=cfg.bn_momentum)
        self.fc2_linear = nn.Linear(Dh, D)
        self.fc2_bn = nn.BatchNorm1d(D, eps=cfg.bn_eps, momentum=cfg.bn_momentum)

    def forward(self, x: torch.Tensor, count: _Counter) -> torch.Tensor:
        h = _bn_lif(self.fc1_bn, self.fc1_linear(x), self.cfg, count)
        return _bn_lif(self.fc2_bn, self.fc2_linear(h), self.cfg, count)


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.attn = Attention(cfg)
        self.mlp = MLP(cfg)

    def forward(self, x: torch.Tensor, count: _Counter) -> torch.Tensor:
        x = x + self.attn(x, count)  # additive residual: an integer-valued stream
        return x + self.mlp(x, count)


class DS2TA(nn.Module):
    """DS2TA (or, with ``cfg.tasa = cfg.nsad = False``, Spikformer) for any :class:`ModelConfig`.

    ``DS2TA(cfg, seed=0)`` starts from :func:`ds2ta_ref.params.init_params` with
    ``numpy.random.default_rng(seed)`` (drawn in float32, held in torch's default
    dtype; ``.double()`` or ``.to(...)`` to change), i.e. the NumPy model's
    initialization, number for number; ``seed=None`` leaves PyTorch's own for the
    convolutions, linear maps and BatchNorms, with ``tau = tau0`` and NSAD's own
    initialization (:func:`ds2ta_ref.nsad.init_params`: ``a = 1``, ``u = u0``), as in NumPy.

    ``forward(x)``: static images ``(B, C, H, W)`` (repeated over the ``T`` steps)
    or time-major frames ``(T, B, C, H, W)`` -> logits ``(B, classes)``. With
    ``record=True`` it returns ``(logits, Record)`` (spike and attention-zero counts).
    """

    spikformer_dropped: tuple[str, ...] = ()  # what from_spikformer dropped (its unused LayerNorms)

    def __init__(self, cfg: ModelConfig, *, seed: int | None = 0):
        super().__init__()
        if not isinstance(cfg, ModelConfig):
            raise ValueError(f"cfg must be a ds2ta_ref.ModelConfig, got {type(cfg).__name__}")
        self.cfg = cfg
        self.patch_embed = SPS(cfg)
        self.block = nn.ModuleList([Block(cfg) for _ in range(cfg.depth)])
        self.head = nn.Linear(cfg.dim, cfg.num_classes)
        if seed is not None:
            load_numpy(
                self,
                _params.init_params(cfg, np.random.default_rng(seed), dtype=np.float32),
                _params.init_state(cfg, dtype=np.float32),
            )

    def frames(self, x: torch.Tensor) -> torch.Tensor:
        """The time-major frames ``(T, B, C, H, W)`` of an input (static images repeated ``T`` times)."""
        cfg = self.cfg
        expected = (cfg.in_channels, cfg.img_size, cfg.img_size)
        if x.dim() == 4 and tuple(x.shape[1:]) == expected:
            return x.unsqueeze(0).expand((cfg.T,) + tuple(x.shape))
        if x.dim() == 5 and x.shape[0] == cfg.T and tuple(x.shape[2:]) == expected:
            return x
        raise ValueError(
            f"x must be static images (B, {cfg.in_channels}, {cfg.img_size}, {cfg.img_size}) or time-major "
            f"frames ({cfg.T}, B, {cfg.in_channels}, {cfg.img_size}, {cfg.img_size}) for this config, "
            f"got shape {tuple(x.shape)}"
        )

    def forward(self, x: torch.Tensor, *, record: bool = False):
        count = _Counter(record)
        h = self.patch_embed(self.frames(x).to(self.head.weight.dtype), count)  # (T, B, N, D)
        for block in self.block:
            h = block(h, count)
        logits = self.head(h.mean(2).mean(0))  # mean over tokens, then over time: (B, classes)
        if not record:
            return logits
        zeros = torch.stack(count.zeros) if count.zeros else torch.zeros(0, dtype=torch.int64)
        return logits, Record(torch.as_tensor(count.spikes), count.neurons, zeros, count.entries)


def _state_names(cfg: ModelConfig) -> set:
    return set(_params.state_shapes(cfg))


def load_numpy(model: DS2TA, params: dict, state: dict) -> DS2TA:
    """Copy NumPy ``params`` and ``state`` into ``model`` (in place, keeping its dtype and
    device); names and shapes are validated first, naming every problem.
    A missing ``num_batches_tracked`` counts from 0, as in :func:`ds2ta_ref.model.forward`."""
    cfg = model.cfg
    _params.validate(params, _params.param_shapes(cfg), what="params")
    state = {
        **{k: np.array(0, dtype=np.int64) for k in _state_names(cfg) if k.endswith("num_batches_tracked")},
        **state,
    }
    _params.validate(state, _params.state_shapes(cfg), what="state (BatchNorm running statistics)")
    current = model.state_dict()
    model.load_state_dict(
        {
            k: torch.as_tensor(np.asarray(v)).to(dtype=current[k].dtype, device=current[k].device)
            for k, v in {**params, **state}.items()
        }
    )
    return model


def from_numpy(params: dict, state: dict, cfg: ModelConfig) -> DS2TA:
    """A :class:`DS2TA` holding ``params`` and ``state`` (NumPy arrays), in ``params``' float dtype, on the CPU."""
    dtype = {np.dtype(np.float64): torch.float64, np.dtype(np.float32): torch.float32}.get(
        np.asarray(params["head.weight"]).dtype, torch.float32
    )
    return load_numpy(DS2TA(cfg, seed=None).to(dtype), params, state)


def to_numpy(model: DS2TA) -> tuple[dict, dict]:
    """``(params, state)`` as NumPy arrays (copies), keyed and ordered as :mod:`ds2ta_ref.params`."""
    model = getattr(model, "module", model)  # unwrap DistributedDataParallel
    sd = model.state_dict()
    arrays = {k: v.detach().cpu().numpy().copy() for k, v in sd.items()}
    params = {k: arrays[k] for k in _params.param_shapes(model.cfg)}
    state = {k: arrays[k] for k in _params.state_shapes(model.cfg)}
    return params, state


def from_spikformer(state_dict: dict, cfg: ModelConfig) -> DS2TA:
    """A :class:`DS2TA` holding a Spikformer ``state_dict`` as the Spikformer code saves it.

    ``state_dict``: name -> tensor (or array), e.g. ``torch.load(path, map_location="cpu",
    weights_only=True)`` of a Spikformer checkpoint, or ``spikformer_model.state_dict()``.
    What :func:`ds2ta_ref.spikformer.load_spikformer_npz` does, without the ``.npz``: the
    ``block.{i}.norm1/norm2.*`` LayerNorms the Spikformer code builds but never uses are dropped
    (named in one ``UserWarning`` and in ``model.spikformer_dropped``), the DVS code's 1x1
    ``Conv1d`` names are translated, ``tau`` and ``nsad`` (absent from a Spikformer checkpoint)
    take their initial values from ``cfg``, and every other name and shape must match ``cfg``
    (a :class:`~ds2ta_ref.checkpoint.CheckpointError` naming every mismatch). The model is on
    the CPU in the checkpoint's float dtype (float32 for a float32 checkpoint).
    """
    import warnings

    from ..spikformer import spikformer_arrays

    if not hasattr(state_dict, "items"):
        raise TypeError(f"state_dict must be a mapping of names to tensors, got {type(state_dict).__name__}")
    arrays = {}
    for name, value in state_dict.items():
        arrays[name] = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
    floats = {a.dtype for a in arrays.values() if a.dtype.kind == "f"}
    dtype = np.float64 if floats == {np.dtype(np.float64)} else np.float32
    params, state, dropped = spikformer_arrays(arrays, cfg, dtype=dtype, source="Spikformer state_dict")
    model = from_numpy(params, state, cfg)
    model.spikformer_dropped = tuple(dropped)
    if dropped:
        warnings.warn(
            f"from_spikformer: dropped {len(dropped)} unused Spikformer entries "
            f"({', '.join(dropped)}): LayerNorms the Spikformer code builds but never uses",
            UserWarning,
            stacklevel=2,
        )
    return model
