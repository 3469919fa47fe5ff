"""Eight processes racing one step on one SQLite file.

The workers are separate processes (multiprocessing with spawn) that call the
library, as eight `kmsguard` commands would, and meet at a barrier so that all
eight start each round together.
"""

from __future__ import annotations

import multiprocessing
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

WORKERS = 8
ROUNDS = 100
BARRIER_TIMEOUT = 120


def attempt(app: Any, procedure: Any, step: str, params: dict[str, Any]) -> str:
    """Run one step; return applied, conflict, no_run or what else happened."""
    from kmsguard.workflow.errors import Conflict, KmsguardError, Refused

    try:
        app.step(procedure, step, "prod", params)
    except Conflict:
        return "conflict"
    except Refused as refused:
        guards = [result.guard for result in refused.unmet]
        return "no_run" if guards == ["open_run"] else f"refused {guards}"
    except KmsguardError as error:
        return f"error {type(error).__name__}: {error}"
    return "applied"


def race_worker(
    settings: dict[str, Any],
    step: str,
    rounds: int,
    barrier: Any,
    results: Any,
) -> None:
    """Attempt `step` once per round, between the round's two barrier waits."""
    from kmsguard.states import PROCEDURES
    from kmsguard.workflow.app import App, Settings

    rotation = PROCEDURES["rotation"]
    app = App(Settings(**settings))
    outcomes = []
    try:
        for number in range(rounds):
            barrier.wait(BARRIER_TIMEOUT)
            reason = f"{settings['operator']} in round {number}"
            outcomes.append(attempt(app, rotation, step, {"reason": reason}))
            barrier.wait(BARRIER_TIMEOUT)
    finally:
        app.close()
        results.put((settings["operator"], outcomes))


def start_workers(
    settings: dict[str, Any], step: str, rounds: int
) -> tuple[Any, Any, list[Any]]:
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(WORKERS + 1)
    results = context.Queue()
    workers = [
        context.Process(
            target=race_worker,
            args=(
                {**settings, "operator": f"worker{i}"},
                step,
                rounds,
                barrier,
                results,
            ),
        )
        for i in range(WORKERS)
    ]
    for worker in workers:
        worker.start()
    return barrier, results, workers


def collect(results: Any, workers: list[Any]) -> dict[str, list[str]]:
    outcomes = dict(results.get(timeout=BARRIER_TIMEOUT) for _ in workers)
    for worker in workers:
        worker.join(timeout=BARRIER_TIMEOUT)
    return outcomes


def test_cancel_race_one_winner_per_round(app: Any, kms: Any, db_path: Path) -> None:
    from conftest import create_key

    from kmsguard.states import PROCEDURES

    rotation = PROCEDURES["rotation"]
    old_key = create_key(kms, Description="old pipeline key")
    settings = {"db_path": db_path}
    barrier, results, workers = start_workers(settings, "cancel", ROUNDS)
    try:
        for _ in range(ROUNDS):
            app.start(rotation, "prod", {"key": old_key})
            barrier.wait(BARRIER_TIMEOUT)
            barrier.wait(BARRIER_TIMEOUT)
    except BaseException:
        barrier.abort()
        raise
    outcomes = collect(results, workers)

    rounds = [Counter(o[n] for o in outcomes.values()) for n in range(ROUNDS)]
    runs = app.store.runs("prod")
    events = app.store.environment_events("prod")
    per_run = [Counter(e.outcome for e in events if e.run_id == r.id) for r in runs]
    assert [r["applied"] for r in rounds] == [1] * ROUNDS
    assert {kind for r in rounds for kind in r} <= {"applied", "conflict", "no_run"}
    assert [run.state for run in runs] == ["cancelled"] * ROUNDS
    assert [c["applied"] for c in per_run] == [2] * ROUNDS
    assert [c["refused"] for c in per_run] == [r["conflict"] for r in rounds]
    assert sum(sum(c.values()) for c in per_run) + 1 == len(events)
    assert [e.id for e in events] == list(range(1, len(events) + 1))
    assert app.verify()["ok"]


@pytest.mark.e2e
def test_disable_race_one_aws_call(cli: Any) -> None:
    """Eight processes race disable-old-key against the moto server: one claims
    the intent and calls AWS, the other seven lose before calling it."""
    from conftest import PIPELINE_ACCOUNT, REGION, drive_rotation

    from kmsguard.workflow.app import App, Settings

    settings = {
        "db_path": cli.db_path,
        "operator": "alice",
        "endpoint_url": cli.server.url,
    }
    app = App(Settings(**settings))
    app.add_environment("prod", REGION, PIPELINE_ACCOUNT)
    old_key = drive_rotation(app, cli.kms(), "rotation_confirmed")
    barrier, results, workers = start_workers(settings, "disable_old_key", 1)
    barrier.wait(BARRIER_TIMEOUT)
    barrier.wait(BARRIER_TIMEOUT)
    outcomes = collect(results, workers)

    kinds = Counter(o[0] for o in outcomes.values())
    events = [
        e for e in app.store.environment_events("prod") if e.step == "disable_old_key"
    ]
    by_outcome = Counter(e.outcome for e in events)
    state = cli.kms().describe_key(KeyId=old_key)["KeyMetadata"]["KeyState"]
    verified = app.verify()["ok"]
    app.close()
    assert kinds["applied"] == 1
    assert kinds["applied"] + kinds["conflict"] + kinds["refused ['state_order']"] == 8
    assert by_outcome["intent"] == 1
    assert by_outcome["applied"] == 1
    assert by_outcome["refused"] == 7
    assert state == "Disabled"
    assert verified
