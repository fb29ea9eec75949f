"""The identity graph in memory: the part of it a batch of events touches. Pure: no I/O.

The projection loads the profiles an event batch touches into a `Graph`, resolves the
events one by one (`resolve`) and writes back what changed (`Changes`). A rebuild (a split,
or events applied out of log order) resolves a set of stored events afresh, in log order,
in an empty `Graph` and writes back the result.

Determinism (DESIGN.md: the same log gives the same graph, whatever the order in which
concurrent resolvers apply it): a profile's `created_seq` is the lowest log sequence of
its events, a new profile's id derives from the highest-priority identifier of the event
that creates it, and a merge keeps the profile created first. When an event joins
profiles that were all created after it (it was applied late), the event's own profile
is created and the others merge into it — exactly what applying the log in order gives.
Without order-dependent rules (limits, merge protection, splits) that makes the grouping
and the ids independent of the order of application; the projection rebuilds a profile
in log order when an order-dependent rule acted on it out of order (`Outcome.conflicted`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from cdp_core import envelope

from .rules import NEW, Decision, Dropped, Merge, Provenance, Rules, Unresolvable, conflict_of, decide, separated_by

Key = tuple[str, str]
# Rules whose outcome depends on the order in which events are applied.
ORDER_DEPENDENT = frozenset({"limit", "merge-protection", "split", "shared-value"})


def profile_id_for(type_: str, value: str) -> str:
    return envelope.derived_id("profile", type_, value)


@dataclass
class Node:
    """A live profile: duck-types rules.Profile for `decide`."""

    profile_id: str
    created_seq: int
    last_seq: int
    identifiers: dict[str, set[str]] = field(default_factory=dict)
    conflicted: bool = False  # an order-dependent rule acted on it

    def keys(self) -> Iterable[Key]:
        for t, vs in self.identifiers.items():
            for v in vs:
                yield (t, v)

    def add(self, key: Key) -> None:
        self.identifiers.setdefault(key[0], set()).add(key[1])


@dataclass(frozen=True)
class Outcome:
    """What resolving one event did."""

    profile_id: str
    accepted: tuple[Key, ...]
    new_identifiers: tuple[Key, ...]
    merges: tuple[Merge, ...]
    dropped: tuple[Dropped, ...]
    created: bool
    late: bool  # applied after an event with a higher log sequence on the same profiles
    conflicted: bool  # an order-dependent rule took part

    @property
    def needs_rebuild(self) -> bool:
        return self.late and self.conflicted


@dataclass
class Changes:
    """What a Graph changed since it was loaded, for the projection to write back."""

    new_profiles: dict[str, Node] = field(default_factory=dict)
    new_identifiers: dict[Key, tuple[str, int]] = field(default_factory=dict)  # key -> (event id, seq)
    merged_into: dict[str, str] = field(default_factory=dict)  # merged id -> survivor (direct)
    merges: list[tuple[Merge, str]] = field(default_factory=list)  # (merge, event id)
    touched: set[str] = field(default_factory=set)
    links: dict[str, Link] = field(default_factory=dict)  # merge id -> the link it came from
    sighted: set[tuple[Key, str]] = field(default_factory=set)  # (value, profile) sightings to store


class Graph:
    def __init__(self, rules: Rules, nodes: Iterable[Node] = (), *,
                 separations: Mapping[Key, frozenset[tuple[str, int]]] | None = None,
                 sightings: Mapping[Key, Iterable[str]] | None = None,
                 taken_ids: Mapping[str, str | None] | Iterable[str] = ()):
        self.rules = rules
        self.nodes: dict[str, Node] = {}
        self.owner: dict[Key, str] = {}
        self.add(nodes)
        self.separations = dict(separations or {})
        # For the types in rules.shared_max_profiles: the profiles each value was presented with.
        self.sightings: dict[Key, set[str]] = {k: set(v) for k, v in (sightings or {}).items()}
        self.tracked = frozenset(rules.shared_max_profiles)
        # Ids of profiles that no longer live -> the profile they were merged into (None: removed).
        self.taken: dict[str, str | None] = dict(taken_ids) if isinstance(taken_ids, Mapping) else dict.fromkeys(
            taken_ids)
        self.changes = Changes()

    def add(self, nodes: Iterable[Node]) -> None:
        """Brings more (locked, loaded) profiles into the graph."""
        for n in nodes:
            if n.profile_id not in self.nodes:
                self.nodes[n.profile_id] = n
                for k in n.keys():
                    self.owner[k] = n.profile_id

    def canonical(self, profile_id: str) -> str:
        m = self.changes.merged_into
        while profile_id in m:
            profile_id = m[profile_id]
        return profile_id

    def resolve(self, seq: int, event_id: str, keys: Iterable[Key]) -> Outcome:
        """Resolves one event (its normalized identifiers). Raises rules.Unresolvable when
        the rules drop every identifier."""
        keys = list(keys)
        owner = self.owner
        touched = {owner[k] for k in keys if k in owner}
        if len(touched) == 1 and len(keys) == sum(k in owner for k in keys) and not self.tracked:
            # The common case (a returning visitor): every identifier is on one profile
            # already. Nothing to add or merge; only a rule applied since could drop one.
            node = self.nodes[next(iter(touched))]
            if seq >= node.created_seq and not any(self.rules.blocked_by(k) for k in keys):
                node.last_seq = max(node.last_seq, seq)
                self.changes.touched.add(node.profile_id)
                late = node.last_seq > seq
                return Outcome(node.profile_id, tuple(sorted(keys, key=self.rules.sort_key)), (), (), (), False,
                               late, node.conflicted)
        profiles = [self.nodes[p] for p in touched]
        seen = {k: len(self.sightings.get(k, ())) for k in keys if k[0] in self.tracked} if self.tracked else None
        d: Decision = decide(self.rules, keys, profiles, sightings=seen,
                             separations=self.separations)  # type: ignore[arg-type]
        late = any(p.last_seq > seq for p in profiles)
        conflicted = any(x.provenance.rule in ORDER_DEPENDENT for x in d.dropped) or any(
            p.conflicted for p in profiles)
        joined = [self.nodes[m.merged] for m in d.merges]
        created = False
        merges = list(d.merges)
        if d.is_new:
            node = self._create(d.anchor, seq)
            created = True
        else:
            node = self.nodes[d.profile]
            if seq < node.created_seq:
                # Applied late: in log order this event came first, so its profile is the
                # oldest. Its id is the one it would have created.
                node, merges = self._earlier(d, seq, [node, *joined])
        for m in merges:
            self._merge(m, event_id)
        for k in d.new_identifiers:
            self.owner[k] = node.profile_id
            node.add(k)
            self.changes.new_identifiers[k] = (event_id, seq)
        node.last_seq = max(node.last_seq, seq)
        node.conflicted = node.conflicted or conflicted
        if self.tracked:
            for k in keys:
                if k[0] in self.tracked:
                    self.sightings.setdefault(k, set()).add(node.profile_id)
                    self.changes.sighted.add((k, node.profile_id))
        self.changes.touched.add(node.profile_id)
        return Outcome(node.profile_id, d.accepted, d.new_identifiers, tuple(merges), d.dropped, created,
                       late, conflicted)

    def _create(self, anchor: Key, seq: int) -> Node:
        pid = profile_id_for(*anchor)
        if pid in self.nodes or pid in self.taken:
            # The anchor's id was used by a profile that has since gone (a split or a
            # forget): this profile is named by its anchor and creating sequence.
            pid = envelope.derived_id("profile", anchor[0], anchor[1], str(seq))
        node = Node(pid, seq, seq)
        self.nodes[pid] = node
        self.changes.new_profiles[pid] = node
        return node

    def _earlier(self, d: Decision, seq: int, joined: list[Node]) -> tuple[Node, list[Merge]]:
        pid = profile_id_for(*d.anchor)
        survivor = next((n for n in joined if n.profile_id == pid), None)
        if survivor is None and pid in self.taken and self._holder(pid) in {n.profile_id for n in joined}:
            # The anchor's profile was merged into one of these earlier (in the order of
            # application, not of the log): it comes back as the survivor.
            survivor = Node(pid, seq, seq)
            self.nodes[pid] = survivor
            self.changes.new_profiles[pid] = survivor
            del self.taken[pid]
            self.changes.merged_into.pop(pid, None)
        if survivor is None:
            survivor = self._create(d.anchor, seq)
        survivor.created_seq = seq
        why = f"older profile (created at log sequence {seq})"
        merges = [Merge(survivor.profile_id, n.profile_id,
                        Provenance("shared-identifier", next((k for k in d.accepted if self.owner.get(k) == n.profile_id),
                                                             d.anchor), 1.0, why))
                  for n in sorted(joined, key=lambda n: (n.created_seq, n.profile_id)) if n is not survivor]
        self.changes.touched.add(survivor.profile_id)
        return survivor, merges

    def _holder(self, pid: str) -> str | None:
        """The live profile a gone one was merged into, if any."""
        seen = set()
        while pid in self.taken and pid not in seen:
            seen.add(pid)
            nxt = self.taken[pid]
            if nxt is None:
                return None
            pid = nxt
        return self.canonical(pid)

    def _merge(self, m: Merge, event_id: str) -> None:
        survivor, merged = self.nodes[m.survivor], self.nodes.pop(m.merged)
        for k in merged.keys():
            self.owner[k] = survivor.profile_id
            survivor.add(k)
        survivor.created_seq = min(survivor.created_seq, merged.created_seq)
        survivor.last_seq = max(survivor.last_seq, merged.last_seq)
        survivor.conflicted = survivor.conflicted or merged.conflicted
        self.taken[merged.profile_id] = survivor.profile_id
        if self.tracked:  # a value seen with both profiles was seen with one person
            for k, pids in self.sightings.items():
                if merged.profile_id in pids:
                    pids.discard(merged.profile_id)
                    pids.add(survivor.profile_id)
                    self.changes.sighted.add((k, survivor.profile_id))
        self.changes.merged_into[merged.profile_id] = survivor.profile_id
        self.changes.merges.append((m, event_id))
        self.changes.touched.discard(merged.profile_id)
        self.changes.touched.add(survivor.profile_id)

    def link_conflict(self, a: str, b: str) -> str | None:
        """Why profiles a and b may not merge outside the deterministic links (a limit, or a
        split between them), or None. Merge protection guards against merging on one shared
        identifier; a probabilistic match compares the whole record (names, birth date,
        address) and a reviewed one was decided by a person, so protection does not apply to
        them: two CRM contacts of one person (a CRM duplicate) can merge this way."""
        na, nb = self.nodes[a], self.nodes[b]
        found = conflict_of(self.rules, na.identifiers, nb.identifiers, merging=False)
        if found is not None:
            return found[1]
        if self.separations:
            tags = {t for k in na.keys() for t in self.separations.get(k, ())}
            split_id = separated_by(tags, {t for k in nb.keys() for t in self.separations.get(k, ())})
            if split_id is not None:
                return f"separated by split {split_id}"
        return None

    def link(self, lk: Link) -> Merge | None:
        """Applies a merge decided outside the rules' deterministic links (a probabilistic
        match, an accepted review candidate) between the profiles holding lk.a and lk.b: the
        older profile survives. None when they are one profile already, one side is not in
        the graph, or a rule forbids it (`link_conflict`)."""
        pa, pb = self.owner.get(lk.a), self.owner.get(lk.b)
        if pa is None or pb is None or pa == pb or self.link_conflict(pa, pb) is not None:
            return None
        s, m = sorted((self.nodes[pa], self.nodes[pb]), key=lambda n: (n.created_seq, n.profile_id))
        why = f"older profile (created at log sequence {s.created_seq})"
        merge = Merge(s.profile_id, m.profile_id, Provenance(lk.rule, lk.a, lk.confidence, why, lk.details))
        self._merge(merge, lk.event_id)
        self.changes.links[merge_key(lk.event_id, m.profile_id)] = lk
        return merge


@dataclass(frozen=True)
class Link:
    """A merge between the profiles holding two identifiers, applied after the event at seq."""

    seq: int
    event_id: str
    a: Key
    b: Key
    rule: str
    confidence: float
    details: Mapping | None = None


def merge_key(event_id: str, merged: str) -> str:
    return envelope.derived_id("merged", event_id, merged)


def rebuild(rules: Rules, events: Iterable[tuple[int, str, list[Key]]], *,
            separations: Mapping[Key, frozenset[tuple[str, int]]] | None = None,
            taken_ids: Iterable[str] = (), record: dict[int, Outcome] | None = None,
            links: Iterable[Link] = (), sightings: Mapping[Key, Iterable[str]] | None = None
            ) -> tuple[Graph, dict[int, str]]:
    """Resolves (seq, event id, identifiers) afresh in log order in an empty graph; returns
    the graph and each event's final (canonical) profile id. Events every identifier of
    which is dropped belong to no profile and are left out. `record` receives each
    event's Outcome. `links` are applied again after the event at their sequence."""
    g = Graph(rules, separations=separations, taken_ids=taken_ids, sightings=sightings)
    assigned: dict[int, str] = {}
    after: dict[int, list[Link]] = {}
    for lk in links:
        after.setdefault(lk.seq, []).append(lk)
    for seq, event_id, keys in sorted(events, key=lambda e: e[0]):
        try:
            out = g.resolve(seq, event_id, keys)
        except Unresolvable:
            out = None
        if out is not None:
            assigned[seq] = out.profile_id
            if record is not None:
                record[seq] = out
        for lk in after.get(seq, ()):
            g.link(lk)
    return g, {seq: g.canonical(pid) for seq, pid in assigned.items()}


__all__ = ["NEW", "Changes", "Graph", "Link", "Node", "Outcome", "profile_id_for", "rebuild"]
