"""scikit-learn estimators on :func:`descend.fit`: :class:`Regressor` and :class:`Classifier`.

They fit, predict and score in a ``Pipeline``, ``cross_val_score`` and ``GridSearchCV`` like any
scikit-learn estimator, and pass ``sklearn.utils.estimator_checks.check_estimator`` (no check is
expected to fail). scikit-learn is an optional extra (``pip install 'descend[sklearn]'``),
imported only by this module, which ``import descend`` does not load.

    >>> from sklearn.datasets import load_iris
    >>> from descend.sklearn import Classifier
    >>> X, y = load_iris(return_X_y=True)
    >>> Classifier().fit(X, y).score(X, y) > 0.95
    True

Training is :func:`descend.fit` on the arrays: the constructor's keyword arguments are fit's,
with the same names, stored unchanged (as scikit-learn requires) and checked when ``fit`` runs.
Defaults that differ from ``descend.fit``, chosen for the small, in-memory data scikit-learn
estimators usually see, where full-batch L-BFGS reaches the optimum in tens of iterations:

* ``rule="lbfgs"``, ``lr=None`` (L-BFGS with the strong-Wolfe search, as scikit-learn's
  ``lbfgs`` solver) and ``batch_size=None`` (every row in one batch); the run stops when it is
  stationary, at the latest after ``epochs`` (default 100) iterations. For large data choose a
  mini-batch rule: ``rule="adam", lr=1e-2, batch_size=256``.
* ``standardize=True``: features (and a regressor's targets) are scaled to mean 0, std 1 with
  the statistics of the rows given to ``fit``; predictions are in the targets' units.

Models are trained in float64 (so predictions do not depend on how rows are batched).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

try:
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
    from sklearn.utils.multiclass import check_classification_targets
    from sklearn.utils.validation import check_is_fitted
except ImportError as e:  # pragma: no cover - the extra is installed in the tests
    raise ImportError("descend.sklearn needs scikit-learn: pip install 'descend[sklearn]'") from e

from .data import CLASSIFIER_LOSSES
from .errors import InputError, InputTypeError
from .fit import FitResult, fit
from .models import Predictor, build_model
from .tables import Preprocessing

__all__ = ["Classifier", "Regressor"]


def _validate(est: Any, *args: Any, **kwargs: Any) -> Any:
    """scikit-learn's input validation: ``validate_data`` (1.6+) or the older method."""
    try:
        from sklearn.utils.validation import validate_data
    except ImportError:  # pragma: no cover - scikit-learn < 1.6
        return est._validate_data(*args, **kwargs)
    return validate_data(est, *args, **kwargs)


class _Estimator(BaseEstimator):
    """The constructor and the training shared by :class:`Regressor` and :class:`Classifier`.

    Args:
        model: a spec sized from the data (``"linear"``, ``"logistic"`` (the same linear
            model), ``"mlp:64,64"``, ``"pkg.mod:Class"``), or a factory
            ``(in_features, out_features) -> nn.Module`` (a class or a function). Not a module
            instance: scikit-learn's ``clone`` copies parameters, and every clone would share
            (and train) one module.
        rule, lr, batch_size, epochs, max_iter, val, patience, loss, standardize, activation,
            shuffle, seed, device, on_divergence: as in :func:`descend.fit` (see the module
            docstring for the defaults that differ).

    Attributes:
        model_: the trained ``nn.Module`` (float64).
        result_: the :class:`~descend.FitResult` of training (reason, history, epochs).
        n_iter_: iterations run.
        n_features_in_: the number of features seen in ``fit``.
        feature_names_in_: their names, when ``fit`` was given a DataFrame with string column
            names.
    """

    def __init__(
        self,
        model: str | Callable[[int, int], nn.Module] = "linear",
        *,
        rule: str = "lbfgs",
        lr: float | str | None = None,
        batch_size: int | None = None,
        epochs: int | None = None,
        max_iter: int | None = None,
        val: float | None = None,
        patience: int | None = None,
        loss: str | Callable[..., torch.Tensor] | None = None,
        standardize: bool = True,
        activation: str = "relu",
        shuffle: bool = True,
        seed: int = 0,
        device: str | None = None,
        on_divergence: str | None = None,
    ) -> None:
        self.model = model
        self.rule = rule
        self.lr = lr
        self.batch_size = batch_size
        self.epochs = epochs
        self.max_iter = max_iter
        self.val = val
        self.patience = patience
        self.loss = loss
        self.standardize = standardize
        self.activation = activation
        self.shuffle = shuffle
        self.seed = seed
        self.device = device
        self.on_divergence = on_divergence

    def _module(self, n_in: int, n_out: int) -> nn.Module:
        """The untrained model, its initial weights seeded by ``seed`` (with a private
        generator: torch's global one is left as it was), in float64."""
        spec = self.model
        if isinstance(spec, nn.Module):
            raise InputTypeError(
                "model must be a spec such as 'linear' or 'mlp:64', or a factory "
                "(in_features, out_features) -> nn.Module, not a module instance: scikit-learn's "
                "clone would share one module between fits")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            if isinstance(spec, str):
                net = build_model("linear" if spec == "logistic" else spec, n_in, n_out,
                                  self.activation)
            elif callable(spec):
                net = spec(n_in, n_out)
                if not isinstance(net, nn.Module):
                    raise InputTypeError(f"the model factory must return an nn.Module, got "
                                         f"{type(net).__name__}")
            else:
                raise InputTypeError(f"model must be a spec such as 'linear' or 'mlp:64', or a "
                                     f"factory (in_features, out_features) -> nn.Module, got "
                                     f"{type(spec).__name__}")
        return net.double()

    def _train(self, X: np.ndarray, Y: torch.Tensor, prep: Preprocessing, loss: Any,
               n_out: int) -> None:
        """Scale, build the model, run :func:`descend.fit`; set the fitted attributes."""
        Xt = torch.tensor(X, dtype=torch.float64)
        if self.standardize:
            prep.fit_scaling(Xt, Y if prep.task == "regression" else None)
        Xt = prep.scale_x(Xt)
        if prep.task == "regression":
            Y = prep.scale_y(Y)
        net = self._module(Xt.shape[1], n_out)
        res: FitResult = fit(
            net, (Xt, Y), val=self.val, loss=loss, metrics=[], rule=self.rule, lr=self.lr,
            batch_size=self.batch_size, epochs=self.epochs, max_iter=self.max_iter,
            patience=self.patience, standardize=False, shuffle=self.shuffle, seed=self.seed,
            device=self.device, on_divergence=self.on_divergence)
        self.model_ = res.model
        self.result_ = res
        self.n_iter_ = res.nit
        self._prep = prep

    def _prep_for(self, n_features: int, targets: list[str], task: str) -> Preprocessing:
        names = getattr(self, "feature_names_in_", None)
        features = [str(c) for c in names] if names is not None else \
            [f"x{i}" for i in range(n_features)]
        return Preprocessing(features=features, targets=targets, task=task)

    def _outputs(self, X: Any) -> np.ndarray:
        """Values in the targets' units (regressor) or class probabilities (classifier)."""
        check_is_fitted(self)
        X = _validate(self, X, dtype=np.float64, reset=False)
        out = Predictor(self.model_, self.result_.loss_name, self._prep).outputs(X)
        return out.cpu().numpy()


class Regressor(RegressorMixin, _Estimator):
    """A scikit-learn regressor trained by :func:`descend.fit`: ``fit(X, y)`` with float targets
    (one column, or several: ``y`` of shape ``(n, targets)``), ``predict(X)`` in ``y``'s units
    and shape, ``score(X, y)`` the R² (``RegressorMixin``).

    ``Regressor("linear")`` is least squares (``loss="mse"``, the default), as
    ``LinearRegression``; ``Regressor("mlp:64")`` a small network. Constructor arguments,
    defaults and attributes: see :class:`_Estimator` and the module docstring. No check of
    ``check_estimator`` is expected to fail.
    """

    def fit(self, X: Any, y: Any) -> Regressor:
        """Train on features ``X`` (array-like or DataFrame, ``(n, features)``) and targets
        ``y`` (``(n,)`` or ``(n, targets)``); return ``self``.

        Raises:
            ValueError: bad inputs (scikit-learn's checks) or options
                (:class:`~descend.InputError`, naming the fix).
        """
        X, y = _validate(self, X, y, dtype=np.float64, multi_output=True, y_numeric=True)
        Y = torch.tensor(np.asarray(y, dtype=np.float64))
        self._y_1d = Y.dim() == 1
        Y = Y.reshape(len(Y), -1)
        if isinstance(self.loss, str) and self.loss in CLASSIFIER_LOSSES:
            raise InputError(f"loss {self.loss!r} is for classifiers; use descend.sklearn."
                             "Classifier, or a regression loss (mse, mae, huber)")
        prep = self._prep_for(X.shape[1], [f"y{j}" for j in range(Y.shape[1])], "regression")
        self._train(X, Y, prep, "mse" if self.loss is None else self.loss, Y.shape[1])
        return self

    def predict(self, X: Any) -> np.ndarray:
        """Predictions in ``y``'s units: ``(n,)`` after a 1-D ``y``, else ``(n, targets)``."""
        out = self._outputs(X)
        return out[:, 0] if self._y_1d else out

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags

    def _more_tags(self) -> dict[str, Any]:  # scikit-learn < 1.6
        return {"multioutput": True}


class Classifier(ClassifierMixin, _Estimator):
    """A scikit-learn classifier trained by :func:`descend.fit`: ``fit(X, y)`` with any labels
    (strings, ints, booleans, ...), ``predict(X)`` labels from ``classes_``,
    ``predict_proba(X)`` one column per class in ``classes_`` order, ``score(X, y)`` the
    accuracy (``ClassifierMixin``).

    The loss is ``bce`` (one logit) for two classes, ``cross_entropy`` (one logit per class)
    otherwise; ``Classifier("linear")`` is multinomial logistic regression without a penalty
    (``LogisticRegression(C=inf)``), ``Classifier("mlp:64")`` a small network. Constructor
    arguments, defaults and attributes: see :class:`_Estimator` and the module docstring, plus
    ``classes_``. No check of ``check_estimator`` is expected to fail.
    """

    def fit(self, X: Any, y: Any) -> Classifier:
        """Train on features ``X`` (array-like or DataFrame) and labels ``y`` (``(n,)``);
        return ``self``.

        Raises:
            ValueError: bad inputs (scikit-learn's checks: continuous targets, ...), a single
                class, or bad options (:class:`~descend.InputError`, naming the fix).
        """
        X, y = _validate(self, X, y, dtype=np.float64)
        check_classification_targets(y)
        classes, codes = np.unique(y, return_inverse=True)
        if len(classes) < 2:
            raise InputError(f"a classifier needs at least 2 classes; y holds one class "
                             f"({classes.tolist()[0]!r})")
        loss = self.loss
        if loss is None:
            loss = "bce" if len(classes) == 2 else "cross_entropy"
        if loss not in CLASSIFIER_LOSSES:
            raise InputError(f"a classifier's loss is bce (2 classes) or cross_entropy, got "
                             f"{loss!r}; for a regression loss use descend.sklearn.Regressor")
        if loss == "bce" and len(classes) > 2:
            raise InputError(f"loss 'bce' is for 2 classes; y holds {len(classes)}: use "
                             "cross_entropy")
        self.classes_ = classes
        codes_t = torch.as_tensor(codes.reshape(-1), dtype=torch.int64)
        Y = codes_t.double()[:, None] if loss == "bce" else codes_t
        prep = self._prep_for(X.shape[1], ["y"], "classification")
        self._train(X, Y, prep, loss, 1 if loss == "bce" else len(classes))
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities, ``(n, classes)``, columns in ``classes_`` order."""
        return self._outputs(X)

    def predict(self, X: Any) -> np.ndarray:
        """The most probable class of each row, a label from ``classes_``."""
        check_is_fitted(self)
        return self.classes_[self.predict_proba(X).argmax(1)]
