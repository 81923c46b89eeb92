"""Column types of a frame Azure ML delivered, made the ones pandas gives the same CSV.

azureml-dataprep learns column types from the data: a column of 0 and 1 comes back as
booleans, and with a blank in it as objects (True, False, None). pandas, which reads the
same file on the local backend, gives integers and floats (NaN for the blank). A step that
saw booleans would refuse the column as "not a number", or train a classifier on
False/True labels, on Azure ML only. Every frame that dataprep delivers (a registered or
unregistered tabular dataset, a ParallelRunStep mini-batch) goes through
``as_pandas_reads_it`` before a step looks at it, so both platforms see the same values.

A column of true/false text is learnt as booleans too, and becomes 1/0 here: dataprep keeps
nothing that would tell the two apart.
"""
from typing import Any

import numpy as np
import pandas as pd

# How a step says where its frame came from (the batch scorer's --input_types).
PANDAS = "pandas"
DATAPREP = "dataprep"
INPUT_TYPES = (PANDAS, DATAPREP)


def _is_flag(value: Any) -> bool:
    return isinstance(value, (bool, np.bool_))


def _flags_with_blanks(column: pd.Series) -> bool:
    """An object column whose present values are all booleans (dataprep's 0/1 with blanks)."""
    if column.dtype != object:
        return False
    present = column.dropna()
    return len(present) > 0 and all(_is_flag(value) for value in present)


def as_pandas_reads_it(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame with dataprep's boolean columns as pandas types: 0/1 integers, or floats
    with NaN where a value is missing. Other columns, and the index, are left as they are."""
    converted = {}
    for position, (_, column) in enumerate(frame.items()):
        if pd.api.types.is_bool_dtype(column.dtype) and not column.isna().any():
            converted[position] = column.astype("int64")
        elif pd.api.types.is_bool_dtype(column.dtype) or _flags_with_blanks(column):
            converted[position] = pd.Series(
                [np.nan if pd.isna(value) else float(value) for value in column],
                index=column.index, dtype="float64")
    if not converted:
        return frame
    result = frame.copy()
    for position, column in converted.items():
        # By position: column labels need not be unique or strings.
        result.isetitem(position, column)
    return result
