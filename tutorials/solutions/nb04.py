"""Solutions of notebook 04's exercises (checked by ``ds2ta_ref.exercises.check``)."""


def readout(h, weight, bias):
    pooled = h.mean(axis=2).mean(axis=0)  # (T, B, N, D) -> (B, D): tokens, then time
    return pooled @ weight.T + bias  # (B, K)


def block_parameter_count(dim, heads, mlp_ratio, tasa, nsad, qkv_bias):
    D, hidden = dim, dim * mlp_ratio
    bn = 2  # a BatchNorm's weight and bias per feature (its running statistics are state, not parameters)
    qkv = 3 * (D * D + (D if qkv_bias else 0) + bn * D)  # q, k, v: Linear D -> D, BN
    proj = D * D + D + bn * D  # the projection always has a bias
    mlp = (D * hidden + hidden + bn * hidden) + (hidden * D + D + bn * D)
    extra = (1 if tasa else 0) + (6 * heads if nsad else 0)  # one tau per block; six NSAD parameters per head
    return qkv + proj + mlp + extra


SOLUTIONS = {"04.1": readout, "04.2": block_parameter_count}
