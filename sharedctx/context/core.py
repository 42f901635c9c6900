"""`SharedContext`: one journal (store) with its backends, and the one path every write takes.

Why a module: everything that touches the journal as a whole lives here: opening and closing it,
finding cases, `_record` (validate, redact, append and fan out to the outbox in one transaction, with
the metrics and the span around it), a person's approval carrying out the status change a held entry
deferred, which backends an entry goes to, and search, verify and drain. `Case` handles and the input
checks sit beside it (`case`, `entries`) so this file stays the journal's own logic.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from ..backends import make_backend
from ..backends.base import Backend
from ..config import Config, load_config
from ..decisions import HOLD_ATTR, approves, check_answer, counts
from ..errors import (
    AmbiguousCase,
    CaseNotFound,
    ConfigError,
    EntryNotFound,
    InvalidEntry,
    SharedCtxError,
    validation_problems,
)
from ..model import (
    SYSTEM,
    Author,
    CaseRecord,
    CaseStatus,
    Entry,
    EntryDraft,
    EntryKind,
    Evidence,
    VerifyReport,
)
from ..redact import Redactor
from ..store.base import SearchFilters, Store, open_store
from .case import Case, NewEntry
from .entries import _ID_RE, DEFERRED_STATUS_ATTR, _evidence, _kind, _text

FIND_LIMIT = 10  # cases `find_case` reads per kind of match; more than one live one is ambiguous anyway

if TYPE_CHECKING:
    from types import ModuleType

    from ..delivery import DrainReport, Worker
    from ..search import CaseResult, SearchResult

_OBSERVABILITY: ModuleType | None = None


def _observability() -> ModuleType:
    """`sharedctx.observability`, imported on the first `record()`: it loads prometheus-client and
    OpenTelemetry, which a command that only reads never needs (issue 13, fast CLI). Kept here after that: a
    `from ... import` inside `record()` cost ~5% of its Python (the import machinery runs on every call)."""
    global _OBSERVABILITY
    if _OBSERVABILITY is None:
        from .. import observability

        _OBSERVABILITY = observability
    return _OBSERVABILITY


class SharedContext:
    """One journal (store) plus the configured backends and, optionally, the delivery worker."""

    def __init__(
        self,
        config: Config,
        store: Store,
        backends: Mapping[str, Backend],
        *,
        redactor: Redactor | None = None,
        worker: bool = False,
    ) -> None:
        self.config = config
        self.store = store
        if redactor is not None:
            store.redactor = redactor  # the store is the one choke point: it sanitises what it writes
        self.redactor: Redactor = store.redactor
        self.backends = dict(backends)
        self.backend_names = list(self.backends)
        self.default_author = Author(kind=config.agent.kind, name=config.agent.name)
        self._worker: Worker | None = None
        self._appended = False
        if worker:
            self.worker.start()

    @property
    def worker(self) -> Worker:
        """The delivery worker, built on first use: a command that only reads (`case list`) never imports the
        delivery machinery and the metrics and tracing libraries behind it (issue 13, fast CLI)."""
        if self._worker is None:
            from ..delivery import Worker

            self._worker = Worker(self.store, self.backends, self.config.worker)
        return self._worker

    def _wake_worker(self) -> None:
        if self._worker is not None and self._worker.running:
            self._worker.wake()

    @classmethod
    def open(
        cls,
        config: Config | str | Path | None = None,
        *,
        worker: bool | None = None,
        backends: Mapping[str, Backend] | None = None,
        store: Store | None = None,
    ) -> SharedContext:
        """Open the journal described by `config` (a `Config`, a path, or None to search for one).

        `worker=None` runs the delivery worker in this process if `[worker] enabled` (the default).
        `backends`/`store` let tests and embedders pass ready-made ones.
        """
        cfg = config if isinstance(config, Config) else load_config(config)
        opened = store is None
        store = store or open_store(cfg.store_url)
        if backends is None:  # rate budgets live in the store: every process on it shares them
            try:
                backends = {b.name: make_backend(b, base_dir=cfg.base_dir, limits=store) for b in cfg.backends}
            except BaseException:
                if opened:
                    store.close()
                raise
        return cls(
            cfg,
            store,
            backends,
            redactor=Redactor.from_config(cfg.redact),
            worker=cfg.worker.enabled if worker is None else worker,
        )

    def close(self) -> None:
        if self._worker is not None:
            self._worker.stop()
        if self._appended:
            # The heads this process moved go into the checkpoint chain (truncation evidence, see
            # sharedctx.verify); a failure here must not hide the close, the next writer checkpoints them.
            with contextlib.suppress(SharedCtxError):
                self.store.write_checkpoint()
        for b in self.backends.values():
            b.close()
        self.store.close()

    def __enter__(self) -> SharedContext:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- cases ------------------------------------------------------------------------------------
    def open_case(
        self,
        title: str,
        *,
        service: str = "",
        severity: str = "warning",
        fingerprint: str | None = None,
        labels: Mapping[str, str] | None = None,
        first: NewEntry | None = None,
    ) -> Case:
        """Open a case, or return the open case with the same `fingerprint` (`case.created` is False).

        `first` is recorded in the same transaction as a *new* case, so a case never exists without
        what opened it (an invalid `first` raises `InvalidEntry` and creates nothing). A case that was
        found gets nothing: the caller decides what a repeat adds.
        """
        draft = None
        if first is not None:  # validated (and redacted) before anything is written
            draft, _ = self._draft("", first.kind, first.title, first.body, evidence=first.evidence,
                                   author=first.author, ref=None, trace_id=first.trace_id, attrs=first.attrs,
                                   status=None)  # fmt: skip
        title = _text(title, "title").strip()
        labels = dict(labels or {})
        # the store validates (model.CaseDraft) and redacts every field before it writes anything
        record, created = self.store.open_case(
            title=title, service=service, severity=severity, fingerprint=fingerprint, labels=labels,
            first=draft, backends=self.deliver_to(draft) if draft is not None else (),
        )  # fmt: skip
        if created and draft is not None:
            self._appended = True
            self._wake_worker()
        return Case(self, record, created=created)

    def case(self, case_id: str) -> Case:
        return Case(self, self.store.get_case(case_id))

    def find_case(self, ref: str, *, visible: Callable[[str], bool] | None = None) -> Case:
        """By case id, open-case fingerprint, or through the bindings index (`store.cases_matching`): a
        thread's id, number, key or URL on any backend, a label value, a resolved case's fingerprint, an
        id prefix.

        Every step is an index lookup, so case #100,000 is found as fast as case #1, and nothing stops
        early: a ref that names no case says what was tried; one that names several cases of which no
        single one is live raises `AmbiguousCase` naming them (ids and statuses, never titles: the caller
        may not be allowed to read them).

        `visible` is the caller's read scope (a partner sees only the cases it was invited into): a case it
        may not read is not found, not named, and does not make a ref ambiguous, so a lookup can never tell
        a scoped caller which case ids sit behind a URL or a label. An exact case id is the exception: the
        caller already holds it, and the access check after the lookup refuses it in plain words."""
        try:
            return self.case(ref)
        except CaseNotFound:
            pass
        seen = visible or (lambda _: True)
        found = self.store.find_open_case(ref)
        if found and seen(found.id):
            return Case(self, found)
        matches = [(how, rec) for how, rec in self.store.cases_matching(ref, limit=FIND_LIMIT) if seen(rec.id)]
        live = [rec for _, rec in matches if rec.status != CaseStatus.RESOLVED]
        if len(matches) == 1 or len(live) == 1:
            return Case(self, live[0] if live else matches[0][1])
        if not matches:
            raise CaseNotFound(
                f"no case matches {ref!r}: tried it as a case id, an id prefix, a fingerprint, a label value, and "
                "as the id, number, key or URL of a thread a case is bound to on any backend")
        more = "+" if len(matches) >= FIND_LIMIT else ""
        named = "; ".join(f"{rec.id} ({rec.status}, by {how})" for how, rec in matches[:FIND_LIMIT])
        raise AmbiguousCase(f"{ref!r} names {len(matches)}{more} cases, {len(live)} of them live: {named}. "
                            "Use the case id")

    def cases(self, *, status: str | None = None, service: str | None = None, limit: int = 100) -> list[CaseRecord]:
        return self.store.list_cases(status=status, service=service, limit=limit)

    # -- journal ----------------------------------------------------------------------------------
    def _record(
        self,
        case_id: str,
        kind: str | EntryKind,
        title: str,
        body: str | bytes,
        *,
        evidence: Iterable[Evidence | Mapping[str, Any]],
        author: Author | str | None,
        ref: str | None,
        trace_id: str | None,
        attrs: Mapping[str, Any] | None,
        status: CaseStatus | str | None,
    ) -> Entry:
        obs = _observability()

        # What `timed(RECORD_SECONDS, outcome=True)` and `span` do, written out: two generator context managers
        # and a labelled-child lookup per call were ~10% of record()'s Python, and without an SDK the span is
        # skipped anyway (see `observability.span`).
        def append() -> Entry:
            draft, new_status = self._draft(
                case_id, kind, title, body, evidence=evidence, author=author, ref=ref,
                trace_id=trace_id, attrs=attrs, status=status,
            )  # fmt: skip
            return self.store.append(draft, self.deliver_to(draft), new_status)

        start = time.perf_counter()
        ok = False
        try:
            if obs.tracing():
                with obs.span("sharedctx.record", trace_id, {"sharedctx.case_id": case_id}) as s:
                    entry = append()
                    s.set_attribute("sharedctx.entry_id", entry.id)
                    s.set_attribute("sharedctx.kind", entry.kind.value)
            else:
                entry = append()
            ok = True
        finally:
            (obs.RECORD_OK if ok else obs.RECORD_ERROR).observe(time.perf_counter() - start)
        self._appended = True
        if entry.kind == EntryKind.DECISION:
            self._apply_approved_status(entry)
        self._wake_worker()
        return entry

    def _draft(
        self,
        case_id: str,
        kind: str | EntryKind,
        title: str | bytes,
        body: str | bytes,
        *,
        evidence: Iterable[Evidence | Mapping[str, Any]],
        author: Author | str | None,
        ref: str | None,
        trace_id: str | None,
        attrs: Mapping[str, Any] | None,
        status: CaseStatus | str | None,
    ) -> tuple[EntryDraft, CaseStatus | None]:
        """Validate one entry: the draft the store appends (and redacts), and the case status it sets."""
        title = _text(title, "title").strip()
        body = _text(body, "body")
        if not title:
            raise InvalidEntry("an entry needs a non-empty title; nothing was recorded")
        if ref is not None:
            shown = repr(ref) if _ID_RE.match(ref) else "(not an entry id)"  # never echo free text: it may be a secret
            try:
                target = self.store.get_entry(ref) if _ID_RE.match(ref) else None
            except EntryNotFound:
                target = None
            if target is None:
                raise InvalidEntry(f"ref {shown} is not an entry of this journal; nothing was recorded")
            if target.case_id != case_id:
                raise InvalidEntry(f"ref {shown} belongs to another case ({target.case_id})")
        try:
            if isinstance(author, str):
                author = Author.parse(author)
            draft = EntryDraft(
                case_id=case_id, kind=_kind(kind), title=title, body=body, author=author or self.default_author,
                evidence=_evidence(evidence), ref=ref, trace_id=trace_id, attrs=dict(attrs or {}),
            )  # fmt: skip
            new_status = CaseStatus(status) if status is not None else None
        except ValidationError as exc:
            problems = validation_problems(exc, unknown="unknown field")
            raise InvalidEntry("; ".join(problems) + "; nothing was recorded") from None
        except ValueError as exc:
            raise InvalidEntry(f"invalid entry: {exc}; nothing was recorded") from None
        check_answer(draft)  # the one place that refuses an agent's `decision` (sharedctx.decisions)
        # the store redacts every field of the draft (Redactor.sanitize) before it hashes and writes it
        if new_status is None and draft.kind == EntryKind.RESOLUTION:
            new_status = CaseStatus.RESOLVED
        if new_status is not None and draft.attrs.get(HOLD_ATTR):
            # A held entry changes nothing until a person approves it, the case status included: the
            # change waits in the entry (`_apply_approved_status` carries it out on approval).
            draft = draft.model_copy(update={"attrs": {**draft.attrs, DEFERRED_STATUS_ATTR: new_status.value}})
            new_status = None
        return draft, new_status

    def _apply_approved_status(self, decision: Entry) -> None:
        """After a counting, approving `decision`: the status change its request's held entry deferred."""
        if not decision.ref or not counts(decision) or not approves(decision):
            return
        request = self.store.get_entry(decision.ref)
        held_id = request.attrs.get("holds") or request.ref
        if request.kind != EntryKind.DECISION_REQUEST or not held_id:
            return
        held = self.store.get_entry(str(held_id))
        deferred = held.attrs.get(DEFERRED_STATUS_ATTR)
        if not deferred or not held.attrs.get(HOLD_ATTR) or held.case_id != decision.case_id:
            return
        body = (f"{held.author}'s `{held.kind.value}` ({held.id}) asked for this status; it was held until a "
                f"person decided, and {decision.author} approved it.")
        self._record(decision.case_id, EntryKind.NOTE, f"Case {deferred}: {decision.title}"[:300], body,
                     evidence=(), author=SYSTEM, ref=held.id, trace_id=None, attrs={"applies": held.id},
                     status=deferred)  # fmt: skip

    def deliver_to(self, draft: EntryDraft) -> list[str]:
        """The backends an entry goes to: all of them, except the one it came from.

        An entry that mirrors something a person wrote in a backend carries `attrs.external.backend`
        (see `sharedctx.humans`); delivering it back there would echo the person's own comment into
        their thread, so that backend gets no outbox row at all. `attrs.deliver_to` (a list of
        backend names) narrows delivery further, e.g. a typo reply only to the thread it answers.
        """
        names = list(self.backend_names)
        external = draft.attrs.get("external")
        if isinstance(external, Mapping) and external.get("backend") in names:
            names.remove(external["backend"])
        only = draft.attrs.get("deliver_to")
        if isinstance(only, list):
            names = [n for n in names if n in only]
        return names

    def search(
        self, text: str, filters: SearchFilters | Mapping[str, Any] | None = None, *, limit: int = 20
    ) -> SearchResult:
        """Ranked history search (query language, filters), grouped by case; see `sharedctx.search`."""
        from ..search import search

        f = filters if isinstance(filters, SearchFilters) or filters is None else SearchFilters(**filters)
        return search(self, text, f, limit=limit)

    def similar_cases(self, case_id: str, limit: int = 5) -> list[CaseResult]:
        """Earlier cases like `case_id`, with what was tried, what worked, what humans overrode."""
        from ..search import similar_cases

        return similar_cases(self, case_id, limit)

    def verify(self, case_id: str | None = None, *, against: str | None = None) -> list[VerifyReport]:
        """Check every case (or one): its chain, its recorded head, and the checkpoints that saw it; with
        `against`, compare the journal with the copies that backend holds instead. A whole-journal check
        that passes is recorded as a checkpoint, so a case deleted later is named by the next check."""
        from ..verify import verify_against, verify_journal

        if against is not None:
            if against not in self.backends:
                raise ConfigError(f"no backend named {against!r}; configured: {', '.join(self.backend_names)}")
            return verify_against(self.store, self.backends[against], case_id)
        reports = verify_journal(self.store, case_id)
        if case_id is None and all(r.ok for r in reports):
            self.store.write_checkpoint()
        return reports

    # -- delivery ---------------------------------------------------------------------------------
    def drain(self, timeout: float = 30.0) -> DrainReport:
        """Wait until nothing is due for delivery, then say per backend what was delivered, held, dead or
        stopped. The report is truthy only if everything deliverable was delivered (`if ctx.drain():`)."""
        from ..delivery import BackendDrain, DrainReport

        deadline = time.monotonic() + timeout
        timed_out = True
        while time.monotonic() < deadline:
            counts = self.store.outbox_counts()
            pending = sum(
                c.get("pending", 0)
                for name, c in counts.items()
                if self.store.get_backend_state(name).state != "stopped"
            )
            if pending == 0:
                timed_out = False
                break
            if not self.worker.running:
                self.worker.run_once()
            else:
                time.sleep(0.02)
        counts = self.store.outbox_counts()
        report = DrainReport(timed_out=timed_out)
        for name in self.backend_names:
            c = counts.get(name, {})
            st = self.store.get_backend_state(name)
            report.backends.append(BackendDrain(
                backend=name, delivered=c.get("delivered", 0), pending=c.get("pending", 0), held=c.get("held", 0),
                dead=c.get("dead", 0) - c.get("declined", 0), declined=c.get("declined", 0),
                stopped=st.state == "stopped", reason=st.reason,
            ))  # fmt: skip
        return report
