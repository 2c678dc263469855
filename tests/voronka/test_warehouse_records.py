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
    # an ENUM (deal_scores.pipeline) and an all-null column (revenue_forecast.segment)
    """select 'SaaS'::enum_t as pipeline, null as segment, 1 as n
       union all select 'B2B'::enum_t, null, 2""",
    # a nanosecond timestamp (deal_scores, written from a pandas frame), to the microsecond
    """select timestamp_ns '2024-01-02 03:04:05.123456' as scored_at, 1 as n
       union all select null, 2""",
    # types it leaves to pandas (a list, a time zone)
    "select [1, 2] as xs, timestamptz '2024-01-02 03:04:05+00' as at, 1 as n",
    "select 1 as n where false",
]


@pytest.mark.parametrize("query", QUERIES)
def test_records_match_the_pandas_path(query):
    con = duckdb.connect()
    con.execute("create type enum_t as enum ('SaaS', 'B2B')")
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


class _NoPandas:
    """A cursor whose .df() fails: records must read it with fetchall alone."""

    def __init__(self, cursor):
        self._cursor = cursor
        self.description = cursor.description

    def fetchall(self):
        return self._cursor.fetchall()

    def df(self):
        raise AssertionError("records fell back to pandas")


def test_enum_and_all_null_columns_are_read_without_pandas():
    # revenue_forecast has an all-null column and deal_scores an ENUM: with the fallback, the
    # forecast command imported pandas (0.7-1.1 s instead of 0.3 s)
    con = duckdb.connect()
    con.execute("create type enum_t as enum ('SaaS', 'B2B')")
    got = records(_NoPandas(con.execute(QUERIES[1])))
    assert got == [{"pipeline": "SaaS", "segment": None, "n": 1}, {"pipeline": "B2B", "segment": None, "n": 2}]
    assert records(_NoPandas(con.execute(QUERIES[2])))[0]["scored_at"].microsecond == 123456
    with pytest.raises(AssertionError, match="fell back"):
        records(_NoPandas(con.execute(QUERIES[3])))  # a list column still goes through pandas
