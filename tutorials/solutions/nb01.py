"""Solutions of notebook 01's exercises (checked by ``ds2ta_ref.exercises.check``)."""

import math

import numpy as np


def threshold_currents(tau_m, v_threshold):
    # Ever: from rest, h[n] = I (1 + k + ... + k^(n-1)) climbs to the steady state h* = I / (1 - k) = I tau_m
    # (h* applies while the neuron does NOT fire), so it fires at some step iff I tau_m > theta.
    # Every step: after a reset v = 0, so h = I at the next step and it fires again iff I >= theta.
    return v_threshold / tau_m, v_threshold


def firing_period(current, tau_m, v_threshold):
    # From v = 0: h[n-1] = I (1 - k^n) / (1 - k) after n steps; the spike resets to 0, so the train is periodic.
    k = 1 - 1 / tau_m
    if current >= v_threshold:
        return 1
    if current * tau_m <= v_threshold:  # h* = I tau_m never reaches the threshold
        return 0
    return math.ceil(math.log(1 - v_threshold * (1 - k) / current) / math.log(k))


def lif_backward_by_hand(current, dspikes, tau_m, v_threshold, alpha=4.0):
    k = 1 - 1 / tau_m
    v, hs, ss = 0.0, [], []
    for current_t in current:  # forward, as lif_by_hand
        h = k * v + current_t
        s = 1.0 if h >= v_threshold else 0.0
        v = h * (1 - s)
        hs.append(h)
        ss.append(s)
    dI = np.zeros(len(current))
    dv = 0.0  # gradient reaching v[t] from step t+1
    for t in reversed(range(len(current))):
        sig = 1 / (1 + np.exp(-alpha * (hs[t] - v_threshold)))
        dh = dspikes[t] * alpha * sig * (1 - sig) + dv * (1 - ss[t])  # detach_reset: no path through s in v
        dI[t] = dh
        dv = dh * k
    return dI


SOLUTIONS = {"01.1": threshold_currents, "01.2": firing_period, "01.3": lif_backward_by_hand}
