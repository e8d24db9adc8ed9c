"""Solutions of notebook 05's exercises (checked by ``ds2ta_ref.exercises.check``)."""

import math

import numpy as np


def my_learning_rates(steps, total_steps, warmup_steps, base_lr, min_lr):
    lrs = []
    for k in steps:
        if k >= total_steps:
            lrs.append(min_lr)  # after the end: the floor
        elif k < warmup_steps:
            lrs.append(base_lr * (k + 1) / (warmup_steps + 1))  # linear warmup, never 0
        else:
            q = (k - warmup_steps) / (total_steps - warmup_steps)  # 0 at the peak, 1 at the end
            lrs.append(min_lr + (base_lr - min_lr) * 0.5 * (1 + math.cos(math.pi * q)))
    return np.array(lrs)


def my_adamw(p, g, m, v, k, lr, weight_decay, decay, beta1=0.9, beta2=0.999, eps=1e-8):
    if decay:
        p = p * (1 - lr * weight_decay)  # decoupled weight decay, before the Adam step
    m = beta1 * m + (1 - beta1) * g
    v = beta2 * v + (1 - beta2) * g * g
    step_size = lr / (1 - beta1**k)  # bias corrections of step k
    denom = np.sqrt(v) / math.sqrt(1 - beta2**k) + eps
    return p - step_size * m / denom, m, v


SOLUTIONS = {"05.1": my_learning_rates, "05.2": my_adamw}
