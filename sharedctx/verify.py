"""Tamper evidence: what `sharedctx verify` checks, and why each check exists.

A hash chain alone proves that the entries it holds fit together; it cannot tell that entries at its end,
or whole cases, were removed (the chain that is left is still a valid chain). So `verify` checks three
things, each against a record kept apart from the entries themselves:

1. each case's chain: gap-free sequence, prev-hash links, every hash (`store.chain.verify_entries`);
2. each case's chain against its recorded head: `cases.last_seq`/`last_hash`, bumped in the same
   transaction as every append. Deleting the last entries leaves a head that points past the chain;
3. the checkpoint chain: batches of case heads, each chained to the one before (`SQLStore.write_checkpoint`).
   A case deleted outright, or truncated by someone who also rewound its head, is still named by the
   checkpoints that saw it.

Someone with write access to the database can rewrite all three consistently; `verify --against BACKEND`
checks the local heads against the copies a backend holds, which such a person would have to rewrite too.
"""

from __future__ import annotations

from collections.abc import Sequence

from .backends.base import Backend, ListsThreads, ThreadRef
from .model import GENESIS_HASH, CaseRecord, ChainIssue, Entry, VerifyReport
from .store.base import Checkpoint, Store
from .store.chain import verify_entries

CHECKPOINTS = "(checkpoints)"  # the report that speaks for the checkpoint chain itself


def _issue(report: VerifyReport, problem: str, seq: int | None = None, entry_id: str | None = None) -> None:
    report.issues.append(ChainIssue(case_id=report.case_id, seq=seq, entry_id=entry_id, problem=problem))
    report.ok = False


def check_head(report: VerifyReport, case: CaseRecord, entries: Sequence[Entry]) -> None:
    """The chain must end exactly at the head recorded on the case row."""
    last_seq = entries[-1].seq if entries else 0
    last_hash = entries[-1].hash if entries else GENESIS_HASH
    if case.last_seq > last_seq:
        gone = f"#{last_seq + 1}" + (f"–#{case.last_seq}" if case.last_seq > last_seq + 1 else "")
        _issue(report, f"the case's recorded head is #{case.last_seq} but its chain ends at #{last_seq}: entries "
                       f"{gone} were deleted (the tail of the case was truncated)", seq=case.last_seq)
    elif case.last_seq < last_seq:
        _issue(report, f"the chain runs to #{last_seq} past the case's recorded head #{case.last_seq}: entries "
                       "were inserted behind the journal's back, or the head was rewound", seq=last_seq)
    elif case.last_hash != last_hash:
        _issue(report, f"the last entry's hash ({last_hash[:12]}…) is not the case's recorded head "
                       f"({case.last_hash[:12]}…): the last entry was replaced", seq=last_seq,
               entry_id=entries[-1].id if entries else None)


def check_checkpoints(
    checkpoints: Sequence[Checkpoint], cases: dict[str, CaseRecord], entries: dict[str, list[Entry]],
    reports: dict[str, VerifyReport], *, only: str | None = None,
) -> VerifyReport:
    """Every case head a checkpoint saw must still be there, with the same hash."""
    chain = VerifyReport(case_id=CHECKPOINTS, entries=len(checkpoints), ok=True)
    prev = GENESIS_HASH
    for cp in checkpoints:
        if cp.prev_hash != prev or cp.hash != cp.expected_hash():
            _issue(chain, f"checkpoint {cp.id} ({cp.at}) does not follow from the one before it: a checkpoint "
                          "was removed, edited or inserted")
        prev = cp.hash
        for case_id, (seq, digest) in cp.heads.items():
            if only is not None and case_id != only:
                continue
            if case_id not in cases:
                report = reports.setdefault(case_id, VerifyReport(case_id=case_id, entries=0, ok=False))
                if not report.issues:
                    _issue(report, f"the case was deleted: checkpoint {cp.id} ({cp.at}) recorded it with {seq} "
                                   "entries, and it is no longer in the journal", seq=seq)
                continue
            by_seq = {e.seq: e for e in entries.get(case_id, [])}
            report = reports[case_id]
            have = by_seq.get(seq)
            if have is None:
                _issue(report, f"checkpoint {cp.id} ({cp.at}) saw this case at #{seq}, which is gone: the case "
                               "was truncated (and its recorded head rewound)", seq=seq)
            elif have.hash != digest:
                _issue(report, f"entry #{seq} is not the one checkpoint {cp.id} ({cp.at}) saw (hash "
                               f"{digest[:12]}…, now {have.hash[:12]}…): history was rewritten from here",
                       seq=seq, entry_id=have.id)
    return chain


def verify_journal(store: Store, case_id: str | None = None) -> list[VerifyReport]:
    """Verify one case, or the whole journal (then the checkpoint chain too, and deleted cases)."""
    records = [store.get_case(case_id)] if case_id else store.list_cases(limit=10**9)
    cases = {c.id: c for c in records}
    entries = {c.id: store.entries(c.id) for c in records}
    reports: dict[str, VerifyReport] = {}
    for c in records:
        report = verify_entries(c.id, entries[c.id])
        check_head(report, c, entries[c.id])
        reports[c.id] = report
    chain = check_checkpoints(store.checkpoints(), cases, entries, reports, only=case_id)
    out = [reports[c.id] for c in records]
    out += [r for k, r in reports.items() if k not in cases]  # deleted cases
    if case_id is None and chain.entries:
        out.append(chain)
    return out


def verify_against(store: Store, backend: Backend, case_id: str | None = None) -> list[VerifyReport]:
    """Compare each case's local journal with the copy `backend` holds (its read-back of our markers).

    Fails where the backend holds an entry the journal lacks or holds differently (the local journal was
    truncated or rewritten), or lacks an entry the outbox says it delivered (the backend copy was removed).
    Entries not yet delivered are not a failure."""
    records = [store.get_case(case_id)] if case_id else store.list_cases(limit=10**9)
    delivered = {d.entry_id for d in store.list_deliveries(state="delivered", backend=backend.name, limit=10**9)}
    out = []
    for c in records:
        local = store.entries(c.id)
        report = VerifyReport(case_id=c.id, entries=len(local), ok=True)
        bound = c.bindings.get(backend.name)
        if not bound:
            if any(e.id in delivered for e in local):
                _issue(report, f"the outbox says entries were delivered to {backend.name}, but the case has no "
                               "thread there")
            out.append(report)
            continue
        remote = backend.read_back(ThreadRef.model_validate({"backend": backend.name, **bound})).entries
        by_seq = {e.seq: e for e in local}
        for r in sorted(remote, key=lambda e: e.seq):
            mine = by_seq.get(r.seq)
            if mine is None:
                _issue(report, f"{backend.name} holds entry #{r.seq} ({r.id}) that the local journal lacks: the "
                               "local journal was truncated", seq=r.seq, entry_id=r.id)
            elif mine.hash != r.hash or mine.id != r.id:
                _issue(report, f"entry #{r.seq} differs from the copy in {backend.name} (local {mine.hash[:12]}…, "
                               f"{backend.name} {r.hash[:12]}…)", seq=r.seq, entry_id=mine.id)
        if remote and max(e.seq for e in remote) > c.last_seq:
            _issue(report, f"{backend.name} holds entries up to #{max(e.seq for e in remote)}, past the local "
                           f"head #{c.last_seq}", seq=c.last_seq)
        held = {e.id for e in remote}
        for e in local:
            if e.id in delivered and e.id not in held:
                _issue(report, f"entry #{e.seq} was delivered to {backend.name} but is no longer there",
                       seq=e.seq, entry_id=e.id)
        out.append(report)
    if case_id is None:
        ours = {str(c.bindings[backend.name].get("id")) for c in records if backend.name in c.bindings}
        out += _deleted_cases(backend, {c.id for c in records}, ours)
    return out


def _deleted_cases(backend: Backend, cases: set[str], bound: set[str]) -> list[VerifyReport]:
    """A report for every thread `backend` holds that no case in the journal is bound to: the case (and,
    for a careful tamperer, its checkpoints) was deleted from the journal."""
    if not isinstance(backend, ListsThreads):
        return []
    out = []
    for thread in backend.threads():
        if thread.id in bound or thread.id in cases:
            continue
        held = backend.read_back(thread).entries
        if not held:
            continue  # a thread we opened and never wrote to says nothing about the journal
        case = held[0].case_id
        report = VerifyReport(case_id=case, entries=0, ok=True)
        _issue(report, f"the case was deleted from the journal: {backend.name} holds its thread {thread.id} "
                       f"with {len(held)} entries (up to #{max(e.seq for e in held)})")
        out.append(report)
    return out
