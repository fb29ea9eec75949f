"""The CRM export, the ground truth and the files written into --out DIR."""

from __future__ import annotations

import csv
import os
from datetime import timedelta
from pathlib import Path

import orjson

from . import data, shopify
from .engine import DAY, HOUR, Engine
from .world import CHANNELS

SEGMENT_FILE = "events.jsonl"
CRM_FILE = "crm_contacts.csv"
POS_FILE = "pos_transactions.csv"
TRUTH_FILE = "truth.jsonl"
TRUTH_EVENTS_FILE = "truth_events.csv"
MANIFEST_FILE = "manifest.json"
SHOPIFY_DIR = "shopify"

CRM_COLUMNS = ["crm_id", "first_name", "last_name", "second_last_name", "email", "phone", "birth_date", "gender",
               "street", "postcode", "city", "country", "loyalty_id", "company", "email_opt_in", "sms_opt_in",
               "whatsapp_opt_in", "source", "created_at", "updated_at"]
POS_COLUMNS = ["receipt_id", "store_id", "store_city", "purchased_at", "loyalty_id", "customer_first_name",
               "customer_last_name", "customer_postcode", "customer_email", "customer_phone", "payment_method",
               "currency", "receipt_total", "line_number", "sku", "product_id", "product_name", "category", "quantity",
               "unit_price", "line_discount", "line_total", "coupon"]
BANDS = ["budget", "mid", "premium"]


def shopify_file(topic: str) -> str:
    return f"{SHOPIFY_DIR}/{topic.replace('/', '_')}.jsonl"


def crm_rows(eng: Engine) -> list[dict]:
    """The CRM as exported at the cutoff: one row per contact (a few people have two)."""
    r, pop, cutoff = eng.r, eng.pop, eng.cfg.days * DAY
    rows = []
    for p in eng.people:
        if not p.crm_ids or p.crm_created is None or p.crm_created >= cutoff:
            continue
        i = p.i
        acc = eng.p_account[i]
        for k, crm_id in enumerate(p.crm_ids):
            eng.reg(p, "crm_id", crm_id)
            dup = k > 0
            first, last = pop.first[i], pop.last[i]
            if dup or r.random() < 0.05:
                first, last = eng.typo_name(first), eng.typo_name(last)
            x = r.random()
            if x < 0.04:
                email = r.choice(data.PLACEHOLDER_EMAILS)  # "the customer had no e-mail"
                eng.placeholders.add(("email", email))
                eng.reg(p, "email", email, placeholder=True)
            elif x < 0.09:
                email = ""
            elif dup and p.email != p.personal_email and r.random() < 0.5:
                email = p.personal_email
                eng.reg(p, "email", email)
            else:
                email = eng.fmt_email(p)
            phone = eng.fmt_phone(p) if r.random() < 0.8 else ""
            created = p.crm_created + (k * r.randint(30, 400) * DAY if dup else 0)
            if created >= cutoff:
                created = cutoff - HOUR
            updated = max(created, max(p.consent_changed.values(), default=created))
            loyalty = eng.reg(p, "loyalty_id", p.loyalty_id) if p.loyalty_id and (not dup or r.random() < 0.5) else ""
            rows.append({
                "crm_id": crm_id,
                "first_name": first,
                "last_name": last,
                "second_last_name": pop.last2[i] if r.random() < 0.7 else "",
                "email": email,
                "phone": phone,
                "birth_date": pop.birth[i] if r.random() < 0.7 else "",
                "gender": ("M" if pop.gender[i] else "F") if r.random() < 0.8 else "",
                "street": pop.street[i],
                "postcode": eng.typo_postcode(pop.postcode[i]) if dup else pop.postcode[i],
                "city": data.CITIES[eng.p_city[i]][0],
                "country": "ES",
                "loyalty_id": loyalty,
                "company": _company(acc) if acc >= 0 else "",
                "email_opt_in": "true" if eng.consent[i, 0] else "false",
                "sms_opt_in": "true" if eng.consent[i, 1] else "false",
                "whatsapp_opt_in": "true" if eng.consent[i, 2] else "false",
                "source": "loyalty" if p.loyalty_id else ("web" if p.user_id else "store"),
                "created_at": eng.local_iso(created, " ", False),
                "updated_at": eng.local_iso(updated, " ", False),
            })
            p.records["crm_ids"].append(crm_id)
    rows.sort(key=lambda row: row["crm_id"])
    return rows


def _company(a: int) -> str:
    name, _ = data.COMPANIES[a % len(data.COMPANIES)]
    return name if a < len(data.COMPANIES) else f"{name} {a // len(data.COMPANIES) + 1}"


def truth_records(eng: Engine) -> list[dict]:
    cfg, pop = eng.cfg, eng.pop
    start = cfg.start_date
    cutoff_day, end_day = cfg.days, cfg.days + cfg.horizon

    def day_iso(d: int) -> str:
        return (start + timedelta(days=int(d))).isoformat()

    out = []
    for p in eng.people:
        i = p.i
        idents = []
        for (t, v), flags in p.ids.items():
            e = {"type": t, "value": v}
            owners = eng.owners[(t, v)]
            if (t, v) in eng.placeholders:
                e["placeholder"] = True
                e["shared"] = True
            elif len(owners) > 1:
                e["shared"] = True
                e["shared_with"] = sorted(eng.people[o].pid for o in owners if o != i)
            if flags.get("variant_of"):
                e["variant_of"] = flags["variant_of"]
            idents.append(e)
        join, churn = int(pop.join_day[i]), int(pop.churn_day[i])
        alive_at_cutoff = join < cutoff_day <= churn
        nps = float(pop.nps_mean[i])
        acc = int(pop.account[i])
        out.append({
            "person_id": p.pid,
            "household_id": f"h{int(pop.household[i]):07d}",
            "account_id": f"acct_{acc:05d}" if acc >= 0 else None,
            "profile": {
                "first_name": pop.first[i], "last_name": pop.last[i], "second_last_name": pop.last2[i],
                "gender": "M" if pop.gender[i] else "F", "birth_date": pop.birth[i], "email": p.email,
                "personal_email": p.personal_email, "phone": p.phone, "street": pop.street[i],
                "postcode": pop.postcode[i], "city": data.CITIES[eng.p_city[i]][0],
                "latitude": float(pop.lat[i]), "longitude": float(pop.lon[i]),
                "home_store_id": eng.stores[eng.p_store[i]].store_id, "user_id": p.user_id,
                "loyalty_id": p.loyalty_id,
            },
            "identifiers": idents,
            "records": {k: list(p.records.get(k, [])) for k in (
                "crm_ids", "pos_receipt_ids", "shopify_customer_ids", "shopify_order_ids",
                "shopify_checkout_tokens", "shopify_refund_ids", "nps_response_ids")},
            "traits": {
                "activity_rate": round(float(pop.activity[i]), 5),
                "conversion": round(float(pop.conversion[i]), 4),
                "purchase_rhythm_days": round(float(pop.rhythm[i]), 1),
                "churn_hazard": round(float(pop.churn_hazard[i]), 5),
                "price_sensitivity": round(float(pop.price_sensitivity[i]), 4),
                "preferred_categories": [data.CATEGORIES[c][0] for c in eng.p_cat[i]],
                "preferred_colours": [data.COLOURS[c] for c in eng.p_colour[i]],
                "preferred_size": pop.pref_size[i],
                "preferred_price_band": BANDS[eng.p_band[i]],
                "preferred_brands": [data.BRANDS[b] for b in eng.p_brand[i]],
                "preferred_channel": CHANNELS[eng.p_channel[i]],
                "preferred_hour": eng.p_hour[i],
                "app_user": bool(pop.has_app[i]),
                "app_share": round(float(pop.app_share[i]), 3),
                "store_visit_rate": round(float(pop.store_rate[i]), 5),
                "loyalty_member": bool(pop.loyalty[i]),
                "browser_only": bool(pop.browser_only[i]),
                "consent_start": {c: bool(pop.consent[i, k]) for k, c in enumerate(CHANNELS)},
                "nps_mean": round(nps, 2),
                "nps_disposition": "promoter" if nps >= 8.5 else "passive" if nps >= 6.5 else "detractor",
                "join_date": day_iso(join),
                "churn_date": day_iso(churn) if churn < end_day else None,
            },
            "observed": {
                "events": p.n_events,
                "orders": p.orders,
                "revenue": round(p.revenue, 2),
                "first_seen": eng.iso(p.first_seen) if p.first_seen is not None else None,
                "last_seen": eng.iso(p.last_seen) if p.last_seen is not None else None,
                "consent_end": {c: bool(eng.consent[i, k]) for k, c in enumerate(CHANNELS)},
            },
            "outcomes": {
                "window_start": day_iso(cutoff_day),
                "window_end": day_iso(end_day),
                "purchased": p.future_orders > 0,
                "orders": p.future_orders,
                "revenue": round(p.future_revenue, 2),
                "alive_at_cutoff": alive_at_cutoff,
                "churned": churn < end_day,
                "churned_in_window": alive_at_cutoff and churn < end_day,
            },
        })
    return out


class Writer:
    """Writes a run into a directory; every file is in a stable order, so a seed gives the same bytes."""

    def __init__(self, out_dir: str | os.PathLike):
        self.dir = Path(out_dir)
        (self.dir / SHOPIFY_DIR).mkdir(parents=True, exist_ok=True)
        self.segment = open(self.dir / SEGMENT_FILE, "wb", buffering=1 << 20)
        self.owners = open(self.dir / TRUTH_EVENTS_FILE, "w", encoding="utf-8", newline="", buffering=1 << 20)
        self.owners.write("message_id,person_id\n")
        self.hooks = {t: open(self.dir / shopify_file(t), "wb", buffering=1 << 18) for t in shopify.TOPICS}
        self.pos_f = open(self.dir / POS_FILE, "w", encoding="utf-8", newline="", buffering=1 << 20)
        self.pos = csv.DictWriter(self.pos_f, POS_COLUMNS, lineterminator="\n")
        self.pos.writeheader()
        self.lines: dict[str, int] = {}

    def day(self, eng: Engine, out) -> None:
        dumps, nl = orjson.dumps, orjson.OPT_APPEND_NEWLINE
        pids = eng.people
        seg = out.segment
        if seg and isinstance(seg[0][2], bytes):
            self.segment.write(b"".join([item[2] for item in seg]))
        else:
            self.segment.write(b"".join([dumps(item[2], option=nl) for item in seg]))
        self.owners.write("".join([f"{item[4]},{pids[item[3]].pid}\n" for item in seg]))
        for item in out.webhooks:
            d = item[2]
            self.hooks[d["topic"]].write(dumps(d, option=nl))
        self.pos.writerows([item[2] for item in out.pos])

    def finish(self, crm: list[dict], truth: list[dict], manifest_base: dict, counts: dict) -> dict:
        for f in (self.segment, self.owners, self.pos_f, *self.hooks.values()):
            f.close()
        with open(self.dir / CRM_FILE, "w", encoding="utf-8", newline="") as f:
            w = csv.DictWriter(f, CRM_COLUMNS, lineterminator="\n")
            w.writeheader()
            w.writerows(crm)
        with open(self.dir / TRUTH_FILE, "wb") as f:
            f.write(b"".join(orjson.dumps(t, option=orjson.OPT_APPEND_NEWLINE) for t in truth))
        manifest = {**manifest_base, "counts": counts}
        with open(self.dir / MANIFEST_FILE, "wb") as f:
            f.write(orjson.dumps(manifest, option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE))
        return manifest
