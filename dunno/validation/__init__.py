"""One validation module for the whole toolkit: parameter checks and array-input checks.

Every check raises :class:`ValueError` (never ``assert``) naming what it checked, what was
expected and what was given, in scikit-learn's phrasing::

    The 'num_samples' parameter of MCDropout must be an int >= 1. Got 0 instead.
    The 'probs' argument must have rows summing to 1 (tolerance 0.0001); row 3 sums to 0.8.

* :mod:`dunno.validation.params` -- scalar and small-tuple parameters, all called
  ``check_*(value, name, owner, ...)``: :func:`check_int`, :func:`check_float`,
  :func:`check_bool`, :func:`check_choice`, :func:`check_seed`,
  :func:`check_probability_level`, :func:`check_int_sequence`, :func:`check_hidden`,
  :func:`check_shape`, :func:`check_image_shape`, :func:`check_betas`; the size limits that
  keep a parameter from allocating unbounded memory: :func:`check_n_bins` (``MAX_BINS``,
  ``MAX_BIN_CELLS``), :func:`check_num_samples` (``MAX_NUM_SAMPLES``),
  :func:`check_inferred_classes` (``MAX_INFERRED_CLASSES``);
* :mod:`dunno.validation.arrays` -- array inputs returned as numpy (the metrics' inputs):
  :func:`to_numpy`, :func:`check_real`, :func:`check_scores`, :func:`check_probs`,
  :func:`check_labels`, :func:`check_correct`, :func:`check_same_length`;
* :mod:`dunno.validation.tensors` -- array inputs returned as tensors: :func:`as_tensor`,
  :func:`as_labels`, :func:`check_finite_tensor`.

Checks that belong to one domain only (pixel kinds of an autoregressive model, the logits a
calibrator accepts, the layer spec of a feature hook) live in that domain and use these for
their scalar parts.
"""

from dunno.validation.arrays import (
    PROB_SUM_ATOL,
    PROB_SUM_ATOL_HALF,
    check_correct,
    check_labels,
    check_probs,
    check_real,
    check_same_length,
    check_scores,
    to_numpy,
)
from dunno.validation.params import (
    MAX_BIN_CELLS,
    MAX_BINS,
    MAX_INFERRED_CLASSES,
    MAX_NUM_SAMPLES,
    check_betas,
    check_bool,
    check_choice,
    check_float,
    check_hidden,
    check_image_shape,
    check_inferred_classes,
    check_int,
    check_int_sequence,
    check_n_bins,
    check_num_samples,
    check_probability_level,
    check_seed,
    check_shape,
    owner_name,
)
from dunno.validation.tensors import as_labels, as_tensor, check_finite_tensor

__all__ = [
    "MAX_BINS",
    "MAX_BIN_CELLS",
    "MAX_INFERRED_CLASSES",
    "MAX_NUM_SAMPLES",
    "PROB_SUM_ATOL",
    "PROB_SUM_ATOL_HALF",
    "as_labels",
    "as_tensor",
    "check_betas",
    "check_bool",
    "check_choice",
    "check_correct",
    "check_finite_tensor",
    "check_float",
    "check_hidden",
    "check_image_shape",
    "check_int",
    "check_inferred_classes",
    "check_int_sequence",
    "check_labels",
    "check_n_bins",
    "check_num_samples",
    "check_probability_level",
    "check_probs",
    "check_real",
    "check_same_length",
    "check_scores",
    "check_seed",
    "check_shape",
    "owner_name",
    "to_numpy",
]
