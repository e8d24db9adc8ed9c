"""Plots shared by the tutorials (``tutorials/*.ipynb``) and ``figures/make_figures.py``.

One module per concern; every public function is re-exported here, so ``plotting.<function>`` is
the name to use. Which figure each function draws:

* :mod:`.neuron`: :func:`plot_membrane`, LIF neurons over time (Eq. 2-3): input current,
  membrane before and after the reset, threshold, spikes (not a paper figure; the
  snnTorch-tutorial view of a neuron built by hand); :func:`plot_surrogates`, the step and the
  two surrogates of ``docs/spec.md §1.2``, primals and derivatives.
* :mod:`.tasa`: :func:`plot_tasa`, the weights of the paper's **Figure 2** (TASA, Eq. 1, 4, 5):
  the decay factors ``2^(-tau*lag)``, the weight replicas ``W(lag) = W(0) df(lag)`` and the
  causal banded ``T x T`` matrix (:func:`tasa_mixing_matrix`), one row per ``tau``;
  :func:`plot_tasa_spikes`, Figure 2 on spikes: an input raster, the current ``I[t]`` of a few Q
  neurons with a window of 1 (Spikformer) and of ``T_AW`` (TASA), and the Q spikes each produces.
* :mod:`.nsad`: the mechanism of the paper's **Figure 4** (NSAD, Eq. 6-7): :func:`plot_nsad`
  (per head ``f_h``, ``g_h``, the rounded hashmap ``AD_h[s]`` and the threshold ``u_h``),
  :func:`plot_hashmap_table` (one head's hashmap drawn as the table it is),
  :func:`plot_nsad_pipeline` (per head, curve -> table -> score map ``QKᵀ`` -> denoised map,
  with the sparsity of each map), and the labelled examples :data:`NSAD_EXAMPLES`.
* :mod:`.attention`: :func:`plot_attention_maps` (a score map ``S`` next to its denoised
  ``A = NSAD(S)``) and :func:`plot_attention_grid`, the paper's **Figure 3**: attention maps of
  a trained model, heads across, blocks down, the input and the input masked by the last head
  (:func:`token_mask`).
* :mod:`.architecture`: :func:`plot_architecture`, the paper's **Figure 1** as a block diagram
  with this package's tensor shapes on the arrows.
* :mod:`.results`: results of training runs: :func:`plot_learning_curves`,
  :func:`plot_block_energy` (the paper's **Table 3** as a chart), :func:`plot_ablation`
  (**Table 4** with seed error bars) and :func:`plot_denoising_sweep`, with one style for
  training-set and one for test-set curves (:data:`TRAIN_STYLE`, :data:`TEST_STYLE`).
* :mod:`.style`: what every figure shares: one order and one colour per model variant
  (:data:`VARIANTS`, :data:`VARIANT_COLORS`, :func:`variant_color`, :func:`in_variant_order`),
  :func:`percent` (a sparsity short of 100% is never printed as 100%), and the axes helpers.

Conventions: every function takes data (arrays, parameters, results) and
optionally the axes to draw into, and returns the root
:class:`~matplotlib.figure.Figure`. New figures are made with
:class:`matplotlib.figure.Figure` directly, not through ``pyplot``: nothing is
registered globally, nothing is shown, and the code runs under any backend
(``Agg`` included). In a notebook, end the cell with the returned figure to
display it; in a script, call ``fig.savefig``. Integer-valued maps (score
counts, hashmap entries) get colour bars with integer ticks.

matplotlib is needed only here: without it, ``import ds2ta_ref.plotting`` fails with one line
saying what to install.
"""

try:
    import matplotlib  # noqa: F401
except ImportError:
    raise ImportError("ds2ta_ref.plotting needs matplotlib: pip install 'ds2ta_ref[plot]'") from None

from .architecture import plot_architecture
from .attention import plot_attention_grid, plot_attention_maps, token_mask
from .neuron import plot_membrane, plot_surrogates
from .nsad import NSAD_EXAMPLES, plot_hashmap_table, plot_nsad, plot_nsad_pipeline
from .results import (
    TEST_STYLE,
    TRAIN_STYLE,
    plot_ablation,
    plot_block_energy,
    plot_denoising_sweep,
    plot_learning_curves,
)
from .style import VARIANT_COLORS, VARIANTS, in_variant_order, percent, variant_color
from .tasa import plot_tasa, plot_tasa_spikes, tasa_mixing_matrix

__all__ = [
    "plot_membrane",
    "plot_surrogates",
    "tasa_mixing_matrix",
    "plot_tasa",
    "plot_tasa_spikes",
    "NSAD_EXAMPLES",
    "plot_nsad",
    "plot_hashmap_table",
    "plot_nsad_pipeline",
    "plot_attention_maps",
    "token_mask",
    "plot_attention_grid",
    "plot_architecture",
    "plot_learning_curves",
    "plot_block_energy",
    "plot_ablation",
    "plot_denoising_sweep",
    "TRAIN_STYLE",
    "TEST_STYLE",
    "VARIANTS",
    "VARIANT_COLORS",
    "variant_color",
    "in_variant_order",
    "percent",
]
