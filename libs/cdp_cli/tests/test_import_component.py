"""`cdp source`, `cdp import`, `cdp tracking-plan` and `cdp failed` against a real ingest
service (in-process, real NATS and PostgreSQL), run as an operator runs them: the CLI as a
subprocess with CDP_INGEST_ADDR and CDP_TOKEN."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
from pathlib import Path

import nats
import pytest

from cdp_core.testing.stack import Stack

pytestmark = pytest.mark.component
FIXTURES = Path(__file__).parent / "fixtures"


def cdp_command() -> list[str]:
    script = Path(sys.executable).parent / "cdp"
    return [str(script)] if script.exists() else [sys.executable, "-m", "cdp_cli.main"]


@pytest.fixture
async def ingest(fresh_nats_url, database_server_url, auth_secret):
    from cdp_ingest.service import SPEC as INGEST

    s = Stack(fresh_nats_url, database_server_url, auth_secret, "cli_" + os.urandom(4).hex())
    await s.start(INGEST)
    try:
        yield s
    finally:
        await s.stop()


async def stream_messages(nats_url: str) -> int:
    nc = await nats.connect(nats_url)
    try:
        return (await nc.jetstream().stream_info("CDP_INGEST")).state.messages
    finally:
        await nc.close()


async def test_sources_imports_and_failed_events(ingest, fresh_nats_url, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDP_")}
    env.update(CDP_INGEST_ADDR=ingest.address("ingest"), CDP_TOKEN=ingest.token)

    async def cdp(*args: str, ok: bool = True) -> tuple[int, str, str]:
        # a subprocess, awaited without blocking the loop the in-process service runs on
        p = await asyncio.create_subprocess_exec(*cdp_command(), *args, cwd=tmp_path, env=env,
                                                 stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(p.communicate(), 60)
        if ok:
            assert p.returncode == 0, f"cdp {' '.join(args)}: {err.decode()}"
        return p.returncode, out.decode(), err.decode()

    async def cdp_json(*args: str) -> dict:
        return json.loads((await cdp(*args, "--json"))[1])

    # Independent commands run side by side (each is a process that spends most of its time
    # starting Python); the ones that depend on an earlier one run after it.
    kinds = (("crm", "crm"), ("pos", "pos"), ("web", "server"))
    *created_all, (_, plain_key, _) = await asyncio.gather(
        *(cdp_json("source", "create", name, "--kind", kind) for name, kind in kinds),
        cdp("source", "create", "shop", "--kind", "shopify", "--webhook-secret", "s3cret"))
    keys = {}
    for (name, _kind), created in zip(kinds, created_all, strict=True):
        assert created["name"] == name and created["write_key"].startswith("wk_")
        keys[name] = created["write_key"]
    assert plain_key.strip().startswith("wk_")
    listed = await cdp_json("source", "list")
    assert [s["name"] for s in listed["sources"]] == ["crm", "pos", "shop", "web"]
    assert all("write_key" not in s for s in listed["sources"])

    for f in ("crm_contacts.csv", "crm_contacts.yaml", "pos_transactions.csv", "pos_transactions.yaml", "events.jsonl"):
        shutil.copy(FIXTURES / f, tmp_path / f)
    imports = [
        ("import", "csv", "--source", "crm", "--map", "crm_contacts.yaml", "crm_contacts.csv", "--write-key", keys["crm"]),
        ("import", "csv", "--source", "pos", "--map", "pos_transactions.yaml", "pos_transactions.csv",
         "--write-key", keys["pos"]),
        ("import", "events", "events.jsonl", "--source", "web", "--write-key", keys["web"]),
    ]
    expected = [(4, 4, 0, 0), (4, 1, 1, 1), (7, 5, 1, 1)]
    for args, exp in zip(imports, expected, strict=True):  # in turn: the first rejection, shown below, is pos's
        s = await cdp_json(*args)
        assert (s["rows"], s["accepted"], s["rejected"], s["skipped"]) == exp, s
    assert await stream_messages(fresh_nats_url) == 10

    # the same files again: ingest takes them, and the log of record gains nothing
    for s, exp in zip(await asyncio.gather(*(cdp_json(*args) for args in imports)), expected, strict=True):
        assert (s["accepted"], s["rejected"]) == exp[1:3]
    assert await stream_messages(fresh_nats_url) == 10
    assert not list((tmp_path / ".cdp" / "imports").glob("*.json"))

    failed = await cdp_json("failed", "list")
    rejected = [e for e in failed["events"] if e["consumer"] == "ingest.import"]
    assert len(rejected) == 4 and failed["service"] == "ingest"
    assert all("either userId or anonymousId is required" in e["reason"] for e in rejected)
    shown = await cdp_json("failed", "show", str(rejected[-1]["id"]))
    assert shown["data"]["type"] == "track" and shown["data"]["properties"]["order_id"] == "R-5002"

    # tracking plans: apply, get (YAML that apply reads back), violations
    (tmp_path / "plan.yaml").write_text(
        "mode: block\nunplanned_events: allow\n"
        "events:\n  Product Viewed:\n    type: object\n    required: [product_id]\n")
    await cdp("tracking-plan", "apply", "--source", "web", "-f", "plan.yaml")
    plan, (_, yaml_text, _) = await asyncio.gather(cdp_json("tracking-plan", "get", "--source", "web"),
                                                   cdp("tracking-plan", "get", "--source", "web"))
    assert plan["mode"] == "block" and plan["events"]["Product Viewed"]["required"] == ["product_id"]
    (tmp_path / "again.yaml").write_text(yaml_text)
    await cdp("tracking-plan", "apply", "--source", "web", "-f", "again.yaml")
    (tmp_path / "bad.jsonl").write_text(json.dumps({"type": "track", "userId": "u-9", "event": "Product Viewed",
                                                    "properties": {"price": 1}}) + "\n")
    s = await cdp_json("import", "events", "bad.jsonl", "--source", "web", "--write-key", keys["web"])
    assert s["rejected"] == 1 and "product_id" in s["rejections"][0]["error"]

    async def violations():
        v = await cdp_json("tracking-plan", "violations", "--source", "web")
        return v["violations"]

    from cdp_core.testing import eventually

    v = await eventually(violations, timeout=10)
    assert v[0]["event"] == "Product Viewed" and v[0]["action"] == "block"

    # a disabled source refuses imports; rotate gives a new key, the old one stops working
    async def disabled_pos():
        await cdp("source", "disable", "pos")
        code, _, err = await cdp(*imports[1], ok=False)
        assert code == 1 and "disabled" in err
        await cdp("source", "enable", "pos")

    async def rotated_crm():
        rotated = await cdp_json("source", "rotate", "crm")
        assert rotated["write_key"] != keys["crm"]
        code, _, err = await cdp(*imports[0], ok=False)
        assert code == 1

    async def unknown_source():
        code, _, err = await cdp("source", "disable", "nope", ok=False)
        assert code == 1 and "no source named 'nope'" in err

    await asyncio.gather(disabled_pos(), rotated_crm(), unknown_source())
