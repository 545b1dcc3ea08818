"""Out-of-distribution detectors: **higher score = more OOD**, for every detector.

::

    from uncertainty.ood import make_detector

    detector = make_detector("energy", model)          # any x -> logits classifier
    scores = detector.fit(train_loader).score(x)        # (N,) float64

    # many detectors, one forward pass per dataset:
    from uncertainty.ood import extract_outputs
    train = extract_outputs(model, train_loader)         # logits (N, C) + features (N, F)
    test = extract_outputs(model, x_test)
    ddu = make_detector("ddu", model).fit_outputs(train)
    scores = ddu.score_outputs(test)

Detectors (registry names): ``msp``, ``maxlogit``, ``entropy``, ``energy``, ``odin``, ``gen``
(Liu et al. 2023), ``kl-matching`` (Hendrycks et al. 2022), ``mahalanobis``, ``ddu``, ``knn``,
``featurenorm``, ``she`` (Zhang et al. 2023), ``gradnorm`` (Huang et al. 2021), ``rapp`` and
``combined`` (conformal p-values of several detectors, by default Fisher's sum over the feature
norm, the Mahalanobis ensemble and RaPP-SAP -- without labels the maximum over ODIN, kNN and
RaPP-SAP: the recommended detector, also named ``default``,
its components chosen from in-distribution data and synthetic outliers alone by
:func:`~uncertainty.ood.selection.select_detector`); the density-based ``likelihood``,
``likelihood-ratio`` (Ren et al. 2019), ``complexity`` (Serrà et al. 2020) and ``typicality``
(Nalisnick et al. 2019b), which score through a density model
(``make_detector("likelihood-ratio", density=nade)``, see :mod:`uncertainty.ood._density`); each
module holds the pure score function (``energy_score(logits, temperature)``) next to its class.
``mc-dropout`` (MC-Dropout mutual information) and ``ensemble-disagreement`` (deep-ensemble
mutual information) score the epistemic uncertainty of :mod:`uncertainty.predictive`. Three more
feature detectors: ``relative-mahalanobis`` (Ren et al. 2021), ``vim`` (virtual-logit matching,
Wang et al. 2022) and ``nnguide`` (nearest-neighbour guidance, Park et al. 2023);
``mahalanobis-ensemble`` (Lee et al. 2018's Mahalanobis distances at several layers,
Fisher-combined through held-out conformal p-values). The contract is in
:mod:`uncertainty.ood._base`, feature access (``model.features`` or a hooked ``layer``) in
:mod:`uncertainty.ood.outputs`.

The activation-shaping detectors ``react`` (Sun et al. 2021), ``dice`` (Sun & Li 2022),
``ash-p``, ``ash-b``, ``ash-s`` (Djurisic et al. 2023) and ``scale`` (Xu et al. 2024) modify the
penultimate features (or the last layer's weights) and score the energy of the re-applied
``model.head`` (:mod:`uncertainty.ood._shaping`).

The OOD suite, every detector against every OOD set from one shared forward pass per dataset
(:mod:`uncertainty.ood.suite`), returns an :class:`OODTable` (:mod:`uncertainty.ood.table`)::

    from uncertainty.ood import run_ood
    table = run_ood(model, "mnist", "fashion-mnist,gaussian-noise", detectors="all")
    print(table.to_markdown("auroc"))
"""

from uncertainty.ood._base import OODDetector
from uncertainty.ood.ash import ASHB, ASHP, ASHS, ash_features, ash_score
from uncertainty.ood.combined import (
    DEFAULT_COMPONENTS,
    DEFAULT_COMPONENTS_UNLABELLED,
    Combined,
    conformal_neg_log_p,
)
from uncertainty.ood.complexity import InputComplexity, complexity_score, compressed_bits
from uncertainty.ood.ddu import DDU, ddu_score
from uncertainty.ood.dice import DICE, dice_mask, dice_score
from uncertainty.ood.energy import Energy, energy_score
from uncertainty.ood.ensemble_disagreement import (
    EnsembleDisagreement,
    ensemble_disagreement_score,
)
from uncertainty.ood.entropy import Entropy, entropy_score
from uncertainty.ood.featurenorm import FeatureNorm, feature_norm_score
from uncertainty.ood.gen import GEN, gen_score
from uncertainty.ood.gradnorm import GradNorm, gradnorm_score
from uncertainty.ood.kl_matching import KLMatching, class_log_templates, kl_matching_score
from uncertainty.ood.knn import KNN, knn_score, normalize_features
from uncertainty.ood.likelihood import Likelihood, likelihood_score
from uncertainty.ood.likelihood_ratio import (
    LikelihoodRatio,
    likelihood_ratio_score,
    mutate_pixels,
)
from uncertainty.ood.mahalanobis import Mahalanobis, mahalanobis_score
from uncertainty.ood.mahalanobis_ensemble import MahalanobisEnsemble, mahalanobis_ensemble_score
from uncertainty.ood.maxlogit import MaxLogit, max_logit_score
from uncertainty.ood.mc_dropout_mi import MCDropoutMI, mutual_information_score
from uncertainty.ood.msp import MSP, msp_score
from uncertainty.ood.nnguide import NNGuide, nnguide_score
from uncertainty.ood.odin import ODIN, odin_score
from uncertainty.ood.outputs import ModelOutputs, extract_outputs, forward_outputs
from uncertainty.ood.rapp import (
    MLPAutoencoder,
    RaPP,
    rapp_differences,
    rapp_nap_score,
    rapp_sap_score,
)
from uncertainty.ood.react import ReAct, react_score, react_threshold
from uncertainty.ood.registry import (
    DETECTORS,
    available_detectors,
    make_detector,
    register_detector,
)
from uncertainty.ood.relative_mahalanobis import (
    RelativeMahalanobis,
    relative_mahalanobis_score,
)
from uncertainty.ood.scale import SCALE, scale_features, scale_score
from uncertainty.ood.selection import Selection, select_detector
from uncertainty.ood.she import SHE, she_patterns, she_score
from uncertainty.ood.suite import run_ood
from uncertainty.ood.table import OODTable
from uncertainty.ood.typicality import Typicality, bootstrap_threshold, typicality_score
from uncertainty.ood.vim import ViM, vim_score

# The built-in detectors, in the order tables list them (a detector of another distribution
# registers through the entry-point group "dunno.detectors", see uncertainty.ood.registry).
for _detector in (MSP, MaxLogit, Entropy, Energy, ODIN, GEN, KLMatching, Mahalanobis, DDU, KNN,
                  FeatureNorm, SHE, GradNorm,
                  ReAct, DICE, ASHP, ASHB, ASHS, SCALE,  # activation shaping
                  RelativeMahalanobis, ViM, NNGuide,  # feature statistics, subspaces, guidance
                  MahalanobisEnsemble,  # several layers
                  RaPP, Combined, MCDropoutMI, EnsembleDisagreement, Likelihood, LikelihoodRatio,
                  InputComplexity, Typicality):
    register_detector(_detector)
del _detector

__all__ = [
    "ASHB",
    "ASHP",
    "ASHS",
    "DICE",
    "ReAct",
    "SCALE",
    "ash_features",
    "ash_score",
    "dice_mask",
    "dice_score",
    "react_score",
    "react_threshold",
    "scale_features",
    "scale_score",
    "GEN",
    "GradNorm",
    "KLMatching",
    "SHE",
    "class_log_templates",
    "gen_score",
    "gradnorm_score",
    "kl_matching_score",
    "she_patterns",
    "she_score",
    "DDU",
    "EnsembleDisagreement",
    "MCDropoutMI",
    "ensemble_disagreement_score",
    "mutual_information_score",
    "InputComplexity",
    "Likelihood",
    "LikelihoodRatio",
    "Typicality",
    "bootstrap_threshold",
    "complexity_score",
    "compressed_bits",
    "likelihood_ratio_score",
    "likelihood_score",
    "mutate_pixels",
    "typicality_score",
    "DEFAULT_COMPONENTS",
    "DEFAULT_COMPONENTS_UNLABELLED",
    "DETECTORS",
    "KNN",
    "MLPAutoencoder",
    "MSP",
    "ODIN",
    "Combined",
    "Energy",
    "Entropy",
    "FeatureNorm",
    "Mahalanobis",
    "MahalanobisEnsemble",
    "MaxLogit",
    "NNGuide",
    "RelativeMahalanobis",
    "ViM",
    "ModelOutputs",
    "OODDetector",
    "OODTable",
    "RaPP",
    "available_detectors",
    "conformal_neg_log_p",
    "ddu_score",
    "energy_score",
    "entropy_score",
    "extract_outputs",
    "feature_norm_score",
    "forward_outputs",
    "knn_score",
    "mahalanobis_ensemble_score",
    "mahalanobis_score",
    "make_detector",
    "max_logit_score",
    "msp_score",
    "nnguide_score",
    "relative_mahalanobis_score",
    "vim_score",
    "normalize_features",
    "odin_score",
    "rapp_differences",
    "rapp_nap_score",
    "rapp_sap_score",
    "register_detector",
    "run_ood",
    "Selection",
    "select_detector",
]
