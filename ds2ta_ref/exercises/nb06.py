"""Exercises of notebook 06 (sparsity, energy, the NSAD threshold), checked against
:mod:`ds2ta_ref.energy` and :mod:`ds2ta_ref.nsad`."""

from types import SimpleNamespace

import numpy as np

from .. import energy, nsad
from . import Exercise


def block_energy(A, head_dim):
    """Reference of 06.1: ``energy.block_energy`` for one block's maps ``A`` of shape ``(T, B, H, N, N)``:
    ``(sparsity, energy in pJ per sample)``."""
    T, _, H, N, _ = A.shape
    cfg = SimpleNamespace(T=T, heads=H, num_tokens=N, head_dim=head_dim)  # what energy.attention_ops reads
    (row,) = energy.block_energy(cfg, *energy.count_zeros([A]))
    return row.sparsity, row.energy_pj


def dloss_du(scores, dA, params, head_dim):
    """Reference of 06.2: the gradient of the loss with respect to each head's threshold ``u``,
    ``nsad.backward``'s last column, for the upstream gradient ``dA``."""
    _, cache = nsad.forward(scores, params, head_dim=head_dim)
    return nsad.backward(dA, cache)[1][:, 5]


def _energy_cases():
    rng = np.random.default_rng(601)
    cases = []
    for T, B, H, N, d, p in ((2, 3, 4, 16, 16, 0.4), (1, 1, 2, 4, 8, 0.9), (4, 2, 3, 9, 32, 0.05)):
        S = rng.binomial(d, p / 4, size=(T, B, H, N, N))  # counts, many of them zero
        cases.append((S * (S > 1), d))  # as if a gate had removed the 1-counts
    return cases


def _du_cases():
    rng = np.random.default_rng(602)
    cases = []
    for H, N, d, u in ((4, 6, 16, 1.0), (2, 5, 8, 0.9), (3, 4, 16, 2.3)):
        scores = rng.binomial(d, 0.15, size=(2, 2, H, N, N)).astype(float)
        params = nsad.init_params(H, u)
        params[:, :5] += rng.normal(0, 0.1, size=(H, 5))
        params[:, 5] += rng.normal(0, 0.05, size=H)
        cases.append((scores, rng.normal(size=scores.shape), params, d))
    return cases


EXERCISES = [
    Exercise("06.1", "Table 3: sparsity and energy of one block", block_energy, _energy_cases, tol=1e-12),
    Exercise("06.2", "dL/du of each NSAD head", dloss_du, _du_cases, tol=1e-9),
]
