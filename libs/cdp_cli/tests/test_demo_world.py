"""`cdp demo` (the world demo) against in-process ingest, identity and profile on real NATS
and PostgreSQL: a tiny simulated world through the HTTP edge, Shopify webhooks and the CSV
import, then the summary."""

from __future__ import annotations

import json
import os

import pytest
from rich.console import Console

from cdp_cli import demo
from cdp_core.testing.stack import Stack


def run(*args: str):
    from click.testing import CliRunner

    from cdp_cli.main import cli

    return CliRunner().invoke(cli, ["demo", *args], catch_exceptions=False)


def test_demo_without_a_token_says_where_tokens_come_from(clean_env):
    r = run()
    assert r.exit_code == 1
    assert "no token" in r.stderr and "cdp dev up" in r.stderr


def test_world_options_do_not_apply_to_the_sample(clean_env):
    r = run("--sample", "--people", "5")
    assert r.exit_code == 2
    assert "--people apply to the world demo" in r.stderr


def test_people_is_at_least_one(clean_env):
    assert run("--people", "0", "--token", "t").exit_code == 2


@pytest.fixture
async def stack(fresh_nats_url, database_server_url, auth_secret, clean_env, monkeypatch):
    from cdp_identity.service import SPEC as IDENTITY
    from cdp_ingest.service import SPEC as INGEST
    from cdp_profile.service import SPEC as PROFILE
    from cdp_segment.service import SPEC as SEGMENT

    s = Stack(fresh_nats_url, database_server_url, auth_secret, "demo_" + os.urandom(4).hex())
    await s.start(INGEST, IDENTITY, PROFILE, SEGMENT)
    for name in ("ingest", "identity", "profile", "segment"):
        monkeypatch.setenv(f"CDP_{name.upper()}_ADDR", s.address(name))
    try:
        yield s
    finally:
        await s.stop()


def options(stack: Stack, nats_url: str) -> demo.WorldOptions:
    return demo.WorldOptions(people=100, days=5, seed=4, nats_url=nats_url, catch_up_timeout=60,
                             http_url=f"http://127.0.0.1:{stack.services['ingest'].settings.http_port}")


@pytest.mark.component
async def test_world_demo_loads_every_path_and_finds_the_sampled_people(stack, fresh_nats_url):
    log = Console(stderr=True, force_terminal=False)
    s = await demo.run_world(stack.token, log, options(stack, fresh_nats_url))

    # every path sent something and ingest accepted it
    assert set(s["paths"]) == {"web", "shopify", "crm", "pos"}
    for name, p in s["paths"].items():
        assert p["sent"] > 0, name
        assert p["accepted"] > 0, name
        assert p["accepted"] + p["rejected"] + p["not_sent"] == p["sent"], name
    assert s["paths"]["web"]["sent"] == s["world"]["segment_calls"]
    assert s["paths"]["shopify"]["sent"] == s["world"]["shopify_webhooks"]
    assert s["paths"]["crm"]["sent"] == s["world"]["crm_contacts"]
    assert s["caught_up"] is True
    assert s["merges"] is not None and s["merges"] >= 0
    assert s["failed_events_pending"]["ingest"] is not None

    # the sampled people have profiles with their traits
    assert 1 <= len(s["profiles"]) <= demo.SHOWN_PEOPLE
    for p in s["profiles"]:
        assert p["profile_id"], p["person_id"]
        assert p["event_count"] > 0
        assert {"type": p["lookup"]["type"], "value": p["lookup"]["value"]} in p["identifiers"]
        assert p["traits"], p["person_id"]
        assert p["truth"]["on_main_profile"] >= 1
    # the person seen through the most channels is known by name (CRM or Shopify traits)
    top = s["profiles"][0]
    if top["channels"] >= 3:
        assert top["traits"].get("firstName") == top["name"].split(" ")[0]

    q = s["identity_quality"]
    assert q["people"] >= len(s["profiles"])
    assert 0 <= q["whole"] <= q["people"]
    assert q["identifiers_on_main_profile"] <= q["identifiers"]

    # the --json shape: one JSON object with these keys
    assert set(s) == {"world", "sources", "paths", "caught_up", "merges", "failed_events_pending", "profiles",
                      "identity_quality", "audiences", "elapsed_s"}
    # the predefined audiences, counted once the segment service caught up; the world ends on
    # the simulator's fixed dates here, so the 30-day purchasers are counted by the wall clock
    import yaml

    from cdp_segment import predefined

    names = {x["name"] for x in yaml.safe_load(predefined.AUDIENCES)["segments"]}
    assert set(s["audiences"]) == names and all(isinstance(n, int) and n >= 0 for n in s["audiences"].values())
    assert s["audiences"]["anonymous-visitors"] > 0
    assert set(s["sources"]) == {"demo-web", "demo-shopify", "demo-crm", "demo-pos"}
    assert json.loads(json.dumps(s)) == s
    demo.print_world_summary(s, Console(file=open(os.devnull, "w"), width=100))  # noqa: SIM115

    # a second run reuses the sources (new keys) and appends nothing new
    again = await demo.run_world(stack.token, log, options(stack, fresh_nats_url))
    assert {k: v["source_id"] for k, v in again["sources"].items()} == {k: v["source_id"] for k, v in
                                                                        s["sources"].items()}
    assert again["merges"] == 0
    assert [p["event_count"] for p in again["profiles"]] == [p["event_count"] for p in s["profiles"]]


def test_the_world_ends_yesterday_unless_a_start_is_given(clean_env, monkeypatch):
    from datetime import UTC, datetime, timedelta

    seen = []

    class Stop(Exception):
        pass

    async def fake_run_world(token, log, opts):
        seen.append(opts)
        raise Stop

    monkeypatch.setattr(demo, "run_world", fake_run_world)
    for args in (["--days", "10"], ["--days", "10", "--start", "2026-01-01"]):
        try:
            run("--token", "t", *args)
        except Stop:
            pass
    today = datetime.now(UTC).date()
    assert [o.start for o in seen] == [(today - timedelta(days=10)).isoformat(), "2026-01-01"]
    assert all(o.days == 10 for o in seen)
    r = run("--sample", "--start", "2026-01-01")
    assert r.exit_code == 2 and "--start apply to the world demo" in r.stderr
