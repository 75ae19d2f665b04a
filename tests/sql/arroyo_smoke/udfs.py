"""Arroyo's test UDFs (crates/arroyo-sql-testing/src/udfs.rs) as caudal Python UDFs, for the
smoke tests' ``--udf`` option: the same results, vectorized."""

import pyarrow as pa
import pyarrow.compute as pc

import caudal


@caudal.udf(returns="BIGINT")
def double_negative(x: pa.Array) -> pa.Array:
    return pc.multiply(x.cast(pa.int64()), -2)

