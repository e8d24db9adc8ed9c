"""The text reports of :mod:`ds2ta_ref.golden.comparison`: one file's table, a suite's lines."""

from __future__ import annotations

__all__ = ["comparison_table", "suite_table"]


def comparison_table(result, max_rows: int | None = None) -> str:
    """A :class:`~ds2ta_ref.golden.comparison.Comparison` as a table worst first (``max_rows`` rows at
    most, all failures shown first), the counts, missing and unexpected keys, the first departure."""
    shown = result.results if not max_rows else result.results[:max_rows]
    width = max([len(r.key) for r in shown] + [6])
    lines = [
        f"{'tensor':<{width}}  {'shape':<18} {'max abs':>9} {'max rel':>9}  status",
        f"{'-' * width}  {'-' * 18} {'-' * 9} {'-' * 9}  ------",
    ]
    for r in shown:
        lines.append(
            f"{r.key:<{width}}  {r.shape!s:<18} {r.max_abs:9.2e} {r.max_rel:9.2e}  "
            f"{'ok' if r.ok else 'FAIL'}{'  ' + r.note if r.note else ''}"
        )
    if len(shown) < len(result.results):
        rest = result.results[len(shown) :]
        failing = sum(not r.ok for r in rest)
        lines.append(f"... {len(rest)} more rows ({failing} failing) not shown")
    failed = sum(not r.ok for r in result.results)
    lines.append(
        f"compared {len(result.results)} tensors, {failed} fail: rtol={result.rtol:g}, atol={result.atol:g}, "
        f"floor={result.floor:g} of each group's scale (docs/golden.md)"
    )
    if result.narrow_dtypes:
        lines.append(f"{result.candidate_name} holds {', '.join(result.narrow_dtypes)} tensors, not float64")
    if result.missing:
        lines.append(f"missing from {result.candidate_name} ({len(result.missing)}): {', '.join(result.missing)}")
    if result.unexpected:
        lines.append(
            f"unexpected in {result.candidate_name}, not in the golden file ({len(result.unexpected)}): "
            f"{', '.join(result.unexpected)}"
        )
    if result.first_departure is not None:
        lines.append(f"first departure in forward order: {result.first_departure}")
    lines.append("PASS" if result.passed else "FAIL")
    return "\n".join(lines)


def suite_table(result) -> str:
    """A :class:`~ds2ta_ref.golden.comparison.SuiteComparison`: one line per case, then the total."""
    width = max(len(name) for name in list(result.cases) + result.missing_cases)
    lines = []
    for name, c in result.cases.items():
        failed = sum(not r.ok for r in c.results) + len(c.missing) + len(c.unexpected)
        if c.passed:
            lines.append(f"{name:<{width}}  PASS  {len(c.results)} tensors")
        else:
            where = f"first departure {c.first_departure}" if c.first_departure else f"unexpected {c.unexpected[0]}"
            lines.append(f"{name:<{width}}  FAIL  {failed} of {len(c.results) + len(c.missing)} tensors; {where}")
    for name in result.missing_cases:
        lines.append(f"{name:<{width}}  {'skipped' if result.skipped else 'MISSING'}  no candidate file {name}.npz")
    passed = sum(c.passed for c in result.cases.values())
    total = len(result.cases) + len(result.missing_cases)
    rtol = next(iter(result.cases.values())).rtol
    lines.append(
        f"{passed} of {total} cases pass (rtol={rtol:g})"
        + (f", {len(result.missing_cases)} skipped" if result.skipped and result.missing_cases else "")
        + (": PASS" if result.passed else ": FAIL")
    )
    return "\n".join(lines)
