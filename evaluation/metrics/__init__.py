"""dunno's metrics: pure functions of tensors / arrays, computed in float64.

Inputs may be numpy arrays, Python sequences or torch tensors on any device; results are Python
floats (or float64 numpy arrays for curves). Argument names say what an input is: ``probs``
(``(N, C)`` probabilities), ``logits``, ``log_probs``, ``labels`` (integer class indices),
``scores_in`` / ``scores_out`` (OOD scores, **higher = more OOD**). Bad input raises
``ValueError`` naming the argument.

Modules:
    calibration  ECE / MCE / class-wise / adaptive, reliability table, Brier, NLL, accuracy.
                 (its binning building blocks, shared with ``streaming``: ``_binning``)
    selective    risk–coverage curve, AURC, misclassification AUROC.
    ood          AUROC, AUPR-In / -Out, FPR@95TPR, detection error, ROC / PR curves
                 (the OOD sign convention is documented in its docstring).
    likelihood   NLL in nats, bits/dim (with the dequantisation offset), log-mean-exp.
    regression   RMSE, Gaussian / mixture NLL, Gaussian / mixture CRPS, interval coverage
                 and width, regression calibration curve.
    streaming    CalibrationAccumulator, OODAccumulator (update / compute / merge).
    samples      sample quality of generative models on any features: Fréchet distance,
                 classifier score, k-NN precision / recall, mode coverage, best code mapping.

This package imports nothing from ``uncertainty``, ``generative`` or ``dunno.cli``, and no
matplotlib.
"""

from .calibration import (
    ConfidenceSplit,
    ReliabilityTable,
    accuracy,
    brier_score,
    calibration_metrics,
    classwise_calibration_error,
    expected_calibration_error,
    maximum_calibration_error,
    nll,
    nll_from_logits,
    over_under_confidence,
    reliability_table,
)
from .likelihood import (
    bits_per_dim,
    effective_sample_size,
    has_code_length,
    importance_sampled_log_likelihood,
    log_mean_exp,
    nll_nats,
)
from .ood import (
    aupr_in,
    aupr_out,
    auroc,
    detection_error,
    fpr_at_tpr,
    ood_metrics,
    precision_recall_curve,
    roc_curve,
)
from .regression import (
    RegressionCalibrationCurve,
    crps_gaussian,
    crps_mixture,
    gaussian_interval,
    gaussian_mixture_nll,
    gaussian_nll,
    interval_coverage,
    mean_interval_width,
    regression_calibration_curve,
    rmse,
)
from .samples import (
    ModeCoverage,
    PrecisionRecall,
    best_mapping_accuracy,
    classifier_score,
    feature_statistics,
    frechet_distance,
    frechet_distance_from_statistics,
    mode_coverage,
    precision_recall,
    ring_modes,
)
from .selective import RiskCoverageCurve, aurc, misclassification_auroc, risk_coverage_curve
from .streaming import CalibrationAccumulator, OODAccumulator

__all__ = [
    # calibration
    "ConfidenceSplit",
    "ReliabilityTable",
    "accuracy",
    "brier_score",
    "calibration_metrics",
    "classwise_calibration_error",
    "expected_calibration_error",
    "maximum_calibration_error",
    "nll",
    "nll_from_logits",
    "over_under_confidence",
    "reliability_table",
    # selective prediction
    "RiskCoverageCurve",
    "aurc",
    "misclassification_auroc",
    "risk_coverage_curve",
    # OOD
    "aupr_in",
    "aupr_out",
    "auroc",
    "detection_error",
    "fpr_at_tpr",
    "ood_metrics",
    "precision_recall_curve",
    "roc_curve",
    # likelihood
    "bits_per_dim",
    "effective_sample_size",
    "has_code_length",
    "importance_sampled_log_likelihood",
    "log_mean_exp",
    "nll_nats",
    # regression
    "RegressionCalibrationCurve",
    "crps_gaussian",
    "crps_mixture",
    "gaussian_interval",
    "gaussian_mixture_nll",
    "gaussian_nll",
    "interval_coverage",
    "mean_interval_width",
    "regression_calibration_curve",
    "rmse",
    # sample quality
    "ModeCoverage",
    "PrecisionRecall",
    "best_mapping_accuracy",
    "classifier_score",
    "feature_statistics",
    "frechet_distance",
    "frechet_distance_from_statistics",
    "mode_coverage",
    "precision_recall",
    "ring_modes",
    # streaming
    "CalibrationAccumulator",
    "OODAccumulator",
]
