"""The ``ds2ta-ref`` command line (also ``python -m ds2ta_ref``)."""
from __future__ import annotations

import argparse
import sys

import numpy as np

from . import gradcheck, lif

TOLERANCE = 1e-7


def _lif_checks(rng):
    import itertools

    for decay_input, detach_reset, name in itertools.product([False, True], [True, False], ["sigmoid", "atan"]):
        opts = dict(decay_input=decay_input, detach_reset=detach_reset, surrogate=name,
                    alpha={"sigmoid": 4.0, "atan": 2.0}[name])
        while True:  # an input whose membrane stays away from the threshold
            x = rng.standard_normal((4, 2, 3)) * 1.5 + 0.5
            if np.min(np.abs(lif.forward(x, **opts)[1].h - 1.0)) > 1e-3:
                break
        title = f"lif  decay_input={decay_input!s:<5} detach_reset={detach_reset!s:<5} surrogate={name}"
        yield title, gradcheck.check_gradients(
            lambda x, o=opts: lif.forward(x, smooth=True, **o), lif.backward, {"x": x}, wrt=["x"], rng=rng
        )


CHECKS = {"lif": _lif_checks}


def cmd_gradcheck(args) -> int:
    unknown = sorted(set(args.kernels) - set(CHECKS))
    if unknown:
        raise SystemExit(f"ds2ta-ref gradcheck: unknown kernel(s) {unknown}; choose from {list(CHECKS)}")
    rng = np.random.default_rng(args.seed)
    worst = 0.0
    for kernel in args.kernels or list(CHECKS):
        for title, report in CHECKS[kernel](rng):
            print(gradcheck.format_report(title, report, TOLERANCE))
            worst = max(worst, *report.values())
    print(f"worst relative error {worst:.2e} (tolerance {TOLERANCE:.0e}): {'ok' if worst <= TOLERANCE else 'FAIL'}")
    return 0 if worst <= TOLERANCE else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ds2ta-ref", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser(
        "gradcheck",
        help="check every hand-written backward against float64 finite differences (smooth mode)",
        description="Check the hand-written backward of each kernel against central differences "
        "in float64, in smooth mode, and print the worst relative error per argument.",
    )
    p.add_argument("kernels", nargs="*", metavar="KERNEL",
                   help=f"kernels to check, among {', '.join(CHECKS)} (default: all)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random inputs (default: 0)")
    p.set_defaults(func=cmd_gradcheck)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
