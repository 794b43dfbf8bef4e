"""What log() accepts and what it refuses, with errors naming the key."""

import math

import numpy as np
import pytest

import tidelog
from conftest import history


@pytest.fixture
def run(tmp_path):
    r = tidelog.init(project="values", dir=tmp_path, mode="offline", system_interval=0)
    yield r
    r.finish()


@pytest.mark.parametrize("value, why", [
    (object(), "unsupported type"),
    ({1, 2}, "unsupported type"),
    (None, "unsupported type"),
    (np.zeros(20_000), "over the 10000-element limit"),
    ({"inner": {3: 1}}, "not a string"),
    ([1, object()], "unsupported type"),
    (2 ** 2000, "too large"),
])
def test_refused_values_are_type_errors_naming_the_key_and_keep_nothing(run, value, why):
    tidelog.log({"ok": 1.0})
    with pytest.raises(TypeError, match=f"'bad_key'.*{why}"):
        tidelog.log({"fine": 2.0, "bad_key": value})
    assert run.step == 1, "the refused call did not commit a row"


def test_bad_keys_and_steps_are_value_errors(run):
    with pytest.raises(TypeError, match="keys must be strings"):
        tidelog.log({1: 1.0})
    with pytest.raises(ValueError, match="reserved"):
        tidelog.log({"_step": 1.0})
    with pytest.raises(ValueError, match="empty"):
        tidelog.log({"": 1.0})
    with pytest.raises(ValueError, match="over the largest step"):
        tidelog.log({"a": 1.0}, step=2 ** 63)
    with pytest.raises(OverflowError):
        tidelog.log({"a": 1.0}, step=-1)
    tidelog.log({"a": 1.0}, step=5)
    with pytest.warns(UserWarning, match="steps must not decrease"):
        tidelog.log({"a": 2.0}, step=3)


def test_every_kind_of_value_round_trips_through_the_server(tmp_path, server):
    run = tidelog.init(project="values", dir=tmp_path, mode="offline")
    tidelog.log({
        "int": 3, "float": 0.25, "nan": math.nan, "inf": math.inf, "ninf": -math.inf,
        "bool": True, "str": "hello", "nested": {"a": [1, 2.5, "x"], "b": {"c": False}},
        "np_f32": np.float32(1.5), "np_i64": np.int64(7), "np_bool": np.bool_(False),
        "np_arr": np.array([[1, 2], [3, 4]]), "tuple": (1, 2), "big": 2 ** 70,
    })
    run.finish()
    tidelog.sync(dir=tmp_path, server=server.url, api_key=server.key)
    row = history(server, run.id)[0]
    assert row["int"] == 3 and row["float"] == 0.25 and row["big"] == float(2 ** 70)
    assert (row["nan"], row["inf"], row["ninf"]) == ("NaN", "Infinity", "-Infinity")
    assert row["bool"] is True and row["str"] == "hello"
    assert row["nested"] == {"a": [1, 2.5, "x"], "b": {"c": False}}
    assert row["np_f32"] == 1.5 and row["np_i64"] == 7 and row["np_bool"] is False
    assert row["np_arr"] == [[1, 2], [3, 4]] and row["tuple"] == [1, 2]


def test_a_second_init_finishes_the_first_as_a_rerun_notebook_cell_does(tmp_path):
    first = tidelog.init(project="nb", dir=tmp_path, mode="offline", system_interval=0)
    tidelog.log({"x": 1.0})
    second = tidelog.init(project="nb", dir=tmp_path, mode="offline", system_interval=0)
    assert first.finished and not second.finished and tidelog.current_run() is second
    with pytest.raises(RuntimeError, match="finished"):
        first.log({"x": 2.0})
    second.finish()
    from conftest import states
    assert states(tmp_path / "tidelog") == {first.id: "finished", second.id: "finished"}


def test_an_exception_in_a_with_block_marks_the_run_failed(tmp_path):
    with pytest.raises(ZeroDivisionError):
        with tidelog.init(project="ctx", dir=tmp_path, mode="offline", system_interval=0) as run:
            run.log({"x": 1.0})
            1 / 0
    with tidelog.init(project="ctx", dir=tmp_path, mode="offline", system_interval=0) as ok:
        ok.log({"x": 1.0})
    from conftest import states
    assert states(tmp_path / "tidelog") == {run.id: "failed", ok.id: "finished"}
