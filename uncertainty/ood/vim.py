r"""Virtual-logit matching (Wang, Li, Feng & Zhang, "ViM: Out-Of-Distribution with
Virtual-logit Matching", CVPR 2022).

The classifier head :math:`z = W f + b` (``model.head``, an :class:`~torch.nn.Linear` on the
penultimate features :math:`f \in \mathbb R^F`) is read for its origin
:math:`o = -W^{+} b` (:math:`W^{+}` the pseudo-inverse; the point the head maps to zero
logits). On the in-distribution training features offset by it, :math:`X = F_{\text{train}} -
o`, the **principal subspace** is spanned by the eigenvectors of the :math:`D` largest
eigenvalues of :math:`X^\top X / N` (uncentred: the offset is the origin, as in the paper's
code), and :math:`R \in \mathbb R^{F \times (F - D)}` holds the remaining ones. The residual
:math:`\lVert (f - o) R \rVert` is turned into a **virtual logit** matched to the real ones on
the training data,

.. math::

    \ell_0(x) = \alpha \,\lVert (f(x) - o) R \rVert, \qquad
    \alpha = \frac{\sum_i \max_c z_c(x_i)}{\sum_i \lVert (f(x_i) - o) R \rVert},

and ViM is the softmax probability of the virtual class among the :math:`C + 1` logits,
:math:`p_0 = e^{\ell_0} / (e^{\ell_0} + \sum_c e^{z_c})`. The score returned is its log-odds,

.. math::

    s(x) = \log\frac{p_0}{1 - p_0} = \alpha\,\lVert (f(x) - o) R\rVert
    - \log\sum_{c=1}^{C} e^{z_c(x)},

the virtual logit plus the energy (:mod:`uncertainty.ood.energy`): a strictly increasing
function of :math:`p_0` (same AUROC, no saturation at :math:`p_0 \to 1`), and the negative of
the paper code's ``energy - vlogit`` (higher = more OOD).

**Dimension** :math:`D`: the paper's code uses 1000 for :math:`F \ge 2048` and 512 otherwise
(ViT's :math:`F = 768`); for :math:`F < 768` the default here is :math:`\lfloor F/2 \rfloor`
(42 for LeNet-5's 84 features, the ``dim`` of OpenOOD's ViM configuration). ``dim`` overrides
it; it must satisfy :math:`1 \le D < F`.

The head must act on the features the detector reads: ``model.features`` with ``model.head``
an ``nn.Linear`` (every :mod:`dunno.nets` backbone); a model without such a head, or a
``layer=`` hook (whose output is not the head's input), is refused.
"""

from __future__ import annotations

import torch
from torch import nn

from dunno.validation import check_int
from uncertainty.ood._base import OODDetector
from uncertainty.ood.outputs import LayerSpec, ModelOutputs

__all__ = ["ViM", "vim_default_dim", "vim_score"]


def vim_default_dim(num_features: int) -> int:
    r"""The principal dimension :math:`D` for ``num_features`` :math:`F`: 1000 for
    :math:`F \ge 2048`, 512 for :math:`768 \le F < 2048` (the paper's code), else
    :math:`\lfloor F / 2 \rfloor` (at least 1)."""
    if num_features >= 2048:
        return 1000
    if num_features >= 768:
        return 512
    return max(1, num_features // 2)


def vim_score(
    features: torch.Tensor, logits: torch.Tensor, origin: torch.Tensor,
    residual_basis: torch.Tensor, alpha: float,
) -> torch.Tensor:
    r"""ViM log-odds :math:`\alpha \lVert (f - o) R \rVert - \log\sum_c e^{z_c}`.

    Args:
        features: ``(N, F)`` penultimate features.
        logits: ``(N, C)`` their logits.
        origin: ``(F,)`` the head's origin :math:`o = -W^{+} b`.
        residual_basis: ``(F, F - D)`` orthonormal basis :math:`R` of the non-principal
            directions.
        alpha: the virtual-logit scale :math:`\alpha > 0`.

    Returns:
        ``(N,)`` float64 scores; higher = more OOD.
    """
    basis = residual_basis.to(torch.float64)
    f = features.to(device=basis.device, dtype=torch.float64)
    residual = ((f - origin.to(f)) @ basis).norm(dim=1)  # (N,)
    energy = -torch.logsumexp(logits.to(device=basis.device, dtype=torch.float64), dim=1)
    return alpha * residual + energy


class ViM(OODDetector):
    """ViM detector (Wang et al. 2022), see the module docstring.

    Parameters
    ----------
    model : nn.Module, optional
        The classifier, with ``features`` and a linear ``head``.
    dim : int, optional
        Principal dimension :math:`D`, ``1 <= D < F`` (default :func:`vim_default_dim`).
    layer : None
        Must stay ``None``: the features must be the head's input.

    Attributes
    ----------
    origin_ : Tensor ``(F,)``; residual_basis_ : Tensor ``(F, F - D)``; alpha_ : float;
    dim_ : int (the :math:`D` used); eigenvalues_ : Tensor ``(F,)`` of :math:`X^\\top X / N`,
    largest first.
    """

    name = "vim"
    reference = "Wang et al. 2022, CVPR"
    needs = frozenset({"logits", "features"})
    fit_needs = frozenset({"logits", "features"})
    #: ViM reads model.head, so its features must be the head's input: no ``layer`` (and
    #: ``"all"`` runs with a layer leave it out).
    reads_head = True
    _state_names = ("origin_", "residual_basis_", "alpha_")

    def __init__(self, model: nn.Module | None = None, *, dim: int | None = None,
                 layer: LayerSpec = None) -> None:
        super().__init__(model, layer=layer)
        self.dim = dim

    @classmethod
    def applies_to(cls, model: nn.Module | None) -> bool:
        """Models with ``features`` and a linear ``head``."""
        return (isinstance(getattr(model, "head", None), nn.Linear)
                and callable(getattr(model, "features", None)))

    @classmethod
    def _cannot_score_reason(cls) -> str:
        return ("has no linear classifier head 'head' (nn.Linear) on its 'features'; ViM reads "
                "the head's weights and bias. Use a dunno.nets backbone, or another detector.")

    def check_model(self) -> None:
        """Also refuse a ``layer``: the features must be the input of ``model.head``."""
        super().check_model()
        if self.model is not None and self.layer is not None:
            raise ValueError(
                f"The 'layer' parameter of ViM must be None: ViM reads model.head's weights, "
                f"so its features must be the head's input (model.features), which a hooked "
                f"layer's output is not. Got layer={self.layer!r} instead."
            )

    def _validate_params(self) -> None:
        super()._validate_params()
        check_int(self.dim, "dim", type(self).__name__, low=1, allow_none=True)

    def _head(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(W (C, F), b (C,))`` float64 of ``model.head``."""
        if self.model is None:
            raise ValueError(
                "ViM.fit_outputs reads the classifier head's weights, but the detector was built "
                "without a model. Pass it as ViM(model, ...)."
            )
        self.check_model()
        head = self.model.head
        weight = head.weight.detach().to(torch.float64)
        bias = (head.bias.detach().to(torch.float64) if head.bias is not None
                else weight.new_zeros(weight.shape[0]))
        return weight, bias

    def _fit(self, outputs: ModelOutputs) -> None:
        weight, bias = self._head()
        feats, logits = outputs.features, outputs.logits
        num_features = feats.shape[1]
        if weight.shape[1] != num_features:
            raise ValueError(
                f"ViM: model.head takes {weight.shape[1]} inputs but the features have "
                f"{num_features} columns; the features must be the head's input."
            )
        dim = vim_default_dim(num_features) if self.dim is None else self.dim
        if dim >= num_features:
            raise ValueError(
                f"The 'dim' parameter of ViM must be less than the number of features "
                f"({num_features}), leaving a residual subspace. Got {dim} instead."
            )
        device = feats.device
        weight, bias = weight.to(device), bias.to(device)
        origin = -(torch.linalg.pinv(weight) @ bias)  # (F,)
        x = feats.to(torch.float64) - origin  # (N, F)
        eigvals, eigvecs = torch.linalg.eigh(x.T @ x / len(x))  # ascending
        basis = eigvecs[:, : num_features - dim]  # (F, F - D): the smallest eigenvalues
        residual = (x @ basis).norm(dim=1)  # (N,)
        max_logit = logits.to(torch.float64).amax(dim=1).mean()
        if not float(residual.mean()) > 0:
            raise ValueError(
                f"ViM: the training features have no residual outside the {dim}-dimensional "
                "principal subspace, so the virtual logit is undefined; pass a smaller 'dim'."
            )
        alpha = float(max_logit / residual.mean())
        if not alpha > 0:
            raise ValueError(
                f"ViM: the mean largest logit on the training data is {float(max_logit):.4g} "
                "<= 0, so the virtual-logit scale alpha would not be positive; ViM needs a "
                "trained classifier."
            )
        self.origin_ = origin
        self.residual_basis_ = basis
        self.alpha_ = alpha
        self.dim_ = dim
        self.eigenvalues_ = eigvals.flip(0)

    def _score(self, outputs: ModelOutputs) -> torch.Tensor:
        return vim_score(outputs.features, outputs.logits, self.origin_,
                         self.residual_basis_, self.alpha_)
