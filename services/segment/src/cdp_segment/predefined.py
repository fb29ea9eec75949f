"""The predefined audiences (issue 7, item 2), present from the start: created at start-up when
missing (never overwritten: operators may update them; they cannot be deleted)."""

from __future__ import annotations

import asyncpg

from cdp_core.errors import AlreadyExists
from cdp_core.logs import get_logger

from . import definition as d
from . import segments

log = get_logger(__name__)

AUDIENCES = """
segments:
  - name: purchasers-30d
    description: Completed an order in the last 30 days.
    where: {event: {name: Order Completed, window: {last_days: 30}}}
  - name: cart-abandoners
    description: Has a product in the cart for 24 hours or more, not bought and not removed since it was added.
    where: {product: {list: abandoned}}
  - name: product-page-abandoners
    description: Viewed a product in the last 7 days, added none to the cart and ordered nothing since.
    where:
      all:
        - event: {name: Product Viewed, window: {last_days: 7}}
        - not: {event: {name: Product Added, window: {last_days: 7}}}
        - not: {event: {name: Order Completed, window: {last_days: 7}}}
  - name: engaged-email-30d
    description: Opened or clicked an email in the last 30 days.
    where: {engaged: {channel: email, within_days: 30}}
  - name: engaged-sms-30d
    description: Clicked or replied to an SMS in the last 30 days.
    where: {engaged: {channel: sms, within_days: 30}}
  - name: engaged-whatsapp-30d
    description: Read or replied to a WhatsApp message in the last 30 days.
    where: {engaged: {channel: whatsapp, within_days: 30}}
  - name: engaged-push-30d
    description: Opened a push notification in the last 30 days.
    where: {engaged: {channel: push, within_days: 30}}
  - name: new-visitors
    description: First seen in the last 7 days.
    where: {computed: {name: first_seen, op: within_last_days, value: 7}}
  - name: anonymous-visitors
    description: Known only by anonymous ids or devices.
    where: {known: {known: false}}
  - name: high-value
    description: Top LTV decile (predicted LTV percentile at least 90).
    where: {predicted: {name: ltv_percentile, op: gte, value: 90}}
  - name: at-risk
    description: Two or more orders, and none for more than twice their usual interval between orders.
    where: {purchase_overdue: {factor: 2}}
  - name: discount-seekers
    description: At least two orders, half or more of them with a discount.
    where:
      all:
        - computed: {name: orders.count, op: gte, value: 2}
        - computed: {name: discount_share, op: gte, value: 0.5}
  - name: nps-detractors
    description: Latest NPS answer 0-6. Suppressed on every channel by default.
    suppresses: ["*"]
    where: {computed: {name: nps.score, op: lte, value: 6}}
"""


def definitions():
    return d.load_documents(AUDIENCES)


async def ensure(pool: asyncpg.Pool, retention_days: int) -> list[str]:
    """Creates the predefined audiences not present; returns the names created."""
    created = []
    for definition in definitions():
        async with pool.acquire() as conn, conn.transaction():
            if await conn.fetchval("SELECT 1 FROM seg_segments WHERE name = $1 AND deleted_at IS NULL",
                                   definition.name):
                continue
            try:
                await segments.create(conn, definition, retention_days, predefined=True)
            except AlreadyExists:  # another replica starting beside us created it
                continue
            created.append(definition.name)
    if created:
        log.info("predefined audiences created", names=created)
    return created
