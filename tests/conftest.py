"""Shared fixtures: the notebook's own loop, copied from the seed, as the oracle."""

from __future__ import annotations

import io
import warnings
from contextlib import redirect_stdout

import pytest
import torch
import torch.nn.functional as F

# The tests' tensors are tiny: one intra-op thread keeps them fast on a shared 2-core machine
# (extra threads only spin and wait there). Results do not depend on the thread count.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _records_in_tmp(tmp_path_factory: pytest.TempPathFactory,
                    monkeypatch: pytest.MonkeyPatch) -> None:
    """CLI runs record themselves (descend.store): keep those records out of the work tree."""
    monkeypatch.setenv("DESCEND_RUNS", str(tmp_path_factory.mktemp("records")))


def notebook_loop(seed: int, learning_rate: float = 1.0, threshold: float = 1e-5,
                  max_iter: int = 10_000):
    """The notebook's loop as written in the seed (its prints kept), after manual_seed(seed).

    Returns (printed text, list of iterates after each update, list of losses).
    """
    torch.manual_seed(seed)
    target = torch.FloatTensor([[0.1, 0.2, 0.3],
                                [0.4, 0.5, 0.6],
                                [0.7, 0.8, 0.9]])
    x = torch.rand_like(target)
    x.requires_grad = True
    loss = F.mse_loss(x, target)
    iter_cnt = 0
    iterates, losses = [], []
    out = io.StringIO()
    with redirect_stdout(out), warnings.catch_warnings():
        # the notebook formats a requires_grad tensor with %, which torch warns about
        warnings.simplefilter("ignore", UserWarning)
        while loss > threshold and iter_cnt < max_iter:
            iter_cnt += 1
            loss.backward()
            x = x - learning_rate * x.grad
            x.detach_()
            x.requires_grad_(True)
            loss = F.mse_loss(x, target)
            print('%d-th Loss: %.4e' % (iter_cnt, loss))  # noqa: UP031 - the notebook's line
            print(x, '\n')
            iterates.append(x.detach().clone())
            losses.append(loss.item())
    return out.getvalue(), iterates, losses


@pytest.fixture
def nb_loop():
    return notebook_loop


@pytest.fixture(autouse=True)
def _english_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    """The command line speaks the locale's language: the tests expect English wherever they
    run (tests of the language choice set these themselves)."""
    monkeypatch.setenv("DESCEND_LANG", "en")
