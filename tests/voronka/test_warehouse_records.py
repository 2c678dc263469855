"""voronka.warehouse_reads.records gives the rows exactly as the pandas path the read commands
used before (`.df()` then astype(object) / where(notna, None) / to_dict('records'))."""

import duckdb
import pytest

from voronka.warehouse_reads import records

QUERIES = [
    # every column type records converts itself, with and without NULLs
    """select * from (values
        (1, 1, true, true, 1.5::decimal(18,2), date '2024-01-02', timestamp '2024-01-02 03:04:05.123', 'x',
         2.5::double, 'nan'::double, 7::hugeint, 9::bigint, 3::smallint, 4::ubigint),
        (2, null, false, null, null, null, null, null, null, null, null, null, null, null)
     ) t(a, b, c, d, e, f, g, h, i, j, k, l, m, n)""",
    # types it leaves to pandas (a list, a time zone)
    "select [1, 2] as xs, timestamptz '2024-01-02 03:04:05+00' as at, 1 as n",
    "select 1 as n where false",
]


@pytest.mark.parametrize("query", QUERIES)
def test_records_match_the_pandas_path(query):
    con = duckdb.connect()
    frame = con.execute(query).df()
    expected = frame.astype(object).where(frame.notna(), None).to_dict("records")
    got = records(con.execute(query))
    assert [list(r) for r in got] == [list(r) for r in expected]
    for g, e in zip(got, expected):
        for key in e:
            if hasattr(e[key], "tolist"):  # an array (a list column): compared as a list
                assert list(g[key]) == list(e[key])
            else:
                assert g[key] == e[key] and type(g[key]).__name__ in (type(e[key]).__name__, "datetime")
