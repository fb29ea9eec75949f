"""Behaviour over the days: sessions, purchases, campaigns, stores, webhooks, CRM.

The engine walks the days in order. Each day it draws, vectorised over everyone, how many
web/app sessions and store visits each person has (activity x weekday x season x alive),
then renders each person's sessions into Segment messages, Shopify webhooks and POS lines.
A day's output is sorted by timestamp before it is handed on, so every output file is in
time order. Days after the cutoff (the horizon) use the same activity, purchase and churn
model but emit nothing: they only feed the outcomes of the ground truth.

All randomness comes from the seed (numpy Generator + random.Random streams derived from it);
time comes from the configured start date, never the wall clock.
"""

from __future__ import annotations

import bisect
import math
import random
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, timedelta

import numpy as np
import orjson

from . import data, shopify
from .world import CHANNELS, Catalogue, Population, SimConfig, Store, slug, strip_accents

_dumps = orjson.dumps
_NL = orjson.OPT_APPEND_NEWLINE

DAY = 86_400_000
HOUR = 3_600_000
MIN = 60_000

WEB_WEEKDAY = [1.10, 1.00, 0.97, 0.95, 0.88, 0.82, 1.28]  # Mon..Sun
STORE_WEEKDAY = [0.85, 0.85, 0.9, 0.95, 1.15, 1.9, 0.08]  # Spanish stores mostly close on Sundays
WEB_HOURS = [1.6, 0.9, 0.5, 0.3, 0.2, 0.3, 0.7, 1.4, 2.4, 3.2, 3.8, 4.2, 4.8, 5.0, 4.4, 3.8, 4.0, 4.6,
             5.4, 6.4, 7.4, 8.0, 7.0, 4.0]
STORE_HOURS = [0] * 10 + [3, 5, 7, 6, 3, 2, 3, 5, 8, 8, 6, 3, 0, 0]  # 10:00-21:59 local
COUPONS = [("BIENVENIDA10", 0.10), ("REBAJAS15", 0.15), ("VIP20", 0.20), ("FINDE10", 0.10)]
PLACEHOLDER_AD_ID = "00000000-0000-0000-0000-000000000000"
WEB_LIB = {"name": "analytics.js", "version": "next-1.70.0"}
IOS_LIB = {"name": "analytics-swift", "version": "1.6.1"}
ANDROID_LIB = {"name": "analytics-kotlin", "version": "1.16.3"}
SERVER_LIB = {"name": "analytics-node", "version": "2.2.0"}
APP = {"name": "Moda", "version": "4.12.0", "build": "41200", "namespace": "es.modasim.app"}
CAMPAIGN_SCHEDULE = {  # weekday -> [(channel, local hour)]
    1: [("email", 9)], 4: [("email", 9)], 3: [("sms", 17)], 0: [("push", 18)], 2: [("push", 18)],
    5: [("push", 11)], 6: [("whatsapp", 11)],
}
OPEN_RATE = {"email": 0.22, "sms": 0.0, "whatsapp": 0.55, "push": 0.0}
CLICK_RATE = {"email": 0.12, "sms": 0.05, "whatsapp": 0.10, "push": 0.06}
UNSUB_RATE = {"email": 0.004, "sms": 0.006, "whatsapp": 0.005, "push": 0.003}
EVENT_NAMES = {
    "email": ("Email Delivered", "Email Opened", "Email Link Clicked", "Email Unsubscribed", "Email Bounced"),
    "sms": ("SMS Delivered", None, "SMS Link Clicked", "SMS Unsubscribed", "SMS Bounced"),
    "whatsapp": ("WhatsApp Delivered", "WhatsApp Opened", "WhatsApp Link Clicked", "WhatsApp Unsubscribed",
                 "WhatsApp Bounced"),
    "push": ("Push Notification Received", None, "Push Notification Tapped", "Push Unsubscribed",
             "Push Notification Bounced"),
}


def madrid_offset_h(d: date) -> int:
    """UTC offset of Europe/Madrid at local midnight of `d` (EU rule: last Sundays of March/October)."""

    def last_sunday(y: int, m: int) -> date:
        nxt = date(y + (m == 12), m % 12 + 1, 1)
        last = nxt - timedelta(days=1)
        return last - timedelta(days=(last.weekday() + 1) % 7)

    return 2 if last_sunday(d.year, 3) < d <= last_sunday(d.year, 10) else 1


def normalize_phone(raw: str) -> str:
    """A Spanish phone in any of the formats the simulator writes, to E.164."""
    digits = "".join(c for c in raw if c.isdigit())
    if digits.startswith("0034"):
        digits = digits[4:]
    elif len(digits) == 11 and digits.startswith("34"):
        digits = digits[2:]
    return "+34" + digits


def normalize_email(raw: str) -> str:
    return raw.strip().lower()


class Browser:
    __slots__ = ("anon", "ctx", "user_id", "kind", "shared", "ip")

    def __init__(self, anon: str, ctx: dict, kind: str, shared: bool, ip: str):
        self.anon, self.ctx, self.kind, self.shared, self.ip = anon, ctx, kind, shared, ip
        self.user_id: str | None = None


class AppInstall:
    __slots__ = ("anon", "device_id", "ad_id", "token", "ctx", "user_id", "shared", "installed", "os")

    def __init__(self, anon: str, device_id: str, ad_id: str, ctx: dict, shared: bool, os: str):
        self.anon, self.device_id, self.ad_id, self.ctx, self.shared, self.os = anon, device_id, ad_id, ctx, shared, os
        self.token: str | None = None
        self.user_id: str | None = None
        self.installed = False


class Person:
    __slots__ = ("i", "pid", "user_id", "email", "personal_email", "phone", "browsers", "app", "loyalty_id",
                 "crm_ids", "shopify_id", "shopify_created", "consent", "orders", "revenue", "last_order_day",
                 "cart", "cart_id", "ids", "records", "n_events", "signup_ts", "crm_created", "future_orders",
                 "future_revenue", "esp_anon", "location_ok", "first_seen", "last_seen", "consent_changed",
                 "household_tablet", "pool")

    def __init__(self, i: int):
        self.i = i
        self.pid = f"p{i:07d}"
        self.user_id: str | None = None
        self.browsers: list[Browser] = []
        self.app: AppInstall | None = None
        self.loyalty_id: str | None = None
        self.crm_ids: list[str] = []
        self.shopify_id: int | None = None
        self.shopify_created: str | None = None
        self.orders = 0
        self.revenue = 0.0
        self.last_order_day: int | None = None
        self.cart: list[tuple[int, int]] = []
        self.cart_id: str | None = None
        self.ids: dict[tuple[str, str], dict] = {}
        self.records: dict[str, list] = defaultdict(list)
        self.n_events = 0
        self.signup_ts: int | None = None
        self.crm_created: int | None = None
        self.future_orders = 0
        self.future_revenue = 0.0
        self.esp_anon: str | None = None
        self.first_seen: int | None = None
        self.last_seen: int | None = None
        self.consent_changed: dict[str, int] = {}
        self.household_tablet: tuple | None = None
        self.pool: list[int] | None = None


@dataclass
class DayOutput:
    day: int
    segment: list = field(default_factory=list)  # (ts, seq, message dict or JSON line, person index, messageId)
    webhooks: list = field(default_factory=list)  # (ts, seq, delivery dict, person index)
    pos: list = field(default_factory=list)  # (ts, seq, row dict, person index)


class Engine:
    def __init__(self, cfg: SimConfig, catalogue: Catalogue, stores: list[Store], pop: Population,
                 seed_seq: np.random.SeedSequence):
        self.cfg, self.cat, self.stores, self.pop = cfg, catalogue, stores, pop
        s_np, s_r, s_id = seed_seq.spawn(3)
        self.np = np.random.default_rng(s_np)
        self.r = random.Random(int(s_r.generate_state(1, np.uint64)[0]))
        self.idr = random.Random(int(s_id.generate_state(1, np.uint64)[0]))
        n = pop.n
        self.people = [Person(i) for i in range(n)]
        self.owners: dict[tuple[str, str], set[int]] = {}
        self.placeholders: set[tuple[str, str]] = set()
        self.seq = 0
        self.counts: dict[str, int] = defaultdict(int)
        self.type_counts: dict[str, int] = defaultdict(int)
        self.scheduled: dict[int, list] = defaultdict(list)
        self.out: DayOutput | None = None
        self.emit = True
        self.serialize = False  # True: Segment messages are handed on as JSON lines (bytes)
        self.day = 0
        start = cfg.start_date
        total = cfg.days + cfg.horizon + 3
        self.dates = [(start + timedelta(days=k - 1)).isoformat() for k in range(total + 1)]
        self.offsets = [madrid_offset_h(start + timedelta(days=k)) for k in range(total)]
        self.weekday0 = start.weekday()
        self._dates_t = [x + "T" for x in self.dates]
        self._ndates = len(self.dates)
        self._random = self.r.random
        self._randbytes = self.idr.randbytes
        # hot-path copies as plain lists (numpy scalars are slow in Python loops)
        c = catalogue
        self.c_cat, self.c_brand, self.c_colour = c.category.tolist(), c.brand.tolist(), c.colour.tolist()
        self.c_price, self.c_on_sale, self.c_size = c.price.tolist(), c.on_sale.tolist(), c.size
        self.c_compare = c.compare_at.tolist()
        p = pop
        self.p_conv, self.p_rhythm = p.conversion.tolist(), p.rhythm.tolist()
        self.p_ps, self.p_band = p.price_sensitivity.tolist(), p.pref_band.tolist()
        self.p_cat, self.p_colour, self.p_brand = p.pref_category.tolist(), p.pref_colour.tolist(), p.pref_brand.tolist()
        self.p_hour, self.p_app_share = p.pref_hour.tolist(), p.app_share.tolist()
        self.p_channel = p.pref_channel.tolist()
        self.p_churn, self.p_join = p.churn_day.tolist(), p.join_day.tolist()
        self.p_nps = p.nps_mean.tolist()
        self.p_account = p.account.tolist()
        self.p_browser_only = p.browser_only.tolist()
        self.p_store, self.p_household = p.home_store.tolist(), p.household.tolist()
        self.p_lat, self.p_lon = p.lat.tolist(), p.lon.tolist()
        self.p_city = p.city.tolist()
        self.consent = p.consent.copy()  # current consent, changes with unsubscribes
        self.known = np.zeros(n, dtype=bool)  # the retailer can address this person (account or CRM)
        self.has_token = np.zeros(n, dtype=bool)  # a push token on the person's own phone
        self.n_orders = 0
        self.n_customers = 0
        self.n_checkouts = 0
        self.n_line_items = 0
        self.n_refunds = 0
        self.n_receipts = 0
        self.n_crm = 0
        self.n_nps = 0
        self.n_webhooks = 0
        self.shopify_by_email: dict[str, int] = {}
        self.household_members: dict[int, list[int]] = defaultdict(list)
        for i, h in enumerate(self.p_household):
            self.household_members[h].append(i)
        self.family_email: dict[int, str] = {}
        self.tablets: dict[int, tuple] = {}
        self.cum_web_hours = list(np.cumsum(WEB_HOURS))
        self.cum_store_hours = list(np.cumsum(STORE_HOURS))
        self._init_people()

    # --- identifiers and bookkeeping ---------------------------------------------------

    def reg(self, p: Person, t: str, v: str, **flags) -> str:
        key = (t, v)
        o = self.owners.get(key)
        if o is None:
            self.owners[key] = {p.i}
        else:
            o.add(p.i)
        if key not in p.ids:
            p.ids[key] = flags
        return v

    def ri(self, lo: int, hi: int) -> int:
        """randint(lo, hi), faster (one random() call)."""
        return lo + int(self._random() * (hi - lo + 1))

    def pick(self, seq):
        return seq[int(self._random() * len(seq))]

    def uuid(self) -> str:
        """A version-4 UUID string drawn from the seeded id stream."""
        h = self._randbytes(16).hex()
        return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:]}"

    def hexid(self, n: int) -> str:
        return f"{self.idr.getrandbits(4 * n):0{n}x}"

    def _date(self, d: int) -> str:
        if 0 <= d + 1 < len(self.dates):
            return self.dates[d + 1]
        return (self.cfg.start_date + timedelta(days=d)).isoformat()

    def iso(self, ts: int) -> str:
        d, r = divmod(ts, DAY)
        m, r = divmod(r, MIN)
        k = d + 1
        if 0 <= k < self._ndates:
            return f"{self._dates_t[k]}{_HM[m]}:{_SSMS[r]}Z"
        return f"{self._date(d)}T{_HM[m]}:{_SSMS[r]}Z"

    def local_iso(self, ts: int, sep: str = "T", tz: bool = True) -> str:
        k = ts // DAY
        off = self.offsets[k] if 0 <= k < len(self.offsets) else madrid_offset_h(self.cfg.start_date + timedelta(days=k))
        d, r = divmod(ts + off * HOUR, DAY)
        h, r = divmod(r, HOUR)
        m, r = divmod(r, MIN)
        s = r // 1000
        out = f"{self._date(d)}{sep}{h:02d}:{m:02d}:{s:02d}"
        return f"{out}+0{off}:00" if tz else out

    def at(self, day: int, local_hour: float) -> int:
        """UTC ms (since the start date's midnight UTC) of a local hour on a day."""
        return day * DAY + int((local_hour - self.offsets[day]) * HOUR)

    def _seen(self, p: Person, ts: int) -> None:
        if p.first_seen is None or ts < p.first_seen:
            p.first_seen = ts
        if p.last_seen is None or ts > p.last_seen:
            p.last_seen = ts

    # --- people ------------------------------------------------------------------------

    def _init_people(self) -> None:
        pop, cfg, r = self.pop, self.cfg, self.r
        # family e-mails and shared tablets are per household
        for h, members in self.household_members.items():
            if len(members) < 2:
                continue
            if r.random() < cfg.share_family_email:
                ln = slug(pop.last[members[0]])
                self.family_email[h] = f"{ln}{self.pick(['familia', 'casa', 'family'])}{self.ri(1, 99)}@gmail.com"
            if r.random() < cfg.share_shared_device:
                self.tablets[h] = (self.pick(data.TABLET_MODELS), None)  # browser/app created lazily
        for i, p in enumerate(self.people):
            p.personal_email = f"{pop.email_local[i]}@{pop.email_domain[i]}"
            h = self.p_household[i]
            fam = self.family_email.get(h)
            p.email = fam if fam and r.random() < 0.8 else p.personal_email
            p.phone = pop.phone[i]
            p.location_ok = bool(pop.has_app[i]) and r.random() < 0.6
            if pop.account_at_start[i]:
                p.user_id = f"u_{self.hexid(12)}"
                p.signup_ts = -self.ri(1, 700) * DAY
            if pop.loyalty[i]:
                p.loyalty_id = f"{9400000000 + i * 7 + self.ri(0, 6)}"
            if pop.in_crm[i]:
                jd = self.p_join[i]
                p.crm_created = (jd if jd >= 0 else -self.ri(1, 900)) * DAY + self.ri(9 * HOUR, 20 * HOUR)
                self._crm_add(p)
            if p.user_id is not None or p.crm_ids:
                self.known[i] = True

    def _crm_add(self, p: Person) -> None:
        self.n_crm += 1
        p.crm_ids.append(f"CRM-{100000 + self.n_crm}")
        if self.r.random() < 0.04:  # a duplicate contact for the same person, entered later
            self.n_crm += 1
            p.crm_ids.append(f"CRM-{100000 + self.n_crm}")

    def alive(self, i: int, day: int) -> bool:
        return self.p_join[i] <= day < self.p_churn[i]

    # --- the day loop ------------------------------------------------------------------

    def run(self, on_day=None):
        """Yield one DayOutput per observed day (sorted by time); then simulate the horizon."""
        cfg, pop = self.cfg, self.pop
        carry: DayOutput | None = None
        activity = pop.activity
        store_rate = pop.store_rate
        join, churn = pop.join_day, pop.churn_day
        for day in range(cfg.days + cfg.horizon):
            self.day = day
            self.emit = day < cfg.days
            self.out = DayOutput(day)
            wd = (self.weekday0 + day) % 7
            joined = join <= day
            alive = joined & (churn > day)
            factor = WEB_WEEKDAY[wd] * self._season(day)
            lam = activity * factor * np.where(alive, 1.0, np.where(joined, 0.03, 0.0))
            n_sess = self.np.poisson(lam)
            n_store = self.np.poisson(store_rate * STORE_WEEKDAY[wd] * self._season(day) * alive)
            extra: dict[int, list] = defaultdict(list)
            if self.emit:
                for item in self.scheduled.pop(day, []):
                    item[0](*item[1:])
                for channel, hour in CAMPAIGN_SCHEDULE.get(wd, []):
                    if channel == "whatsapp" and (day // 7) % 2:
                        continue
                    self._campaign(day, channel, hour, alive, joined, extra)
            active = np.nonzero(n_sess + n_store)[0].tolist()
            if extra:
                active = sorted(set(active) | set(extra))
            ns, nst = n_sess.tolist(), n_store.tolist()
            for i in active:
                p = self.people[i]
                for campaign in extra.get(i, ()):
                    self._session(p, day, campaign=campaign)
                for _ in range(ns[i]):
                    self._session(p, day)
                for _ in range(nst[i]):
                    self._store_visit(p, day)
            if not self.emit:
                continue
            out = self.out
            if carry is not None:
                out.segment.extend(carry.segment)
                out.webhooks.extend(carry.webhooks)
                out.pos.extend(carry.pos)
            end = (day + 1) * DAY - self.offsets[day + 1] * HOUR
            nxt = DayOutput(day + 1)
            for name in ("segment", "webhooks", "pos"):
                items = getattr(out, name)
                items.sort()  # (ts, seq, ...): seq is unique, so later fields are never compared
                k = bisect.bisect_left(items, end, key=_ts) if day + 1 < cfg.days else len(items)
                getattr(nxt, name).extend(items[k:])
                del items[k:]
            carry = nxt
            for name in ("segment", "webhooks", "pos"):
                self.counts[name] += len(getattr(out, name))
            if on_day:
                on_day(day, out)
            yield out
        self.out = None

    def _season(self, day: int) -> float:
        d = self.cfg.start_date + timedelta(days=day)
        f = 1.0
        if d.month == 1 and d.day <= 15 or d.month == 7 and d.day <= 10:
            f = 1.3  # rebajas (sales)
        elif d.month == 11 and 24 <= d.day <= 30:
            f = 1.7  # Black Friday week
        elif d.month == 12 and d.day <= 23:
            f = 1.25
        return f

    def _time(self, day: int, p: Person, cum: list, pref: bool = True) -> int:
        r = self.r
        if pref and r.random() < 0.5:
            hour = min(23.99, max(0.0, r.gauss(self.p_hour[p.i], 1.5)))
        else:
            hour = bisect.bisect_right(cum, r.random() * cum[-1]) + r.random()
        return self.at(day, hour)

    # --- output helpers ----------------------------------------------------------------

    def _push(self, ts: int, msg: dict, p: Person) -> None:
        self.seq += 1
        # serialized at once when writing files: the dict is still hot in the CPU cache
        self.out.segment.append((ts, self.seq, _dumps(msg, option=_NL) if self.serialize else msg, p.i,
                                 msg["messageId"]))
        p.n_events += 1
        if p.first_seen is None or ts < p.first_seen:
            p.first_seen = ts
        if p.last_seen is None or ts > p.last_seen:
            p.last_seen = ts

    def _hook(self, ts: int, topic: str, body: dict, p: Person) -> None:
        self.seq += 1
        self.n_webhooks += 1
        delivery = shopify.webhook(topic, self.cfg.shop_domain, self.cfg.webhook_secret, self.uuid(), self.uuid(),
                                   self.iso(ts).replace("Z", "+00:00"), body)
        self.out.webhooks.append((ts, self.seq, delivery, p.i))

    def _base(self, kind: str, ts: int, dev, user_id: str | None, delay_ms: int) -> dict:
        if self.emit:
            self.type_counts[kind] += 1
        m = {"type": kind, "messageId": self.uuid(), "timestamp": self.iso(ts), "sentAt": self.iso(ts + delay_ms)}
        if user_id is not None:
            m["userId"] = user_id
        if dev is not None:
            m["anonymousId"] = dev.anon
        return m

    def _delay(self, app: bool) -> int:
        r = self.r.random()
        if app:
            return int(2000 + r * 28000) if r < 0.98 else int(HOUR * 6 * r)  # batched, sometimes offline
        return int(40 + r * 1500)

    def track(self, p: Person, ts: int, dev, event: str, props: dict, ctx: dict, app: bool = False) -> dict:
        m = self._base("track", ts, dev, dev.user_id if dev is not None else p.user_id, self._delay(app))
        m["event"] = event
        m["properties"] = props
        m["context"] = ctx
        m["integrations"] = {}
        self._push(ts, m, p)
        return m

    # --- devices -----------------------------------------------------------------------

    def _web_ctx(self, ua: str, ip: str) -> dict:
        return {"ip": ip, "userAgent": ua, "library": WEB_LIB, "locale": "es-ES", "timezone": "Europe/Madrid"}

    def _ip(self, p: Person) -> str:
        return f"{self.pick([83, 88, 90, 95, 185, 212, 217])}.{self.ri(0, 255)}.{self.ri(0, 255)}.{self.ri(1, 254)}"

    def _new_browser(self, p: Person, kind: str) -> Browser:
        ua = self.pick(data.USER_AGENTS_MOBILE if kind == "mobile" else data.USER_AGENTS_DESKTOP)
        ip = self._ip(p)
        b = Browser(self.uuid(), self._web_ctx(ua, ip), kind, False, ip)
        p.browsers.append(b)
        return b

    def _tablet(self, p: Person) -> tuple | None:
        h = self.p_household[p.i]
        t = self.tablets.get(h)
        if t is None:
            return None
        model, devs = t
        if devs is None:
            ua = self.pick(data.USER_AGENTS_TABLET)
            ip = self._ip(p)
            b = Browser(self.uuid(), self._web_ctx(ua, ip), "tablet", True, ip)
            os_, man, mod, ver = model
            app = self._new_app_install(p, model, shared=True)
            devs = (b, app)
            self.tablets[h] = (model, devs)
        return devs

    def _browser(self, p: Person) -> Browser:
        r = self.r
        if r.random() < 0.2:
            devs = self._tablet(p)
            if devs is not None:
                b = devs[0]
                if b.user_id is not None and b.user_id != p.user_id:
                    b.user_id = None  # someone else was logged in: they log out first
                self.reg(p, "anonymous_id", b.anon)
                return b
        if not p.browsers or r.random() < 0.04:  # first visit, or a new device
            b = self._new_browser(p, "mobile" if r.random() < 0.6 else "desktop")
        else:
            b = p.browsers[0] if len(p.browsers) == 1 or r.random() < 0.7 else self.pick(p.browsers)
            if r.random() < 0.03:  # cookies cleared / ITP: a new anonymousId, logged out
                b.anon = self.uuid()
                b.user_id = None
        self.reg(p, "anonymous_id", b.anon)
        return b

    def _new_app_install(self, p: Person, model: tuple, shared: bool) -> AppInstall:
        os_, man, mod, ver = model
        tracking = self.r.random() < 0.45
        ad_id = self.uuid().upper() if tracking else PLACEHOLDER_AD_ID
        device = {"id": self.uuid().upper() if os_ == "ios" else self.hexid(16), "advertisingId": ad_id,
                  "adTrackingEnabled": tracking, "manufacturer": man, "model": mod, "type": os_,
                  "name": mod}
        ctx = {
            "app": APP,
            "device": device,
            "os": {"name": "iOS" if os_ == "ios" else "Android", "version": ver},
            "library": IOS_LIB if os_ == "ios" else ANDROID_LIB,
            "locale": "es-ES",
            "timezone": "Europe/Madrid",
            "network": {"wifi": True, "cellular": False, "carrier": self.pick(["Movistar", "Vodafone", "Orange", "Digi"])},
            "screen": {"width": 390 if os_ == "ios" else 412, "height": 844 if os_ == "ios" else 915, "density": 3},
            "ip": self._ip(p),
        }
        a = AppInstall(self.uuid(), device["id"], ad_id, ctx, shared, os_)
        return a

    def _app(self, p: Person) -> AppInstall:
        r = self.r
        if r.random() < 0.15:
            devs = self._tablet(p)
            if devs is not None:
                a = devs[1]
                if a.user_id is not None and a.user_id != p.user_id:
                    a.user_id = None
                self._reg_app(p, a)
                return a
        if p.app is None:
            p.app = self._new_app_install(p, self.pick(data.PHONE_MODELS), shared=False)
        self._reg_app(p, p.app)
        return p.app

    def _reg_app(self, p: Person, a: AppInstall) -> None:
        self.reg(p, "anonymous_id", a.anon)
        self.reg(p, "device_id", a.device_id)
        if a.ad_id == PLACEHOLDER_AD_ID:
            self.placeholders.add(("advertising_id", a.ad_id))
            self.reg(p, "advertising_id", a.ad_id, placeholder=True)
        else:
            self.reg(p, "advertising_id", a.ad_id)
        if a.token:
            self.reg(p, "push_token", a.token)

    def _app_ctx(self, p: Person, a: AppInstall, lat: float | None = None, lon: float | None = None) -> dict:
        if not p.location_ok:
            return a.ctx
        r = self.r
        if lat is None:
            lat = round(self.p_lat[p.i] + r.gauss(0, 0.01), 5)
            lon = round(self.p_lon[p.i] + r.gauss(0, 0.01), 5)
        return {**a.ctx, "location": {"latitude": lat, "longitude": lon, "city": data.CITIES[self.p_city[p.i]][0],
                                      "country": "Spain", "speed": 0}}

    # --- products ----------------------------------------------------------------------

    def pick_product(self, p: Person) -> int:
        """A product this person looks at: mostly from their consideration set (the products
        that fit their tastes, favourites first), sometimes a new find that joins it."""
        pool = p.pool
        x = self._random()
        if pool is not None and x < 0.8:
            return pool[int(x * x * 1.5625 * len(pool))]
        j = self._explore(p)
        if pool is None:
            p.pool = [j]
        elif len(pool) < 40:
            pool.append(j)
        else:
            pool[int(self._random() * 40)] = j
        return j

    def _explore(self, p: Person) -> int:
        r = self.r
        i = p.i
        x = r.random()
        prefs = self.p_cat[i]
        cat = prefs[0] if x < 0.5 else prefs[1] if x < 0.72 else prefs[2] if x < 0.85 else r.randrange(len(data.CATEGORIES))
        band = self.p_band[i] if r.random() < 0.65 else r.randrange(3)
        ids, cum = self.cat.by_cat_band[(cat, band)]
        total = cum[-1]
        best, best_score = -1, -1.0
        colours, brands, ps = self.p_colour[i], self.p_brand[i], self.p_ps[i]
        size = self.pop.pref_size[i]
        for _ in range(3):
            j = ids[min(len(ids) - 1, bisect.bisect_left(cum, r.random() * total))]
            s = (1.0 if self.c_colour[j] == colours[0] else 0.5 if self.c_colour[j] == colours[1] else 0.0) \
                + (0.8 if self.c_brand[j] in brands else 0.0) + (0.6 if self.c_size[j] == size else 0.0) \
                + (1.5 * ps if self.c_on_sale[j] else 0.0) + r.random() * 0.8
            if s > best_score:
                best, best_score = j, s
        return best

    def _readiness(self, p: Person, day: int) -> float:
        if p.last_order_day is None:
            return 1.0
        return 0.35 + 1.15 * min(1.0, (day - p.last_order_day) / self.p_rhythm[p.i])

    def depth(self, p: Person, day: int, boost: float = 1.0) -> int:
        """How far down the funnel this session goes: 0 landing only, 1 product views, 2 added to
        cart, 3 cart viewed, 4 checkout started, 5 order completed."""
        r = self.r
        m = self.p_conv[p.i] * self._readiness(p, day) * boost
        if not self.alive(p.i, day):
            m *= 0.3
        if r.random() > 0.72:
            return 0
        if r.random() > min(0.6, 0.16 * m):
            return 1
        if r.random() > 0.75:
            return 2
        if r.random() > 0.6:
            return 3
        if r.random() > min(0.9, 0.55 * math.sqrt(m)):
            return 4
        return 5

    def basket(self, p: Person, depth: int) -> list[tuple[int, int]]:
        if p.cart and self.r.random() < 0.5:  # back for the abandoned cart
            items = list(p.cart)
        else:
            items = []
        k = 1
        while self.r.random() < 0.38 and k < 6:
            k += 1
        while len(items) < k:
            items.append((self.pick_product(p), 1 if self.r.random() < 0.9 else 2))
        return items

    def coupon(self, p: Person) -> tuple[str, float] | None:
        if self.r.random() < 0.08 + 0.35 * self.p_ps[p.i]:
            return self.pick(COUPONS)
        return None

    def totals(self, items: list[tuple[int, int]], coupon) -> tuple[float, float, float, float, float]:
        subtotal = round(sum(self.c_price[j] * q for j, q in items), 2)
        discount = round(subtotal * coupon[1], 2) if coupon else 0.0
        shipping = 0.0 if subtotal - discount >= 50 else 3.95
        total = round(subtotal - discount + shipping, 2)
        tax = round(total * 21 / 121, 2)
        return subtotal, discount, shipping, tax, total

    def _prod(self, j: int, **extra) -> dict:
        if extra:
            return {**self.cat.props[j], **extra}
        return self.cat.props[j]

    # --- web and app sessions ----------------------------------------------------------

    def _session(self, p: Person, day: int, campaign: tuple | None = None) -> None:
        i = p.i
        app_share = self.p_app_share[i]
        if campaign is not None:
            is_app = campaign[0] == "push"
            start = campaign[1] + self.ri(5_000, 20 * MIN)
        else:
            is_app = app_share > 0 and self.r.random() < app_share
            start = self._time(day, p, self.cum_web_hours)
        depth = self.depth(p, day, 1.3 if campaign else 1.0)
        if not self.emit:
            if depth == 5:
                items = self.basket(p, depth)
                total = self.totals(items, self.coupon(p))[4]
                self._order_outcome(p, day, total, future=True)
            return
        if is_app:
            self._app_session(p, day, start, depth, campaign)
        else:
            self._web_session(p, day, start, depth, campaign)

    def _order_outcome(self, p: Person, day: int, total: float, future: bool = False) -> None:
        if future:
            p.future_orders += 1
            p.future_revenue += total
        else:
            p.orders += 1
            p.revenue += total
        p.last_order_day = day

    def _web_session(self, p: Person, day: int, ts: int, depth: int, campaign) -> None:
        r = self.r
        i = p.i
        b = self._browser(p)
        base_ctx = b.ctx
        if campaign is not None:
            base_ctx = {**base_ctx, "campaign": {"name": campaign[2], "source": campaign[3], "medium": campaign[0],
                                                 "content": campaign[4]}}
        referrer = "" if campaign else self.pick(["https://www.google.com/", "https://www.google.com/", "",
                                                 "https://www.instagram.com/", "https://www.facebook.com/"])
        logged_in = b.user_id is not None and b.user_id == p.user_id
        if b.user_id is not None and not logged_in:
            b.user_id = None

        def page(path: str, title: str, name: str | None = None) -> dict:
            nonlocal ts
            url = f"https://www.moda-sim.es{path}"
            pg = {"path": path, "referrer": referrer, "search": "", "title": title, "url": url}
            m = self._base("page", ts, b, b.user_id, self._delay(False))
            if name:
                m["name"] = name
            m["properties"] = pg  # analytics.js sends the page fields in both places
            m["context"] = {**base_ctx, "page": pg}
            m["integrations"] = {}
            self._push(ts, m, p)
            ctx = m["context"]
            ts += self.ri(4_000, 90_000)
            return ctx

        def tr(event: str, props: dict, ctx: dict) -> None:
            nonlocal ts
            self.track(p, ts, b, event, props, ctx)
            ts += self.ri(1_000, 40_000)

        ctx = page("/", "Moda — Inicio", "Home")
        if logged_in and self.p_account[i] >= 0 and r.random() < 0.3:
            self._group(p, ts, b, ctx)
        if depth == 0:
            return self._maybe_login(p, b, ts, ctx, depth)
        if r.random() < 0.3:
            cat = data.CATEGORIES[self.p_cat[i][0]][0]
            tr("Products Searched", {"query": self.pick(data.SEARCH_TERMS[cat])}, ctx)
        if r.random() < 0.4:
            j0 = self.pick_product(p)
            cat = data.CATEGORIES[self.c_cat[j0]][0]
            ctx = page(f"/c/{slug(cat)}", f"{cat} — Moda", cat)
            prods = [self._prod(j0, position=1)] + [self._prod(self.pick_product(p), position=k + 2) for k in range(self.ri(2, 6))]
            tr("Product List Viewed", {"list_id": f"cat-{slug(cat)}", "category": cat, "products": prods}, ctx)
        items = self.basket(p, depth) if depth >= 2 else []
        views = [j for j, _ in items]
        k = 1
        while r.random() < 0.5 and k < 8:
            k += 1
        while len(views) < k:
            views.append(self.pick_product(p))
        for j in views:
            pr = self.cat.props[j]
            ctx = page(f"/p/{pr['product_id']}", f"{pr['name']} — Moda", pr["name"])
            tr("Product Viewed", self._prod(j, currency=self.cfg.currency, quantity=1), ctx)
        if depth == 1:
            return self._maybe_login(p, b, ts, ctx, depth)
        if p.cart_id is None or not p.cart:
            p.cart_id = self.uuid()
        for j, q in items:
            tr("Product Added", self._prod(j, cart_id=p.cart_id, quantity=q, currency=self.cfg.currency), ctx)
        if r.random() < 0.1 and len(items) > 1:
            j, q = items.pop()
            tr("Product Removed", self._prod(j, cart_id=p.cart_id, quantity=q), ctx)
        p.cart = list(items)
        if depth == 2:
            return self._maybe_login(p, b, ts, ctx, depth)
        ctx = page("/cart", "Carrito — Moda", "Cart")
        plist = [self._prod(j, quantity=q, position=k + 1) for k, (j, q) in enumerate(items)]
        tr("Cart Viewed", {"cart_id": p.cart_id, "products": plist}, ctx)
        if depth == 3:
            return self._maybe_login(p, b, ts, ctx, depth)
        coupon = self.coupon(p)
        subtotal, discount, shipping, tax, total = self.totals(items, coupon)
        ctx = page("/checkout", "Checkout — Moda", "Checkout")
        # identify at checkout: log in, sign up, or give an e-mail as a guest
        ts = self._checkout_identify(p, b, ts, ctx, depth)
        checkout_token = self.hexid(32)
        order_props = {
            "checkout_id": checkout_token, "order_id": None, "affiliation": "Moda Online", "value": subtotal,
            "revenue": round(total - shipping - tax, 2), "shipping": shipping, "tax": tax, "discount": discount,
            "coupon": coupon[0] if coupon else None, "currency": self.cfg.currency, "products": plist,
        }
        tr("Checkout Started", order_props, ctx)
        email_known = b.user_id is not None or depth == 5
        self._checkout_hook(p, "checkouts/create", ts, checkout_token, b, items, coupon, email_known, None)
        if coupon:
            tr("Coupon Applied", {"cart_id": p.cart_id, "coupon_id": coupon[0], "coupon_name": coupon[0],
                                  "discount": discount, "order_id": None}, ctx)
        tr("Checkout Step Viewed", {"checkout_id": checkout_token, "step": 1}, ctx)
        shipping_method = self.pick(["Envío estándar", "Envío exprés", "Recogida en tienda"])
        tr("Checkout Step Completed", {"checkout_id": checkout_token, "step": 1, "shipping_method": shipping_method}, ctx)
        if depth == 4:
            if email_known:
                self._checkout_hook(p, "checkouts/update", ts + self.ri(MIN, 10 * MIN), checkout_token, b, items,
                                    coupon, True, None)
            return
        payment = self.pick(["credit_card", "credit_card", "paypal", "bizum", "apple_pay"])
        tr("Payment Info Entered", {"checkout_id": checkout_token, "step": 2, "payment_method": payment}, ctx)
        order = self._place_order(p, day, ts, items, coupon, checkout_token, p.cart_id, b, "web")
        order_props = {**order_props, "order_id": str(order["id"]), "total": total, "subtotal": subtotal}
        tr("Order Completed", order_props, ctx)
        p.cart = []
        p.cart_id = None

    def _maybe_login(self, p: Person, b: Browser, ts: int, ctx: dict, depth: int) -> None:
        """Browsing without buying: people with an account sometimes log in anyway."""
        if p.user_id is not None and b.user_id is None and not self.p_browser_only[p.i] and self.r.random() < 0.12:
            self._identify(p, ts, b, ctx)

    def _identify(self, p: Person, ts: int, dev, ctx: dict, traits_extra: dict | None = None,
                  app: bool = False) -> None:
        i = p.i
        dev.user_id = p.user_id
        self.reg(p, "user_id", p.user_id)
        traits = {"email": self.reg(p, "email", p.email), "firstName": self.pop.first[i], "lastName": self.pop.last[i]}
        if traits_extra:
            traits.update(traits_extra)
        m = self._base("identify", ts, dev, p.user_id, self._delay(app))
        m["traits"] = traits
        m["context"] = ctx
        m["integrations"] = {}
        self._push(ts, m, p)
        self.known[i] = True

    def _checkout_identify(self, p: Person, b, ts: int, ctx: dict, depth: int, app: bool = False) -> int:
        r = self.r
        if b.user_id is not None:
            return ts
        if p.user_id is not None:
            self._identify(p, ts, b, ctx, app=app)
            return ts + self.ri(3_000, 30_000)
        if depth < 5:
            return ts
        if not self.p_browser_only[p.i] and r.random() < 0.45:
            return self._signup(p, b, ts, ctx, app)
        # guest checkout: the e-mail, no userId
        m = self._base("identify", ts, b, None, self._delay(app))
        m["traits"] = {"email": self.reg(p, "email", p.email), "firstName": self.pop.first[p.i],
                       "lastName": self.pop.last[p.i]}
        m["context"] = ctx
        m["integrations"] = {}
        self._push(ts, m, p)
        return ts + self.ri(3_000, 30_000)

    def _signup(self, p: Person, b, ts: int, ctx: dict, app: bool = False) -> int:
        r = self.r
        i = p.i
        p.user_id = f"u_{self.hexid(12)}"
        p.signup_ts = ts
        if r.random() < 0.1:  # some sites still send alias(previousId -> userId)
            m = self._base("alias", ts, None, self.reg(p, "user_id", p.user_id), self._delay(app))
            m["previousId"] = b.anon
            m["context"] = ctx
            m["integrations"] = {}
            self._push(ts, m, p)
            ts += self.ri(200, 2_000)
        extra = {"createdAt": self.iso(ts), "address": {"city": data.CITIES[self.p_city[i]][0],
                                                         "postalCode": self.pop.postcode[i], "country": "ES"}}
        if r.random() < 0.5:
            extra["phone"] = self.reg(p, "phone", p.phone)
        self._identify(p, ts, b, ctx, extra, app)
        ts += self.ri(200, 2_000)
        self.track(p, ts, b, "Signed Up", {"method": "email", "type": "organic"}, ctx, app)
        if self.p_account[i] >= 0:
            self._group(p, ts + 1000, b, ctx)
        self._shopify_customer(p, ts + self.ri(500, 3000), create=True)
        if not p.crm_ids and r.random() < 0.5:
            p.crm_created = ts
            self._crm_add(p)
        return ts + self.ri(3_000, 30_000)

    def _group(self, p: Person, ts: int, dev, ctx: dict) -> None:
        a = self.p_account[p.i]
        name, industry = data.COMPANIES[a % len(data.COMPANIES)]
        if a >= len(data.COMPANIES):
            name = f"{name} {a // len(data.COMPANIES) + 1}"
        m = self._base("group", ts, dev, dev.user_id, self._delay(False))
        m["groupId"] = f"acct_{a:05d}"
        m["traits"] = {"name": name, "industry": industry, "employees": 5 + (a * 37) % 400,
                       "plan": ["business", "business-plus"][a % 2], "website": f"https://{slug(name)}.es"}
        m["context"] = ctx
        m["integrations"] = {}
        self._push(ts, m, p)

    def _app_session(self, p: Person, day: int, ts: int, depth: int, campaign) -> None:
        r = self.r
        a = self._app(p)
        if not a.installed:
            a.installed = True
            ctx = self._app_ctx(p, a)
            self.track(p, ts, a, "Application Installed", {"version": APP["version"], "build": APP["build"]}, ctx, True)
            ts += self.ri(1000, 5000)
            if self.consent[p.i, 3] or (a.shared and r.random() < 0.5):
                a.token = self.hexid(64)
                dev = {**a.ctx["device"], "token": a.token}
                a.ctx = {**a.ctx, "device": dev}
                self._reg_app(p, a)
                if a is p.app:
                    self.has_token[p.i] = True
        if a.user_id is not None and a.user_id != p.user_id:
            a.user_id = None
        ctx = self._app_ctx(p, a)
        props = {"from_background": r.random() < 0.6, "version": APP["version"], "build": APP["build"]}
        if campaign is not None:
            props["referring_application"] = "push"
        self.track(p, ts, a, "Application Opened", props, ctx, True)
        ts += self.ri(500, 3000)

        def screen(name: str, props: dict | None = None) -> None:
            nonlocal ts
            m = self._base("screen", ts, a, a.user_id, self._delay(True))
            m["name"] = name
            m["properties"] = props or {}
            m["context"] = ctx
            m["integrations"] = {}
            self._push(ts, m, p)
            ts += self.ri(3_000, 60_000)

        def tr(event: str, props: dict) -> None:
            nonlocal ts
            self.track(p, ts, a, event, props, ctx, True)
            ts += self.ri(1_000, 30_000)

        screen("Home")
        if a.user_id is None and p.user_id is not None and not self.p_browser_only[p.i] and r.random() < 0.5:
            self._identify(p, ts, a, ctx, app=True)
            ts += 2000
        if depth == 0:
            return
        items = self.basket(p, depth) if depth >= 2 else []
        views = [j for j, _ in items]
        while len(views) < 1 or (r.random() < 0.5 and len(views) < 8):
            views.append(self.pick_product(p))
        for j in views:
            pr = self.cat.props[j]
            screen("Product Detail", {"product_id": pr["product_id"]})
            tr("Product Viewed", self._prod(j, currency=self.cfg.currency, quantity=1))
        if depth == 1:
            return
        if p.cart_id is None or not p.cart:
            p.cart_id = self.uuid()
        for j, q in items:
            tr("Product Added", self._prod(j, cart_id=p.cart_id, quantity=q, currency=self.cfg.currency))
        p.cart = list(items)
        if depth == 2:
            return
        screen("Cart")
        plist = [self._prod(j, quantity=q, position=k + 1) for k, (j, q) in enumerate(items)]
        tr("Cart Viewed", {"cart_id": p.cart_id, "products": plist})
        if depth == 3:
            return
        coupon = self.coupon(p)
        subtotal, discount, shipping, tax, total = self.totals(items, coupon)
        ts = self._checkout_identify(p, a, ts, ctx, depth, app=True)
        checkout_token = self.hexid(32)
        props = {"checkout_id": checkout_token, "order_id": None, "affiliation": "Moda App", "value": subtotal,
                 "revenue": round(total - shipping - tax, 2), "shipping": shipping, "tax": tax, "discount": discount,
                 "coupon": coupon[0] if coupon else None, "currency": self.cfg.currency, "products": plist}
        tr("Checkout Started", props)
        email_known = a.user_id is not None or depth == 5
        self._checkout_hook(p, "checkouts/create", ts, checkout_token, None, items, coupon, email_known, None)
        if depth == 4:
            return
        order = self._place_order(p, day, ts, items, coupon, checkout_token, p.cart_id, None,
                                  "iphone" if a.os == "ios" else "android")
        tr("Order Completed", {**props, "order_id": str(order["id"]), "total": total, "subtotal": subtotal})
        p.cart = []
        p.cart_id = None

    # --- Shopify -----------------------------------------------------------------------

    def _shopify_customer(self, p: Person, ts: int, create: bool, email: str | None = None) -> int:
        """Shopify keys customers by e-mail: a family e-mail gives one customer shared by two people."""
        email = email or p.email
        cid = self.shopify_by_email.get(email)
        created = False
        if cid is None:
            self.n_customers += 1
            cid = 7_100_000_000_000 + self.n_customers * 97
            self.shopify_by_email[email] = cid
            created = True
        p.shopify_id = cid
        if p.shopify_created is None:
            p.shopify_created = self.local_iso(ts)
        if created or not create:
            self._hook(ts, "customers/create" if created else "customers/update", self._customer_body(p, ts, cid, email), p)
        return cid

    def _addr(self, p: Person, cid: int | None = None) -> dict:
        i = p.i
        return shopify.address(self.pop.first[i], self.pop.last[i], self.pop.street[i], data.CITIES[self.p_city[i]][0],
                               self.pop.postcode[i], None, customer_id=cid, address_id=cid + 11 if cid else None)

    def _customer_body(self, p: Person, ts: int, cid: int, email: str) -> dict:
        i = p.i
        self.reg(p, "shopify_customer_id", str(cid))
        self.reg(p, "email", email)
        if cid not in p.records["shopify_customer_ids"]:
            p.records["shopify_customer_ids"].append(cid)
        return shopify.customer(
            cid=cid, email=email, first=self.pop.first[i], last=self.pop.last[i], phone=None,
            created_at=p.shopify_created or self.local_iso(ts), updated_at=self.local_iso(ts),
            orders_count=p.orders, total_spent=round(p.revenue, 2),
            last_order_id=p.records["shopify_order_ids"][-1] if p.records["shopify_order_ids"] else None,
            last_order_name=None, accepts_email=bool(self.consent[i, 0]), accepts_sms=False,
            state="enabled" if p.user_id else "disabled", addr=self._addr(p, cid), currency=self.cfg.currency,
            tags="b2b" if self.p_account[i] >= 0 else "")

    def _lines(self, items, coupon) -> list[dict]:
        out = []
        for j, q in items:
            self.n_line_items += 1
            price = self.c_price[j]
            disc = round(price * q * coupon[1], 2) if coupon else 0.0
            out.append(shopify.line_item(lid=14_000_000_000_000 + self.n_line_items * 13, product=self.cat.props[j],
                                         product_num=8_000_000_000 + j * 3, variant_id=44_000_000_000_000 + j * 7,
                                         quantity=q, price=price, discount=disc))
        return out

    def _checkout_hook(self, p: Person, topic: str, ts: int, token: str, b, items, coupon, email_known: bool,
                       completed_at: str | None) -> None:
        if topic == "checkouts/create":
            self.n_checkouts += 1
        subtotal, discount, shipping, tax, total = self.totals(items, coupon)
        email = self.reg(p, "email", p.email) if email_known else None
        cid = p.shopify_id if email_known and p.user_id else None
        body = {
            "id": 36_000_000_000 + self.n_checkouts * 17,
            "token": token,
            "cart_token": p.cart_id,
            "email": email,
            "gateway": None,
            "buyer_accepts_marketing": bool(self.consent[p.i, 0]),
            "created_at": self.local_iso(ts),
            "updated_at": self.local_iso(ts),
            "landing_site": "/",
            "note": None,
            "note_attributes": [],
            "referring_site": "",
            "shipping_lines": [],
            "taxes_included": True,
            "total_weight": 400 * len(items),
            "currency": self.cfg.currency,
            "presentment_currency": self.cfg.currency,
            "completed_at": completed_at,
            "closed_at": None,
            "user_id": None,
            "location_id": None,
            "source_identifier": None,
            "source_url": None,
            "device_id": None,
            "phone": None,
            "customer_locale": "es",
            "line_items": [{"key": f"{self.cat.props[j]['sku']}", "product_id": 8_000_000_000 + j * 3,
                            "variant_id": 44_000_000_000_000 + j * 7, "sku": self.cat.props[j]["sku"],
                            "title": self.cat.props[j]["name"], "variant_title": self.cat.props[j]["variant"],
                            "vendor": self.cat.props[j]["brand"], "quantity": q, "price": shopify.money(self.c_price[j]),
                            "line_price": shopify.money(self.c_price[j] * q), "requires_shipping": True,
                            "taxable": True, "gift_card": False} for j, q in items],
            "name": f"#{36_000_000_000 + self.n_checkouts * 17}",
            "source": None,
            "abandoned_checkout_url": f"https://{self.cfg.shop_domain}/checkouts/{token}/recover",
            "discount_codes": [{"code": coupon[0], "amount": shopify.money(discount), "type": "percentage"}] if coupon else [],
            "tax_lines": [{"price": shopify.money(tax), "rate": 0.21, "title": "IVA"}],
            "source_name": "web",
            "presentment_currency_code": self.cfg.currency,
            "buyer_accepts_sms_marketing": False,
            "sms_marketing_phone": None,
            "total_discounts": shopify.money(discount),
            "total_line_items_price": shopify.money(subtotal),
            "total_price": shopify.money(total),
            "total_tax": shopify.money(tax),
            "subtotal_price": shopify.money(subtotal - discount),
            "total_duties": None,
            "billing_address": None,
            "shipping_address": None,
            "customer": self._customer_body(p, ts, cid, email) if cid else None,
        }
        p.records["shopify_checkout_tokens"].append(token) if topic == "checkouts/create" else None
        self._hook(ts, topic, body, p)

    def _place_order(self, p: Person, day: int, ts: int, items, coupon, checkout_token: str, cart_token: str | None,
                     b, source: str) -> dict:
        r = self.r
        i = p.i
        subtotal, discount, shipping, tax, total = self.totals(items, coupon)
        self._order_outcome(p, day, total)
        self.n_orders += 1
        oid = 5_800_000_000_000 + self.n_orders * 31
        number = 1000 + self.n_orders
        cid = p.shopify_id or self._shopify_customer(p, ts, create=True)
        email = self.reg(p, "email", p.email)
        p.records["shopify_order_ids"].append(oid)
        created = self.local_iso(ts)
        phone = self.reg(p, "phone", p.phone) if r.random() < 0.6 else None
        addr = shopify.address(self.pop.first[i], self.pop.last[i], self.pop.street[i], data.CITIES[self.p_city[i]][0],
                               self.pop.postcode[i], phone, self.p_lat[i], self.p_lon[i])
        body = {
            "id": oid,
            "admin_graphql_api_id": f"gid://shopify/Order/{oid}",
            "app_id": 580111,
            "browser_ip": b.ip if b is not None else None,
            "buyer_accepts_marketing": bool(self.consent[i, 0]),
            "cancel_reason": None,
            "cancelled_at": None,
            "cart_token": cart_token,
            "checkout_id": 36_000_000_000 + self.n_checkouts * 17,
            "checkout_token": checkout_token,
            "client_details": {"accept_language": "es-ES", "browser_ip": b.ip if b else None,
                               "user_agent": b.ctx["userAgent"] if b else None},
            "closed_at": None,
            "confirmation_number": self.hexid(9).upper(),
            "confirmed": True,
            "contact_email": email,
            "created_at": created,
            "currency": self.cfg.currency,
            "current_subtotal_price": shopify.money(subtotal - discount),
            "current_total_discounts": shopify.money(discount),
            "current_total_price": shopify.money(total),
            "current_total_tax": shopify.money(tax),
            "customer_locale": "es",
            "discount_codes": [{"code": coupon[0], "amount": shopify.money(discount), "type": "percentage"}] if coupon else [],
            "email": email,
            "estimated_taxes": False,
            "financial_status": "pending",
            "fulfillment_status": None,
            "landing_site": "/",
            "name": f"#{number}",
            "note": None,
            "note_attributes": [],
            "number": number - 1000,
            "order_number": number,
            "order_status_url": f"https://{self.cfg.shop_domain}/{oid}/orders/{self.hexid(32)}/authenticate",
            "payment_gateway_names": [self.pick(["shopify_payments", "paypal", "bizum"])],
            "phone": phone,
            "presentment_currency": self.cfg.currency,
            "processed_at": created,
            "referring_site": "",
            "source_name": source,
            "subtotal_price": shopify.money(subtotal - discount),
            "tags": "",
            "tax_lines": [{"price": shopify.money(tax), "rate": 0.21, "title": "IVA"}],
            "taxes_included": True,
            "test": False,
            "token": self.hexid(32),
            "total_discounts": shopify.money(discount),
            "total_line_items_price": shopify.money(subtotal),
            "total_price": shopify.money(total),
            "total_shipping_price_set": {"shop_money": {"amount": shopify.money(shipping), "currency_code": self.cfg.currency},
                                         "presentment_money": {"amount": shopify.money(shipping), "currency_code": self.cfg.currency}},
            "total_tax": shopify.money(tax),
            "total_weight": 400 * len(items),
            "updated_at": created,
            "user_id": None,
            "billing_address": addr,
            "customer": self._customer_body(p, ts, cid, email),
            "discount_applications": [{"target_type": "line_item", "type": "discount_code", "value": str(int(coupon[1] * 100)) + ".0",
                                       "value_type": "percentage", "allocation_method": "across", "target_selection": "all",
                                       "code": coupon[0]}] if coupon else [],
            "fulfillments": [],
            "line_items": self._lines(items, coupon),
            "refunds": [],
            "shipping_address": addr,
            "shipping_lines": [{"id": oid + 3, "code": "standard", "price": shopify.money(shipping), "source": "shopify",
                                "title": "Envío estándar", "discounted_price": shopify.money(shipping)}],
        }
        self._hook(ts + self.ri(500, 4000), "orders/create", body, p)
        paid = {**body, "financial_status": "paid", "updated_at": self.local_iso(ts + 30_000)}
        self._hook(ts + self.ri(5_000, 60_000), "orders/paid", paid, p)
        self._checkout_hook(p, "checkouts/update", ts + self.ri(1000, 5000), checkout_token, b, items, coupon, True,
                            created)
        self._shopify_customer(p, ts + self.ri(60_000, 120_000), create=False)
        if r.random() < 0.06:  # a refund 3-20 days later
            rd = day + self.ri(3, 20)
            self.scheduled[rd].append((self._refund, p, rd, body))
        if self.known[i] and r.random() < 0.18:  # post-purchase NPS survey answered 2-7 days later
            nd = day + self.ri(2, 7)
            self.scheduled[nd].append((self._nps, p, nd, oid))
        return body

    def _refund(self, p: Person, day: int, order: dict) -> None:
        r = self.r
        ts = self._time(day, p, self.cum_web_hours, pref=False)
        self.n_refunds += 1
        rid = 900_000_000_000 + self.n_refunds * 11
        li = order["line_items"][r.randrange(len(order["line_items"]))]
        amount = float(li["price"]) * li["quantity"] - float(li["total_discount"])
        body = {
            "id": rid,
            "order_id": order["id"],
            "created_at": self.local_iso(ts),
            "note": self.pick(["Talla incorrecta", "No me queda bien", "Producto defectuoso", None]),
            "user_id": None,
            "processed_at": self.local_iso(ts),
            "restock": True,
            "duties": [],
            "total_duties_set": {"shop_money": {"amount": "0.00", "currency_code": self.cfg.currency},
                                 "presentment_money": {"amount": "0.00", "currency_code": self.cfg.currency}},
            "admin_graphql_api_id": f"gid://shopify/Refund/{rid}",
            "refund_line_items": [{"id": rid + 1, "quantity": li["quantity"], "line_item_id": li["id"], "location_id": None,
                                   "restock_type": "return", "subtotal": shopify.money(amount),
                                   "total_tax": shopify.money(amount * 21 / 121), "line_item": li}],
            "transactions": [{"id": rid + 2, "order_id": order["id"], "kind": "refund", "gateway": order["payment_gateway_names"][0],
                              "status": "success", "message": None, "created_at": self.local_iso(ts), "test": False,
                              "parent_id": None, "processed_at": self.local_iso(ts), "amount": shopify.money(amount),
                              "currency": self.cfg.currency}],
            "order_adjustments": [],
        }
        p.records["shopify_refund_ids"].append(rid)
        self._hook(ts, "refunds/create", body, p)

    # --- channels ----------------------------------------------------------------------

    def _esp_identity(self, p: Person) -> tuple[str | None, str | None]:
        if p.user_id is not None:
            return p.user_id, None
        if p.esp_anon is None:
            p.esp_anon = f"esp_{(p.crm_ids or [p.pid])[0].lower()}"
        return None, p.esp_anon

    def _server_msg(self, p: Person, ts: int, event: str, props: dict, traits: dict) -> None:
        uid, anon = self._esp_identity(p)
        self.type_counts["track"] += 1
        m = {"type": "track", "messageId": self.uuid(), "timestamp": self.iso(ts),
             "sentAt": self.iso(ts + self.ri(100, 5000))}
        if uid:
            m["userId"] = self.reg(p, "user_id", uid)
        else:
            m["anonymousId"] = self.reg(p, "anonymous_id", anon)
        m["event"] = event
        m["properties"] = props
        m["context"] = {"library": SERVER_LIB, "traits": traits}
        m["integrations"] = {}
        self._push(ts, m, p)

    def _campaign(self, day: int, channel: str, hour: int, alive, joined, extra) -> None:
        c = CHANNELS.index(channel)
        target = self.consent[:, c] & joined & (self.np.random(self.pop.n) < 0.5)
        target &= self.has_token if channel == "push" else self.known
        idx = np.nonzero(target)[0].tolist()
        if not idx:
            return
        cid = f"cmp_{channel}_{day:04d}"
        cname = {"email": "Newsletter", "sms": "Flash SMS", "whatsapp": "WhatsApp Drops", "push": "Push"}[channel] + \
            f" {self.dates[day + 1]}"
        send = self.at(day, hour)
        names = EVENT_NAMES[channel]
        r = self.r
        alive_l = alive
        for i in idx:
            p = self.people[i]
            ts = send + self.ri(0, 40 * MIN)
            msg_id = self.hexid(16)
            if channel == "email":
                base = {"campaign_id": cid, "campaign_name": cname, "email_id": msg_id,
                        "email_subject": "Novedades de la semana", "email": p.email}
                traits = {"email": self.reg(p, "email", p.email)}
            elif channel == "push":
                base = {"campaign": {"name": cname, "source": "cdp", "medium": "push", "content": "novedades"},
                        "campaign_id": cid, "message_id": msg_id}
                traits = None
            else:
                base = {"campaign_id": cid, "campaign_name": cname, "message_id": msg_id, "phone": p.phone}
                traits = {"phone": self.reg(p, "phone", p.phone)}
            engaged = 1.8 if self.p_channel[i] == c else 1.0
            if not alive_l[i]:
                engaged *= 0.15
            if r.random() < 0.02:
                self._channel_event(p, ts, channel, names[4], base, traits)
                continue
            self._channel_event(p, ts, channel, names[0], base, traits)
            ts2 = ts + self.ri(MIN, 6 * HOUR)
            opened = names[1] is not None and r.random() < min(0.95, OPEN_RATE[channel] * engaged)
            if opened:
                self._channel_event(p, ts2, channel, names[1], base, traits)
            if (opened or names[1] is None) and r.random() < min(0.9, CLICK_RATE[channel] * engaged * (2.5 if opened else 1)):
                ts3 = ts2 + self.ri(5_000, 5 * MIN)
                props = {**base, "link_url": f"https://www.moda-sim.es/novedades?utm_campaign={cid}"}
                self._channel_event(p, ts3, channel, names[2], props, traits)
                if ts3 < (day + 1) * DAY - self.offsets[day + 1] * HOUR - HOUR:
                    extra[i].append((channel, ts3, cname, channel if channel != "email" else "newsletter", cid))
            if r.random() < UNSUB_RATE[channel] / engaged:
                ts4 = ts2 + self.ri(MIN, HOUR)
                self._channel_event(p, ts4, channel, names[3], base, traits)
                self.consent[i, c] = False
                p.consent_changed[channel] = ts4

    def _channel_event(self, p: Person, ts: int, channel: str, event: str, props: dict, traits: dict | None) -> None:
        if channel == "push":
            a = p.app
            self._reg_app(p, a)
            a_ctx = a.ctx
            self.track(p, ts, a, event, props, a_ctx, True)
        else:
            self._server_msg(p, ts, event, props, traits)

    def _nps(self, p: Person, day: int, order_id: int) -> None:
        r = self.r
        ts = self._time(day, p, self.cum_web_hours)
        score = max(0, min(10, round(r.gauss(self.p_nps[p.i], 1.3))))
        kind = "promoter" if score >= 9 else "passive" if score >= 7 else "detractor"
        self.n_nps += 1
        rid = f"nps_{self.n_nps:07d}"
        p.records["nps_response_ids"].append(rid)
        self._server_msg(p, ts, "Survey Completed", {
            "survey_id": "nps-post-purchase", "survey_type": "nps", "response_id": rid, "score": score,
            "comment": self.pick(data.NPS_COMMENTS[kind]), "order_id": str(order_id)},
            {"email": self.reg(p, "email", p.email)})

    # --- stores ------------------------------------------------------------------------

    def _store_visit(self, p: Person, day: int) -> None:
        r = self.r
        i = p.i
        store = self.stores[self.p_store[i]] if r.random() < 0.85 else self.pick(self.stores)
        ts = self._time(day, p, self.cum_store_hours, pref=False)
        buys = r.random() < min(0.85, 0.45 * math.sqrt(self.p_conv[i]) + 0.15)
        if not self.emit:
            if buys:
                items = self.basket(p, 5)[:3]
                self._order_outcome(p, day, self.totals(items, None)[4], future=True)
            return
        if p.app is not None and p.app.installed and p.location_ok and r.random() < 0.7:
            a = p.app
            self._reg_app(p, a)
            ctx = self._app_ctx(p, a, store.lat, store.lon)
            self.track(p, ts - self.ri(0, 5 * MIN), a, "Store Visited", {
                "store_id": store.store_id, "store_name": store.name, "latitude": store.lat, "longitude": store.lon,
                "distance_m": self.ri(5, 80)}, ctx, True)
        if not buys:
            return
        items = [(self.pick_product(p), 1) for _ in range(1 + (r.random() < 0.35) + (r.random() < 0.1))]
        coupon = COUPONS[2] if p.loyalty_id and r.random() < 0.15 else None
        subtotal, discount, _, _, total = self.totals(items, coupon)
        total = round(subtotal - discount, 2)
        self._order_outcome(p, day, total)
        self.n_receipts += 1
        rid = f"R{store.store_id[-3:]}-{self.n_receipts:08d}"
        p.records["pos_receipt_ids"].append(rid)
        # who the customer is, as the till records it
        loyalty = first = last = postcode = email = phone = ""
        x = r.random()
        if p.loyalty_id and x < 0.85:
            loyalty = self.reg(p, "loyalty_id", p.loyalty_id)
            if r.random() < 0.1:  # the card was forgotten: looked up by phone
                loyalty = ""
                phone = self.fmt_phone(p)
        elif r.random() < 0.45:
            first, last = self.typo_name(self.pop.first[i]), self.typo_name(self.pop.last[i])
            postcode = self.typo_postcode(self.pop.postcode[i])
            if r.random() < 0.5:
                if r.random() < 0.12:
                    email = self.pick(data.PLACEHOLDER_EMAILS)
                    self.placeholders.add(("email", email))
                    self.reg(p, "email", email, placeholder=True)
                else:
                    email = self.fmt_email(p)
            if r.random() < 0.3:
                phone = self.fmt_phone(p)
        row_common = {
            "receipt_id": rid, "store_id": store.store_id, "store_city": store.city,
            "purchased_at": self.local_iso(ts, " ", False), "loyalty_id": loyalty, "customer_first_name": first,
            "customer_last_name": last, "customer_postcode": postcode, "customer_email": email,
            "customer_phone": phone, "payment_method": self.pick(["card", "card", "card", "cash", "bizum"]),
            "currency": self.cfg.currency, "receipt_total": f"{total:.2f}",
        }
        for k, (j, q) in enumerate(items):
            pr = self.cat.props[j]
            line_disc = round(self.c_price[j] * q * coupon[1], 2) if coupon else 0.0
            row = {**row_common, "line_number": k + 1, "sku": pr["sku"], "product_id": pr["product_id"],
                   "product_name": pr["name"], "category": pr["category"], "quantity": q,
                   "unit_price": f"{self.c_price[j]:.2f}", "line_discount": f"{line_disc:.2f}",
                   "line_total": f"{self.c_price[j] * q - line_disc:.2f}", "coupon": coupon[0] if coupon else ""}
            self.seq += 1
            self.out.pos.append((ts, self.seq, row, i))
        self._seen(p, ts)

    # --- messy values as people and tills write them ----------------------------------------

    def fmt_phone(self, p: Person) -> str:
        """The phone in one of the formats people write, registered under its E.164 value."""
        r = self.r
        if r.random() < 0.03:
            ph = self.pick(data.PLACEHOLDER_PHONES)
            self.placeholders.add(("phone", ph))
            self.reg(p, "phone", ph, placeholder=True)
            return ph
        e = self.reg(p, "phone", p.phone)
        n = e[3:]
        x = r.random()
        if x < 0.35:
            return n
        if x < 0.55:
            return f"{n[:3]} {n[3:5]} {n[5:7]} {n[7:]}"
        if x < 0.7:
            return f"+34 {n[:3]} {n[3:6]} {n[6:]}"
        if x < 0.8:
            return f"0034{n}"
        return e

    def fmt_email(self, p: Person, allow_typo: bool = True) -> str:
        r = self.r
        e = p.email
        if allow_typo and r.random() < 0.06:
            local, dom = e.split("@")
            typo_dom = self.pick(data.DOMAIN_TYPOS.get(dom, [dom + "m"]))
            v = f"{local}@{typo_dom}"
            self.reg(p, "email", v, variant_of=e)
            return v if r.random() < 0.7 else v.upper()
        self.reg(p, "email", e)
        x = r.random()
        if x < 0.1:
            return e.capitalize()
        if x < 0.15:
            return f" {e} "
        if x < 0.2:
            return e.upper()
        return e

    def typo_name(self, s: str) -> str:
        r = self.r
        x = r.random()
        if x < 0.55:
            return s
        if x < 0.7:
            return strip_accents(s)
        if x < 0.78:
            return s.upper()
        if x < 0.84 and s in data.NICKNAMES:
            return data.NICKNAMES[s]
        if len(s) < 4:
            return s
        k = r.randrange(1, len(s) - 1)
        y = r.random()
        if y < 0.35:  # transposition
            return s[:k] + s[k + 1] + s[k] + s[k + 2:]
        if y < 0.65:  # deletion
            return s[:k] + s[k + 1:]
        if y < 0.85:  # doubled letter
            return s[:k] + s[k] + s[k:]
        keyboard = "qwertyuiopasdfghjklzxcvbnm"
        return s[:k] + keyboard[(keyboard.find(s[k].lower()) + 1) % 26] + s[k + 1:]

    def typo_postcode(self, pc: str) -> str:
        r = self.r
        x = r.random()
        if x < 0.85:
            return pc
        if x < 0.92 and pc.startswith("0"):
            return pc[1:]  # the leading zero lost by a spreadsheet
        k = r.randrange(2, 5)
        return pc[:k] + str((int(pc[k]) + 1) % 10) + pc[k + 1:]


_HM = [f"{h:02d}:{m:02d}" for h in range(24) for m in range(60)]
_SSMS = [f"{s:02d}.{ms:03d}" for s in range(60) for ms in range(1000)]


def _key(item):
    return item[0], item[1]


def _ts(item):
    return item[0]
