"""Record the event histories the replay tests check: each shipped protocol run through the workflow.

    .venv/bin/python tests/replay/record.py            # re-record every history under tests/replay/histories/

Runs on Temporal's time-skipping server with stand-in activities (the workflow's records are not what
replay checks: only its decisions are). Each scenario touches what the interpreter does: parallel
branches, conditions, repeats until a condition, timers, escalations, hold and resume, a rejection that
repeats earlier steps. Re-record after an intended workflow change that `workflow.patched` does not cover,
and keep the old files when runs of the old code may still be in flight.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from temporalio import activity
from temporalio.client import WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from domain.protocols.compiler import compile_protocol  # noqa: E402
from domain.protocols.forms import normalize_values  # noqa: E402
from domain.protocols.loader import example_protocols  # noqa: E402
from domain.runs.messages import (  # noqa: E402
    ActorRef,
    CompleteTask,
    Completion,
    Control,
    ControlRun,
    DecideApproval,
    Decision,
    Escalate,
    FinishRun,
    OpenStep,
    Outcome,
    RunInput,
    RunRef,
    RunState,
    StepEvent,
    TaskBrief,
)
from workflows.run import WORKFLOW_NAME, ProtocolRun  # noqa: E402

HISTORIES = Path(__file__).resolve().parent / "histories"
ORG = "00000000-0000-0000-0000-00000000000a"
TECH = ActorRef(type="user", id="tech", display="Tariq Technician", user_id="tech", role="technician")
MANAGER = ActorRef(type="user", id="manager", display="Maria Manager", user_id="manager", role="lab_manager")


# ---------------------------------------------------------------- stand-in activities


@activity.defn(name="open_step")
def open_step(msg: OpenStep) -> TaskBrief:
    return TaskBrief(task_id=msg.task_id, step_key=msg.step.key, kind=msg.step.kind, title=msg.step.title,
                     iteration=msg.iteration, due_at=msg.due_at)


@activity.defn(name="complete_task")
def complete_task(msg: CompleteTask) -> Outcome:
    return Outcome(ok=True, task_id=msg.completion.task_id, run_id=msg.run.run_id, step_key=msg.step.key,
                   iteration=msg.iteration, result="completed",
                   values=normalize_values(msg.step, msg.completion.values))


@activity.defn(name="decide_approval")
def decide_approval(msg: DecideApproval) -> Outcome:
    result = "approved" if msg.decision.decision == "approve" else "rejected"
    return Outcome(ok=True, task_id=msg.decision.task_id, run_id=msg.run.run_id, step_key=msg.step.key,
                   iteration=msg.iteration, result=result, signature_id=msg.decision.signature_id)


@activity.defn(name="escalate")
def escalate(msg: Escalate) -> bool:
    return True


@activity.defn(name="record_event")
def record_event(msg: StepEvent) -> bool:
    return True


@activity.defn(name="control_run")
def control_run(msg: ControlRun) -> str:
    return {"hold": "on_hold", "resume": "running", "cancel": "cancelled"}[msg.control.action]


@activity.defn(name="finish_run")
def finish_run(msg: FinishRun) -> str:
    return msg.status


STAND_INS = [open_step, complete_task, decide_approval, escalate, record_event, control_run, finish_run]


# ---------------------------------------------------------------- scenarios: what people submit, in order


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
        "subculture": {"media_batch": "MS-B1", "new_batch": f"ST-{seen + 2}", "vessels": 16, "explants_per_vessel": 5},
        "shoot_count": {"shoots": 150 if seen == 0 else 240, "contaminated_vessels": 1, "growth_room_temp_c": "22.0",
                        "photoperiod_h": 16},
    }[step]


SCENARIOS = {
    # protocol key: (values for a step and how often it was seen, approvals to give in order, hold once, overdue)
    "agrobacterium-transformation": (_agro_values, ["reject", "approve"], True, "inoculation"),
    "fungal-culture-passage": (_fungal_values, ["approve"], False, "growth_check"),
    "plant-tissue-subculture": (_plant_values, ["approve"], True, None),
}


async def drive(env: WorkflowEnvironment, handle: WorkflowHandle, key: str, plan: Any) -> None:
    values_for, decisions, hold_once, let_overdue = SCENARIOS[key]
    seen: dict[str, int] = {}
    while True:
        state: RunState = await handle.query("state", result_type=RunState)
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
            for action in ("hold", "resume"):
                control = Control(action=action, actor=MANAGER, reason=f"{action} for replay")  # type: ignore[arg-type]
                await handle.execute_update(action, control, result_type=RunState)
        if task.step_key == let_overdue and seen.get(task.step_key, 0) == 0:
            await env.sleep(dt.timedelta(days=3))  # every escalation level fires
        n = seen.get(task.step_key, 0)
        seen[task.step_key] = n + 1
        if task.kind == "approval":
            await handle.execute_update("decide", Decision(
                task_id=task.task_id, actor=MANAGER, decision=decisions.pop(0), signature_id=str(uuid.uuid4()),
                content_hash="0" * 64, reason="replay scenario"), result_type=Outcome)
        else:
            node = plan.step(task.step_key)
            await handle.execute_update("complete_task", Completion(
                task_id=task.task_id, actor=TECH, values=values_for(task.step_key, n),
                checklist={item.key: True for item in node.checklist}), result_type=Outcome)


async def record(keys: list[str] | None = None) -> list[Path]:
    HISTORIES.mkdir(exist_ok=True)
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=str(Path(sys.executable).parent / "temporal-test-server"),
        data_converter=pydantic_data_converter)
    written = []
    try:
        async with Worker(env.client, task_queue="replay", workflows=[ProtocolRun], activities=STAND_INS,
                          activity_executor=ThreadPoolExecutor(4)):
            for key, document in example_protocols().items():
                if keys and key not in keys:
                    continue
                plan = compile_protocol(document, 1).plan
                assert plan is not None
                run_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"flasktrack-replay:{key}"))
                inp = RunInput(run=RunRef(org_id=ORG, run_id=run_id, protocol_key=key, protocol_version=1), plan=plan,
                               time_scale=1.0)
                handle = await env.client.start_workflow(WORKFLOW_NAME, inp, id=run_id, task_queue="replay")
                await drive(env, handle, key, plan)
                assert await handle.result() == "completed"
                path = HISTORIES / f"{key}.json"
                path.write_text((await handle.fetch_history()).to_json())
                written.append(path)
    finally:
        await env.shutdown()
    return written


if __name__ == "__main__":
    for p in asyncio.run(record(sys.argv[1:] or None)):
        print(f"recorded {p.relative_to(ROOT)}")
