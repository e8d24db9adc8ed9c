"""The ablation study of the paper's Tables 3 and 4: Spikformer vs NSAD only vs DS2TA over seeds.

:func:`plan` builds (and so checks) every run's :class:`~ds2ta_ref.recipe.TrainConfig`
and folder before any is trained; :func:`run` trains and evaluates them in order
(:func:`run_one` each);
:func:`accuracy_table` and :func:`energy_tables` format the results in the paper's
forms. The command line's ``ds2ta-ref ablate`` is these calls.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from . import cifar
from .energy import format_table
from .recipe import VARIANTS, TrainConfig, build_data, check_data_files
from .runs import CHECKPOINT
from .train import evaluate, train

__all__ = [
    "AblationRun",
    "AblationResults",
    "plan",
    "taken",
    "results_for",
    "run_one",
    "run",
    "accuracy_table",
    "energy_tables",
]


@dataclass(frozen=True)
class AblationRun:
    dataset: str
    variant: str  # a name of VARIANTS
    seed: int
    tc: TrainConfig
    out: str  # <out>/<dataset>/<variant with _ for spaces>/seed<seed>


@dataclass
class AblationResults:
    datasets: list
    seeds: list
    accuracy: dict = field(default_factory=dict)  # (variant, dataset) -> [test accuracy per seed]
    energy: dict = field(default_factory=dict)  # (variant, dataset) -> [[BlockEnergy per block] per seed]


def plan(
    datasets: Sequence[str], seeds: Sequence[int], epochs: int | None, out: str, *, data_dir: str = ""
) -> list[AblationRun]:
    """Every run of the study, each setting and its data files checked (``ConfigError``) before any is
    trained; ``data_dir``: the folder of the CIFAR binary files, used by the cifar10/cifar100 runs only."""
    runs = []
    for dataset in datasets:
        for name, (tasa_on, nsad_on) in VARIANTS.items():
            for seed in seeds:
                tc = TrainConfig(
                    dataset=dataset,
                    tasa=tasa_on,
                    nsad=nsad_on,
                    seed=seed,
                    epochs=epochs,
                    data_dir=data_dir if dataset in cifar.FILES else "",
                )
                check_data_files(tc)  # issue 18 item 6: the data of every run, before the first
                runs.append(
                    AblationRun(
                        dataset, name, seed, tc, os.path.join(out, dataset, name.replace(" ", "_"), f"seed{seed}")
                    )
                )
    return runs


def taken(runs: Sequence[AblationRun]) -> list[str]:
    """The folders of ``runs`` that already hold a checkpoint."""
    return [r.out for r in runs if os.path.exists(os.path.join(r.out, CHECKPOINT))]


def results_for(runs: Sequence[AblationRun]) -> AblationResults:
    """An empty :class:`AblationResults` for ``runs`` (their data sets and seeds, in order)."""
    return AblationResults(list(dict.fromkeys(r.dataset for r in runs)), list(dict.fromkeys(r.seed for r in runs)))


def run_one(
    r: AblationRun,
    results: AblationResults,
    *,
    overwrite: bool = False,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> None:
    """Train and evaluate one run (``overwrite``: as :func:`ds2ta_ref.train.train`'s); add it to ``results``."""
    log(f"--- {r.dataset}: {r.variant}, seed {r.seed}")
    trained = train(r.tc, r.out, overwrite=overwrite, progress=progress, log=log)
    ds = build_data(r.tc)
    ev = evaluate(trained.params, trained.state, trained.cfg, ds.test_x, ds.test_y)
    results.accuracy.setdefault((r.variant, r.dataset), []).append(ev.accuracy)
    results.energy.setdefault((r.variant, r.dataset), []).append(ev.energy)


def run(
    runs: Sequence[AblationRun], *, overwrite: bool = False, progress: bool = True, log: Callable[[str], None] = print
) -> AblationResults:
    """Train and evaluate every run in order."""
    results = results_for(runs)
    for r in runs:
        run_one(r, results, overwrite=overwrite, progress=progress, log=log)
    return results


def accuracy_table(results: AblationResults) -> str:
    """Test accuracy (%), mean ± sample standard deviation over the seeds (paper Table 4 form)."""
    lines = [
        f"test accuracy (%), mean ± std over seeds {results.seeds} (paper Table 4 form):",
        "model | " + " | ".join(results.datasets),
        "|".join(["---"] * (1 + len(results.datasets))),
    ]
    for name in VARIANTS:
        cells = []
        for dataset in results.datasets:
            acc = 100 * np.array(results.accuracy[(name, dataset)])
            cells.append(f"{acc.mean():.2f} ± {acc.std(ddof=1) if len(acc) > 1 else 0.0:.2f}")
        lines.append(f"{name} | " + " | ".join(cells))
    return "\n".join(lines)


def energy_tables(results: AblationResults) -> str:
    """Attention-map sparsity and energy per sample, mean over the seeds (paper Table 3 form), per data set."""
    parts = []
    for dataset in results.datasets:
        rows = {}
        for name in VARIANTS:
            per_seed = results.energy[(name, dataset)]
            rows[name] = [
                per_seed[0][b]._replace(
                    sparsity=float(np.mean([s[b].sparsity for s in per_seed])),
                    energy_pj=float(np.mean([s[b].energy_pj for s in per_seed])),
                )
                for b in range(len(per_seed[0]))
            ]
        parts.append(
            f"{dataset}: attention-map sparsity and energy per sample, mean over seeds (paper Table 3 "
            f"form):\n{format_table(rows)}"
        )
    return "\n\n".join(parts)
