"""Entry and case ids (`model.new_id`) and the stored form of a timestamp (`model.format_ts`): both sit on
`record()`'s hot path and were rewritten for speed, so what they must keep meaning is tested against the
reference implementations (python-ulid, `strftime`), with inputs those rewrites were not written around."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st
from ulid import ULID

from sharedctx import model
from sharedctx.model import format_ts, new_id


def test_an_id_is_a_ulid_of_now_that_python_ulid_reads_back_unchanged() -> None:
    before = time.time()
    minted = new_id()
    after = time.time()
    parsed = ULID.from_str(minted)
    assert str(parsed) == minted and len(minted) == 26
    assert before - 0.001 <= parsed.timestamp <= after + 0.001


def test_ids_minted_within_one_millisecond_sort_in_minting_order(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(model, "_last_id", [0, 0])
    monkeypatch.setattr(model.time, "time_ns", lambda: 1_700_000_000_123_456_789)  # a frozen clock
    ids = [new_id() for _ in range(500)]
    assert ids == sorted(ids) and len(set(ids)) == 500
    assert {ULID.from_str(i).milliseconds for i in ids} == {1_700_000_000_123}


def test_ids_go_on_sorting_when_the_randomness_runs_out_or_the_clock_steps_back(
        monkeypatch: pytest.MonkeyPatch) -> None:
    ms = 1_700_000_000_123
    monkeypatch.setattr(model, "_last_id", [ms, (1 << 80) - 2])
    clock = [ms * 1_000_000]
    monkeypatch.setattr(model.time, "time_ns", lambda: clock[0])
    first, second = new_id(), new_id()  # the last randomness of that millisecond, then none is left
    clock[0] -= 5_000_000_000  # NTP steps the clock 5 s back
    third = new_id()
    assert first < second < third
    assert ULID.from_str(first).milliseconds == ms and ULID.from_str(second).milliseconds == ms + 1


def test_ids_from_many_threads_at_once_are_all_different() -> None:
    out: list[list[str]] = [[] for _ in range(8)]

    def mint(i: int) -> None:
        out[i].extend(new_id() for _ in range(2000))

    threads = [threading.Thread(target=mint, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    every = [i for ids in out for i in ids]
    assert len(set(every)) == len(every) == 16_000
    assert all(ids == sorted(ids) for ids in out)  # each thread's own ids in its own order


_ZONES = st.sampled_from([UTC, timezone(timedelta(hours=2)), timezone(timedelta(hours=-9, minutes=-30))])


@given(st.datetimes(min_value=datetime(1000, 1, 1), max_value=datetime(9999, 12, 30)), _ZONES)
def test_the_stored_form_of_a_time_is_strftimes_in_every_zone(value: datetime, zone: timezone) -> None:
    aware = value.replace(tzinfo=zone)
    assert format_ts(aware) == aware.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
