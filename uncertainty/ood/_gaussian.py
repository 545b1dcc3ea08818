r"""Class-conditional Gaussian statistics of features, shared by Mahalanobis, relative
Mahalanobis and DDU.

Everything is computed in float64. Covariances of penultimate features are often singular
(ReLU units that never fire, fewer examples of a class than feature dimensions). Two remedies:

* :func:`pinv_whitening`, the **pseudo-inverse** of Lee et al.'s reference code (scikit-learn's
  ``EmpiricalCovariance.precision_``, i.e. :func:`scipy.linalg.pinvh`): eigen-directions with
  eigenvalue at most :math:`F \epsilon_{64} \lambda_{\max}` are dropped, so a unit that never
  fired in training adds nothing to a distance instead of :math:`x^2 / \text{jitter}`. Used by
  the Mahalanobis detectors (distances only, no density);
* :func:`jittered_cholesky` adds the smallest diagonal jitter from a list that makes every
  matrix positive definite, as DDU does (Mukhoti et al. 2021, ``gmm_utils.py``): a density
  needs a full-rank covariance (its log-determinant), which a pseudo-inverse does not give.
"""

from __future__ import annotations

import math

import torch

from dunno.validation import as_labels, check_inferred_classes

__all__ = [
    "DDU_JITTERS",
    "INVERSES",
    "RELATIVE_JITTERS",
    "class_means",
    "class_covariances",
    "gaussian_log_densities",
    "jittered_cholesky",
    "num_classes_of",
    "pinv_whitening",
    "projected_sq_distances",
    "tied_covariance",
    "tied_gaussian",
    "whitened_sq_distances",
]

#: The jitters DDU tries, in order: 0, the smallest normal double, then 1e-308 ... 1e-1.
DDU_JITTERS: tuple[float, ...] = (0.0, torch.finfo(torch.float64).tiny) + tuple(
    10.0**e for e in range(-308, 0)
)


def class_means(
    features: torch.Tensor, labels: torch.Tensor, num_classes: int, owner: str
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Per-class means :math:`\mu_c = \frac{1}{N_c}\sum_{i: y_i = c} f_i`.

    Returns ``means (C, F)`` float64 and ``counts (C,)``; raises when a class has no example.
    """
    if labels is None:
        raise ValueError(
            f"{owner} fits one Gaussian per class and needs labelled training data; the "
            "outputs have no labels."
        )
    labels = as_labels(labels, len(features), num_classes, rows_of="features")
    labels = labels.to(features.device)
    f = features.to(torch.float64)  # (N, F)
    counts = torch.bincount(labels, minlength=num_classes)  # (C,)
    empty = torch.nonzero(counts == 0).flatten().tolist()
    if empty:
        raise ValueError(
            f"{owner} needs at least one training example of every class; classes {empty} "
            "have none."
        )
    sums = torch.zeros(num_classes, f.shape[1], dtype=torch.float64, device=f.device)
    sums.index_add_(0, labels, f)
    return sums / counts[:, None].to(torch.float64), counts


def tied_covariance(
    features: torch.Tensor, labels: torch.Tensor, means: torch.Tensor
) -> torch.Tensor:
    r"""Shared (tied) covariance :math:`\frac1N \sum_i (f_i - \mu_{y_i})(f_i - \mu_{y_i})^\top`.

    The maximum-likelihood estimate Lee et al. (2018) use. Returns ``(F, F)`` float64.
    """
    f = features.to(torch.float64)
    centred = f - means[labels.to(f.device)]  # (N, F)
    return centred.T @ centred / len(f)


def class_covariances(
    features: torch.Tensor, labels: torch.Tensor, means: torch.Tensor, counts: torch.Tensor
) -> torch.Tensor:
    r"""Per-class unbiased covariances :math:`\frac{1}{N_c - 1}\sum_{y_i = c}
    (f_i - \mu_c)(f_i - \mu_c)^\top` (as ``torch.cov`` in DDU's code; a class with one
    example gets a zero matrix). Returns ``(C, F, F)`` float64."""
    f = features.to(torch.float64)
    labels = labels.to(f.device)
    c, d = means.shape
    out = torch.zeros(c, d, d, dtype=torch.float64, device=f.device)
    for k in range(c):
        centred = f[labels == k] - means[k]  # (N_k, F)
        if len(centred) > 1:
            out[k] = centred.T @ centred / (len(centred) - 1)
    return out


def jittered_cholesky(
    covariance: torch.Tensor, jitters=DDU_JITTERS
) -> tuple[torch.Tensor, float]:
    r"""Cholesky factors of ``covariance + jitter * I`` for the first ``jitter`` that makes
    every matrix in the batch positive definite.

    Args:
        covariance: ``(F, F)`` or ``(C, F, F)`` symmetric matrices.
        jitters: increasing non-negative values to try (default :data:`DDU_JITTERS`).

    Returns:
        ``(L, jitter)`` with ``L`` lower-triangular, ``L L^T = covariance + jitter I``.
    """
    cov = covariance.to(torch.float64)
    cov = 0.5 * (cov + cov.transpose(-1, -2))
    eye = torch.eye(cov.shape[-1], dtype=torch.float64, device=cov.device)
    for jitter in jitters:
        factor, info = torch.linalg.cholesky_ex(cov + jitter * eye)
        if not bool((info != 0).any()) and bool(torch.isfinite(factor).all()):
            diag = torch.diagonal(factor, dim1=-2, dim2=-1)
            if bool((diag > 0).all()):
                return factor, float(jitter)
    raise ValueError(
        "The feature covariance is not positive definite even with a diagonal jitter of "
        f"{max(jitters):g}; the features may contain NaN/inf or be degenerate."
    )


def whitened_sq_distances(
    features: torch.Tensor, means: torch.Tensor, cholesky: torch.Tensor, chunk: int = 4096
) -> torch.Tensor:
    r"""Squared Mahalanobis distances :math:`(f - \mu_c)^\top \Sigma_c^{-1} (f - \mu_c)` to
    every class mean.

    Args:
        features: ``(N, F)``.
        means: ``(C, F)``.
        cholesky: ``(F, F)`` (tied) or ``(C, F, F)`` (per class) factors ``L`` of
            :math:`\Sigma = L L^\top`.
        chunk: rows per block (memory).

    Returns:
        ``(N, C)`` float64.
    """
    f = features.to(device=means.device, dtype=torch.float64)
    out = []
    for start in range(0, len(f), chunk):
        block = f[start:start + chunk]  # (B, F)
        diff = block[:, None, :] - means[None, :, :]  # (B, C, F)
        if cholesky.dim() == 2:
            rhs = diff.reshape(-1, diff.shape[-1]).T  # (F, B*C)
            y = torch.linalg.solve_triangular(cholesky, rhs, upper=False)  # (F, B*C)
            out.append(y.square().sum(0).reshape(diff.shape[0], diff.shape[1]))
        else:
            rhs = diff.permute(1, 2, 0)  # (C, F, B)
            y = torch.linalg.solve_triangular(cholesky, rhs, upper=False)  # (C, F, B)
            out.append(y.square().sum(1).T)  # (B, C)
    return torch.cat(out)


def gaussian_log_densities(
    features: torch.Tensor, means: torch.Tensor, cholesky: torch.Tensor
) -> torch.Tensor:
    r"""Log-densities :math:`\log \mathcal N(f; \mu_c, \Sigma_c)` under every class Gaussian,

    .. math::

        -\tfrac12 (f-\mu_c)^\top\Sigma_c^{-1}(f-\mu_c) - \sum_j \log L_{c,jj}
        - \tfrac{F}{2}\log 2\pi.

    Args:
        features: ``(N, F)``; means ``(C, F)``; cholesky ``(C, F, F)``.

    Returns:
        ``(N, C)`` float64.
    """
    sq = whitened_sq_distances(features, means, cholesky)  # (N, C)
    log_det_half = torch.log(torch.diagonal(cholesky, dim1=-2, dim2=-1)).sum(-1)  # (C,)
    d = means.shape[1]
    return -0.5 * sq - log_det_half[None, :] - 0.5 * d * math.log(2 * math.pi)


def pinv_whitening(covariance: torch.Tensor, rtol: float | None = None
                   ) -> tuple[torch.Tensor, int]:
    r"""A factor :math:`W` of the pseudo-inverse, :math:`\Sigma^+ = W W^\top`.

    With :math:`\Sigma = U \operatorname{diag}(\lambda) U^\top` (symmetrised, float64), the
    eigen-directions with :math:`\lambda_j > \tau = r\,\max_i |\lambda_i|` are kept and
    :math:`W = U_{\text{kept}} \operatorname{diag}(\lambda_{\text{kept}}^{-1/2})`. The default
    :math:`r = F \epsilon_{64}` is :func:`scipy.linalg.pinvh`'s, hence the same matrix as
    scikit-learn's ``EmpiricalCovariance(...).precision_`` that Lee et al. (2018) use (pinvh
    also keeps eigenvalues below :math:`-\tau`, which a covariance does not have beyond
    rounding; here they are dropped so that distances stay non-negative). For a positive
    definite :math:`\Sigma` this is the inverse.

    Args:
        covariance: ``(F, F)`` symmetric positive semi-definite matrix.
        rtol: relative cutoff :math:`r` (default :math:`F \epsilon_{64}`).

    Returns:
        ``(W, rank)``: ``W`` of shape ``(F, rank)`` float64, and the number of kept directions
        (0 for a zero matrix: every distance is then 0).
    """
    cov = covariance.to(torch.float64)
    cov = 0.5 * (cov + cov.transpose(-1, -2))
    if not bool(torch.isfinite(cov).all()):
        raise ValueError("The feature covariance contains NaN or inf; the features may be "
                         "non-finite.")
    eigvals, eigvecs = torch.linalg.eigh(cov)  # ascending
    if rtol is None:
        rtol = cov.shape[-1] * torch.finfo(torch.float64).eps
    cutoff = rtol * float(eigvals.abs().max()) if eigvals.numel() else 0.0
    keep = eigvals > cutoff
    return eigvecs[:, keep] * eigvals[keep].rsqrt(), int(keep.sum())


def projected_sq_distances(
    features: torch.Tensor, means: torch.Tensor, whitening: torch.Tensor, chunk: int = 4096
) -> torch.Tensor:
    r"""Squared distances :math:`\lVert W^\top (f - \mu_c) \rVert^2 =
    (f - \mu_c)^\top W W^\top (f - \mu_c)` to every mean: Mahalanobis distances under the
    precision :math:`W W^\top` (a pseudo-inverse from :func:`pinv_whitening`, or
    :math:`L^{-\top}` of a Cholesky factor). Differentiable in ``features``.

    Args:
        features: ``(N, F)``.
        means: ``(C, F)``.
        whitening: ``(F, r)``.
        chunk: rows per block (memory: a ``(chunk, C, r)`` block).

    Returns:
        ``(N, C)`` float64.
    """
    w = whitening.to(device=means.device, dtype=torch.float64)
    centre = means.to(torch.float64) @ w  # (C, r)
    z = features.to(device=means.device, dtype=torch.float64) @ w  # (N, r)
    out = [(z[s:s + chunk, None, :] - centre[None]).square().sum(-1)  # (B, C)
           for s in range(0, len(z), chunk)]
    return torch.cat(out) if out else z.new_zeros(0, len(centre))


#: How the Mahalanobis detectors invert a tied covariance: ``"pinv"`` (the pseudo-inverse of
#: Lee et al.'s code, the default) or ``"jitter"`` (Cholesky of the covariance plus the
#: smallest relative diagonal jitter from :data:`RELATIVE_JITTERS` that makes it positive
#: definite; the rule before the pseudo-inverse).
INVERSES = ("pinv", "jitter")

#: The relative jitters of ``inverse="jitter"``: 0, then 1e-12 ... 1 times the mean variance.
RELATIVE_JITTERS: tuple[float, ...] = (0.0,) + tuple(10.0**e for e in range(-12, 1))


def num_classes_of(logits: torch.Tensor | None, labels: torch.Tensor | None,
                   owner: str) -> int:
    """The number of classes: the logits' width, else inferred from the labels (1 without
    either; :func:`class_means` then refuses the missing labels)."""
    if logits is not None:
        return logits.shape[1]
    if labels is not None and len(labels):
        return check_inferred_classes(int(labels.max()), len(labels), owner)
    return 1


def tied_gaussian(
    features: torch.Tensor, labels: torch.Tensor, num_classes: int, owner: str, *,
    shrinkage: float = 0.0, inverse: str = "pinv",
) -> dict[str, torch.Tensor | float | int]:
    r"""Class means and the tied covariance of Lee et al. (2018), with its inverse as a
    whitening factor.

    :math:`\Sigma = \frac1N\sum_i (f_i - \mu_{y_i})(f_i - \mu_{y_i})^\top`, optionally shrunk,
    :math:`\Sigma_\alpha = (1-\alpha)\Sigma + \alpha\tfrac{\operatorname{tr}\Sigma}{F} I`, then
    inverted by :func:`pinv_whitening` (``inverse="pinv"``) or by a Cholesky factor of
    :math:`\Sigma_\alpha + \epsilon\tfrac{\operatorname{tr}\Sigma_\alpha}{F} I` with the first
    :math:`\epsilon` of :data:`RELATIVE_JITTERS` that works (``inverse="jitter"``).

    Returns:
        ``means (C, F)``, ``covariance (F, F)`` (shrunk; plus the jitter), ``whitening (F, r)``
        with :math:`\Sigma^{+} = W W^\top` (or :math:`\Sigma^{-1}`), ``rank`` ``r`` and
        ``jitter`` (the absolute jitter added; 0 for the pseudo-inverse), all float64.

    Raises ValueError when the pseudo-inverse keeps no direction (the class-centred features
    do not vary, e.g. one example per class): every distance would then be 0.
    """
    means, _ = class_means(features, labels, num_classes, owner)
    cov = tied_covariance(features, labels, means)  # (F, F)
    eye = torch.eye(cov.shape[0], dtype=cov.dtype, device=cov.device)
    scale = float(torch.diagonal(cov).mean())
    scale = scale if scale > 0 else 1.0
    if shrinkage:
        cov = (1 - shrinkage) * cov + shrinkage * scale * eye
    if inverse == "pinv":
        whitening, rank = pinv_whitening(cov)
        jitter = 0.0
        if rank == 0:  # every distance would be 0: a constant score, for any input
            raise ValueError(
                f"{owner}: the class-centred training features have no variance ({len(features)}"
                f" examples of {num_classes} classes, {cov.shape[0]} features), so every "
                "Mahalanobis distance would be 0 whatever the input. Fit on more than one "
                "example per class, with features that vary (another layer), or pass "
                "inverse='jitter'."
            )
    else:
        chol, jitter = jittered_cholesky(cov, [j * scale for j in RELATIVE_JITTERS])
        cov = cov + jitter * eye
        # Sigma^{-1} = L^{-T} L^{-1}: the whitening factor is L^{-T}
        whitening = torch.linalg.solve_triangular(chol, eye, upper=False).T
        rank = cov.shape[0]
    return {"means": means, "covariance": cov, "whitening": whitening, "rank": rank,
            "jitter": jitter}
