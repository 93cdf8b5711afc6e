"""coordinator.job() made again by the same line of code: a copy of the first job, exactly as if made anew."""

from __future__ import annotations

import pytest

import jobs_core
from jobs_core import InvalidName, InvalidNameType


def make(c, **kwargs):
    return c.job(["in"], ["out"], **kwargs)


def test_copies_are_new_jobs_with_their_own_ids(redis7, prefix):
    c = jobs_core.Coordinator(redis7.client(), prefix)
    c.create_outputs(["in"])
    jobs = [make(c, duration=5) for _ in range(3)]
    assert len({j.id for j in jobs}) == 3
    assert len({j.id.rsplit(".", 1)[0] for j in jobs}) == 1  # <file>:<function> of the caller, as before
    assert jobs[0].id.rsplit(".", 1)[0].endswith("test_job_copies.py:make")
    with jobs[0] as first:
        first.note = "mine"
    with jobs[1] as second:
        assert second.token > first.token and not hasattr(second, "note")
    assert c.output_info("out").writer == second.id
    c.close()


def test_arguments_equal_in_value_but_not_in_meaning_make_different_jobs(redis7, prefix):
    c = jobs_core.Coordinator(redis7.client(), prefix)
    assert make(c, duration=9, heartbeat=True).heartbeat == 3.0
    assert make(c, duration=9, heartbeat=1).heartbeat == 1.0  # 1 == True, but one second
    assert make(c, duration=9, heartbeat=False).heartbeat is None
    assert make(c, duration=9, wait=0).wait == 0.0 and make(c, duration=9, wait=2).wait == 2.0
    assert make(c, duration=9, overwrite=False).overwrite is False
    assert make(c, duration=4).duration == 4.0
    c.close()


def test_bad_arguments_are_refused_every_time(redis7, prefix):
    c = jobs_core.Coordinator(redis7.client(), prefix)
    for _ in range(2):
        with pytest.raises(InvalidNameType):
            c.job([["a"]], ["out"], duration=5)  # unhashable: not cached, still refused
        with pytest.raises(InvalidName):
            c.job(["in"], ["bad\n"], duration=5)
        with pytest.raises(jobs_core.InvalidArgument):
            c.job(["in"], ["out"], duration=-1)
    c.close()


def test_the_copies_of_a_line_in_a_loop_run_one_after_another(redis7, prefix):
    c = jobs_core.Coordinator(redis7.client(), prefix)
    ids = []
    for i in range(5):
        with c.job([], [f"part.{i % 2}"], duration=5) as job:
            ids.append(job.id)
    assert len(set(ids)) == 5
    assert c.output_info("part.0").writer == ids[4] and c.output_info("part.1").writer == ids[3]
    c.close()
