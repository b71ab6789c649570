"""descend.data and descend.tables: batches as a hand-written loop draws them, tables read and
checked."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from descend.data import FromLoader, InMemory, split_indices
from descend.errors import InputError
from descend.tables import Preprocessing, read_table, to_table


@pytest.mark.parametrize(("n", "b", "sizes"), [(10, 3, [3, 3, 3, 1]), (9, 3, [3, 3, 3]),
                                               (5, 8, [5])])
def test_in_memory_batches_are_randperm_gathers(n, b, sizes):
    X = torch.arange(n, dtype=torch.float32)[:, None]
    Y = -X
    src = InMemory(X, Y, b, seed=7)
    assert src.sizes() == sizes and src.batches_per_epoch == len(sizes)
    g = torch.Generator().manual_seed(7)
    k = 0
    for _ in range(3):
        perm = torch.randperm(n, generator=g) if len(sizes) > 1 else torch.arange(n)
        for j in range(len(sizes)):
            xb, yb = src.batch(k)
            want = perm[j * b:(j + 1) * b]
            assert torch.equal(xb[:, 0].long(), want) and torch.equal(yb, -xb)
            k += 1


def test_unshuffled_batches_are_views():
    X, Y = torch.randn(10, 2), torch.randn(10, 1)
    src = InMemory(X, Y, 4, shuffle=False)
    xb, _ = src.batch(4)  # 3 batches per epoch: epoch 1, batch 1
    assert torch.equal(xb, X[4:8]) and xb.data_ptr() == X[4:8].data_ptr()
    assert [len(x) for x, _ in src.chunks(3)] == [3, 3, 3, 1]


def test_shuffle_state_round_trips():
    src = InMemory(torch.randn(10, 1), torch.randn(10, 1), 3, seed=1)
    src.batch(0)
    state = src.state_dict()
    a = [src.batch(k)[0] for k in range(4, 12)]
    src.load_state_dict(state)
    b = [src.batch(k)[0] for k in range(4, 12)]
    assert all(torch.equal(x, y) for x, y in zip(a, b))


def test_from_loader_restarts_each_epoch_and_checks_items():
    ds = TensorDataset(torch.arange(6.0)[:, None], torch.zeros(6, 1))
    src = FromLoader(DataLoader(ds, batch_size=4))
    got = [src.batch(k)[0][:, 0].tolist() for k in range(4)]
    assert got == [[0, 1, 2, 3], [4, 5], [0, 1, 2, 3], [4, 5]]
    bad = FromLoader(DataLoader(TensorDataset(torch.zeros(2, 1)), batch_size=1))
    with pytest.raises(InputError) as e:
        bad.batch(0)
    assert str(e.value) == ("the DataLoader must yield (inputs, targets) pairs of tensors, got "
                            "list of 1 items")


def test_split_is_seeded_and_disjoint():
    tr, va = split_indices(10, 0.3, seed=4)
    tr2, va2 = split_indices(10, 0.3, seed=4)
    assert torch.equal(tr, tr2) and torch.equal(va, va2)
    assert len(va) == 3 and sorted(tr.tolist() + va.tolist()) == list(range(10))


def test_parquet_and_dataframe_read_like_csv(tmp_path):
    df = pd.DataFrame({"a": [1.0, 2.0, np.nan], "s": ["x", None, "z"], "y": [1, 2, 3]})
    df.to_parquet(tmp_path / "d.parquet")
    df.to_csv(tmp_path / "d.csv", index=False)
    for t in (read_table(tmp_path / "d.parquet"), read_table(tmp_path / "d.csv"), to_table(df)):
        assert t.column_names == ["a", "s", "y"] and t.num_rows == 3
        assert t.column("s").null_count == 1
    with pytest.raises(InputError) as e:
        read_table(tmp_path / "nope.csv")
    assert str(e.value) == f"{tmp_path / 'nope.csv'} does not exist"


def test_preprocessing_one_hot_scaling_and_round_trip():
    table = pa.table({"a": [1.0, 2.0, 3.0, 4.0], "c": ["u", "v", "u", "w"],
                      "y": [0.0, 1.0, 0.0, 2.0]})
    prep, t = Preprocessing.fit(table, "t", ["y"], one_hot=True)
    assert prep.encoded_features == ["a", "c=u", "c=v", "c=w"]
    X = prep.features_of(t, "t")
    want = torch.tensor([[1, 1, 0, 0], [2, 0, 1, 0], [3, 1, 0, 0], [4, 0, 0, 1.0]])
    assert torch.equal(X, want)
    prep.fit_scaling(X[:2].double(), prep.targets_of(t, "t")[:2].double())
    # statistics of the two rows given; one-hot columns are not scaled
    assert prep.x_mean == [1.5, 0.0, 0.0, 0.0] and prep.x_std == [0.5, 1.0, 1.0, 1.0]
    assert prep.y_mean == [0.5] and prep.y_std == [0.5]
    again = Preprocessing.from_state_dict(json.loads(json.dumps(prep.state_dict())))
    assert again == prep
    torch.testing.assert_close(again.features_of(t, "t"), prep.features_of(t, "t"))
    torch.testing.assert_close(prep.unscale_y(prep.targets_of(t, "t").double()),
                               torch.tensor([[0.0], [1.0], [0.0], [2.0]], dtype=torch.float64))


def test_integer_class_labels_keep_their_type():
    table = pa.table({"a": [1.0, 2.0, 3.0], "y": [3, 1, 3]})
    prep, t = Preprocessing.fit(table, "t", ["y"], task="classification")
    assert prep.classes == [1, 3] and prep.n_outputs == 2
    assert prep.targets_of(t, "t").tolist() == [1, 0, 1]


CP949_BYTES = r"""
import random, sys
from pathlib import Path
from descend import tables
from descend.errors import InputError

rng, folder, read, refused = random.Random(7), Path(sys.argv[1]), 0, 0
while read + refused < 300:
    raw = bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 300)))
    try:
        raw.decode("utf-8")
        continue
    except UnicodeDecodeError:
        pass
    try:
        raw.decode("cp949")
    except UnicodeDecodeError:
        continue
    path = folder / f"f{read + refused}.csv"
    path.write_bytes(raw)
    try:
        tables.read_table(path)
        read += 1
    except InputError:
        refused += 1
print(read, refused)
"""


def test_text_in_another_encoding_that_fails_to_parse_never_hangs(tmp_path):
    """300 files of random bytes that decode as CP949 (not UTF-8), most of them no CSV: each is
    read or refused with an InputError. pyarrow 14 decoding them itself hung within the first
    hundred (its reader, torn down under the GIL, waited for a thread that decoded through
    Python's codecs), so the decoding is descend's; run apart, with a deadline."""
    import subprocess
    import sys

    try:
        done = subprocess.run([sys.executable, "-c", CP949_BYTES, str(tmp_path)],
                              capture_output=True, text=True, timeout=240)
    except subprocess.TimeoutExpired:
        pytest.fail("reading CP949 bytes hung (240 s)")
    assert done.returncode == 0, done.stderr[-2000:]
    read, refused = map(int, done.stdout.split())
    assert read + refused == 300 and refused > 0
