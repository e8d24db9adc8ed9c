"""Solutions of notebook 02's exercises (checked by ``ds2ta_ref.exercises.check``)."""

import numpy as np


def row_sums(tau, window, T):
    # Row t of M holds 2^(-tau*lag) for lag = 0 .. min(t, window - 1): a truncated geometric series.
    return np.array([sum(2.0 ** (-tau * lag) for lag in range(min(t + 1, window))) for t in range(T)])


def tasa_backward_by_hand(dout, s, weight, tau, window):
    # Forward: x_mix[t] = sum_lag df[lag] s[t - lag];  out = x_mix @ W^T + b.
    T = len(s)
    df = [2.0 ** (-tau * lag) for lag in range(window)]
    x_mix = np.zeros_like(s)
    for t in range(T):
        for lag in range(min(t + 1, window)):
            x_mix[t] += df[lag] * s[t - lag]
    dweight = dout.T @ x_mix  # (D_out, D_in)
    dbias = dout.sum(axis=0)  # the bias is added once per step
    dx_mix = dout @ weight  # (T, D_in)
    ds = np.zeros_like(s)
    for m in range(T):  # a spike at m reaches t = m .. m + window - 1
        for lag in range(min(window, T - m)):
            ds[m] += df[lag] * dx_mix[m + lag]
    return ds, dweight, dbias


def tau_used_by_hand(tau):
    return max(0, round(tau))  # Python's round: half to even, like np.rint


SOLUTIONS = {"02.1": row_sums, "02.2": tasa_backward_by_hand, "02.3": tau_used_by_hand}
