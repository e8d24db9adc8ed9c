"""Solutions of notebook 06's exercises (checked by ``ds2ta_ref.exercises.check``)."""

import numpy as np

E_AC_PJ = 0.9  # picojoules per accumulate (45 nm), docs/spec.md §5


def my_block_energy(A, head_dim):
    T, _, H, N, _ = A.shape  # (T, B, H, N, N)
    sparsity = np.count_nonzero(A == 0) / A.size  # fraction of zero entries, over every sample
    ops = T * H * N * N * head_dim  # accumulates of A @ V per sample with a dense A
    return sparsity, E_AC_PJ * ops * (1 - sparsity)


def my_dloss_du(scores, dA, params, head_dim, alpha=4.0):
    H = params.shape[0]
    s = np.arange(head_dim + 1.0)  # (d+1,) every possible score
    a, b, c, d, e, u = (params[:, i : i + 1] for i in range(6))  # each (H, 1)
    g = a * s + b * (s - c) ** 2 + d / (1 + np.exp(s - e))  # (H, d+1) Eq. 7
    sig = 1 / (1 + np.exp(-alpha * (s - u)))
    sg = alpha * sig * (1 - sig)  # (H, d+1) the sigmoid surrogate's derivative at s - u
    df_du = -sg * g  # (H, d+1)
    heads = np.moveaxis(scores, -3, 0).reshape(H, -1).astype(int)  # (H, entries)
    dAh = np.moveaxis(dA, -3, 0).reshape(H, -1)
    # dL/du_h = sum over entries of dA * df/du at the entry's score = sum over s of (dA summed per s) * df/du(s)
    return np.array([np.bincount(heads[h], weights=dAh[h], minlength=head_dim + 1) @ df_du[h] for h in range(H)])


SOLUTIONS = {"06.1": my_block_energy, "06.2": my_dloss_du}
