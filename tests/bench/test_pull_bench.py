"""The pull bench's record: each REST pull next to the plain client, its ratio, the goal and the verdict
(figures at this size mean nothing; nothing here asserts a speed)."""

from __future__ import annotations

import os

import pytest

from bench import pull_bench
from fundx.core.settings import reload_settings


@pytest.fixture
def own_environment():
    """The bench points the settings at its sandbox agencies: put the environment back afterwards."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)
    reload_settings()


def test_rest_pulls_carry_their_goal_and_verdict_in_the_record(capsys, own_environment):
    record = pull_bench.run(500, repeats=2)
    transports = {r["feed"]: r for r in record["transports"]}
    assert set(transports) == set(pull_bench.FEEDS)
    for feed in pull_bench.REST:
        result = transports[feed]
        assert result["rows"] > 0 and len(result["pull_runs_s"]) == len(result["http_runs_s"]) == 2
        assert result["pull_s"] == min(result["pull_runs_s"]) and result["goal_ratio"] == pull_bench.GOAL_RATIO
        assert result["pass"] is (result["http_ratio"] <= pull_bench.GOAL_RATIO)
    goals = {g["goal"]: g for g in record["goals"]}
    assert len(goals) == len(pull_bench.REST)
    printed = capsys.readouterr().out.splitlines()
    for name, goal in goals.items():
        assert goal["limit"] == pull_bench.GOAL_RATIO and goal["unit"] == "x" and isinstance(goal["pass"], bool)
        line = next(line for line in printed if line.strip().startswith(name))
        assert line.endswith("PASS" if goal["pass"] else "FAIL")
