"""Golden vectors: reference numbers for checking another implementation of DS2TA.

A golden file is one ``.npz`` (a zip of ``.npy`` members, readable with
``np.load(path, allow_pickle=False)`` or any ``.npy`` reader) holding, in
float64, the whole model's forward and backward on one batch and each kernel
(LIF, TASA, NSAD) on its own: inputs, parameters, upstream gradients, outputs
and every gradient. ``docs/golden.md`` documents every key, shape and
convention, so that the other side can be written without reading this code.

* :func:`write` ``(path, cfg, *, seed, batch)`` writes one (``ds2ta-ref golden``);
  :func:`build` returns the same arrays as a dict.
* :func:`compare` ``(reference, candidate)`` checks a candidate file (the other
  implementation's outputs, written under the same keys) tensor by tensor and
  names the first tensor, in forward order (:func:`forward_order`), that departs
  (``ds2ta-ref compare``).

Keys whose role is *input* (:func:`is_input`: the config, the model's input,
target, parameters and BatchNorm state, each kernel's options and ``in/``
arrays) may be left out of a candidate; every other key of the reference must
be in it.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import zipfile
from typing import Mapping, NamedTuple, Sequence

import numpy as np

from . import attention, checkpoint, layers, lif, mlp, model, nsad, sps, tasa
from . import surrogate as _surrogate
from .config import PRESETS, ModelConfig, parse_overrides, preset
from .gradcheck import firing_model_inputs, lif_input_away_from_threshold

__all__ = ["FORMAT_VERSION", "KERNEL_KEYS", "build", "write", "read", "config_from_json", "forward_order",
           "is_input", "compare", "Comparison", "TensorResult", "add_commands"]

FORMAT_VERSION = 1

#: Each kernel's keys, in the order they are computed: options, inputs, outputs, gradients.
KERNEL_KEYS = {
    "lif": ["options", "in/x", "in/dspikes", "out/spikes", "grad/x"],
    "tasa": ["options", "in/s", "in/weight", "in/bias", "in/tau", "in/dout", "out/out",
             "grad/s", "grad/weight", "grad/bias", "grad/tau"],
    "nsad": ["options", "in/scores", "in/params", "in/dA", "out/table", "out/A", "grad/scores", "grad/params"],
}

# Sizes of the kernel sections (the model section takes its sizes from the config).
_KERNEL_BATCH = 2
_LIF_FEATURES = 6  # lif/in/x is (T, B, 6)
_TASA_TOKENS, _TASA_IN, _TASA_OUT = 3, 5, 4  # tasa/in/s is (T, B, 3, 5), weight (4, 5)
_NSAD_TOKENS = 4  # nsad/in/scores is (T, B, H, 4, 4)


# --------------------------------------------------------------------------- key order
def _param_use_order(cfg: ModelConfig) -> list[str]:
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
        assert sorted(block) == sorted(shapes), (block, list(shapes))
        order += [f"block.{i}.attn.{name}" for name in block]
        order += [f"block.{i}.mlp.{name}" for name in mlp.param_shapes(cfg)]  # fc1 then fc2
    return order + ["head.weight", "head.bias"]


def forward_order(cfg: ModelConfig) -> list[str]:
    """Every key of a golden file for ``cfg``, in forward order.

    Metadata; then the kernels (``lif``, ``tasa``, ``nsad``: options, inputs,
    outputs, gradients), the building blocks of everything after them; then
    the model: ``input``, ``target``, ``param/`` (in the order the forward uses
    them), ``state/``; the forward layer by layer, each BatchNorm's
    ``new_state/`` just before the spikes it produces (``act/``); ``logits``,
    ``loss``; and ``grad/`` in the order the backward produces them (the
    reverse of the parameters' use). :func:`compare` names the first key of
    this list whose tensor departs: downstream departures follow from it.
    """
    def bn(prefix):  # a BatchNorm's statistics after the step
        return [f"new_state/{prefix}.{s}" for s in ("running_mean", "running_var", "num_batches_tracked")]

    keys = ["format_version", "config"]
    keys += [f"{kernel}/{key}" for kernel, names in KERNEL_KEYS.items() for key in names]
    use = _param_use_order(cfg)
    keys += ["input", "target"] + [f"param/{name}" for name in use]
    keys += [f"state/{name}" for name in model.state_shapes(cfg)]
    for name in sps.state_shapes(cfg):
        if name.endswith("running_mean"):
            keys += bn("patch_embed." + name.rsplit(".", 1)[0])
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


# --------------------------------------------------------------------------- building a golden file
def _nsad_params(rng: np.random.Generator, heads: int, head_dim: int) -> np.ndarray:
    """NSAD parameters ``(H, 6)`` (columns a, b, c, d, e, u) far from the identity initialization,
    so that the table's rounding and gate matter: ``f(s)`` is not an integer."""
    return np.column_stack([rng.uniform(0.5, 1.5, heads), rng.uniform(-0.1, 0.1, heads),
                            rng.uniform(0, head_dim, heads), rng.uniform(-1, 1, heads),
                            rng.uniform(0, head_dim, heads), rng.uniform(0, head_dim / 3, heads)])


def _tau(rng: np.random.Generator, cfg: ModelConfig) -> np.ndarray:
    """A ``tau`` within 0.4 of ``max(tau0, 1)``, so not an integer (rounding it matters) and ``>= 0.6``."""
    return np.array(max(cfg.tau0, 1.0) + rng.uniform(-0.4, 0.4))


def _kernel_arrays(cfg: ModelConfig, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """The ``lif/``, ``tasa/`` and ``nsad/`` sections, each kernel with the config's conventions."""
    T = max(cfg.T, cfg.window + 1, 4)  # the temporal carry and every TASA lag are exercised
    B, out = _KERNEL_BATCH, {}

    _, alpha = _surrogate.resolve(cfg.surrogate, cfg.alpha)
    options = dict(tau_m=cfg.tau_m, v_threshold=cfg.v_threshold, decay_input=cfg.decay_input,
                   detach_reset=cfg.detach_reset, surrogate=cfg.surrogate, alpha=alpha)
    x = lif_input_away_from_threshold(rng, (T, B, _LIF_FEATURES), **options)  # (T, B, 6)
    dspikes = rng.standard_normal(x.shape)
    spikes, cache = lif.forward(x, **options)
    out.update({"lif/options": options, "lif/in/x": x, "lif/in/dspikes": dspikes, "lif/out/spikes": spikes,
                "lif/grad/x": lif.backward(dspikes, cache)})

    s = (rng.random((T, B, _TASA_TOKENS, _TASA_IN)) < 0.5).astype(np.float64)  # (T, B, N, D_in) spikes
    weight = rng.standard_normal((_TASA_OUT, _TASA_IN))
    bias = rng.standard_normal(_TASA_OUT)
    tau = _tau(rng, cfg)
    dout = rng.standard_normal((T, B, _TASA_TOKENS, _TASA_OUT))
    y, cache = tasa.forward(s, weight, bias, tau=float(tau), window=cfg.window)
    ds, dweight, dbias, dtau = tasa.backward(dout, cache)
    out.update({"tasa/options": {"window": cfg.window}, "tasa/in/s": s, "tasa/in/weight": weight,
                "tasa/in/bias": bias, "tasa/in/tau": tau, "tasa/in/dout": dout, "tasa/out/out": y,
                "tasa/grad/s": ds, "tasa/grad/weight": dweight, "tasa/grad/bias": dbias,
                "tasa/grad/tau": np.array(dtau)})

    H, d = cfg.heads, cfg.head_dim
    scores = rng.integers(0, d + 1, (T, B, H, _NSAD_TOKENS, _NSAD_TOKENS)).astype(np.float64)
    params = _nsad_params(rng, H, d)
    dA = rng.standard_normal(scores.shape)
    options = dict(head_dim=d, rounding=cfg.nsad_rounding, surrogate=cfg.surrogate, alpha=alpha)
    A, cache = nsad.forward(scores, params, **options)
    dscores, dparams = nsad.backward(dA, cache)
    out.update({"nsad/options": options, "nsad/in/scores": scores, "nsad/in/params": params, "nsad/in/dA": dA,
                "nsad/out/table": nsad.hashmap(params, head_dim=d, rounding=cfg.nsad_rounding),
                "nsad/out/A": A, "nsad/grad/scores": dscores, "nsad/grad/params": dparams})
    return {k: (np.array(json.dumps(v)) if k.endswith("/options") else v) for k, v in out.items()}


def _spikes(unit) -> np.ndarray:
    """The spikes of a BN+LIF unit: in the step forward the reset's spike is the emitted one."""
    return unit.lif.s_reset


def _model_arrays(cfg: ModelConfig, rng: np.random.Generator, batch: int) -> dict[str, np.ndarray]:
    """The model section: one training step's forward, loss and backward on firing inputs."""
    params, state, x = firing_model_inputs(cfg, rng, batch=batch)  # every layer of a small model fires
    for i in range(cfg.depth):
        if cfg.tasa:
            params[f"block.{i}.attn.tau"] = _tau(rng, cfg)
            if cfg.tau_per_site:
                params[f"block.{i}.attn.proj_tau"] = _tau(rng, cfg)
        if cfg.nsad:
            params[f"block.{i}.attn.nsad"] = _nsad_params(rng, cfg.heads, cfg.head_dim)
    target = rng.integers(0, cfg.num_classes, batch).astype(np.int64)
    logits, new_state, cache = model.forward(x, params, state, cfg, training=True)
    loss, dlogits = layers.cross_entropy(logits, target)
    _, grads = model.backward(dlogits, cache)

    out = {"input": x, "target": target}
    out.update({f"param/{k}": v for k, v in params.items()})
    out.update({f"state/{k}": v for k, v in state.items()})
    out.update({f"new_state/{k}": v for k, v in new_state.items()})
    out["act/patch_embed.out"] = cache.blocks[0][0].sites["q"].tasa.s  # the first block's input: the tokens
    for i, (ac, mc) in enumerate(cache.blocks):
        a, m = f"act/block.{i}.attn", f"act/block.{i}.mlp"
        out.update({f"{a}.q": ac.q, f"{a}.k": ac.k, f"{a}.v": ac.v, f"{a}.scores": ac.scores, f"{a}.A": ac.A,
                    f"{a}.y": ac.y, f"{a}.out": _spikes(ac.sites["proj"].unit)})
        out[f"{m}.hidden"] = _spikes(mc.unit1)
        out[f"{m}.out"] = _spikes(mc.unit2)
        out[f"act/block.{i}.out"] = mc.fc1.x + out[f"{m}.out"]  # residual stream after the block
    out["act/pooled"] = cache.head.x
    out.update({"logits": logits, "loss": np.array(loss)})
    out.update({f"grad/{k}": v for k, v in grads.items()})
    return out


def build(cfg: ModelConfig, *, seed: int, batch: int = 2) -> dict[str, np.ndarray]:
    """The arrays of a golden file, keyed and ordered as :func:`forward_order` says.

    Everything is drawn from ``np.random.default_rng(seed)`` and computed in
    float64 (``target`` and the ``num_batches_tracked`` counters are int64; the
    ``config`` and ``*/options`` entries are JSON text). Same ``cfg``, ``seed``
    and ``batch``: the same bits.
    """
    if not isinstance(cfg, ModelConfig):
        raise ValueError(f"cfg must be a ModelConfig, got {type(cfg).__name__}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
    if isinstance(batch, bool) or not isinstance(batch, (int, np.integer)) or batch < 2:
        raise ValueError(f"batch must be an integer >= 2 (BatchNorm needs batch statistics), got {batch!r}")
    rng = np.random.default_rng(seed)
    arrays = {"format_version": np.array(FORMAT_VERSION, dtype=np.int64),
              "config": np.array(json.dumps(dataclasses.asdict(cfg)))}
    arrays.update(_kernel_arrays(cfg, rng))
    arrays.update(_model_arrays(cfg, rng, int(batch)))
    order = forward_order(cfg)
    assert sorted(order) == sorted(arrays), (set(order) ^ set(arrays))
    return {key: _stored(arrays[key]) for key in order}


def _stored(value) -> np.ndarray:
    arr = np.asarray(value)
    if arr.dtype.kind == "f":
        return arr.astype(np.float64)
    if arr.dtype.kind in "iub":
        return arr.astype(np.int64)
    return arr


def write(path: str | os.PathLike, cfg: ModelConfig, *, seed: int, batch: int = 2,
          overwrite: bool = False) -> dict[str, np.ndarray]:
    """Write the golden file of :func:`build` to ``path`` and return its arrays.

    The file is written atomically (a temporary file in the same directory,
    then ``os.replace``) and byte for byte deterministic: members in forward
    order, stored uncompressed with a fixed timestamp, no pickle. An existing
    ``path`` raises ``FileExistsError`` unless ``overwrite``.
    """
    path = os.fspath(path)
    if os.path.exists(path) and not overwrite:
        raise FileExistsError(f"{path!r} exists; pass overwrite=True (--overwrite) to replace it")
    arrays = build(cfg, seed=seed, batch=batch)
    _write_npz(path, arrays)
    return arrays


def _write_npz(path: str, arrays: Mapping[str, np.ndarray]) -> None:
    """``np.savez`` layout (one ``<key>.npy`` member per array), atomically
    (:func:`ds2ta_ref.checkpoint.atomic_write`), with fixed zip timestamps so that
    the same arrays give the same bytes."""
    with checkpoint.atomic_write(path) as f:
        with zipfile.ZipFile(f, mode="w", compression=zipfile.ZIP_STORED) as zf:
            for key, arr in arrays.items():
                info = zipfile.ZipInfo(key + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
                info.external_attr = 0o644 << 16
                with zf.open(info, mode="w", force_zip64=True) as member:
                    np.lib.format.write_array(member, np.asarray(arr), allow_pickle=False)


def read(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` file (golden or candidate), without pickle; ``ValueError`` naming
    ``path`` if it cannot be read."""
    path = os.fspath(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {key: npz[key] for key in npz.files}
    except FileNotFoundError as exc:
        raise ValueError(f"{path!r}: no such file") from exc
    except AttributeError as exc:  # a single .npy array has no .files and no context manager
        raise ValueError(f"{path!r} holds a single array, not an .npz file") from exc
    except Exception as exc:
        raise ValueError(f"{path!r} is not a readable .npz file ({type(exc).__name__}: {exc})") from exc


def config_from_json(text) -> ModelConfig:
    """The :class:`ModelConfig` of a golden file's ``config`` entry."""
    return ModelConfig(**json.loads(str(text)))


# --------------------------------------------------------------------------- compare
class TensorResult(NamedTuple):
    """One tensor's comparison: ``max_abs = max|c - r|``, ``max_rel = max_abs / scale`` (see :func:`compare`)."""

    key: str
    shape: tuple
    max_abs: float
    max_rel: float
    ok: bool
    note: str = ""  # why a tensor could not be compared numerically (shape, dtype, text)


class Comparison(NamedTuple):
    """The result of :func:`compare`; ``str()`` or :meth:`table` gives the report."""

    results: list  # TensorResult, worst first (failures first, then by max_rel)
    missing: list  # reference keys (not inputs) absent from the candidate, in forward order
    unexpected: list  # candidate keys the reference does not have
    first_departure: str | None  # the first key in forward order that fails or is missing
    rtol: float
    atol: float
    floor: float  # relative to the largest magnitude of the tensor's group

    @property
    def passed(self) -> bool:
        return self.first_departure is None and not self.unexpected

    def table(self, max_rows: int | None = None) -> str:
        """The report: a table worst first (``max_rows`` rows at most, all failures shown first)."""
        shown = self.results if not max_rows else self.results[:max_rows]
        width = max([len(r.key) for r in shown] + [6])
        lines = [f"{'tensor':<{width}}  {'shape':<18} {'max abs':>9} {'max rel':>9}  status",
                 f"{'-' * width}  {'-' * 18} {'-' * 9} {'-' * 9}  ------"]
        for r in shown:
            lines.append(f"{r.key:<{width}}  {str(r.shape):<18} {r.max_abs:9.2e} {r.max_rel:9.2e}  "
                         f"{'ok' if r.ok else 'FAIL'}{'  ' + r.note if r.note else ''}")
        if len(shown) < len(self.results):
            rest = self.results[len(shown):]
            failing = sum(not r.ok for r in rest)
            lines.append(f"... {len(rest)} more rows ({failing} failing) not shown")
        failed = sum(not r.ok for r in self.results)
        lines.append(f"compared {len(self.results)} tensors, {failed} fail: rtol={self.rtol:g}, atol={self.atol:g}, "
                     f"floor={self.floor:g} of each group's scale (docs/golden.md)")
        if self.missing:
            lines.append(f"missing from the candidate ({len(self.missing)}): {', '.join(self.missing)}")
        if self.unexpected:
            lines.append(f"unexpected in the candidate ({len(self.unexpected)}): {', '.join(self.unexpected)}")
        if self.first_departure is not None:
            lines.append(f"first departure in forward order: {self.first_departure}")
        lines.append("PASS" if self.passed else "FAIL")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()


def _group(key: str) -> str:
    """``grad/head.bias`` -> ``grad``; ``lif/grad/x`` -> ``lif``; ``logits`` -> ``logits``."""
    return key.split("/", 1)[0]


def _max_abs(arr: np.ndarray) -> float:
    return float(np.max(np.abs(arr))) if arr.dtype.kind in "biuf" and arr.size else 0.0


def _compare_one(key: str, ref: np.ndarray, cand: np.ndarray, rtol: float, atol: float,
                 floor: float) -> TensorResult:
    """``floor`` here is absolute: the floor times the largest magnitude of the key's group."""
    shape = tuple(ref.shape)
    numeric = "biuf"
    if ref.dtype.kind not in numeric or cand.dtype.kind not in numeric:  # text: config, options
        same = ref.dtype.kind == cand.dtype.kind and ref.shape == cand.shape and np.array_equal(ref, cand)
        return TensorResult(key, shape, 0.0 if same else math.inf, 0.0 if same else math.inf, same,
                            "" if same else "text differs")
    if ref.shape != cand.shape:
        return TensorResult(key, shape, math.inf, math.inf, False, f"candidate shape {tuple(cand.shape)}")
    if ref.size == 0:
        return TensorResult(key, shape, 0.0, 0.0, True)
    r = ref.astype(np.float64)
    c = cand.astype(np.float64)
    diff = np.abs(c - r)
    max_abs = float(np.max(diff)) if np.all(np.isfinite(diff)) else math.inf
    scale = max(_max_abs(r), floor)
    max_rel = max_abs / scale if scale > 0 else (0.0 if max_abs == 0 else math.inf)
    return TensorResult(key, shape, max_abs, max_rel, max_abs <= atol + rtol * scale)


def compare(reference, candidate, *, rtol: float = 1e-7, atol: float = 0.0, floor: float = 1e-4,
            only: Sequence[str] | None = None) -> Comparison:
    """Compare a candidate's tensors with a golden file's, key by key.

    For every key of ``reference`` (restricted to the keys starting with one of
    ``only``, if given) present in ``candidate``::

        max_abs = max |candidate - reference|
        scale   = max(max |reference|, floor * G)
        max_rel = max_abs / scale
        pass   <=>  max_abs <= atol + rtol * scale

    where ``G`` is the largest ``max |reference|`` of the key's group (the part
    before the first ``/``: every ``grad/`` tensor is one group, ``lif/...``
    another; a key without ``/`` is its own group). The floor makes a tensor
    whose true value is ~0 count as small *relative to its kind*: the gradient
    of a bias that feeds a training-mode BatchNorm is exactly 0 in exact
    arithmetic and ~1e-16 of the largest gradient in float64, on either side.
    Text entries (``config``, ``*/options``) must be equal; a shape mismatch fails.

    Args:
        reference, candidate: paths of ``.npz`` files or mappings of arrays.
        rtol, atol, floor: tolerances (>= 0) as above; ``floor`` is relative to the group.
        only: key prefixes, e.g. ``["lif/"]`` or ``["grad/", "logits"]``.

    Returns:
        A :class:`Comparison`: per-tensor results worst first, the missing keys
        (reference outputs absent from the candidate; inputs may be absent), the
        unexpected keys (in the candidate, not in the reference), and the first
        key in forward order that fails or is missing. It passes when nothing
        fails, is missing or is unexpected.
    """
    for name, value in (("rtol", rtol), ("atol", atol), ("floor", floor)):
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
            raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    ref = read(reference) if isinstance(reference, (str, os.PathLike)) else dict(reference)
    cand = read(candidate) if isinstance(candidate, (str, os.PathLike)) else dict(candidate)
    if "config" not in ref or "format_version" not in ref:
        raise ValueError("reference is not a golden file: it has no 'config' or 'format_version' entry")
    if int(ref["format_version"]) != FORMAT_VERSION:
        raise ValueError(f"reference has format_version {int(ref['format_version'])}; this code reads "
                         f"{FORMAT_VERSION}")

    def selected(key):
        return not only or any(key.startswith(prefix) for prefix in only)

    group_max = {}
    for key, value in ref.items():
        group_max[_group(key)] = max(group_max.get(_group(key), 0.0), _max_abs(np.asarray(value)))
    order = forward_order(config_from_json(ref["config"]))
    order += sorted(set(ref) - set(order))  # keys of a newer writer, compared after the known ones
    keys = [k for k in order if k in ref and selected(k)]
    results, missing = [], []
    for key in keys:
        if key in cand:
            results.append(_compare_one(key, np.asarray(ref[key]), np.asarray(cand[key]), rtol, atol,
                                        floor * group_max[_group(key)]))
        elif not is_input(key):
            missing.append(key)
    failed = {r.key for r in results if not r.ok} | set(missing)
    first = next((k for k in keys if k in failed), None)
    unexpected = sorted(k for k in cand if k not in ref and selected(k))
    results.sort(key=lambda r: (r.ok, -r.max_rel, -r.max_abs))  # failures first, then worst first
    return Comparison(results, missing, unexpected, first, float(rtol), float(atol), float(floor))


# --------------------------------------------------------------------------- command line
def _error(message: str) -> int:
    print(f"ds2ta-ref: error: {message}", file=sys.stderr)
    return 2


def cmd_golden(args) -> int:
    try:
        cfg = preset(args.preset, **parse_overrides(args.set))
    except ValueError as exc:
        return _error(str(exc))
    try:
        arrays = write(args.out, cfg, seed=args.seed, batch=args.batch, overwrite=args.overwrite)
    except (FileExistsError, ValueError) as exc:
        return _error(str(exc))
    except OSError as exc:
        return _error(f"cannot write {args.out!r}: {exc.strerror or exc}")
    print(f"wrote {args.out}: {len(arrays)} arrays, preset {args.preset!r}, seed {args.seed}, batch {args.batch} "
          f"(layout: docs/golden.md)")
    return 0


def cmd_compare(args) -> int:
    try:
        result = compare(args.reference, args.candidate, rtol=args.rtol, atol=args.atol, floor=args.floor,
                         only=args.only)
    except ValueError as exc:
        return _error(str(exc))
    print(result.table(args.max_rows))
    return 0 if result.passed else 1


def add_commands(subparsers) -> None:
    """Add the ``golden`` and ``compare`` subcommands to the ``ds2ta-ref`` parser's subparsers."""
    p = subparsers.add_parser(
        "golden", help="write a golden file: reference tensors for another implementation",
        description="Write one float64 .npz holding a whole training step of the model (input, target, "
                    "parameters, BatchNorm state before and after, logits, loss, every gradient, per-block "
                    "spikes and attention maps) and each kernel (LIF, TASA, NSAD) alone. Layout: docs/golden.md.")
    p.add_argument("--preset", required=True, choices=sorted(PRESETS), help="model preset")
    p.add_argument("--seed", type=int, default=0, help="seed of every random draw; the same seed gives the same bytes (default 0)")
    p.add_argument("--out", required=True, metavar="FILE", help="the .npz file to write")
    p.add_argument("--batch", type=int, default=2, help="batch size B, at least 2 (default 2)")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="override a ModelConfig field, e.g. --set depth=2 --set nsad_rounding=floor (repeatable)")
    p.add_argument("--overwrite", action="store_true", help="replace FILE if it exists")
    p.set_defaults(func=cmd_golden)

    p = subparsers.add_parser(
        "compare", help="compare another implementation's tensors with a golden file",
        description="Compare CANDIDATE (an .npz with the golden keys your implementation computes) with "
                    "REFERENCE (a golden file): max abs and rel error per tensor, worst first, missing and "
                    "unexpected keys, and the first tensor in forward order that departs. Exit status 0 only "
                    "when everything passes, 1 when something departs, 2 on errors.")
    p.add_argument("reference", metavar="REFERENCE")
    p.add_argument("candidate", metavar="CANDIDATE")
    p.add_argument("--rtol", type=float, default=1e-7, help="relative tolerance (default 1e-7; float32: try 1e-4)")
    p.add_argument("--atol", type=float, default=0.0, help="absolute tolerance (default 0)")
    p.add_argument("--floor", type=float, default=1e-4,
                   help="a tensor whose largest magnitude is below FLOOR times the largest of its group "
                        "(grad/, act/, lif/, ...) counts as ~0 and is compared on that scale (default 1e-4)")
    p.add_argument("--only", action="append", default=None, metavar="PREFIX",
                   help="compare only the keys starting with PREFIX, e.g. --only lif/ (repeatable)")
    p.add_argument("--max-rows", type=int, default=25, help="rows of the table, failures first (default 25; 0: all)")
    p.set_defaults(func=cmd_compare)
