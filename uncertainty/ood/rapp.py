r"""RaPP: novelty detection with reconstruction along the projection pathway (Kim, Ko, Kim,
Choi & Yoon, "RaPP: Novelty Detection with Reconstruction along Projection Pathway",
ICLR 2020).

An autoencoder :math:`A = g \circ f` with encoder :math:`f = f_\ell \circ \dots \circ f_1` is
trained on in-distribution inputs only (no labels, no classifier). For an input :math:`x` and
its reconstruction :math:`\hat x = A(x)`, compare the hidden activations of both along the
encoder's pathway, :math:`h_i(x) = (f_i \circ \dots \circ f_1)(x)` for :math:`i = 0..\ell`
(:math:`h_0(x) = x`, so the plain reconstruction error is the first block):

.. math::

    d(x) = \big[h_0(x) - h_0(\hat x);\; h_1(x) - h_1(\hat x);\; \dots;\;
    h_\ell(x) - h_\ell(\hat x)\big].

* **SAP** (simple aggregation): :math:`s(x) = \lVert d(x) \rVert_2^2`;
* **NAP** (normalised aggregation): with :math:`D = U \Sigma V^\top` the SVD of the centred
  difference vectors of the training data (mean :math:`\mu`),

  .. math::

      s(x) = \big\lVert (d(x) - \mu)\, V \Sigma^{-1} \big\rVert_2^2,

  keeping only the singular values larger than ``rcond`` times the largest (directions in
  which the training differences do not vary carry no information; dividing by their
  round-off-sized singular values would only amplify noise).

For a linear autoencoder whose weights are the top-:math:`k` principal components
(:math:`f(x) = U_k^\top (x - m)`, :math:`g(h) = U_k h + m`), :math:`h_1(x) - h_1(\hat x) = 0`,
so SAP is the PCA reconstruction error :math:`\lVert (I - U_k U_k^\top)(x - m) \rVert^2` and
NAP the residual whitened by the remaining singular values,
:math:`\sum_{j > k} (u_j^\top (x - m))^2 / \sigma_j^2` (a test checks both).

Inputs are flattened to ``(N, D)`` before the autoencoder.
"""

from __future__ import annotations

import torch
from torch import nn

from dunno.devices import resolve_device
from dunno.inputs import as_arrays, model_dtype, output_like
from dunno.progress import Progress
from dunno.validation import (
    check_bool,
    check_choice,
    check_float,
    check_int,
    check_int_sequence,
    check_seed,
)
from uncertainty.ood._base import OODDetector
from uncertainty.ood.outputs import ModelOutputs, model_device

__all__ = ["MLPAutoencoder", "RaPP", "rapp_differences", "rapp_nap_score", "rapp_sap_score"]

MODES = ("nap", "sap")


class MLPAutoencoder(nn.Module):
    """A fully connected autoencoder ``(N, D) -> (N, D)`` with a layer-wise ``encoder``.

    ``encoder`` is an :class:`~torch.nn.Sequential` of blocks ``Linear -> LeakyReLU`` (the last
    block, the code, is linear); its children define RaPP's projection pathway. ``decoder``
    mirrors it and ends linear.

    Parameters
    ----------
    input_dim : int
        ``D``.
    hidden : tuple of int
        Widths of the encoder blocks, the last one being the code size.
    """

    def __init__(self, input_dim: int, hidden: tuple[int, ...] = (256, 64, 16)) -> None:
        super().__init__()
        widths = (input_dim, *hidden)
        self.encoder = self._stack(widths)
        self.decoder = self._stack(widths[::-1])

    @staticmethod
    def _stack(widths: tuple[int, ...]) -> nn.Sequential:
        """``Linear -> LeakyReLU`` blocks through ``widths``, the last block linear."""
        blocks: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
            if i == len(widths) - 2:
                blocks.append(nn.Linear(a, b))
            else:
                blocks.append(nn.Sequential(nn.Linear(a, b), nn.LeakyReLU(0.2)))
        return nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, D) -> (N, D)`` reconstruction."""
        return self.decoder(self.encoder(x))


def _pathway(encoder: nn.Module, x: torch.Tensor, include_input: bool) -> list[torch.Tensor]:
    acts = [x] if include_input else []
    h = x
    for block in encoder.children():
        h = block(h)
        acts.append(h.flatten(1))
    return acts


def rapp_differences(
    autoencoder: nn.Module, x: torch.Tensor, *, include_input: bool = True
) -> torch.Tensor:
    r"""Difference vectors :math:`d(x) = [h_i(x) - h_i(\hat x)]_{i}` along the encoder pathway.

    Args:
        autoencoder: module with ``encoder`` (its children are the pathway's layers) and
            ``decoder``; :math:`\hat x` = ``decoder(encoder(x))``.
        x: ``(N, D)`` flattened inputs.
        include_input: include :math:`h_0 = x` (the reconstruction error).

    Returns:
        ``(N, sum_i D_i)`` float64.
    """
    with torch.no_grad():
        x_hat = autoencoder.decoder(autoencoder.encoder(x))  # (N, D)
        a = _pathway(autoencoder.encoder, x, include_input)
        b = _pathway(autoencoder.encoder, x_hat, include_input)
    return torch.cat([u - v for u, v in zip(a, b, strict=True)], dim=1).to(torch.float64)


def rapp_sap_score(differences: torch.Tensor) -> torch.Tensor:
    r"""SAP :math:`\lVert d \rVert_2^2`. ``(N, K) -> (N,)`` float64."""
    return differences.to(torch.float64).square().sum(dim=1)


def rapp_nap_score(
    differences: torch.Tensor, mean: torch.Tensor, components: torch.Tensor,
    singular_values: torch.Tensor,
) -> torch.Tensor:
    r"""NAP :math:`\lVert (d - \mu) V \Sigma^{-1} \rVert_2^2`.

    Args:
        differences: ``(N, K)``; mean ``(K,)``; components ``V (K, r)``;
        singular_values: ``(r,)`` (all > 0).

    Returns:
        ``(N,)`` float64.
    """
    d = differences.to(torch.float64) - mean.to(torch.float64)
    return ((d @ components.to(torch.float64)) / singular_values.to(torch.float64)).square().sum(1)


class RaPP(OODDetector):
    """RaPP novelty detector (Kim et al. 2020), see the module docstring.

    Parameters
    ----------
    autoencoder : nn.Module, optional
        A module with ``encoder`` (whose children are the pathway's layers) and ``decoder``
        on flattened inputs; default: an :class:`MLPAutoencoder` with ``hidden`` widths,
        trained in :meth:`fit`.
    mode : {"nap", "sap"}
        Which aggregation :meth:`score` returns (:meth:`scores` gives both).
    hidden : tuple of int
        Widths of the default autoencoder's encoder.
    epochs : int
        Training epochs in :meth:`fit` (MSE, Adam); 0 keeps ``autoencoder`` as given.
    lr, batch_size : float, int
        Adam learning rate and batch size.
    include_input : bool
        Include the input layer (the plain reconstruction error) in the pathway.
    rcond : float
        Relative cut-off of the NAP singular values.
    nap_size : int
        Training examples used for the NAP statistics (a seeded subset).
    seed : int
        Seed of the initialisation, the shuffling and the NAP subset.
    device : str
        Where the autoencoder runs (``cpu``, ``cuda``, ...); a given autoencoder stays where
        it is.

    Attributes
    ----------
    autoencoder_ : nn.Module; nap_inputs_ ``(n, D)`` (the flattened training inputs of the
    NAP statistics); diff_mean_ ``(K,)``; components_ ``(K, r)``; singular_values_ ``(r,)``;
    train_loss_ : float (last epoch's mean MSE, nan if not trained). The NAP statistics
    (``diff_mean_``, ``components_``, ``singular_values_``: the SVD of ``n`` difference
    vectors) are computed in :meth:`fit` when ``mode="nap"``, and on first use otherwise
    (a SAP score never reads them), with the same values.
    """

    name = "rapp"
    reference = "Kim et al. 2020, ICLR"
    needs = frozenset({"input"})
    fit_needs = frozenset({"input"})
    uses_model = False
    _wrapped_args = ("autoencoder",)
    score_time_params = ("mode",)
    variants = ({"mode": "sap"},)
    _state_names = ("autoencoder_", "nap_inputs_")

    def __init__(
        self,
        autoencoder: nn.Module | None = None,
        *,
        mode: str = "nap",
        hidden: tuple[int, ...] = (256, 64, 16),
        epochs: int = 10,
        lr: float = 1e-3,
        batch_size: int = 256,
        include_input: bool = True,
        rcond: float = 1e-6,
        nap_size: int = 10000,
        seed: int = 0,
        device: str = "cpu",
    ) -> None:
        super().__init__(None)
        self.autoencoder = autoencoder
        self.mode = mode
        self.hidden = hidden
        self.epochs = epochs
        self.lr = lr
        self.batch_size = batch_size
        self.include_input = include_input
        self.rcond = rcond
        self.nap_size = nap_size
        self.seed = seed
        self.device = device

    def _validate_params(self) -> None:
        owner = type(self).__name__
        check_choice(self.mode, "mode", owner, MODES)
        if self.autoencoder is not None and not (
            isinstance(self.autoencoder, nn.Module)
            and isinstance(getattr(self.autoencoder, "encoder", None), nn.Module)
            and isinstance(getattr(self.autoencoder, "decoder", None), nn.Module)
        ):
            raise ValueError(
                f"The 'autoencoder' parameter of {owner} must be an nn.Module with 'encoder' and "
                f"'decoder' modules. Got {type(self.autoencoder).__name__} instead."
            )
        check_int_sequence(self.hidden, "hidden", owner, what="layer widths")
        check_int(self.epochs, "epochs", owner, low=0)
        check_float(self.lr, "lr", owner, low=0.0, low_open=True)
        check_int(self.batch_size, "batch_size", owner, low=1)
        check_float(self.rcond, "rcond", owner, low=0.0, low_open=True)
        check_int(self.nap_size, "nap_size", owner, low=2)
        check_seed(self.seed, owner)
        check_bool(self.include_input, "include_input", owner)
        resolve_device(self.device)

    # ------------------------------------------------------------------ fitting
    def _build(self, input_dim: int) -> nn.Module:
        if self.autoencoder is not None:
            return self.autoencoder
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            ae = MLPAutoencoder(input_dim, tuple(self.hidden))
        return ae.to(resolve_device(self.device))

    def _train(self, ae: nn.Module, x: torch.Tensor) -> float:
        device, dtype = model_device(ae), next(ae.parameters()).dtype
        optimizer = torch.optim.Adam(ae.parameters(), lr=self.lr)
        g = torch.Generator().manual_seed(self.seed)
        ae.train()
        loss_value = float("nan")
        epochs = Progress(range(self.epochs), desc="RaPP autoencoder", unit="epoch")
        for _ in epochs:
            order = torch.randperm(len(x), generator=g)
            total = 0.0
            for start in range(0, len(x), self.batch_size):
                xb = x[order[start:start + self.batch_size]].to(device=device, dtype=dtype)
                loss = (ae(xb) - xb).square().mean()
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total += float(loss.detach()) * len(xb)
            loss_value = total / len(x)
            epochs.set_postfix({"loss": loss_value})
        epochs.close()
        ae.eval()
        return loss_value

    def _differences(self, ae: nn.Module, x: torch.Tensor, chunk: int = 2048) -> torch.Tensor:
        device = model_device(ae)
        dtype = next(ae.parameters()).dtype
        was_training = ae.training
        ae.eval()
        bar = Progress(range(0, len(x), chunk), desc="RaPP differences", unit="chunk")
        try:
            out = [rapp_differences(ae, x[s:s + chunk].to(device=device, dtype=dtype),
                                    include_input=self.include_input) for s in bar]
        finally:
            bar.close()
            ae.train(was_training)
        return torch.cat(out)

    def _fit(self, outputs: ModelOutputs) -> None:
        x = outputs.inputs.flatten(1)  # (N, D)
        if len(x) < 2:
            raise ValueError("RaPP needs at least 2 training examples to fit.")
        ae = self._build(x.shape[1])
        self.train_loss_ = self._train(ae, x) if self.epochs else float("nan")
        if len(x) > self.nap_size:
            g = torch.Generator().manual_seed(self.seed + 1)
            x = x[torch.randperm(len(x), generator=g)[: self.nap_size].sort().values]
        self.autoencoder_ = ae
        self.nap_inputs_ = x  # (n, D)
        self._nap = None
        if self.mode == "nap":
            self._nap_statistics()

    def _nap_statistics(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(diff_mean_, components_, singular_values_)``, computed once per fit."""
        self.check_fitted()
        if getattr(self, "_nap", None) is None:
            d = self._differences(self.autoencoder_, self.nap_inputs_)  # (n, K)
            mean = d.mean(dim=0)
            _, s, vh = torch.linalg.svd(d - mean, full_matrices=False)  # s (r,), vh (r, K)
            keep = (s > self.rcond * s.max() if bool(s.max() > 0)
                    else torch.zeros_like(s, dtype=bool))
            if not bool(keep.any()):
                raise ValueError("RaPP's training difference vectors are all equal: the "
                                 "autoencoder reconstructs every training input identically.")
            self._nap = (mean, vh[keep].T, s[keep])  # (K,), (K, r), (r,)
        return self._nap

    @property
    def diff_mean_(self) -> torch.Tensor:
        """Mean ``(K,)`` of the training difference vectors (NAP)."""
        return self._nap_statistics()[0]

    @property
    def components_(self) -> torch.Tensor:
        """Right singular vectors ``V (K, r)`` of the centred training differences (NAP)."""
        return self._nap_statistics()[1]

    @property
    def singular_values_(self) -> torch.Tensor:
        """Their singular values ``(r,)``, those above ``rcond`` times the largest (NAP)."""
        return self._nap_statistics()[2]

    # ------------------------------------------------------------------ scoring
    def scores(self, x) -> dict[str, torch.Tensor]:
        """Both aggregations of inputs ``x (N, ...)``: ``{"sap": (N,), "nap": (N,)}`` (any
        kind read by :mod:`dunno.inputs`; numpy values for numpy ``x``; NaN / inf refused)."""
        self.check_fitted()
        xs, _ = as_arrays(x, owner="RaPP.scores", dtype=model_dtype(self.autoencoder_))
        d = self._differences(self.autoencoder_, xs.flatten(1))
        return output_like({"sap": rapp_sap_score(d),
                            "nap": rapp_nap_score(d, self.diff_mean_.to(d.device),
                                                  self.components_.to(d.device),
                                                  self.singular_values_.to(d.device))}, x)

    def _score(self, outputs: ModelOutputs) -> torch.Tensor:
        d = self._differences(self.autoencoder_, outputs.inputs.flatten(1))
        if self.mode == "sap":
            return rapp_sap_score(d)
        return rapp_nap_score(d, self.diff_mean_.to(d.device), self.components_.to(d.device),
                              self.singular_values_.to(d.device))
