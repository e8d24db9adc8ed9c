"""Attention-map sparsity and the energy estimate of the paper's Table 3 (docs/spec.md §5).

    Energy = E_AC * #OPs * (1 - sparsity),        E_AC = 0.9 pJ (45 nm accumulate)

for the attention-map computations of each encoder block. ``sparsity`` is the
fraction of zeros in the (denoised) attention map ``A`` of a block. ``#OPs`` is
the number of accumulates of the product ``A @ V`` if every entry of ``A`` were
non-zero: each entry ``A[h, i, j]`` is added into ``d`` outputs, so per sample
``#OPs = T * H * N * N * d`` per block. A zero entry of ``A`` costs nothing in an
event-driven accelerator, hence the factor ``1 - sparsity``.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .config import ModelConfig

E_AC = 0.9e-12  # joules per accumulate (45 nm)

__all__ = ["E_AC", "BlockEnergy", "attention_ops", "block_energy", "format_table"]


class BlockEnergy(NamedTuple):
    block: int
    sparsity: float  # fraction of zeros in A
    ops: int  # accumulates of A @ V per sample with a dense A
    energy_pj: float  # E_AC * ops * (1 - sparsity), in picojoules per sample


def attention_ops(cfg: ModelConfig) -> int:
    """Accumulates of ``A @ V`` per sample and block with a dense ``A``: ``T * H * N^2 * d``."""
    return cfg.T * cfg.heads * cfg.num_tokens**2 * cfg.head_dim


def block_energy(cfg: ModelConfig, zeros: np.ndarray, entries: np.ndarray) -> list[BlockEnergy]:
    """Per-block sparsity and energy from counts of zero and total entries of each block's ``A``."""
    ops = attention_ops(cfg)
    out = []
    for i, (z, n) in enumerate(zip(zeros, entries)):
        sparsity = float(z) / float(n) if n else float("nan")
        out.append(BlockEnergy(i, sparsity, ops, E_AC * ops * (1 - sparsity) * 1e12))
    return out


def count_zeros(attention_maps: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """``(zeros, entries)`` per block, from the ``cache.attention_maps`` of a model forward."""
    zeros = np.array([np.count_nonzero(A == 0) for A in attention_maps], dtype=np.int64)
    entries = np.array([A.size for A in attention_maps], dtype=np.int64)
    return zeros, entries


def format_table(rows: dict[str, list[BlockEnergy]]) -> str:
    """A table in the form of the paper's Table 3: one column pair per model."""
    names = list(rows)
    depth = max(len(r) for r in rows.values())
    head = "block | " + " | ".join(f"{n} sparsity | {n} energy (pJ)" for n in names)
    lines = [head, "|".join(["---"] * (1 + 2 * len(names)))]
    for i in range(depth):
        cells = []
        for n in names:
            if i < len(rows[n]):
                e = rows[n][i]
                cells += [f"{100 * e.sparsity:.2f}%", f"{e.energy_pj:.1f}"]
            else:
                cells += ["", ""]
        lines.append(f"{i} | " + " | ".join(cells))
    return "\n".join(lines)
