"""The ``sandbox`` command: an in-memory Omneo tenant served on a local port, with the options
that shape it (its size, its faults, and the variants the API's docs leave open)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

from omneo_status.cli import boundary, console
from omneo_status.cli.boundary import sandbox_missing
from omneo_status.cli.flags import toggle, valued
from omneo_status.errors import ConfigError, UsageError
from omneo_status.settings import SANDBOX_TOKEN

if TYPE_CHECKING:
    from omneo_status.sandbox import Tenant

SANDBOX_EPILOG = (
    "Examples:\n\n  omneo-status sandbox --port 8765 --profiles 1000\n\n"
    "  omneo-status sandbox --rate-limit 100 --rate-window 1 --fail-rate 0.2 --batch-delay 2\n\n"
    "  omneo-status sandbox --profiles 3000 --case-twins 1 --email-match case_sensitive"
)

_VARIANTS = "Variants (what the docs leave open)"

_WILDCARD_HOSTS = {"0.0.0.0": "127.0.0.1", "::": "::1"}  # noqa: S104 (names, not binds)


def _reachable_url(url: str, host: str) -> str:
    """The URL a client on this machine uses: a wildcard address is served on loopback too,
    and only a loopback URL is one the tool accepts over plain http."""
    loopback = _WILDCARD_HOSTS.get(host)
    if loopback is None:
        return url
    shown, replacement = (f"[{host}]", f"[{loopback}]") if ":" in host else (host, loopback)
    return url.replace(f"//{shown}:", f"//{replacement}:", 1)


def _sandbox_tenant(seed: Path | None, profiles: int | None, case_twins: int = 0) -> Tenant:
    """The tenant ``sandbox`` serves: loaded from ``--seed``, generated, or the demo one, with
    ``case_twins`` pairs of case twins added."""
    from omneo_status.sandbox import (
        SeedError,
        add_case_twins,
        demo_tenant,
        generate_tenant,
        load_seed,
    )

    if seed is not None and profiles is not None:
        raise UsageError("Give --seed or --profiles, not both")
    try:
        if seed is not None:
            tenant = load_seed(seed)
        else:
            tenant = generate_tenant(profiles) if profiles is not None else demo_tenant()
    except SeedError as exc:
        raise UsageError(str(exc)) from None
    add_case_twins(tenant, case_twins)
    return tenant


# -- its options, then the command ---------------------------------------------------------

SandboxHostOpt = Annotated[str, valued("--host", help="Address to listen on.")]
SandboxPortOpt = Annotated[int, valued("--port", help="Port (0: any free).", min=0, max=65535)]
SandboxSeedOpt = Annotated[
    Path | None,
    valued(
        "--seed",
        help="Tenant JSON to load (see examples/sandbox-tenant.json).",
        show_default=False,
    ),
]
SandboxProfilesOpt = Annotated[
    int | None,
    valued(
        "--profiles",
        help="Generate a deterministic tenant of N profiles instead.",
        min=0,
        show_default=False,
    ),
]
SandboxCaseTwinsOpt = Annotated[
    int,
    valued(
        "--case-twins",
        help="Add N pairs of profiles whose addresses differ only in case"
        " (Twin0@Example.com and twin0@example.com, ...).",
        min=0,
    ),
]
SandboxTokenOpt = Annotated[str, valued("--token", help="Bearer token the sandbox accepts.")]
SandboxLatencyMsOpt = Annotated[
    float, valued("--latency-ms", help="Added to every request.", min=0)
]
SandboxRateLimitOpt = Annotated[
    int | None,
    valued(
        "--rate-limit",
        help="Requests allowed per window (default: no limit).",
        min=1,
        show_default=False,
    ),
]
SandboxRateWindowOpt = Annotated[
    float, valued("--rate-window", help="Window length in seconds.", min=0.01)
]
SandboxFailRateOpt = Annotated[
    float,
    valued("--fail-rate", help="Share of requests answered 500/502/503.", min=0, max=1),
]
SandboxFaultSeedOpt = Annotated[int, valued("--fault-seed", help="Seed of the fault generator.")]
SandboxBatchDelayOpt = Annotated[
    float, valued("--batch-delay", help="Seconds a batch stays pending.", min=0)
]
SandboxMaxBatchOpt = Annotated[
    int, valued("--max-batch", help="Most profiles in one batch request.", min=1)
]
SandboxNoEmailInFilterOpt = Annotated[
    bool,
    toggle("--no-email-in-filter", help="Ignore filter\\[email]\\[in], like a lenient server."),
]
SandboxNoBatchesOpt = Annotated[
    bool,
    toggle("--no-batches", help="Answer 404 to GET /batches/{id}, like a tenant without it."),
]
SandboxLogOpt = Annotated[
    Path | None,
    valued("--log", help="Write every request as JSON lines.", show_default=False),
]
SandboxBatchAnswerOpt = Annotated[
    str,
    valued(
        "--batch-answer",
        help="Where the batch answer puts batch_id: data (the statuses guide) or top_level"
        " (the sibling batch endpoints).",
        panel=_VARIANTS,
    ),
]
SandboxStringCountsOpt = Annotated[
    bool,
    toggle("--string-counts", help="Send batch counts as strings.", panel=_VARIANTS),
]
SandboxPageStyleOpt = Annotated[
    str,
    valued(
        "--page-style",
        help=r"Pagination honoured: page_array (page\[size]/page\[number]), per_page"
        " (per_page/page) or both.",
        panel=_VARIANTS,
    ),
]
SandboxEmailMatchOpt = Annotated[
    str,
    valued(
        "--email-match",
        help="The email filter: case_insensitive, case_sensitive, or ignored (lists everyone).",
        panel=_VARIANTS,
    ),
]
SandboxNoStatusFilterOpt = Annotated[
    bool,
    toggle(
        "--no-status-filter",
        help=r"Ignore filter\[statuses.handle] (list every profile).",
        panel=_VARIANTS,
    ),
]
SandboxNoItemEntityIdOpt = Annotated[
    bool,
    toggle(
        "--no-item-entity-id",
        help="Leave batch items' entity_id null.",
        panel=_VARIANTS,
    ),
]
SandboxNoRateLimitHeadersOpt = Annotated[
    bool,
    toggle(
        "--no-rate-limit-headers",
        help="Send no X-RateLimit-* headers (only a 429's Retry-After tells).",
        panel=_VARIANTS,
    ),
]
SandboxGroupRuleOpt = Annotated[
    bool,
    toggle(
        "--group-rule",
        help="Assigning a status of a group detaches its siblings.",
        panel=_VARIANTS,
    ),
]


def sandbox(
    host: SandboxHostOpt = "127.0.0.1",
    port: SandboxPortOpt = 8765,
    seed: SandboxSeedOpt = None,
    profiles: SandboxProfilesOpt = None,
    case_twins: SandboxCaseTwinsOpt = 0,
    token: SandboxTokenOpt = (SANDBOX_TOKEN),
    latency_ms: SandboxLatencyMsOpt = 0.0,
    rate_limit: SandboxRateLimitOpt = None,
    rate_window: SandboxRateWindowOpt = 1.0,
    fail_rate: SandboxFailRateOpt = 0.0,
    fault_seed: SandboxFaultSeedOpt = 0,
    batch_delay: SandboxBatchDelayOpt = 0.0,
    max_batch: SandboxMaxBatchOpt = 500,
    no_email_in_filter: SandboxNoEmailInFilterOpt = False,
    no_batches: SandboxNoBatchesOpt = False,
    log: SandboxLogOpt = None,
    batch_answer: SandboxBatchAnswerOpt = "data",
    string_counts: SandboxStringCountsOpt = False,
    page_style: SandboxPageStyleOpt = "page_array",
    email_match: SandboxEmailMatchOpt = "case_insensitive",
    no_status_filter: SandboxNoStatusFilterOpt = False,
    no_item_entity_id: SandboxNoItemEntityIdOpt = False,
    no_rate_limit_headers: SandboxNoRateLimitHeadersOpt = False,
    group_rule: SandboxGroupRuleOpt = False,
) -> None:
    """Serve an in-memory Omneo tenant on a local port, to rehearse runs against."""
    with boundary.guard():
        try:
            from omneo_status.sandbox import SandboxConfig, create_app, serve
        except ImportError:
            raise sandbox_missing() from None
        tenant = _sandbox_tenant(seed, profiles, case_twins)
        try:
            config = SandboxConfig(
                token=token,
                latency_ms=latency_ms,
                rate_limit=rate_limit,
                rate_window=rate_window,
                fail_rate=fail_rate,
                fault_seed=fault_seed,
                batch_delay=batch_delay,
                max_batch=max_batch,
                email_in_filter=not no_email_in_filter,
                batches_endpoint=not no_batches,
                log_path=log,
                batch_answer=batch_answer,  # type: ignore[arg-type]  # checked by SandboxConfig
                string_counts=string_counts,
                page_style=page_style,  # type: ignore[arg-type]
                email_match=email_match,  # type: ignore[arg-type]
                status_filter=not no_status_filter,
                item_entity_id=not no_item_entity_id,
                rate_limit_headers=not no_rate_limit_headers,
                group_rule=group_rule,
            )
        except ValueError as exc:
            raise UsageError(f"Invalid sandbox variant: {exc}") from None
        count = len(tenant.profiles)
        try:
            served = create_app(tenant, config)
        except OSError as exc:
            raise ConfigError(f"Cannot open the log file {log}: {exc.strerror or exc}") from None
        try:
            serve(
                served,
                host=host,
                port=port,
                on_ready=lambda url: console.sandbox_banner(
                    _reachable_url(url, host), token, count, all_interfaces=host in _WILDCARD_HOSTS
                ),
            )
        except OSError as exc:
            raise ConfigError(f"Cannot listen on {host}:{port}: {exc.strerror or exc}") from None
