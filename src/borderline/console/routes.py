"""The web console: server-rendered pages (Jinja2, plain HTML forms, no script) over the same
legal office as the HTTP API, so the rules are the desk's and nothing is decided here.

A login sets the session cookie (Secure, HttpOnly, SameSite=Strict); every form carries the
session's CSRF token, and a change whose Origin is another site is refused too.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlsplit

from fastapi import APIRouter, FastAPI, File, Form, Request, UploadFile
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from markupsafe import escape
from starlette.background import BackgroundTask

from borderline.law import LawError, explain_json
from borderline.legal import LegalError, NotFoundError
from borderline.legal.office import (
    MAX_REQUEST_FILE,
    SESSION_COOKIE,
    LegalOffice,
    LoginRefused,
    uploaded_request,
)
from borderline.legal.views import hold_json, queue, request_view
from borderline.staff import AuthenticationError, PermissionDenied, Signer, StaffError
from borderline.store import StoreError
from borderline.vault import KeyReleaseDenied

PREFIX = "/console"
TEMPLATES = Jinja2Templates(directory=Path(__file__).parent / "templates")
# What a redirect after a change may say (never text from the query string).
MESSAGES = {
    "approved": "Your approval is recorded and signed.",
    "rejected": "The request is rejected; the refusal is recorded.",
    "exported": "The signed package is ready to download.",
    "closed": "The request is closed; the user notices are queued.",
    "submitted": "The request is recorded and decided.",
    "notified": "The notice is recorded as sent.",
    "extended": "The hold is extended.",
    "released": "The hold is released.",
}
REFUSALS: tuple[tuple[type[Exception], int], ...] = (
    (PermissionDenied, 403),
    (AuthenticationError, 401),
    (NotFoundError, 404),
    (LawError, 422),
    (LegalError, 422),
    (FileExistsError, 409),
    (KeyReleaseDenied, 409),
    (StaffError, 422),
    (StoreError, 422),
    (ValueError, 422),
)


@dataclass
class Page:
    """Who is looking, and their session's CSRF token."""

    signer: Signer
    csrf: str


class _Redirect(Exception):
    def __init__(self, to: str) -> None:
        self.to = to


class _Refused(Exception):
    """A console form that cannot be trusted (no or a stale CSRF token, another site)."""


def _go(to: str, status: int = 303) -> RedirectResponse:
    return RedirectResponse(to, status_code=status)


def mount_console(app: FastAPI, office: LegalOffice) -> None:
    """Serve the console under /console on the app (the API listener)."""
    router = APIRouter(prefix=PREFIX, include_in_schema=False)
    desk = office.desk

    def render(
        request: Request, template: str, page: Page | None, status: int = 200, **context: Any
    ) -> HTMLResponse:
        done = request.query_params.get("done", "")
        response = TEMPLATES.TemplateResponse(
            request,
            template,
            {
                "me": page.signer.member if page else None,
                "csrf": page.csrf if page else "",
                "page": request.url.path,
                "message": MESSAGES.get(done),
                **context,
            },
            status_code=status,
        )
        response.headers["Cache-Control"] = "no-store"
        response.headers["Content-Security-Policy"] = (
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self';"
            " frame-ancestors 'none'; base-uri 'none'"
        )
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Referrer-Policy"] = "same-origin"
        return response

    def page_of(request: Request) -> Page:
        session_id = request.cookies.get(SESSION_COOKIE)
        session = office.session(session_id) if session_id else None
        if session is None:
            raise _Redirect(f"{PREFIX}/login")
        return Page(session.signer, session.csrf)

    async def checked(request: Request) -> Page:
        """A change: the session, its CSRF token in the form, and no other site's Origin."""
        page = page_of(request)
        origin = request.headers.get("origin")
        if origin and urlsplit(origin).netloc != request.url.netloc:
            raise _Refused("this form was sent from another site")
        form = await request.form()
        if not hmac.compare_digest(str(form.get("csrf", "")), page.csrf):
            raise _Refused("the form has expired: reload the page and try again")
        return page

    def act(
        request: Request, page: Page, step: Callable[[], Any], after: str, on_error: str
    ) -> Response:
        """Run a desk step; success redirects (so a reload does not repeat it), a refusal
        shows the page again with the desk's reason."""
        try:
            step()
        except tuple(kind for kind, _ in REFUSALS) as exc:
            status = next(code for kind, code in REFUSALS if isinstance(exc, kind))
            return error_page(request, page, on_error, str(exc), status)
        return _go(after)

    def error_page(
        request: Request, page: Page, where: str, text: str, status: int
    ) -> HTMLResponse:
        if where.startswith("request:"):
            return request_page(request, page, int(where.split(":")[1]), text, status)
        rows = {"notices": lambda: notices_rows(page), "holds": lambda: holds_rows(page)}
        template = {"notices": "notices.html", "holds": "holds.html", "intake": "intake.html"}
        return render(
            request,
            template[where],
            page,
            status,
            error=text,
            rows=rows[where]() if where in rows else [],
        )

    def request_page(
        request: Request, page: Page, request_id: int, error: str | None = None, status: int = 200
    ) -> HTMLResponse:
        try:
            record = desk.view(request_id, page.signer)
        except (NotFoundError, PermissionDenied) as exc:
            code = 404 if isinstance(exc, NotFoundError) else 403
            rows = queue(desk.requests(page.signer))
            return render(request, "queue.html", page, code, error=str(exc), rows=rows)
        explained = explain_json(record.request, [i.decision for i in record.items])
        packages = [
            {"region": rid, "folder": folder.name}
            for rid in desk.cloud.regions
            if (folder := _package(office, record.id, rid, page.signer)) is not None
        ]
        return render(
            request,
            "request.html",
            page,
            status,
            error=error,
            r=request_view(record, desk.engine.book),
            decisions=explained["decisions"],
            packages=packages,
        )

    def notices_rows(page: Page) -> list[dict[str, Any]]:
        return [n.to_json() for n in desk.notifications(page.signer)]

    def holds_rows(page: Page) -> list[dict[str, Any]]:
        return [hold_json(r, h) for r, h in desk.holds(page.signer)]

    @router.get("/")
    def home(request: Request) -> Response:
        return _go(f"{PREFIX}/queue")

    @router.get("/login")
    def login_form(request: Request) -> Response:
        return render(request, "login.html", None)

    @router.post("/login")
    async def login(
        request: Request,
        name: Annotated[str, Form(max_length=200)],
        password: Annotated[str, Form(max_length=1024)],
        code: Annotated[str, Form(max_length=16)],
    ) -> Response:
        client = request.client.host if request.client else "unknown"
        try:
            session = await office.login(name, password, code, client)
        except AuthenticationError as exc:
            status = 429 if isinstance(exc, LoginRefused) else 401
            return render(request, "login.html", None, status, error=str(exc), name=name)
        response = _go(f"{PREFIX}/queue")
        response.set_cookie(
            SESSION_COOKIE, session.id, httponly=True, secure=True, samesite="strict", path="/"
        )
        return response

    @router.post("/logout")
    async def logout(request: Request) -> Response:
        await checked(request)
        office.sessions.close(request.cookies.get(SESSION_COOKIE, ""))
        response = _go(f"{PREFIX}/login")
        response.delete_cookie(SESSION_COOKIE, path="/", secure=True, httponly=True)
        return response

    @router.get("/queue")
    def queue_page(request: Request) -> Response:
        page = page_of(request)
        return render(request, "queue.html", page, rows=queue(desk.requests(page.signer)))

    @router.get("/intake")
    def intake_form(request: Request) -> Response:
        return render(request, "intake.html", page_of(request))

    @router.post("/intake")
    async def intake(request: Request, file: Annotated[UploadFile, File()]) -> Response:
        page = await checked(request)
        data = await file.read(MAX_REQUEST_FILE + 1)
        created: list[int] = []

        def step() -> None:
            created.append(desk.submit(uploaded_request(file.filename, data), page.signer).id)

        answer = act(request, page, step, "", "intake")
        return _go(f"{PREFIX}/requests/{created[0]}?done=submitted") if created else answer

    @router.get("/requests/{request_id}")
    def show(request: Request, request_id: int) -> Response:
        return request_page(request, page_of(request), request_id)

    def request_step(name: str, done: str) -> None:
        @router.post(f"/requests/{{request_id}}/{name}", name=f"console_{name}")
        async def step(request: Request, request_id: int) -> Response:
            page = await checked(request)
            form = await request.form()
            calls: dict[str, Callable[[], Any]] = {
                "approve": lambda: desk.approve(request_id, page.signer),
                "reject": lambda: desk.reject(
                    request_id, page.signer, str(form.get("reason", ""))[:4000]
                ),
                "export": lambda: office.export(
                    request_id, page.signer, form.get("enforcing_state_confirmed") == "1"
                ),
                "close": lambda: desk.close(request_id, page.signer),
            }
            after = f"{PREFIX}/requests/{request_id}?done={done}"
            return act(request, page, calls[name], after, f"request:{request_id}")

    for step_name, done in (
        ("approve", "approved"),
        ("reject", "rejected"),
        ("export", "exported"),
        ("close", "closed"),
    ):
        request_step(step_name, done)

    @router.get("/requests/{request_id}/packages/{region}")
    def download(request: Request, request_id: int, region: str) -> Response:
        page = page_of(request)
        try:
            folder = office.package(request_id, region, page.signer)
        except (NotFoundError, PermissionDenied) as exc:
            return request_page(request, page, request_id, str(exc), 404)
        archive = office.zipped(folder)
        return FileResponse(
            archive,
            media_type="application/zip",
            filename=f"{folder.name}.zip",
            background=BackgroundTask(os.unlink, archive),
        )

    @router.get("/notices")
    def notices(request: Request) -> Response:
        page = page_of(request)
        return render(request, "notices.html", page, rows=notices_rows(page))

    @router.post("/notices/{notice_id}/sent")
    async def notice_sent(request: Request, notice_id: int) -> Response:
        page = await checked(request)
        return act(
            request,
            page,
            lambda: desk.mark_notified(notice_id, page.signer),
            f"{PREFIX}/notices?done=notified",
            "notices",
        )

    @router.get("/holds")
    def holds(request: Request) -> Response:
        page = page_of(request)
        return render(request, "holds.html", page, rows=holds_rows(page))

    @router.post("/holds/{region}/{hold_id}/{change}")
    async def change_hold(request: Request, region: str, hold_id: int, change: str) -> Response:
        page = await checked(request)
        form = await request.form()
        if change == "extend":
            day = str(form.get("until", "")).strip()
            note = str(form.get("note", ""))[:4000]

            def step() -> Any:
                until = (
                    datetime.combine(date.fromisoformat(day), datetime.min.time(), UTC)
                    if day
                    else None
                )
                return desk.extend_hold(hold_id, page.signer, region, until, note)

            return act(request, page, step, f"{PREFIX}/holds?done=extended", "holds")
        if change == "release":
            reason = str(form.get("reason", ""))[:4000]
            return act(
                request,
                page,
                lambda: desk.release_hold(hold_id, page.signer, reason, region),
                f"{PREFIX}/holds?done=released",
                "holds",
            )
        return error_page(request, page, "holds", f"no such change: {change!r}", 404)

    @router.get("/report")
    def report_form(request: Request) -> Response:
        page = page_of(request)
        today = datetime.now(UTC).date()
        first = (today - timedelta(days=182)).isoformat()
        return render(request, "report.html", page, first=first, last=today.isoformat())

    @router.get("/report/download")
    def report(request: Request) -> Response:
        page = page_of(request)
        params = request.query_params
        fmt = params.get("format", "html")
        try:
            first = date.fromisoformat(params.get("from", ""))
            last = date.fromisoformat(params.get("to", ""))
            if fmt not in ("html", "csv", "json"):
                raise ValueError(f"format: {fmt!r} is not html, csv or json")
            text = office.report(first, last, fmt)
        except (ValueError, LegalError) as exc:
            return render(request, "report.html", page, 422, error=str(exc), first="", last="")
        media = {"html": "text/html", "csv": "text/csv", "json": "application/json"}[fmt]
        response = Response(text, media_type=f"{media}; charset=utf-8")
        if fmt != "html":
            name = quote(f"transparency-{first}-{last}.{fmt}")
            response.headers["Content-Disposition"] = f'attachment; filename="{name}"'
        return response

    app.include_router(router)

    @app.exception_handler(_Redirect)
    async def redirect(request: Request, exc: _Redirect) -> Response:
        return _go(exc.to)

    @app.exception_handler(_Refused)
    async def refused(request: Request, exc: _Refused) -> Response:
        return HTMLResponse(f"<!doctype html><title>Refused</title><p>{escape(str(exc))}</p>", 403)


def _package(office: LegalOffice, request_id: int, region: str, viewer: Signer) -> Path | None:
    try:
        return office.package(request_id, region, viewer)
    except (NotFoundError, PermissionDenied):
        return None
