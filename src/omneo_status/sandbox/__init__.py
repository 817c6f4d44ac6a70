"""An in-memory Omneo CX v3 tenant served as an ASGI app, for tests, demos and benchmarks.

It encodes the API on its own and imports nothing from the rest of ``omneo_status``.
Reach it in-process with ``httpx.ASGITransport(app=create_app(tenant))`` or on a socket
with :func:`serve` / :class:`ServerThread`.
"""

from omneo_status.sandbox.app import SandboxConfig, create_app
from omneo_status.sandbox.seed import (
    SeedError,
    add_case_twins,
    demo_tenant,
    generate_tenant,
    load_seed,
    tenant_from_seed,
)
from omneo_status.sandbox.server import ServerThread, serve
from omneo_status.sandbox.state import RecordedRequest, SandboxProfile, StatusDefinition, Tenant

__all__ = [
    "RecordedRequest",
    "SandboxConfig",
    "SandboxProfile",
    "SeedError",
    "ServerThread",
    "StatusDefinition",
    "Tenant",
    "add_case_twins",
    "create_app",
    "demo_tenant",
    "generate_tenant",
    "load_seed",
    "serve",
    "tenant_from_seed",
]
