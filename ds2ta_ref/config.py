"""Model configuration: one frozen dataclass and the named presets (docs/spec.md §4.10).

Every convention on which the paper, the Spikformer code and SpikingJelly
disagree is a field here, with the paper's choice as the default; docs/spec.md §8
lists every field with its alternatives.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "ModelConfig",
    "PRESETS",
    "preset",
    "field_kind",
    "check_override",
    "parse_overrides",
    "differing_overrides",
    "FLOAT_RANGES",
]


@dataclass(frozen=True)
class ModelConfig:
    """Architecture and conventions of a DS2TA (or, with both switches off, Spikformer) model."""

    # --- data -----------------------------------------------------------------
    img_size: int = 32  # square input images (H = W)
    in_channels: int = 3
    num_classes: int = 10
    T: int = 4  # time steps (static images are repeated T times: direct encoding)
    # --- backbone (Spikformer) ------------------------------------------------
    sps: str = "cifar"  # "cifar": max-pool after SPS stages 3 and 4; "dvs": after every stage
    depth: int = 4  # encoder blocks
    dim: int = 384  # embedding dimension D
    heads: int = 12  # H; head_dim d = D // H
    mlp_ratio: int = 4
    qkv_bias: bool = True  # CIFAR code: q/k/v linears have biases; DVS code: no bias
    scale: float = 0.125  # attention scale (CIFAR code 0.125, DVS code 0.25)
    # --- DS2TA switches (paper Table 4); both off is Spikformer ---------------
    tasa: bool = True
    nsad: bool = True
    # --- TASA (Eq. 1, 4, 5) ---------------------------------------------------
    window: int = 3  # T_AW: lags 0 .. window-1; with tasa=False the window is 1
    tau0: float = 4.0  # initial decay exponent
    tau_per_site: bool = False  # False: one tau per block shared by q/k/v and proj
    frozen_tau: bool = False
    # --- NSAD (Eq. 6, 7) ------------------------------------------------------
    u0: float = 3.0  # initial denoising threshold u_h
    frozen_u: bool = False  # True: u_h stays at u0 (its gradient is exactly 0; a, b, c, d, e still learn)
    nsad_rounding: str = "nearest"  # or "floor"
    # --- LIF neurons (Eq. 2, 3) -----------------------------------------------
    tau_m: float = 2.0
    v_threshold: float = 1.0
    attn_v_threshold: float = 0.5  # the LIF after (A @ v) * scale
    decay_input: bool = False  # paper form; True reproduces SpikingJelly / Spikformer
    detach_reset: bool = True
    surrogate: str = "sigmoid"
    alpha: float | None = None  # surrogate sharpness; None: the surrogate's default (sigmoid 4, atan 2)
    # --- BatchNorm (PyTorch conventions) ---------------------------------------
    bn_momentum: float = 0.1
    bn_eps: float = 1e-5

    def __post_init__(self):
        def need(cond, msg):
            if not cond:
                raise ValueError(msg)

        for name in ("img_size", "in_channels", "num_classes", "T", "depth", "dim", "heads", "mlp_ratio", "window"):
            value = getattr(self, name)
            need(
                isinstance(value, int) and not isinstance(value, bool) and value >= 1,
                f"{name} must be an integer >= 1, got {value!r}",
            )
        need(self.num_classes >= 2, f"num_classes must be >= 2, got {self.num_classes}")
        need(self.sps in ("cifar", "dvs"), f"sps must be 'cifar' or 'dvs', got {self.sps!r}")
        need(
            self.dim % self.heads == 0, f"heads must divide dim: dim={self.dim} is not a multiple of heads={self.heads}"
        )
        need(self.dim % 8 == 0, f"dim must be a multiple of 8 (SPS channels D/8, D/4, D/2), got {self.dim}")
        pools = 2 if self.sps == "cifar" else 4
        need(
            self.img_size % (2**pools) == 0,
            f"img_size must be a multiple of {2**pools} for sps={self.sps!r}, got {self.img_size}",
        )
        need(
            self.nsad_rounding in ("nearest", "floor"),
            f"nsad_rounding must be one of ['floor', 'nearest'], got {self.nsad_rounding!r}",
        )
        need(
            self.surrogate in ("sigmoid", "atan"),
            f"surrogate must be one of ['atan', 'sigmoid'], got {self.surrogate!r}",
        )
        need(self.tau_m >= 1, f"tau_m must be >= 1, got {self.tau_m}")
        need(self.alpha is None or self.alpha > 0, f"alpha must be None or > 0, got {self.alpha}")
        _check_meanings(self)  # issue 18 item 6: every remaining field against its meaning

    @property
    def head_dim(self) -> int:
        return self.dim // self.heads

    @property
    def num_tokens(self) -> int:
        pools = 2 if self.sps == "cifar" else 4
        return (self.img_size // 2**pools) ** 2

    @property
    def effective_window(self) -> int:
        """The TASA window in use: ``window`` with TASA on, 1 (spatial-only) with it off."""
        return self.window if self.tasa else 1

    def replace(self, **changes) -> ModelConfig:
        return dataclasses.replace(self, **changes)


# What each float field means, hence the values it takes (issue 18 item 6): (lowest, strict, highest).
FLOAT_RANGES = {
    "scale": (0.0, True, None),  # attention scale: > 0
    "tau0": (None, False, None),  # TASA decay exponent: any finite value (the rounded tau is clipped at 0)
    "u0": (None, False, None),  # NSAD threshold: any finite value
    "tau_m": (1.0, False, None),  # membrane time constant: >= 1 (the decay 1 - 1/tau_m is in [0, 1))
    "v_threshold": (0.0, True, None),  # firing threshold: > 0 (a neuron at rest, v = 0, must not fire)
    "attn_v_threshold": (0.0, True, None),
    "alpha": (0.0, True, None),  # surrogate sharpness: > 0 (or None)
    "bn_momentum": (0.0, False, 1.0),  # running-statistics update weight, in [0, 1]
    "bn_eps": (0.0, True, None),  # added to the variance under the square root: > 0
}
BOOL_FIELDS = ("qkv_bias", "tasa", "nsad", "tau_per_site", "frozen_tau", "frozen_u", "decay_input", "detach_reset")


def _check_meanings(cfg: ModelConfig) -> None:
    """Raise ``ValueError`` naming the field if a float field of ``cfg`` is not a finite number in its
    range (:data:`FLOAT_RANGES`) or a switch is not ``True``/``False``; one line each."""
    for name, (low, strict, high) in FLOAT_RANGES.items():
        value = getattr(cfg, name)
        if name == "alpha" and value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
            raise ValueError(f"{name} must be a finite number, got {value!r}")
        if low is not None and (value <= low if strict else value < low):
            raise ValueError(f"{name} must be {'>' if strict else '>='} {low:g}, got {value!r}")
        if high is not None and value > high:
            raise ValueError(f"{name} must be <= {high:g}, got {value!r}")
    for name in BOOL_FIELDS:
        if not isinstance(getattr(cfg, name), bool):
            raise ValueError(f"{name} must be True or False, got {getattr(cfg, name)!r}")


PRESETS: dict[str, ModelConfig] = {
    # Paper Table 1/2: ViT-4-384 at T = 4 on CIFAR.
    "cifar10": ModelConfig(),
    "cifar100": ModelConfig(num_classes=100),
    # CIFAR10-DVS / DVS-Gesture: 128x128x2 events, T = 10, ViT-2-256, 16 heads.
    "dvs": ModelConfig(
        img_size=128,
        in_channels=2,
        num_classes=10,
        T=10,
        sps="dvs",
        depth=2,
        dim=256,
        heads=16,
        qkv_bias=False,
        scale=0.25,
        tau0=2.0,
        u0=2.0,
    ),
    # Small enough to train on 2 CPU cores in minutes (digits upsampled to 16x16). T = 2: on
    # static digits it reached the same accuracy as T = 4 at half the cost, so twice the epochs
    # fit the main job's 2-minute budget (event data sets their own T).
    "tiny": ModelConfig(img_size=16, in_channels=1, num_classes=10, T=2, depth=1, dim=64, heads=4, tau0=2.0, u0=1.0),
}


def preset(name: str, **overrides) -> ModelConfig:
    """A named preset (``"cifar10"``, ``"cifar100"``, ``"dvs"``, ``"tiny"``) with fields overridden.

    Raises ``ValueError`` naming ``name`` (and listing the presets) if unknown,
    or naming the field if an override is not a field of :class:`ModelConfig`.
    """
    if name not in PRESETS:
        raise ValueError(f"preset name must be one of {sorted(PRESETS)}, got {name!r}")
    fields = {f.name for f in dataclasses.fields(ModelConfig)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ValueError(f"unknown ModelConfig field(s) {unknown}; valid fields: {sorted(fields)}")
    return dataclasses.replace(PRESETS[name], **overrides)


def field_kind(name: str) -> type:
    """The type of a :class:`ModelConfig` field's values (``alpha``: ``float``, or ``None``)."""
    return float if name == "alpha" else type(getattr(ModelConfig(), name))


def check_override(name: str, value):
    """``value`` for field ``name`` of :class:`ModelConfig`, checked for its type (an int is
    accepted for a float field and returned as a float). ``ValueError`` naming the field if
    ``name`` is not a field or ``value`` has the wrong type; the values themselves are checked
    by ``ModelConfig`` when it is built."""
    names = [f.name for f in dataclasses.fields(ModelConfig)]
    if name not in names:
        raise ValueError(f"{name!r} is not a ModelConfig field; fields: {', '.join(names)}")
    kind = field_kind(name)
    if name == "alpha" and value is None:
        return None
    if kind is bool:
        ok = isinstance(value, bool)
    elif kind is int:
        ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    elif kind is float:
        ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    else:
        ok = isinstance(value, kind)
    if not ok:
        expected = "True or False" if kind is bool else kind.__name__ + (" or None" if name == "alpha" else "")
        raise ValueError(f"{name} expects {expected}, got {value!r}")
    return kind(value)


def parse_overrides(items: Sequence[str], option: str = "--set") -> dict:
    """Command-line ``["field=value", ...]`` to typed :class:`ModelConfig` overrides.

    Booleans are ``true``/``false``/``1``/``0``, ``alpha`` also takes ``none``.
    ``ValueError`` naming ``option`` and the item if a name is not a field, a
    value does not parse, or a field is given twice (issue 18 item 6).
    """
    out: dict[str, object] = {}
    for item in items:
        name, sep, text = item.partition("=")
        if not sep or not name:
            raise ValueError(f"{option} expects field=value, got {item!r}")
        names = [f.name for f in dataclasses.fields(ModelConfig)]
        if name not in names:
            raise ValueError(f"{option} {item!r}: {name!r} is not a ModelConfig field; fields: {', '.join(names)}")
        kind = field_kind(name)
        try:
            if text.lower() == "none" and name == "alpha":
                value = None
            elif kind is bool:
                if text.lower() not in ("true", "false", "1", "0"):
                    raise ValueError
                value = text.lower() in ("true", "1")
            else:
                value = kind(text)
        except ValueError:
            expected = "true or false" if kind is bool else kind.__name__ + (" or none" if name == "alpha" else "")
            raise ValueError(f"{option} {item!r}: {name} expects {expected}") from None
        if name in out:
            raise ValueError(
                f"{option} {item!r}: {name} is given twice ({name}={text_of(out[name])} before); give each field once"
            )
        out[name] = value
    return out


def text_of(value) -> str:
    """A ``--set`` value as it would be typed: ``true``, ``none``, ``2``, ``0.5``, ``floor``."""
    if isinstance(value, bool) or value is None:
        return str(value).lower()
    return f"{value:g}" if isinstance(value, float) else str(value)


def differing_overrides(cfg: ModelConfig, overrides) -> list[tuple[str, object, object]]:
    """The ``(field, value in cfg, given value)`` of the ``overrides`` (``(field, value)`` pairs or a
    dict) that differ from ``cfg``: a resumed run accepts a ``--set`` equal to its model's value."""
    items = overrides.items() if isinstance(overrides, dict) else overrides
    return [(name, getattr(cfg, name), value) for name, value in items if getattr(cfg, name) != value]
