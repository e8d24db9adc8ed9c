"""Solutions of notebook 03's exercises (checked by ``ds2ta_ref.exercises.check``)."""

import numpy as np


def hashmap_by_hand(params, head_dim, rounding):
    s = np.arange(head_dim + 1, dtype=float)  # (d + 1,) every possible score
    a, b, c, d, e, u = (params[:, i : i + 1] for i in range(6))  # each (H, 1)
    g = a * s + b * (s - c) ** 2 + d / (1 + np.exp(s - e))  # Eq. 7, (H, d + 1)
    f = np.where(s > u, g, 0.0)  # Eq. 6: strictly above u
    return np.floor(f) if rounding == "floor" else np.rint(f)  # np.rint: nearest, half to even


def threshold_for_removal(S, head_dim, fraction):
    # An identity head with threshold u keeps exactly the scores s > u: count the non-zero ones it removes.
    nonzero = S[S > 0]
    for u in range(head_dim + 1):
        if np.mean(nonzero <= u) >= fraction:
            return u
    return head_dim


# The gate keeps s = 1 iff 1 > u: any u >= 1 removes it, any u < 1 keeps it, so the smallest is 1.
smallest_u_removing_ones = 1.0

SOLUTIONS = {"03.1": hashmap_by_hand, "03.2": threshold_for_removal, "03.3": smallest_u_removing_ones}
