"""A late CAPA action escalates on Temporal's time-skipping server, with the real activities and database: its owner
is alerted at the due time, the lab managers two days later; a done action escalates no more."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import text
from temporalio.worker import Worker

from activities.events import EventActivities
from domain.events import service as events
from domain.events.messages import ActionSpec, EventInput, EventRef, EventState, EventStep, workflow_id
from domain.events.models import EventCreate, EventKind, EventSeverity, EventSource
from domain.roles import Role
from domain.runs.messages import ActorRef
from tests.runs.conftest import await_for
from tests.runs.support import caller
from workflows.event import ComplianceEvent


@pytest.fixture(scope="module")
async def event_queue(skipping_env, platform) -> AsyncIterator[str]:
    queue = f"events-{uuid.uuid4().hex[:8]}"
    with ThreadPoolExecutor(max_workers=4) as pool:
        async with Worker(skipping_env.client, task_queue=queue, workflows=[ComplianceEvent],
                          activities=EventActivities(platform.sessions).all(), activity_executor=pool):
            yield queue


def _alerts(owner, action_id: str) -> list[tuple[str, list[str], list[str]]]:
    with owner.begin(None) as s:
        return [(r.dedupe_key, [str(u) for u in r.addressed_users], list(r.addressed_roles)) for r in s.execute(text(
            "SELECT dedupe_key, addressed_users, addressed_roles FROM alerts WHERE subject_id = :a"
            " ORDER BY created_at"), {"a": action_id})]


async def test_a_late_capa_action_alerts_its_owner_then_the_lab_managers(skipping_env, event_queue, platform,
                                                                           owner, org_a):
    tech, manager = caller(org_a, Role.technician), caller(org_a, Role.lab_manager)
    with platform.sessions.begin(org_a.id) as s:
        event, _ = events.create(s, tech, EventCreate(kind="incident", severity="high", title="Spill in hood 2",
                                                      description="Agrobacterium culture spilled."))
    ref = EventRef(org_id=str(org_a.id), event_id=str(event.id))
    handle = await skipping_env.client.start_workflow(ComplianceEvent.run, EventInput(event=ref),
                                                      id=workflow_id(str(event.id)), task_queue=event_queue)

    def step(action: str, **fields) -> EventStep:
        return EventStep(event=ref, action=action, actor=ActorRef.of(manager), request=manager.context, **fields)

    await handle.execute_update(ComplianceEvent.transition, step("investigate"), id=f"i-{uuid.uuid4()}",
                                result_type=EventState)
    now = await skipping_env.get_current_time()
    spec = ActionSpec(kind="corrective", description="buy spill trays", owner_id=str(org_a.users[Role.technician][0]),
                      due_at=now + dt.timedelta(days=1))
    state = await handle.execute_update(ComplianceEvent.transition, step("root_cause", root_cause="no spill tray",
                                                                         actions=[spec]),
                                        id=f"r-{uuid.uuid4()}", result_type=EventState)
    assert state.status == "capa"
    action_id = state.actions[0].id

    await skipping_env.sleep(dt.timedelta(hours=23))
    assert _alerts(owner, action_id) == []  # not due yet
    await skipping_env.sleep(dt.timedelta(hours=2))
    fired = await await_for(lambda: _alerts(owner, action_id))
    assert fired == [(f"capa_overdue:{action_id}:0", [str(org_a.users[Role.technician][0])], [])]

    await skipping_env.sleep(dt.timedelta(days=2))
    fired = await await_for(lambda: (a := _alerts(owner, action_id)) and len(a) == 2 and a)
    assert fired[1] == (f"capa_overdue:{action_id}:1", [str(org_a.users[Role.technician][0])], ["lab_manager"])
    with owner.begin(None) as s:
        s.execute(text("SELECT audit_seal(:o, 5000, true)"), {"o": org_a.id})
        levels = s.execute(text("SELECT convert_from(body, 'UTF8')::jsonb -> 'after' ->> 'level' FROM audit_log"
                                " WHERE org_id = :o AND entity_type = 'capa_action' AND action = 'escalate'"
                                " AND entity_id = :a ORDER BY seq"),
                           {"o": org_a.id, "a": action_id}).scalars().all()
        level = s.execute(text("SELECT escalation_level FROM capa_actions WHERE id = :a"), {"a": action_id}).scalar()
    assert levels == ["0", "1"] and level == 1

    # Done late, it escalates no more, and the event moves to its effectiveness check.
    done = await handle.execute_update(ComplianceEvent.transition, EventStep(
        event=ref, action="complete_action", actor=ActorRef.of(tech), request=tech.context, action_id=action_id,
        note="trays in every hood"), id=f"c-{uuid.uuid4()}", result_type=EventState)
    assert done.status == "effectiveness_check"
    await skipping_env.sleep(dt.timedelta(days=5))
    assert len(_alerts(owner, action_id)) == 2


async def test_a_capa_action_done_in_time_never_escalates(skipping_env, event_queue, platform, owner, org_a):
    tech, manager = caller(org_a, Role.technician), caller(org_a, Role.lab_manager)
    with platform.sessions.begin(org_a.id) as s:
        event, _ = events.create(s, tech, EventCreate(kind="near_miss", severity="low", title="Unlabelled tube",
                                                      description="Found before use."))
    ref = EventRef(org_id=str(org_a.id), event_id=str(event.id))
    handle = await skipping_env.client.start_workflow(ComplianceEvent.run, EventInput(event=ref),
                                                      id=workflow_id(str(event.id)), task_queue=event_queue)
    actor = ActorRef.of(manager)
    await handle.execute_update(ComplianceEvent.transition, EventStep(event=ref, action="investigate", actor=actor),
                                id=f"i-{uuid.uuid4()}", result_type=EventState)
    now = await skipping_env.get_current_time()
    state = await handle.execute_update(ComplianceEvent.transition, EventStep(
        event=ref, action="root_cause", actor=actor, root_cause="rushed", actions=[ActionSpec(
            kind="preventive", description="label before filling", owner_id=str(org_a.users[Role.technician][0]),
            due_at=now + dt.timedelta(hours=4))]), id=f"r-{uuid.uuid4()}", result_type=EventState)
    action_id = state.actions[0].id
    await handle.execute_update(ComplianceEvent.transition, EventStep(
        event=ref, action="complete_action", actor=ActorRef.of(tech), action_id=action_id, note="done"),
        id=f"c-{uuid.uuid4()}", result_type=EventState)
    await skipping_env.sleep(dt.timedelta(days=3))
    assert _alerts(owner, action_id) == []


async def test_the_watch_starts_the_workflow_of_an_event_the_system_raised(skipping_env, event_queue, platform,
                                                                           owner, org_a):
    with platform.sessions.begin(org_a.id) as s:
        event_id = events.raise_system(s, org_a.id, kind=EventKind.contamination, severity=EventSeverity.high,
                                       title="Plate contaminated", description="d", source=EventSource.contamination,
                                       source_key=f"test:{uuid.uuid4()}")
    watch = EventActivities(platform.sessions, client=skipping_env.client, task_queue=event_queue)
    await watch.scan_all()

    def started():
        with owner.begin(None) as s:
            return s.execute(text("SELECT workflow_started_at FROM compliance_events WHERE id = :e"),
                             {"e": event_id}).scalar()

    assert await await_for(started)
    handle = skipping_env.client.get_workflow_handle(workflow_id(str(event_id)))
    assert (await handle.describe()).status.name == "RUNNING"
