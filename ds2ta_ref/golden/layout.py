"""The golden file's schema: its keys, their order and roles, and reading a file (docs/golden.md).

Format versions: 2 (written now) adds the stem's stage activations
(``act/patch_embed.stage{k}``, ``act/patch_embed.rpe``) and leaves out the
``tasa/`` and ``nsad/`` kernel sections of a config that switches them off;
1 (the first release) is still read and compared, in its own key order.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping

import numpy as np

from .. import attention, checkpoint, mlp, model, sps
from ..config import ModelConfig

__all__ = [
    "FORMAT_VERSION",
    "KERNEL_KEYS",
    "READABLE_VERSIONS",
    "GoldenFileError",
    "config_from_json",
    "forward_order",
    "is_input",
    "kernels",
    "read",
    "read_golden",
    "section",
]

FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)

#: Each kernel's keys, in the order they are computed: options, inputs, outputs, gradients.
KERNEL_KEYS = {
    "lif": ["options", "in/x", "in/dspikes", "out/spikes", "grad/x"],
    "tasa": [
        "options",
        "in/s",
        "in/weight",
        "in/bias",
        "in/tau",
        "in/dout",
        "out/out",
        "grad/s",
        "grad/weight",
        "grad/bias",
        "grad/tau",
    ],
    "nsad": ["options", "in/scores", "in/params", "in/dA", "out/table", "out/A", "grad/scores", "grad/params"],
}


class GoldenFileError(ValueError):
    """A golden or candidate file that cannot be used; the message names the file and what is wrong."""


def kernels(cfg: ModelConfig, format_version: int = FORMAT_VERSION) -> list[str]:
    """The kernel sections of a golden file for ``cfg``: ``lif`` always, ``tasa`` and ``nsad`` when the
    config uses them (format 1: all three)."""
    if format_version == 1:
        return list(KERNEL_KEYS)
    return ["lif"] + (["tasa"] if cfg.tasa else []) + (["nsad"] if cfg.nsad else [])


def stem_stages(cfg: ModelConfig) -> list[str]:
    """The stem's activation names, in forward order: ``stage0`` .. ``stage3`` (the conv-BN-LIF
    spikes of each stage, before its max-pool) and ``rpe`` (the relative-position branch's spikes)."""
    return [f"stage{k}" for k in range(len(sps.CONVS))] + ["rpe"]


def param_use_order(cfg: ModelConfig) -> list[str]:
    """Every parameter's full name in the order the forward first uses it.

    The backward produces the gradients in the reverse of this order; a shared
    ``tau`` is first used at the ``q`` site, so the backward completes its
    gradient there, after those of the other sites.
    """
    order = [f"patch_embed.{name}" for name in sps.param_shapes(cfg)]  # the stem runs in parameter order
    for i in range(cfg.depth):
        shapes = attention.param_shapes(cfg)
        block = []
        for site in attention.SITES:
            if site == "proj" and cfg.nsad:
                block.append("nsad")  # A = NSAD(q k^T) comes before the output projection
            block += [f"{site}_linear.weight", f"{site}_linear.bias"]
            if cfg.tasa and (site == "q" or (site == "proj" and cfg.tau_per_site)):
                block.append(attention.tau_name(site, cfg))
            block += [f"{site}_bn.weight", f"{site}_bn.bias"]
        block = [name for name in block if name in shapes]
        if sorted(block) != sorted(shapes):  # the attention block's parameters changed: this list must follow
            raise RuntimeError(
                f"golden.param_use_order does not know the attention parameters {sorted(set(shapes) ^ set(block))}"
            )
        order += [f"block.{i}.attn.{name}" for name in block]
        order += [f"block.{i}.mlp.{name}" for name in mlp.param_shapes(cfg)]  # fc1 then fc2
    return order + ["head.weight", "head.bias"]


def forward_order(cfg: ModelConfig, format_version: int = FORMAT_VERSION) -> list[str]:
    """Every key of a golden file for ``cfg``, in forward order.

    Metadata; then the kernels (``lif``, and ``tasa``, ``nsad`` when the config
    uses them: options, inputs, outputs, gradients), the building blocks of
    everything after them; then the model: ``input``, ``target``, ``param/``
    (in the order the forward uses them), ``state/``; the forward layer by
    layer, each BatchNorm's ``new_state/`` just before the spikes it produces
    (``act/``); ``logits``, ``loss``; and ``grad/`` in the order the backward
    produces them (the reverse of the parameters' use). :func:`compare` names
    the first key of this list whose tensor departs. ``format_version=1``: the
    order of the first release's files (every kernel section, one stem key).
    """
    if format_version not in READABLE_VERSIONS:
        raise ValueError(f"format_version must be one of {READABLE_VERSIONS}, got {format_version!r}")

    def bn(prefix):  # a BatchNorm's statistics after the step
        return [f"new_state/{prefix}.{s}" for s in ("running_mean", "running_var", "num_batches_tracked")]

    keys = ["format_version", "config"]
    keys += [f"{kernel}/{key}" for kernel in kernels(cfg, format_version) for key in KERNEL_KEYS[kernel]]
    use = param_use_order(cfg)
    keys += ["input", "target"] + [f"param/{name}" for name in use]
    keys += [f"state/{name}" for name in model.state_shapes(cfg)]
    stem_bns = [name.rsplit(".", 1)[0] for name in sps.state_shapes(cfg) if name.endswith("running_mean")]
    if format_version == 1:
        for name in stem_bns:
            keys += bn("patch_embed." + name)
    else:
        for name, stage in zip(stem_bns, stem_stages(cfg)):  # proj_bn .. proj_bn3, rpe_bn
            keys += bn("patch_embed." + name) + [f"act/patch_embed.{stage}"]
    keys.append("act/patch_embed.out")
    for i in range(cfg.depth):
        a, m = f"block.{i}.attn", f"block.{i}.mlp"
        for site in ("q", "k", "v"):
            keys += bn(f"{a}.{site}_bn") + [f"act/{a}.{site}"]
        keys += [f"act/{a}.scores", f"act/{a}.A", f"act/{a}.y"] + bn(f"{a}.proj_bn") + [f"act/{a}.out"]
        keys += bn(f"{m}.fc1_bn") + [f"act/{m}.hidden"] + bn(f"{m}.fc2_bn") + [f"act/{m}.out", f"act/block.{i}.out"]
    keys += ["act/pooled", "logits", "loss"]
    trainable = set(model.trainable(cfg))
    keys += [f"grad/{name}" for name in reversed(use) if name in trainable]
    return keys


def is_input(key: str) -> bool:
    """True for the keys a candidate reads rather than computes (it may leave them out)."""
    head, _, rest = key.partition("/")
    if head in KERNEL_KEYS:
        return rest == "options" or rest.startswith("in/")
    return key in ("format_version", "config", "input", "target") or head in ("param", "state")


def section(key: str) -> str:
    """The part of the computation a key belongs to: ``lif``, ``tasa``, ``nsad`` (the kernels),
    ``stem``, ``block.{i}.attn``, ``block.{i}.mlp``, ``head`` (pooling, logits, loss) for the
    forward, ``grad`` for the model's gradients, ``meta`` and ``input`` for the rest."""
    head, _, rest = key.partition("/")
    if head in KERNEL_KEYS:
        return head
    if head == "grad":
        return "grad"
    if head in ("act", "new_state"):
        if rest.startswith("patch_embed."):
            return "stem"
        if rest.startswith("block."):
            parts = rest.split(".")
            return ".".join(parts[:2]) if parts[2] == "out" else ".".join(parts[:3])
        return "head"
    if key in ("logits", "loss"):
        return "head"
    return "meta" if key in ("format_version", "config") else "input"


def config_from_json(text, *, source: str = "golden file") -> ModelConfig:
    """The :class:`ModelConfig` of a golden file's ``config`` entry; :class:`GoldenFileError` naming
    ``source`` if it is not the JSON of a config."""
    try:
        fields = json.loads(str(text))
    except json.JSONDecodeError as exc:
        raise GoldenFileError(f"{source}: entry 'config' is not valid JSON ({exc})") from None
    names = {f.name for f in dataclasses.fields(ModelConfig)}
    if not isinstance(fields, dict) or set(fields) - names:
        unknown = sorted(set(fields) - names) if isinstance(fields, dict) else type(fields).__name__
        raise GoldenFileError(f"{source}: entry 'config' is not a ModelConfig (unknown: {unknown})")
    try:
        return ModelConfig(**fields)
    except (TypeError, ValueError) as exc:
        raise GoldenFileError(f"{source}: entry 'config' is not a valid ModelConfig ({exc})") from None


def read(path: str | os.PathLike, *, what: str = "file") -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` file (golden or candidate), never unpickling; :class:`GoldenFileError`
    naming ``path`` if it cannot be read (missing, empty, a single ``.npy``, a PyTorch ``.pth``, corrupted)."""
    try:
        return checkpoint.read_npz(path, what=what)
    except checkpoint.CheckpointError as exc:
        raise GoldenFileError(str(exc)) from None


def read_golden(reference, *, source: str | None = None) -> tuple[dict[str, np.ndarray], ModelConfig, int]:
    """``(arrays, cfg, format_version)`` of a golden file (a path or a mapping), checked: a readable
    ``format_version``, a valid ``config`` and every key its config requires. Errors name the file."""
    if isinstance(reference, (str, os.PathLike)):
        source = source or f"golden file {os.fspath(reference)!r}"
        ref = read(reference, what="golden file")
    elif isinstance(reference, Mapping):
        source = source or "golden file"
        ref = dict(reference)
    else:
        raise TypeError(f"reference must be a path or a mapping of arrays, got {type(reference).__name__}")
    if "config" not in ref or "format_version" not in ref:
        raise GoldenFileError(f"{source} is not a golden file: it has no 'config' or 'format_version' entry")
    stored = np.asarray(ref["format_version"])
    if stored.shape != () or stored.dtype.kind not in "iu" or int(stored) not in READABLE_VERSIONS:
        raise GoldenFileError(
            f"{source} has format_version {stored.tolist()!r}; this code reads "
            f"{' and '.join(map(str, READABLE_VERSIONS))}"
        )
    version = int(stored)  # an integer scalar, checked just above
    cfg = config_from_json(ref["config"], source=source)
    required = forward_order(cfg, version)
    missing = [k for k in required if k not in ref]
    if missing:
        raise GoldenFileError(
            f"{source} lacks {len(missing)} key(s) its config requires, first {missing[0]!r} "
            f"(an incomplete golden file: write it again with ds2ta-ref golden)"
        )
    return ref, cfg, version
