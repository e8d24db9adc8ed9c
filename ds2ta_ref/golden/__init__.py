"""Golden vectors: reference numbers for checking another implementation of DS2TA (docs/golden.md).

A golden file is one ``.npz`` (a zip of ``.npy`` members, readable with
``np.load(path, allow_pickle=False)`` or any ``.npy`` reader) holding, in
float64, the whole model's forward and backward on one batch and each kernel
(LIF, and TASA and NSAD when the config uses them) on its own: inputs,
parameters, upstream gradients, outputs and every gradient.

* :func:`write` ``(path, cfg, *, seed, batch)`` writes one (``ds2ta-ref golden``);
  :func:`build` returns the same arrays as a dict (:mod:`.writer`).
* :func:`write_suite` ``(directory)`` writes the conformance suite, several small
  cases and ``suite.json`` (``ds2ta-ref golden --suite DIR``; :mod:`.suite`).
* :func:`compare` ``(reference, candidate)`` checks a candidate file tensor by tensor
  and names the first tensor, in forward order (:func:`forward_order`), that
  departs; :func:`compare_suite` a whole suite (``ds2ta-ref compare``; :mod:`.comparison`,
  reports in :mod:`.report`).
* The keys, their order and roles: :mod:`.layout`.

Keys whose role is *input* (:func:`is_input`: the config, the model's input,
target, parameters and BatchNorm state, each kernel's options and ``in/``
arrays) may be left out of a candidate; every other key of the reference must
be in it.
"""

from .comparison import DEFAULT_RTOL, Comparison, SuiteComparison, TensorResult, compare, compare_suite, suite_cases
from .layout import (
    FORMAT_VERSION,
    KERNEL_KEYS,
    READABLE_VERSIONS,
    GoldenFileError,
    config_from_json,
    forward_order,
    is_input,
    kernels,
    read,
    read_golden,
    section,
)
from .suite import CASES, RATE_RANGE, build_case, write_suite
from .writer import Draws, build, firing_rates, write, write_npz

__all__ = [
    "CASES",
    "DEFAULT_RTOL",
    "FORMAT_VERSION",
    "KERNEL_KEYS",
    "RATE_RANGE",
    "READABLE_VERSIONS",
    "Comparison",
    "Draws",
    "GoldenFileError",
    "SuiteComparison",
    "TensorResult",
    "build",
    "build_case",
    "compare",
    "compare_suite",
    "config_from_json",
    "firing_rates",
    "forward_order",
    "is_input",
    "kernels",
    "read",
    "read_golden",
    "section",
    "suite_cases",
    "write",
    "write_npz",
    "write_suite",
]
