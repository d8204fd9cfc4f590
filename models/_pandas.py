"""Typed results for the pandas functions Spark runs (`applyInPandas`).

Arrow converts what a pandas function returns to the schema declared to Spark, and it
refuses a column whose pandas type does not fit: an empty frame built from lists gets
float64 columns, which a string column cannot take ("Cannot convert
pyarrow.lib.ChunkedArray to pyarrow.lib.Array"). A small shop hits that as soon as one
block of shoppers has nothing to return. So every pandas function of the models declares
its output schema once, as a `StructType`, and `returns(schema)` makes its frame fit it:
the declared columns, in order, with the declared types, also when empty.
"""
from __future__ import annotations

import functools
import inspect
from collections.abc import Callable

import numpy as np
from pyspark.sql.pandas.types import to_arrow_type
from pyspark.sql.types import DataType, StructType


def dtype(field_type: DataType) -> str:
    """The pandas dtype a column of `field_type` has in a frame Arrow converts."""
    return np.dtype(to_arrow_type(field_type).to_pandas_dtype()).name


def empty(schema: StructType):
    """A frame with no rows and the columns and types of `schema`."""
    import pandas as pd

    return pd.DataFrame({f.name: pd.Series([], dtype=dtype(f.dataType)) for f in schema})


def conform(frame, schema: StructType):
    """`frame` with exactly the columns of `schema`, in its order and of its types.

    Raises ValueError naming the columns that are missing."""
    missing = [f.name for f in schema if f.name not in frame.columns]
    if missing:
        raise ValueError(f"pandas result lacks the declared columns {missing} "
                         f"(it has {list(frame.columns)})")
    if frame.empty:
        return empty(schema)
    return frame[schema.fieldNames()].astype({f.name: dtype(f.dataType) for f in schema})


def returns(schema: StructType) -> Callable:
    """Decorate a pandas function of one frame (applyInPandas) or two (a cogroup's) so
    that what it returns fits `schema`; None counts as no rows. (Spark reads the function's
    arity, so the wrapper keeps it.)"""
    def fit(out):
        return empty(schema) if out is None else conform(out, schema)

    def wrap(fn: Callable) -> Callable:
        arity = len(inspect.signature(fn).parameters)
        if arity == 1:
            def typed(frame):
                return fit(fn(frame))
        elif arity == 2:
            def typed(left, right):
                return fit(fn(left, right))
        else:
            raise TypeError(f"{fn.__qualname__} takes {arity} frames; Spark passes 1 or 2")
        return functools.update_wrapper(typed, fn, updated=())
    return wrap
