"""Text looked up in a dictionary column by hash (operators.text_hashes): the table finds
every hash it holds through slot and high-bit collisions and growth, and a dictionary
column's codes stay exact however the hashes collide (a hash only proposes a code, an exact
compare confirms it): equal values get one code, no value is added twice, every read
returns the values appended."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from caudal.operators import text_hashes
from caudal.operators.compact_rows import CompactRows
from caudal.operators.text_hashes import TextHashes


def test_table_finds_what_it_holds_through_collisions_and_growth():
    rng = np.random.default_rng(3)
    table = TextHashes()
    model: dict[int, int] = {}
    code = 0
    for _ in range(30):
        # few low bits (one home slot for many), high bits shared by some
        low = rng.integers(0, 8, 200, dtype=np.int64)
        high = rng.integers(0, 50, 200, dtype=np.int64) << 32
        h = high | low | np.int64(-1 << 62) * rng.integers(0, 2, 200, dtype=np.int64)
        codes = code + np.arange(len(h), dtype=np.int64)
        code += len(h)
        table.add(h, codes)
        for x, c in zip(h.tolist(), codes.tolist()):
            if x not in model:   # the first code of a hash stays
                model[x] = c
        keys = np.array(list(model), dtype=np.int64)
        found = table.find(keys)
        want = np.array([model[k] for k in keys.tolist()])
        # a hash finds its own code, or one of an earlier hash with its high bits on its
        # probe path (the caller checks every proposal); never nothing
        high_of = {c: k >> 32 for k, c in model.items()}
        assert (found >= 0).all()
        assert all(high_of[f] == k >> 32 for k, f, w in
                   zip(keys.tolist(), found.tolist(), want.tolist()) if f != w)
        absent = (np.arange(20, dtype=np.int64) + 1000) << 32   # high bits never added
        assert (table.find(absent) == -1).all()


def _hash_few(values):
    """Only three hashes for all values: most proposals are wrong."""
    return values.hash(seed=1).to_numpy().view(np.int64) % 3


@pytest.mark.parametrize("hashing", ["real", "one", "few"])
@pytest.mark.parametrize("kind", [pa.string(), pa.large_string(), pa.binary()])
def test_codes_stay_exact_however_hashes_collide(monkeypatch, hashing, kind):
    if hashing == "one":
        monkeypatch.setattr(text_hashes, "hash_values",
                            lambda values: np.zeros(len(values), dtype=np.int64))
    elif hashing == "few":
        monkeypatch.setattr(text_hashes, "hash_values", _hash_few)
    rng = np.random.default_rng(11)
    schema = pa.schema([("k", pa.int64()), ("s", kind)])
    store = CompactRows(schema)
    pieces = []
    for i in range(40):
        words = [f"value-{j:03d}-{'x' * (j % 20)}" for j in range(30 + 3 * i)]
        picked = [None if rng.random() < 0.1 else words[j]
                  for j in rng.integers(0, len(words), 2000)]
        if kind == pa.binary():
            picked = [None if w is None else w.encode() for w in picked]
        piece = pa.table({"k": pa.array(np.arange(len(picked)) + 10_000 * i),
                          "s": pa.array(picked, kind)})
        store.append(piece)
        pieces.append(piece)
        if i % 9 == 4:   # a read between appends
            assert store.take(np.array([0, 5, -1])).num_rows == 3
    reference = pa.concat_tables(pieces)
    assert store.table().equals(reference)
    column = store.columns[1]
    assert type(column).__name__ == "_Dictionary"
    assert len(pa.compute.unique(column.dictionary)) == len(column.dictionary)
