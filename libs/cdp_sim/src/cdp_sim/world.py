"""The world: parameters, catalogue, stores, channels and people with latent traits.

Everything here is drawn once, vectorised with numpy, from the seed. Behaviour over the
days lives in `engine.py`.
"""

from __future__ import annotations

import math
import random
import unicodedata
from dataclasses import asdict, dataclass
from datetime import date

import numpy as np

from . import data

CHANNELS = ("email", "sms", "whatsapp", "push")


@dataclass(frozen=True)
class SimConfig:
    """The knobs. Defaults describe a mid-size Spanish fashion retailer."""

    people: int = 1000
    days: int = 90
    seed: int = 1
    start: str = "2026-01-01"  # first simulated day (UTC); never the wall clock
    horizon: int = 28  # days after the cutoff simulated for the outcomes only (nothing emitted)
    products: int = 3000
    stores: int = 24
    share_b2b: float = 0.05  # people who belong to a B2B account
    share_app: float = 0.35  # people who install the app
    share_loyalty: float = 0.40  # loyalty-card members
    share_account: float = 0.45  # people with a web account at the start (others may sign up)
    share_browser_only: float = 0.30  # visitors who never identify themselves online
    share_new: float = 0.30  # people who arrive during the window (the rest exist at the start)
    share_shared_device: float = 0.25  # households of 2+ that share a family tablet
    share_family_email: float = 0.15  # households of 2+ that share one e-mail address
    mean_sessions_per_day: float = 0.09  # mean of the heavy-tailed per-person activity rate
    currency: str = "EUR"
    shop_domain: str = "moda-sim.myshopify.com"
    webhook_secret: str = "cdp-sim-webhook-secret"

    def to_json(self) -> dict:
        return asdict(self)

    @property
    def start_date(self) -> date:
        return date.fromisoformat(self.start)


def strip_accents(s: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFKD", s) if not unicodedata.combining(c))


def slug(s: str) -> str:
    return strip_accents(s).lower().replace(" ", "").replace("-", "").replace("'", "")


# --- catalogue ---------------------------------------------------------------------------


@dataclass
class Catalogue:
    """`n` products; each is one SKU (one colour and one size) of a style."""

    category: np.ndarray  # int index into data.CATEGORIES
    brand: np.ndarray
    colour: np.ndarray
    size: list[str]
    price: np.ndarray  # current price, EUR
    compare_at: np.ndarray  # list price (== price when not discounted)
    on_sale: np.ndarray  # bool
    new_arrival: np.ndarray  # bool
    band: np.ndarray  # price band within its category: 0 budget, 1 mid, 2 premium
    popularity: np.ndarray
    props: list[dict]  # Segment product properties, built once and shared
    by_cat_band: dict  # (category, band) -> (list of product idx, cumulative popularity)

    @property
    def n(self) -> int:
        return len(self.price)


def build_catalogue(cfg: SimConfig, rng: np.random.Generator) -> Catalogue:
    n = cfg.products
    shares = np.array([c[3] for c in data.CATEGORIES], dtype=float)
    category = rng.choice(len(data.CATEGORIES), size=n, p=shares / shares.sum())
    category.sort(kind="stable")
    brand = rng.zipf(1.6, size=n) % len(data.BRANDS)
    colour = rng.choice(len(data.COLOURS), size=n, p=_zipf_p(len(data.COLOURS), 0.9, rng))
    median = np.array([data.CATEGORIES[c][2] for c in category])
    price = np.round(median * rng.lognormal(0.0, 0.45, size=n), 0) - 0.05
    price = np.maximum(price, 2.95)
    on_sale = rng.random(n) < 0.18
    pct = rng.choice([0.1, 0.2, 0.3, 0.4, 0.5], size=n, p=[0.25, 0.3, 0.25, 0.12, 0.08])
    compare_at = price.copy()
    price = np.where(on_sale, np.round(price * (1 - pct), 1) - 0.05, price)
    price = np.round(np.maximum(price, 1.95), 2)
    compare_at = np.round(compare_at, 2)
    new_arrival = rng.random(n) < 0.12
    popularity = rng.pareto(1.2, size=n) + 0.05
    band = np.zeros(n, dtype=np.int64)
    sizes: list[str] = []
    props: list[dict] = []
    by_cat_band: dict = {}
    srand = random.Random(int(rng.integers(2**62)))
    for c in range(len(data.CATEGORIES)):
        idx = np.nonzero(category == c)[0]
        if len(idx) == 0:
            continue
        q1, q2 = np.quantile(compare_at[idx], [1 / 3, 2 / 3])
        band[idx] = np.where(compare_at[idx] <= q1, 0, np.where(compare_at[idx] <= q2, 1, 2))
    for i in range(n):
        cname, kind, _, _ = data.CATEGORIES[category[i]]
        size = srand.choice(data.SIZES[kind])
        sizes.append(size)
        b = data.BRANDS[brand[i]]
        col = data.COLOURS[colour[i]]
        name = f"{b} {srand.choice(data.ADJECTIVES)} {cname.rstrip('s') if cname.endswith('s') and cname != 'Dresses' else cname}"
        if cname == "Dresses":
            name = f"{b} {srand.choice(data.ADJECTIVES)} Dress"
        pid = f"prod_{100000 + i}"
        sku = f"{slug(b)[:3].upper()}-{100000 + i}-{slug(col)[:3].upper()}-{size.replace(' ', '')}"
        props.append({
            "product_id": pid,
            "sku": sku,
            "category": cname,
            "name": name,
            "brand": b,
            "variant": f"{col} / {size}",
            "price": float(price[i]),
            "url": f"https://www.moda-sim.es/p/{pid}",
            "image_url": f"https://cdn.moda-sim.es/img/{pid}.jpg",
        })
    for c in range(len(data.CATEGORIES)):
        for b in range(3):
            idx = np.nonzero((category == c) & (band == b))[0]
            if len(idx) == 0:
                idx = np.nonzero(category == c)[0]
            if len(idx) == 0:
                idx = np.arange(n)
            cum = np.cumsum(popularity[idx]).tolist()
            by_cat_band[(c, b)] = (idx.tolist(), cum)
    return Catalogue(category, brand, colour, sizes, price, compare_at, on_sale, new_arrival, band,
                     popularity, props, by_cat_band)


def _zipf_p(k: int, a: float, rng: np.random.Generator) -> np.ndarray:
    w = 1.0 / np.arange(1, k + 1) ** a
    w = w[rng.permutation(k)]
    return w / w.sum()


# --- stores ------------------------------------------------------------------------------


@dataclass
class Store:
    store_id: str
    name: str
    city: str
    postcode: str
    lat: float
    lon: float


def build_stores(cfg: SimConfig, rng: np.random.Generator) -> list[Store]:
    w = np.array([c[4] for c in data.CITIES])
    cities = rng.choice(len(data.CITIES), size=cfg.stores, p=w / w.sum())
    cities[: min(cfg.stores, 5)] = np.arange(min(cfg.stores, 5))  # the five biggest cities always have one
    stores = []
    for i, c in enumerate(sorted(cities.tolist())):
        city, prefix, lat, lon, _ = data.CITIES[c]
        dlat, dlon = rng.normal(0, 0.02, size=2)
        stores.append(Store(f"store_{i + 1:03d}", f"Moda {city} {i + 1}", city,
                            f"{prefix}{int(rng.integers(1, 60)):03d}", round(float(lat + dlat), 5), round(float(lon + dlon), 5)))
    return stores


def km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    dlat = (lat2 - lat1) * 111.2
    dlon = (lon2 - lon1) * 111.2 * math.cos(math.radians((lat1 + lat2) / 2))
    return math.hypot(dlat, dlon)


# --- people ------------------------------------------------------------------------------


@dataclass
class Population:
    """Latent traits of every person, one numpy array per trait (index = person)."""

    n: int
    activity: np.ndarray  # expected web/app sessions per day (heavy-tailed)
    conversion: np.ndarray  # multiplier of the funnel's purchase probabilities
    rhythm: np.ndarray  # typical days between purchases
    churn_hazard: np.ndarray  # daily probability of churning
    price_sensitivity: np.ndarray  # 0..1: discount affinity
    pref_category: np.ndarray  # (n, 3) favourite categories, most preferred first
    pref_colour: np.ndarray  # (n, 2)
    pref_size: list[str]
    pref_band: np.ndarray  # price band 0..2
    pref_brand: np.ndarray  # (n, 2)
    pref_channel: np.ndarray  # index into CHANNELS
    pref_hour: np.ndarray  # hour of day they are most active
    app_share: np.ndarray  # share of sessions in the app (0 without the app)
    store_rate: np.ndarray  # expected store visits per day
    consent: np.ndarray  # (n, 4) bool per channel at the start
    nps_mean: np.ndarray  # NPS disposition: mean score 0..10
    join_day: np.ndarray  # day they first appear (<=0: existed before the window)
    churn_day: np.ndarray  # day they churn (may be beyond the horizon)
    has_app: np.ndarray
    loyalty: np.ndarray
    account_at_start: np.ndarray
    browser_only: np.ndarray
    in_crm: np.ndarray
    account: np.ndarray  # B2B account index or -1
    household: np.ndarray
    gender: np.ndarray  # 0 female, 1 male
    city: np.ndarray
    lat: np.ndarray
    lon: np.ndarray
    home_store: np.ndarray
    store_km: np.ndarray
    birth: list[str]
    first: list[str]
    last: list[str]
    last2: list[str]
    email_local: list[str]
    email_domain: list[str]
    phone: list[str]
    street: list[str]
    postcode: list[str]


def build_population(cfg: SimConfig, stores: list[Store], rng: np.random.Generator) -> Population:
    n = cfg.people
    # Heavy-tailed activity: lognormal with sigma 1.1 (a few people visit daily, most rarely).
    sigma = 1.1
    activity = rng.lognormal(math.log(cfg.mean_sessions_per_day) - sigma**2 / 2, sigma, size=n)
    activity = np.minimum(activity, 3.0)
    browser_only = rng.random(n) < cfg.share_browser_only
    conversion = rng.lognormal(0.0, 0.6, size=n)
    conversion = np.where(browser_only, conversion * 0.15, conversion)
    rhythm = rng.gamma(2.0, 18.0, size=n) + 5.0
    churn_hazard = rng.beta(1.2, 160.0, size=n)  # mean ~0.0075/day
    price_sensitivity = rng.beta(2.0, 2.5, size=n)
    cat_pop = np.array([c[3] for c in data.CATEGORIES], dtype=float)
    pref_category = _pref_matrix(rng, n, cat_pop, 3)
    pref_colour = _pref_matrix(rng, n, np.ones(len(data.COLOURS)), 2)
    pref_brand = _pref_matrix(rng, n, 1.0 / np.arange(1, len(data.BRANDS) + 1) ** 0.7, 2)
    gender = (rng.random(n) < 0.45).astype(np.int64)
    size_idx = np.clip(np.round(rng.normal(2.0 + 0.8 * gender, 1.0, size=n)), 0, 5).astype(int)
    pref_size = [data.SIZES["apparel"][i] for i in size_idx.tolist()]
    pref_band = np.clip(np.round(rng.normal(1.0 - (price_sensitivity - 0.45) * 2.0, 0.7)), 0, 2).astype(int)
    pref_channel = rng.choice(4, size=n, p=[0.5, 0.12, 0.18, 0.2])
    pref_hour = np.clip(np.round(rng.normal(19.0, 3.5, size=n)), 7, 23).astype(int)
    has_app = (rng.random(n) < cfg.share_app) & ~browser_only
    app_share = np.where(has_app, rng.beta(3, 2, size=n), 0.0)
    consent = rng.random((n, 4)) < np.array([0.62, 0.35, 0.30, 0.55])
    consent[:, 3] &= has_app
    pref_channel = np.where((pref_channel == 3) & ~has_app, 0, pref_channel)
    nps_mean = np.clip(rng.normal(7.6, 2.0, size=n), 0, 10)
    join = rng.random(n) < cfg.share_new
    join_day = np.where(join, rng.integers(0, max(cfg.days, 1), size=n), -rng.integers(1, 720, size=n))
    churn_after = rng.geometric(np.maximum(churn_hazard, 1e-6)) - 1
    lapsed = (join_day < 0) & (rng.random(n) < 0.15)  # existing people who lapsed before the window
    churn_day = np.where(join_day < 0, np.where(lapsed, -rng.integers(1, 365, size=n), churn_after),
                         join_day + 1 + churn_after)
    loyalty = (rng.random(n) < cfg.share_loyalty) & ~browser_only
    account_at_start = (rng.random(n) < cfg.share_account) & ~browser_only & (join_day < 0)
    in_crm = loyalty | (account_at_start & (rng.random(n) < 0.7)) | (rng.random(n) < 0.05) & ~browser_only
    # B2B: a share of people belong to accounts of 1-8 people
    n_acc = max(1, int(n * cfg.share_b2b / 3))
    account = np.where((rng.random(n) < cfg.share_b2b) & ~browser_only, rng.integers(0, n_acc, size=n), -1)
    # households: consecutive people grouped into households of 1-4
    household = np.empty(n, dtype=np.int64)
    sizes = rng.choice([1, 2, 3, 4], size=n, p=[0.55, 0.25, 0.12, 0.08])
    i = h = 0
    while i < n:
        s = int(sizes[h])
        household[i : i + s] = h
        i += s
        h += 1
    w = np.array([c[4] for c in data.CITIES])
    city = rng.choice(len(data.CITIES), size=n, p=w / w.sum())
    # a household lives together
    first_of_house = np.r_[0, np.nonzero(np.diff(household))[0] + 1]
    house_city = city[first_of_house]
    city = house_city[household]
    lat0 = np.array([data.CITIES[c][2] for c in city])
    lon0 = np.array([data.CITIES[c][3] for c in city])
    jit = rng.normal(0, 0.04, size=(n, 2))
    lat = np.round(lat0 + jit[first_of_house][household, 0], 5)
    lon = np.round(lon0 + jit[first_of_house][household, 1], 5)
    s_lat = np.array([s.lat for s in stores])
    s_lon = np.array([s.lon for s in stores])
    d = np.hypot((lat[:, None] - s_lat[None, :]) * 111.2, (lon[:, None] - s_lon[None, :]) * 84.0)
    home_store = d.argmin(axis=1)
    store_km = d.min(axis=1)
    store_rate = rng.gamma(1.2, 0.012, size=n) * np.exp(-store_km / 25.0)
    srand = random.Random(int(rng.integers(2**62)))
    first, last, last2, birth, local, domain, phone, street, postcode = [], [], [], [], [], [], [], [], []
    dnames = [d_[0] for d_ in data.EMAIL_DOMAINS]
    dw = [d_[1] for d_ in data.EMAIL_DOMAINS]
    house_last: dict[int, str] = {}
    house_addr: dict[int, tuple[str, str]] = {}
    used_local: set[str] = set()
    for k in range(n):
        f = srand.choice(data.FIRST_NAMES_M if gender[k] else data.FIRST_NAMES_F)
        hh = int(household[k])
        if hh in house_last and srand.random() < 0.7:
            ln = house_last[hh]
        else:
            ln = srand.choice(data.LAST_NAMES)
        house_last.setdefault(hh, ln)
        l2 = srand.choice(data.LAST_NAMES)
        y = srand.randint(1950, 2006)
        birth.append(f"{y:04d}-{srand.randint(1, 12):02d}-{srand.randint(1, 28):02d}")
        pattern = srand.random()
        fs, ls, l2s = slug(f), slug(ln), slug(l2)
        if pattern < 0.35:
            loc = f"{fs}.{ls}"
        elif pattern < 0.55:
            loc = f"{fs}{ls}{y % 100:02d}"
        elif pattern < 0.7:
            loc = f"{fs[0]}{ls}{l2s[:3]}"
        elif pattern < 0.85:
            loc = f"{fs}_{ls}{srand.randint(1, 999)}"
        else:
            loc = f"{fs}{l2s}{srand.randint(10, 99)}"
        base = loc
        j = 2
        while loc in used_local:
            loc = f"{base}{j}"
            j += 1
        used_local.add(loc)
        first.append(f)
        last.append(ln)
        last2.append(l2)
        local.append(loc)
        domain.append(srand.choices(dnames, dw)[0])
        phone.append(f"+346{srand.randint(0, 99_999_999):08d}" if srand.random() < 0.85 else f"+347{srand.randint(0, 99_999_999):08d}")
        if hh not in house_addr:
            prefix = data.CITIES[city[k]][1]
            house_addr[hh] = (f"{srand.choice(data.STREETS)} {srand.randint(1, 180)}, {srand.randint(1, 8)}º{srand.choice('ABCD')}",
                              f"{prefix}{srand.randint(1, 80):03d}")
        street.append(house_addr[hh][0])
        postcode.append(house_addr[hh][1])
    return Population(
        n=n, activity=activity, conversion=conversion, rhythm=rhythm, churn_hazard=churn_hazard,
        price_sensitivity=price_sensitivity, pref_category=pref_category, pref_colour=pref_colour,
        pref_size=pref_size, pref_band=pref_band, pref_brand=pref_brand, pref_channel=pref_channel,
        pref_hour=pref_hour, app_share=app_share, store_rate=store_rate, consent=consent, nps_mean=nps_mean,
        join_day=join_day, churn_day=churn_day, has_app=has_app, loyalty=loyalty,
        account_at_start=account_at_start, browser_only=browser_only, in_crm=in_crm, account=account,
        household=household, gender=gender, city=city, lat=lat, lon=lon, home_store=home_store,
        store_km=store_km, birth=birth, first=first, last=last, last2=last2, email_local=local,
        email_domain=domain, phone=phone, street=street, postcode=postcode,
    )


def _pref_matrix(rng: np.random.Generator, n: int, weights: np.ndarray, k: int) -> np.ndarray:
    """k distinct choices per row, weighted (Gumbel top-k, vectorised)."""
    g = np.log(weights / weights.sum())[None, :] + rng.gumbel(size=(n, len(weights)))
    return np.argsort(-g, axis=1, kind="stable")[:, :k]
