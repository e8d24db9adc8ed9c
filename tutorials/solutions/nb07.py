"""Solutions of notebook 07's exercises (checked by ``ds2ta_ref.exercises.check``)."""

import numpy as np


def my_lif(x, dspikes, options):
    k = 1 - 1 / options["tau_m"]  # decay_input=False: h = k v + x
    theta, alpha = options["v_threshold"], options["alpha"]
    v = np.zeros_like(x[0])
    hs, spikes = [], []
    for x_t in x:  # forward over time
        h = k * v + x_t
        s = (h >= theta).astype(x.dtype)
        v = h * (1 - s)  # hard reset to 0
        hs.append(h)
        spikes.append(s)
    dx, dv = np.zeros_like(x), np.zeros_like(x[0])
    for t in reversed(range(len(x))):  # backward; the reset's spike is detached (detach_reset=True)
        sig = 1 / (1 + np.exp(-alpha * (hs[t] - theta)))
        dh = dspikes[t] * alpha * sig * (1 - sig) + dv * (1 - spikes[t])
        dx[t] = dh
        dv = k * dh
    return np.stack(spikes), dx


def my_tasa(s, weight, bias, tau, window):
    tau_used = max(0, round(float(tau)))  # the rounded exponent (straight-through in the backward)
    mix = np.zeros_like(s)
    for t in range(len(s)):
        for lag in range(min(t + 1, window)):
            mix[t] += 2.0 ** (-tau_used * lag) * s[t - lag]
    return mix @ weight.T + bias


SOLUTIONS = {"07.1": my_lif, "07.2": my_tasa}
