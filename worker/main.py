"""`flasktrack worker`: serves the protocol run workflow and its activities on the task queue, and runs the
audit sealer and a heartbeat beside them. Wiring only: the behaviour lives in workflows/ and activities/.
"""

from __future__ import annotations

import asyncio
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import structlog
from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Worker

from activities.events import EventActivities
from activities.runs import RunActivities
from core import metrics
from core.config import Settings
from core.db import TenantSessions, app_url, make_engine
from core.heartbeat import start_heartbeat
from core.mail import sender_from
from domain.audit.checkpoints import CheckpointStore, SigningKey, load_signing_key
from domain.audit.sealer import Sealer
from domain.events.messages import WatchInput
from workflows import ProtocolRun
from workflows.event import ComplianceEvent, ComplianceWatch

log = structlog.get_logger("flasktrack.worker")

# Activities are short database transactions. Few threads: more only contend for the GIL with the workflow
# activations (measured: 8 threads complete more steps per second than 32).
ACTIVITY_THREADS = 8


def temporal_address(settings: Settings) -> str:
    return settings.temporal_address or f"127.0.0.1:{settings.temporal_port}"


async def connect(settings: Settings, stop: asyncio.Event) -> Client | None:
    """Connect to Temporal, retrying until it answers (it may start after us); None if stopped first."""
    address = temporal_address(settings)
    delay = 0.5
    while not stop.is_set():
        try:
            return await Client.connect(address, namespace=settings.temporal_namespace,
                                        data_converter=pydantic_data_converter)
        except Exception as exc:  # noqa: BLE001 - any connection failure: wait and retry
            log.warning("temporal not reachable; retrying", address=address, error=str(exc)[:200])
            try:
                await asyncio.wait_for(stop.wait(), delay)
            except TimeoutError:
                delay = min(delay * 2, 5.0)
    return None


def signing_key(settings: Settings) -> SigningKey | None:
    """The checkpoint key, tolerating the API creating it at the same moment."""
    path = settings.resolved_signing_key_path
    for _ in range(20):
        try:
            return load_signing_key(path, settings.signing_key)
        except (FileExistsError, ValueError):
            time.sleep(0.1)
    log.warning("checkpoint key unreadable; this worker seals without signing checkpoints", path=str(path))
    return None


async def start_watch(client: Client, settings: Settings) -> None:
    """The compliance watch (workflows/event.py): one per task queue, started by whichever worker comes first."""
    try:
        await client.start_workflow(
            ComplianceWatch.run, WatchInput(every_seconds=settings.alert_scan_interval_s),
            id=f"compliance-watch-{settings.task_queue}", task_queue=settings.task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING)
    except Exception as exc:  # noqa: BLE001 - the worker serves without it; logged
        log.warning("compliance watch not started", error=str(exc)[:200])


async def serve(settings: Settings, stop: asyncio.Event) -> None:
    sessions = TenantSessions(make_engine(app_url(settings), pool_size=ACTIVITY_THREADS))
    sealer = Sealer(sessions, interval_s=settings.seal_interval_s,
                    signing_key=signing_key(settings),
                    store=CheckpointStore(settings.resolved_checkpoint_dir),
                    checkpoint_interval_s=settings.checkpoint_interval_s).start()
    beats = start_heartbeat(sessions, "worker", alive_dir=settings.alive_dir)
    metrics.serve(settings.metrics_host, settings.worker_metrics_port)
    try:
        client = await connect(settings, stop)
        if client is None:
            return
        event_activities = EventActivities(sessions, client=client, task_queue=settings.task_queue,
                                           mail=sender_from(settings), horizon_days=settings.alert_horizon_days)
        with ThreadPoolExecutor(max_workers=ACTIVITY_THREADS, thread_name_prefix="activity") as pool:
            worker = Worker(client, task_queue=settings.task_queue,
                            workflows=[ProtocolRun, ComplianceEvent, ComplianceWatch],
                            activities=[*RunActivities(sessions).all(), *event_activities.all()],
                            activity_executor=pool, max_concurrent_activities=ACTIVITY_THREADS,
                            max_concurrent_local_activities=ACTIVITY_THREADS)
            log.info("worker serving", task_queue=settings.task_queue, temporal=temporal_address(settings))
            async with worker:
                await start_watch(client, settings)
                await stop.wait()
    finally:
        beats.set()
        sealer.stop()
        sessions.engine.dispose()
        log.info("worker stopped")


def run_worker(settings: Settings) -> None:
    """Serve until SIGTERM or SIGINT; in-flight activities finish first."""

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await serve(settings, stop)

    asyncio.run(main())
