"""The `attributes` column: one JSON object per row holding the export's columns no canonical
field took, built with Arrow string kernels.
"""

from __future__ import annotations

import json

import pandas as pd


def attributes_json(frame: pd.DataFrame, columns: list[str]) -> pd.Series:
    """One JSON object per row of the given columns' non-empty values (all text), vectorised
    with Arrow string kernels: about a second per million rows per non-empty column."""
    import pyarrow as pa
    import pyarrow.compute as pc

    n = len(frame)
    if n == 0:
        return pd.Series([], index=frame.index, dtype=object)
    pieces = []
    for c in columns:
        values = frame[c]
        if not (values != "").any():
            continue
        arr = pa.array(values.to_numpy(dtype=object), type=pa.string())
        if pc.any(pc.match_substring_regex(arr, r'[\\"\x00-\x1f]')).as_py():
            rare = pc.match_substring_regex(arr, r"[\x00-\x08\x0b\x0c\x0e-\x1f]")
            if pc.any(rare).as_py():
                py = arr.to_pylist()
                flags = rare.to_pylist()
                arr = pa.array([json.dumps(v, ensure_ascii=False)[1:-1] if f else v
                                for v, f in zip(py, flags)], type=pa.string())
                arr = _escape_basic(arr, skip=flags)
            else:
                arr = _escape_basic(arr)
        key = json.dumps(str(c), ensure_ascii=False)
        piece = pc.binary_join_element_wise(key + ':"', arr, '",', "")
        empty = pa.array((values == "").to_numpy(dtype=bool))
        piece = pc.if_else(empty, pa.scalar(None, pa.string()), piece)
        pieces.append(piece)
    if not pieces:
        return pd.Series(["{}"] * n, index=frame.index, dtype=object)
    # null_handling="skip" is avoided on purpose: some pyarrow versions drop all-null rows.
    body = pc.binary_join_element_wise(*pieces, "", null_handling="replace", null_replacement="")
    body = pc.utf8_rtrim(body, characters=",")
    out = pc.binary_join_element_wise("{", body, "}", "")
    return pd.Series(out.to_numpy(zero_copy_only=False), index=frame.index, dtype=object)


def _escape_basic(arr, skip=None):
    import pyarrow as pa
    import pyarrow.compute as pc

    escaped = arr
    for old, new in (("\\", "\\\\"), ('"', '\\"'), ("\n", "\\n"), ("\r", "\\r"), ("\t", "\\t")):
        escaped = pc.replace_substring(escaped, old, new)
    if skip is not None:  # values already escaped by json.dumps
        escaped = pc.if_else(pa.array(skip), arr, escaped)
    return escaped
