"""Each shipped protocol run from start to end as people would work it, on the time-skipping server: what
they submit, in order, and which decisions they give. Used by the replay recorder (tests/replay/record.py)
and by the fast workflow tests, which check the look-ahead against what the interpreter opens.

Each scenario touches what the interpreter does: parallel branches, conditions, repeats until a condition,
timers, escalations, hold and resume, a rejection that repeats earlier steps.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from typing import Any

from temporalio.client import Client, WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from domain.protocols.compiler import compile_protocol
from domain.protocols.loader import example_protocols
from domain.protocols.plan import ExecutionPlan
from domain.runs.messages import ActorRef, Completion, Control, Decision, Outcome, RunInput, RunRef, RunState
from workflows.run import ProtocolRun

ORG = "00000000-0000-0000-0000-00000000000a"
TECH = ActorRef(type="user", id="tech", display="Tariq Technician", user_id="tech", role="technician")
MANAGER = ActorRef(type="user", id="manager", display="Maria Manager", user_id="manager", role="lab_manager")

# What people submit: (step key, how often it was seen) → values.
Values = Callable[[str, int], dict[str, Any]]
# Every completion or decision's answer, with the run's state just before it was sent.
OnAnswer = Callable[[RunState, Outcome], None]


def _agro_values(step: str, seen: int) -> dict[str, Any]:
    from tests.runs.support import AGRO

    values = dict(AGRO[step][0])
    if step == "regeneration_check":
        values["agro_overgrowth"] = seen == 0  # overgrowth the first time round only: the rescue step runs once
    return values


def _fungal_values(step: str, seen: int) -> dict[str, Any]:
    return {
        "media_prep": {"medium": "PDA", "media_lot": "L-1", "ph": "5.60", "volume_ml": 500, "autoclave_cycle": "C-7",
                       "media_batch": "PDA-9"},
        "inoculation": {"parent_culture": "AF-1", "new_culture": f"AF-1.{seen + 1}", "media_batch": "PDA-9",
                        "plates": 4},
        "growth_check": {"incubator_temp_c": "25.0", "colony_diameter_mm": "40.0", "contaminated": seen == 0,
                         "contaminant": "bacteria" if seen == 0 else None, "sporulating": seen > 0, "photo": "EV-3"},
    }[step]


def _plant_values(step: str, seen: int) -> dict[str, Any]:
    return {
        "media_prep": {"ms_salts_lot": "MS-1", "ph": "5.75", "bap_mg_l": "1.00", "agar_g_l": "8.0", "vessels": 40,
                       "media_batch": "MS-B1", "prepared_on": "2024-05-01"},
        "explant_prep": {"source_batch": "ST-1", "explant_type": "nodal_segment", "explants": 80},
        "subculture": {"source_vessel": "S-1", "media_batch": "MS-B1", "new_batch": f"ST-{seen + 2}", "vessels": 16,
                       "explants_per_vessel": 5},
        "shoot_count": {"shoots": 150 if seen == 0 else 240, "contaminated_vessels": 1, "growth_room_temp_c": "22.0",
                        "photoperiod_h": 16},
    }[step]


SCENARIOS: dict[str, tuple[Values, list[str], bool, str | None]] = {
    # protocol key: (values for a step and how often it was seen, approvals to give in order, hold once, overdue)
    "agrobacterium-transformation": (_agro_values, ["reject", "approve"], True, "inoculation"),
    "fungal-culture-passage": (_fungal_values, ["approve"], False, "growth_check"),
    "plant-tissue-subculture": (_plant_values, ["approve"], True, None),
}


def shipped_plan(key: str) -> ExecutionPlan:
    plan = compile_protocol(example_protocols()[key], 1).plan
    assert plan is not None
    return plan


def shipped_input(key: str) -> RunInput:
    """The run of a shipped protocol the recorded histories start with (its run id fixed by its key)."""
    run_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"flasktrack-replay:{key}"))
    return RunInput(run=RunRef(org_id=ORG, run_id=run_id, protocol_key=key, protocol_version=1),
                    plan=shipped_plan(key), time_scale=1.0)


async def start(client: Client, inp: RunInput, queue: str) -> WorkflowHandle[ProtocolRun, str]:
    return await client.start_workflow(ProtocolRun.run, inp, id=inp.run.run_id, task_queue=queue)


async def drive(env: WorkflowEnvironment, handle: WorkflowHandle[ProtocolRun, str], key: str, plan: ExecutionPlan,
                on_answer: OnAnswer | None = None) -> None:
    """Work the run as its scenario says until it ends: the first open step each time, timers let pass."""
    values_for, decisions, hold_once, let_overdue = SCENARIOS[key]
    decisions = list(decisions)
    seen: dict[str, int] = {}
    while True:
        state = await handle.query(ProtocolRun.state)
        if state.status != "running" and state.status != "on_hold":
            return
        if not state.open_tasks:
            await env.sleep(dt.timedelta(days=30))  # timers pass
            desc = await handle.describe()
            if desc.status is not None and desc.status.name != "RUNNING":
                return
            continue
        task = state.open_tasks[0]
        if hold_once:
            hold_once = False
            await handle.execute_update(ProtocolRun.hold, Control(action="hold", actor=MANAGER,
                                                                  reason="hold for replay"))
            await handle.execute_update(ProtocolRun.resume, Control(action="resume", actor=MANAGER,
                                                                    reason="resume for replay"))
        if task.step_key == let_overdue and seen.get(task.step_key, 0) == 0:
            await env.sleep(dt.timedelta(days=3))  # every escalation level fires
        n = seen.get(task.step_key, 0)
        seen[task.step_key] = n + 1
        if task.kind == "approval":
            answer = await handle.execute_update(ProtocolRun.decide, Decision(
                task_id=task.task_id, actor=MANAGER, decision="approve" if decisions.pop(0) == "approve" else "reject",
                signature_id=str(uuid.uuid4()), content_hash="0" * 64, reason="replay scenario"))
        else:
            node = plan.step(task.step_key)
            assert node.kind == "task"
            answer = await handle.execute_update(ProtocolRun.complete_task, Completion(
                task_id=task.task_id, actor=TECH, values=values_for(task.step_key, n),
                checklist={item.key: True for item in node.checklist}))
        if on_answer is not None:
            on_answer(state, answer)
