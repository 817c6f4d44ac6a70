"""TEMPORARY SHIM (core helper replaces it): start, resume and undo journaled runs.

The signatures here are the contract the CLI codes against.
"""

from __future__ import annotations

from pathlib import Path

from omneo_status import job as _old
from omneo_status import run as _run
from omneo_status.job import JobContext
from omneo_status.options import JobSpec, RunOptions
from omneo_status.source import PreparedInput
from omneo_status.summary import RunSummary, RunView


def _legacy(options: RunOptions, spec: JobSpec | None = None) -> _run.RunOptions:
    from omneo_status.models import Action

    return _run.RunOptions(
        action=spec.action if spec else Action.ASSIGN,
        handles=spec.handles if spec else (),
        dry_run=options.dry_run,
        chunk_size=options.chunk_size,
        verify=options.verify,
        poll_timeout=options.poll_timeout,
        stall_timeout=options.stall_timeout,
        no_wait=options.no_wait,
        strict=options.strict,
        max_unmatched=options.max_unmatched,
        lookup=_run.LookupMode(options.lookup.value),
        concurrency=options.concurrency,
    )


async def run_job(
    ctx: JobContext,
    spec: JobSpec,
    options: RunOptions,
    source: PreparedInput,
    *,
    report: Path | None = None,
    fresh: bool = False,
) -> RunSummary:
    """Run ``spec`` over a prepared input, resuming the same job if it is pending."""
    return await _old.run_job(ctx, _legacy(options, spec), source, report=report, fresh=fresh)


async def resume_job(
    ctx: JobContext, run_id: str, options: RunOptions, *, report: Path | None = None
) -> RunSummary:
    """Continue a run by id (or unique prefix), with the rows its journal holds."""
    return await _old.resume_job(ctx, run_id, _legacy(options), report=report)


async def undo_job(
    ctx: JobContext, run_id: str, options: RunOptions, *, report: Path | None = None
) -> RunSummary:
    """Reverse exactly what a run changed."""
    return await _old.undo_job(ctx, run_id, _legacy(options), report=report)


def recent_runs(state_dir: Path, limit: int) -> list[RunView]:
    """The newest runs first, as ``runs`` shows them."""
    journal = _old.open_journal(state_dir)
    try:
        found = journal.runs(limit)
        return [
            RunView(
                run_id=info.run_id,
                created_at=info.created_at,
                updated_at=info.updated_at,
                action=info.action.value,
                handles=info.handles,
                dry_run=info.dry_run,
                input_name=info.input_name,
                base_url=info.base_url,
                state=_old.shown_state(state_dir, info),
                rows=info.rows,
                counts={k: v for k, v in journal.counts(info.run_id).items() if k},
                report=info.report,
                undo_of=info.undo_of,
            )
            for info in found
        ]
    finally:
        journal.close()


def prune_runs(state_dir: Path, older_than_days: int) -> int:
    """Forget finished runs and dry runs older than that many days; returns how many."""
    journal = _old.open_journal(state_dir)
    try:
        return journal.prune(older_than_days=older_than_days)
    finally:
        journal.close()


__all__ = [
    "JobContext",
    "PreparedInput",
    "RunSummary",
    "prune_runs",
    "recent_runs",
    "resume_job",
    "run_job",
    "undo_job",
]
