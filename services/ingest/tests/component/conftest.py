"""Ingest component fixtures: one in-process ingest (its own database, NATS server, free
gRPC and HTTP ports) and stubs for its gRPC services."""

from __future__ import annotations

import os

import pytest

from cdp.common.v1 import failed_pb2_grpc
from cdp.ingest.v1 import ingest_pb2_grpc
from cdp_core.testing.stack import Stack
from cdp_ingest.service import SPEC as INGEST


@pytest.fixture
async def stack(fresh_nats_url, database_server_url, auth_secret):
    st = Stack(fresh_nats_url, database_server_url, auth_secret, "ing_" + os.urandom(4).hex())
    await st.start(INGEST)
    try:
        yield st
    finally:
        await st.stop()


@pytest.fixture
async def ingest(stack):
    return ingest_pb2_grpc.IngestServiceStub(stack.channel("ingest"))


@pytest.fixture
async def sources(stack):
    return ingest_pb2_grpc.SourceServiceStub(stack.channel("ingest"))


@pytest.fixture
async def failed(stack):
    return failed_pb2_grpc.FailedEventServiceStub(stack.channel("ingest"))
