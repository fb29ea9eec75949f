"""cdp_core: the runtime every CDP service stands on.

Modules: settings, logging, telemetry, errors, auth, envelope, bus (JetStream), store
(asyncpg, migrations), outbox, consumer (the DESIGN.md consumer pattern), grpc_server,
service (wires them together), embedded (local NATS/PostgreSQL), testing (pytest plugin).
"""
