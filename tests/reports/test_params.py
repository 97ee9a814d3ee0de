"""Report parameters are written into the SQL as literals of their type: no value changes the statement's shape."""

from __future__ import annotations

import duckdb
import pytest

from domain.errors import Invalid
from domain.reports import params
from domain.reports.models import ParameterSpec

SPECS = [ParameterSpec(name="who", type="string"), ParameterSpec(name="n", type="integer"),
         ParameterSpec(name="since", type="date", required=False)]


def test_a_string_stays_a_string_whatever_it_holds() -> None:
    values = params.resolve(SPECS, {"who": "x' OR 1=1; DROP TABLE runs; --", "n": 3})
    sql = params.bind("SELECT $who AS who, $n + 1 AS n, $since AS since", SPECS, values)
    assert duckdb.sql(sql).fetchall() == [("x' OR 1=1; DROP TABLE runs; --", 4, None)]


def test_wrong_missing_and_unknown_parameters_are_named() -> None:
    with pytest.raises(Invalid) as caught:
        params.resolve(SPECS, {"n": "3", "extra": 1, "since": "yesterday"})
    assert caught.value.reasons == ["parameters.extra: not a parameter of this report",
                                    "parameters.who: required", "parameters.n: expected an integer",
                                    "parameters.since: expected a date (YYYY-MM-DD)"]
    with pytest.raises(Invalid, match="declare"):
        params.check_declared("SELECT $nope", SPECS)
