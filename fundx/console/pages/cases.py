"""The cases' pages (issue 20, part 6): an inspector's and a supervisor's queue (我的待办), the cases by district
(按区) and the overdue ones (超期), and one case — its rule, district, masked identity, amounts, due date, stage,
referral and listed-supervision marks, its evidence night by night (matching.cases.versions) and its steps
(matching.lifecycle.events) — with the forms for the steps the signed-in account may take.

Roles (matching.lifecycle.ROLES): inspectors take a case, give the finding and review (初审, 复核); supervisors
accept (验收) or send back; stewards and auditors read. A step is a POST with the session's CSRF token; what the
lifecycle would refuse is refused here first with a page that says why in the reader's language (403 for a role,
409 for a case that is not waiting for that step or a second review by the first reviewer or the submitter —
the Zhengzhou notice's two-person review, seeds/004 — and 400 for a form that is not complete), the refusal
audited (``case.refused``). What the lifecycle then refuses all the same (another browser was quicker) is a 409
with its own words. Every list is audited by matching.lifecycle.queue (``case.listed``), every case page by
matching.lifecycle.view (``case.viewed``) and every step by the lifecycle (``case.<step>``).

No subject token is shown anywhere (a case is named by its order id), identity numbers only masked, and the
evidence is masked once more before it is shown (:func:`fundx.core.identity.mask_id_like`). The console's log
gets the account, the step and the order id.

The refusals here say in the reader's language what matching.lifecycle would say (it checks the same: role,
stage, two-person review, and that only the inspector who took a case submits its finding); the per-district
counts are this module's.
"""

from __future__ import annotations

import json
import logging
import math
import re
from datetime import datetime
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from fundx.console import accounts
from fundx.console.context import ConsoleContext
from fundx.console.i18n import N_, L, Lazy
from fundx.console.security import Refused
from fundx.core.errors import DecisionError
from fundx.core.identity import has_id_like, mask_id_like
from fundx.core.timeutil import SHANGHAI

log = logging.getLogger("fundx.console")

#: a case's number in a URL (matching.orders.order_id)
CASE = re.compile(r"^O\d{8}-[1-9]\d?-\d{4,9}$")
#: the longest note or reason a form may carry (matching.lifecycle.MAX_REASON)
MAX_TEXT = 500

STAGE_LABELS: dict[str, str] = {
    "issued": N_("issued"), "in_progress": N_("in progress"), "first_review": N_("awaiting first review"),
    "second_review": N_("awaiting second review"), "closed": N_("closed"), "accepted": N_("accepted"),
}
OUTCOME_LABELS: dict[str, str] = {
    "confirmed": N_("confirmed and stopped"), "false-positive": N_("false positive"), "recovered": N_("recovered"),
    "referred": N_("referred"),
}
REFERRED_LABELS: dict[str, str] = {"police": N_("the police"), "discipline": N_("discipline inspection")}
RECOVERY_LABELS: dict[str, str] = {"full": N_("in full"), "partial": N_("in part")}
#: the steps of case_events as the steps table names them
EVENT_LABELS: dict[str, str] = {
    "take": N_("taken"), "submit": N_("finding submitted"), "first_review": N_("first review approved"),
    "second_review": N_("second review approved"), "return": N_("returned for rework"), "accept": N_("accepted"),
    "send_back": N_("sent back"), "reopen": N_("reopened (new evidence)"),
}
#: why a night's evidence was kept (matching.cases: order_versions.change)
CHANGE_LABELS: dict[str, str] = {"issued": N_("first found"), "updated": N_("found again, changed"),
                                 "reopened": N_("reopened")}
#: the steps the case page's forms post, the roles that take them and the stages they wait for
STEPS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "take": (("inspector",), ("issued",)),
    "submit": (("inspector",), ("in_progress",)),
    "approve": (("inspector",), ("first_review", "second_review")),
    "return": (("inspector",), ("first_review", "second_review")),
    "accept": (("supervisor",), ("closed",)),
    "send_back": (("supervisor",), ("closed",)),
}
STEP_LABELS: dict[str, str] = {
    "take": N_("take the case"), "submit": N_("submit the finding"), "approve": N_("approve the review"),
    "return": N_("return the finding"), "accept": N_("accept the case"), "send_back": N_("send the case back"),
}
WAITING_LABELS: dict[str, str] = {
    "issued": N_("an inspector to take it"), "in_progress": N_("the inspector's finding"),
    "first_review": N_("its first review"), "second_review": N_("its second review, by another account"),
    "closed": N_("a supervisor's acceptance"),
}
DONE_LABELS: dict[str, str] = {
    "take": N_("You took the case: give your finding below when you have verified it."),
    "submit": N_("Your finding is submitted for its first review."),
    "approve": N_("Review recorded."),
    "return": N_("The finding was returned to its inspector."),
    "accept": N_("The case is accepted."),
    "send_back": N_("The case was sent back to work."),
}
#: the evidence's keys never shown (a subject's token, should a rule ever put one there)
HIDDEN_KEYS = ("subject", "token")

LABELS = {"stages": STAGE_LABELS, "outcomes": OUTCOME_LABELS, "referred_to": REFERRED_LABELS,
          "recoveries": RECOVERY_LABELS, "events": EVENT_LABELS, "steps": STEP_LABELS, "changes": CHANGE_LABELS}


def actor_of(session: accounts.Session):
    from matching.lifecycle import Actor

    return Actor(session.account, session.role)


def add_routes(app: FastAPI, console: ConsoleContext) -> None:
    """GET /cases, /cases/district, /cases/overdue, /cases/{order_id}; POST /cases/{order_id}/step."""
    from matching import lifecycle as lc
    from matching import orders as mo

    ledger = console.ledger
    page, current, posted = console.page, console.current, console.posted

    def _stage_arg(stage: str | None) -> str | None:
        return stage if stage in lc.STAGES else None

    def _list(request: Request, session: accounts.Session, view: str, cases: list[Any], *, title: Lazy,
              stage: str | None, district: str | None = None, per_district: list[dict[str, Any]] | None = None,
              ) -> Response:
        today = datetime.now(SHANGHAI).date()
        return page(request, "cases.html", session=session, title=title, view=view, cases=cases, stage=stage,
                    district=district, districts=mo.district_names(), per_district=per_district, today=today,
                    overdue={c.order_id for c in cases if lc.overdue(c, today)}, stages=lc.STAGES,
                    labels=LABELS, acts=session.role in ("inspector", "supervisor"))

    @app.get("/cases")
    def my_queue(request: Request, stage: str | None = None) -> Response:
        session = current(request)
        actor, stage = actor_of(session), _stage_arg(stage)
        acts = session.role in ("inspector", "supervisor")
        found = lc.queue(ledger, actor, stage=stage, mine=acts)
        return _list(request, session, "mine", found, stage=stage,
                     title=L("My queue") if acts else L("All cases"))

    @app.get("/cases/district")
    def by_district(request: Request, district: str | None = None, stage: str | None = None) -> Response:
        session = current(request)
        actor, stage = actor_of(session), _stage_arg(stage)
        names = mo.district_names()
        chosen = district if district in names else None
        if district and chosen is None:
            raise Refused(404, L("there is no such district: choose one of the list"))
        found = lc.queue(ledger, actor, stage=stage, district=chosen)
        per_district = None
        if chosen is None:  # every district's counts (the queue above audited the view)
            today = datetime.now(SHANGHAI).date()
            counts: dict[str, dict[str, Any]] = {}
            for c in found:
                row = counts.setdefault(c.district, {"district": c.district, "open": 0, "overdue": 0, "closed": 0,
                                                     "accepted": 0, "listed": 0})
                row["open" if c.status == "open" else c.stage] += 1
                row["overdue"] += lc.overdue(c, today)
                row["listed"] += c.escalated_at is not None
            order = {n: i for i, n in enumerate(names)}
            per_district = sorted(counts.values(), key=lambda r: (order.get(r["district"], len(order)), r["district"]))
        return _list(request, session, "district", found, stage=stage, district=chosen, per_district=per_district,
                     title=L("Cases in %(district)s", district=chosen) if chosen else L("Cases by district"))

    @app.get("/cases/overdue")
    def overdue(request: Request, stage: str | None = None) -> Response:
        session = current(request)
        actor, stage = actor_of(session), _stage_arg(stage)
        found = lc.queue(ledger, actor, stage=stage, overdue_only=True)
        return _list(request, session, "overdue", found, stage=stage, title=L("Overdue cases"))

    def _case(order_id: str) -> str:
        if not CASE.match(order_id):
            raise Refused(404, L("there is no such case"))
        return order_id

    def render_case(request: Request, session: accounts.Session, order_id: str, *, status: int = 200,
                    error: Lazy | str | None = None, done: str | None = None,
                    form: dict[str, Any] | None = None) -> Response:
        from matching import cases as mc

        case = lc.view(ledger, order_id, actor=actor_of(session))  # audited: case.viewed
        if case is None:
            raise Refused(404, L("there is no such case"))
        today = datetime.now(SHANGHAI).date()
        return page(request, "case.html", status=status, session=session,
                    title=L("Case %(case)s", case=case.order_id), case=case, labels=LABELS,
                    evidence=[_evidence(v) for v in mc.versions(ledger, order_id)],
                    steps=lc.events(ledger, order_id), may=_may(case, session), error=error,
                    done=DONE_LABELS.get(done or ""), form=form or {}, outcomes=lc.OUTCOMES,
                    referred_to=lc.REFERRED_TO, overdue=lc.overdue(case, today),
                    waiting=WAITING_LABELS.get(case.stage, case.stage))

    @app.get("/cases/{order_id}")
    def case_page(request: Request, order_id: str, done: str | None = None) -> Response:
        session = current(request)
        return render_case(request, session, _case(order_id), done=done if done in DONE_LABELS else None)

    @app.post("/cases/{order_id}/step")
    async def step(request: Request, order_id: str) -> Response:
        session = current(request)
        form = await posted(request, session)
        order_id = _case(order_id)
        what = str(form.get("step") or "")
        back = {k: _echo(form.get(k)) for k in ("outcome", "amount", "referral_to", "referral_no", "note", "reason")}
        if what not in STEPS:
            raise Refused(400, L("choose a step of the case"))
        case = await run_in_threadpool(mo.get, ledger, order_id)
        if case is None:
            raise Refused(404, L("there is no such case"))
        refusal = _refusal(case, what, session)
        problem: tuple[int, Lazy | str] | None = refusal
        values: dict[str, Any] = {}
        if problem is None:
            try:
                values = _values(what, form)
            except _Invalid as exc:
                problem = (400, exc.message)
        if problem is None:
            try:
                await run_in_threadpool(_act, ledger, order_id, what, actor_of(session), values)
            except DecisionError as exc:  # the case changed meanwhile: the lifecycle's own words
                problem = (409, L("The step was not taken: %(why)s", why=str(exc)))
            except ValueError as exc:
                problem = (400, L("The step was not taken: %(why)s", why=mask_id_like(str(exc))))
        if problem is not None:
            status, message = problem
            ledger.log_event("case.refused", order_id, {"step": what, "status": status, "stage": case.stage,
                                                        "role": session.role, "via": "console"}, actor=session.account)
            log.info("console: %s was refused %s on case %s (%d)", session.account, what, order_id, status)
            return await run_in_threadpool(lambda: render_case(request, session, order_id, status=status,
                                                               error=message, form=back))
        log.info("console: %s: %s on case %s", session.account, what, order_id)
        return RedirectResponse(f"/cases/{order_id}?done={what}", status_code=303)


def _may(case: Any, session: accounts.Session) -> dict[str, bool]:
    """The steps whose forms the case page shows to this account."""
    shown = {s: session.role in roles and case.stage in stages for s, (roles, stages) in STEPS.items()}
    if shown["submit"] and case.assignee not in (None, session.account):
        shown["submit"] = False
    return shown


def _refusal(case: Any, what: str, session: accounts.Session) -> tuple[int, Lazy] | None:
    """Why ``session`` may not take step ``what`` of ``case`` now (status and message), or None."""
    roles, stages = STEPS[what]
    step = L(STEP_LABELS[what])
    if session.role not in roles:
        return 403, L("%(account)s is %(role)s and may not %(step)s: only %(roles)s do", account=session.account,
                      role=L(_role(session.role)), step=step, roles=L(_role(roles[0])))
    if case.stage == "accepted":
        return 409, L("Case %(case)s was accepted: it takes no further step.", case=case.order_id)
    if case.stage not in stages:
        return 409, L("Case %(case)s is %(stage)s, waiting for %(waiting)s: you cannot %(step)s now.",
                      case=case.order_id, stage=L(STAGE_LABELS.get(case.stage, case.stage)),
                      waiting=L(WAITING_LABELS.get(case.stage, case.stage)), step=step)
    if what == "submit" and case.assignee not in (None, session.account):
        return 409, L("Case %(case)s is being verified by %(who)s: the finding is theirs to submit.",
                      case=case.order_id, who=case.assignee)
    if what in ("approve", "return") and case.stage == "second_review":
        if session.account == case.first_reviewer:
            return 409, L("You did the first review of this case: its second review must be done by another "
                          "account (two-person review).")
        if session.account == case.submitted_by:
            return 409, L("You submitted this case's finding: its second review must be done by another account "
                          "(two-person review).")
    return None


def _role(role: str) -> str:
    from fundx.console.i18n import ROLES

    return ROLES.get(role, role)


class _Invalid(Exception):
    def __init__(self, message: Lazy):
        super().__init__(str(message))
        self.message = message


def _text(form: Any, key: str, *, required: Lazy | None = None) -> str | None:
    """A free-text field: spaces collapsed, at most :data:`MAX_TEXT` characters, never an identity number."""
    raw = form.get(key)
    text = " ".join(raw.split()) if isinstance(raw, str) else ""
    if not text:
        if required is not None:
            raise _Invalid(required)
        return None
    if len(text) > MAX_TEXT:
        raise _Invalid(L("The text is longer than %(n)s characters.", n=MAX_TEXT))
    if has_id_like(text):
        raise _Invalid(L("The text holds something shaped like an identity number: refer to the case number "
                         "instead."))
    return text


def _values(what: str, form: Any) -> dict[str, Any]:
    """The checked fields of step ``what``'s form (an :class:`_Invalid` names what is missing or wrong)."""
    from matching import lifecycle as lc

    if what == "submit":
        outcome = str(form.get("outcome") or "")
        if outcome not in lc.OUTCOMES:
            raise _Invalid(L("Choose the outcome of the verification."))
        raw = str(form.get("amount") or "0").strip().replace(",", "")
        try:
            amount = float(raw) if len(raw) <= 20 else math.nan
        except ValueError:
            amount = math.nan
        if not math.isfinite(amount) or amount < 0:
            raise _Invalid(L("The amount recovered is a number, 0 or more, in yuan."))
        if outcome == "false-positive" and amount != 0:
            raise _Invalid(L("A false positive has nothing recovered: the amount must be 0."))
        if outcome == "recovered" and amount <= 0:
            raise _Invalid(L("A recovered case needs the amount recovered (more than 0)."))
        values: dict[str, Any] = {"outcome": outcome, "amount": round(amount, 2), "note": _text(form, "note")}
        if outcome == "referred":
            to = str(form.get("referral_to") or "")
            number = str(form.get("referral_no") or "").strip()
            if to not in lc.REFERRED_TO:
                raise _Invalid(L("A referred case names where it went: the police or discipline inspection."))
            if not number or len(number) > lc.MAX_REFERRAL_NO or not number.isprintable() \
                    or any(c.isspace() for c in number) or has_id_like(number):
                raise _Invalid(L("A referred case needs its referral number: one word of up to %(n)s characters.",
                                 n=lc.MAX_REFERRAL_NO))
            values |= {"referral_to": to, "referral_no": number}
        return values
    if what == "return":
        return {"reason": _text(form, "reason", required=L("Returning a finding needs the reason."))}
    if what == "send_back":
        return {"reason": _text(form, "reason", required=L("Sending a case back needs the reason."))}
    if what in ("approve", "accept"):
        return {"reason": _text(form, "reason")}
    return {}


def _act(ledger: Any, order_id: str, what: str, actor: Any, values: dict[str, Any]) -> None:
    """The step through matching.lifecycle (audited there)."""
    from matching import lifecycle as lc

    if what == "take":
        lc.take(ledger, order_id, actor=actor)
    elif what == "submit":
        lc.submit(ledger, order_id, actor=actor, **values)
    elif what in ("approve", "return"):
        lc.review(ledger, order_id, actor=actor, approve=what == "approve", reason=values.get("reason"))
    elif what == "accept":
        lc.accept(ledger, order_id, actor=actor, reason=values.get("reason"))
    else:
        lc.send_back(ledger, order_id, actor=actor, reason=values["reason"])


def _echo(value: Any) -> str:
    """A form's field, to fill the form again: not if it holds something shaped like an identity number."""
    text = value if isinstance(value, str) else ""
    return "" if has_id_like(text) else text[:MAX_TEXT]


def _evidence(version: dict[str, Any]) -> dict[str, Any]:
    """One night's evidence of a case, to show: its figures and the masked evidence as (key, text) pairs."""
    try:
        doc = json.loads(version.get("detail") or "{}")
    except ValueError:
        doc = {}
    items: list[tuple[str, str]] = []
    if isinstance(doc, dict):
        for key, value in sorted(doc.items()):
            if any(h in str(key).lower() for h in HIDDEN_KEYS):
                continue
            text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, sort_keys=True,
                                                                    default=str)
            items.append((mask_id_like(str(key)), mask_id_like(text)))
    elif doc not in (None, "", [], {}):
        items.append(("", mask_id_like(json.dumps(doc, ensure_ascii=False, default=str))))
    return {"night": version.get("night"), "months": version.get("months"),
            "amount_at_risk": version.get("amount_at_risk"), "change": version.get("change"),
            "reason": mask_id_like(version.get("reason") or ""), "items": items}
