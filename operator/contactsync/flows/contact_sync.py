"""The `contact-sync` Prefect flow.

Parameters are the ContactSync spec (which holds only *references* to
Secrets) and the object's identity; credentials and keys are read inside the
run from Secret-mounted files. Nothing that carries PII is persisted by
Prefect: results and caching are off, and the flow returns counts only.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from prefect import flow, get_run_logger, task
from prefect.artifacts import Artifact
from prefect.cache_policies import NO_CACHE
from prefect.context import get_run_context

from contactsync.api.spec import ContactSyncSpec
from contactsync.engine.errors import SyncFailedError, failure_code
from contactsync.engine.http import HttpError, TransportError
from contactsync.engine.pipeline import Summary, SyncIdentity, run_sync
from contactsync.engine.secrets import SecretStore
from contactsync.window import in_window

SUMMARY_ARTIFACT = "contactsync-summary"
AUDIT_LOG_ENV = "CONTACTSYNC_AUDIT_LOG"  # a file on a volume; unset: summaries go to the log


def _transient(exc: BaseException) -> bool:
    """Retry what another attempt can fix (network, locks), never a refused run."""
    if isinstance(exc, SyncFailedError):
        return exc.transient
    return isinstance(
        exc, (TransportError, psycopg.OperationalError, ConnectionError, TimeoutError)
    )


def _withheld(exc: Exception) -> SyncFailedError:
    """What Prefect may keep of a failure. Prefect stores a failed run's exception
    (pickled, and formatted into the state message and the log), and a foreign
    error's text can quote record data (a database's DETAIL line, a validation
    error's input). The engine's own errors name settings, counts, statuses and
    redacted locations only, so their text is kept; any other text is withheld."""
    if isinstance(exc, HttpError):
        message = f"{type(exc).__name__}: {exc}"
    else:
        message = f"{type(exc).__name__} (its text is withheld: it may quote record data)"
    return SyncFailedError(failure_code(exc), message, transient=_transient(exc))


@task(
    name="sync",
    retries=2,
    retry_delay_seconds=[10, 60],
    retry_condition_fn=lambda _task, _run, state: _transient(state.result(raise_on_failure=False)),
    persist_result=False,
    cache_policy=NO_CACHE,
)
def sync_task(spec: ContactSyncSpec, identity: SyncIdentity, run_id: str) -> Summary:
    audit = os.environ.get(AUDIT_LOG_ENV)
    try:
        return run_sync(
            spec,
            identity,
            secrets=SecretStore(),
            run_id=run_id,
            audit_path=Path(audit) if audit else None,
        )
    except SyncFailedError:
        raise
    except Exception as exc:  # noqa: BLE001 - every failure leaves, sanitised
        raise _withheld(exc) from None  # `from None`: no chained traceback quotes it either


@flow(name="contact-sync", persist_result=False, log_prints=False)
def contact_sync(spec: dict[str, Any], namespace: str, name: str, uid: str = "") -> dict[str, Any]:
    logger = get_run_logger()
    parsed = ContactSyncSpec.model_validate(spec)
    identity = SyncIdentity(namespace=namespace, name=name, uid=uid)
    if not in_window(parsed.window, datetime.now(UTC)):
        logger.info("outside the sync window; skipped")
        _publish({"skipped": "OutsideWindow"})
        return {"skipped": True, "reason": "OutsideWindow"}
    run_id = str(get_run_context().flow_run.id)  # type: ignore[union-attr]
    try:
        summary = sync_task(parsed, identity, run_id)
    except Exception as exc:
        # The code only (a message may quote a value): the operator turns it into
        # status and the contactsync_last_run_failed metric.
        _publish({"failed": failure_code(exc)})
        raise
    counts = summary.counts() | {"reasons": summary.reasons}
    logger.info("sync summary %s", json.dumps(counts))
    _publish(counts)
    return summary.to_dict()


def _publish(summary: dict[str, Any]) -> None:
    """Counts and codes only, as an artifact: the operator reads it into
    status.lastSync and its metrics."""
    Artifact(
        type="contactsync-summary",
        key=SUMMARY_ARTIFACT,
        data=summary,
        description="ContactSync run counts (no record data)",
    ).create()
