"""The legal desk's HTTP API: intake, the queue, decisions, approvals, exports, notices, holds,
package verification and the transparency report.

Every route needs a person: a bearer token (`Authorization: Bearer bls....`, for automation
and the command line) or the session cookie a password + TOTP login sets (Secure, HttpOnly,
SameSite=Strict), with the session's CSRF token in `X-CSRF-Token` on every change. What a
person may do is the desk's rule (roles, and only their own custodian's requests), so this
layer only authenticates, translates and bounds sizes.
"""

import hmac
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, File, HTTPException, Query, Request, Response, UploadFile
from fastapi.responses import FileResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.background import BackgroundTask

from borderline.law import LawError
from borderline.legal import LegalError, NotFoundError, TransitionError
from borderline.legal.office import (
    MAX_REQUEST_FILE,
    SESSION_COOKIE,
    LegalOffice,
    LoginRefused,
    unpacked,
    uploaded_request,
)
from borderline.legal.views import hold_json, queue, request_view
from borderline.staff import AuthenticationError, PermissionDenied, Signer, StaffError
from borderline.store import StoreError
from borderline.vault import KeyReleaseDenied

CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
MAX_PACKAGE_UPLOAD = 1 << 30
REPORT_TYPES = {
    "html": "text/html; charset=utf-8",
    "csv": "text/csv; charset=utf-8",
    "json": "application/json",
}


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Login(_Body):
    name: str = Field(min_length=1, max_length=200, description="staff id or name")
    password: str = Field(min_length=1, max_length=1024)
    code: str = Field(min_length=1, max_length=16, description="the TOTP code")


class TokenRequest(_Body):
    days: float = Field(default=1, gt=0, le=90)
    label: str = Field(default="", max_length=100)


class Rejection(_Body):
    reason: str = Field(min_length=1, max_length=4000)


class ExportRequest(_Body):
    enforcing_state_confirmed: bool = False


class HoldExtension(_Body):
    until: datetime | None = None
    note: str = Field(default="", max_length=4000)


class HoldRelease(_Body):
    reason: str = Field(min_length=1, max_length=4000)


@contextmanager
def answers() -> Iterator[None]:
    """The desk's refusals as HTTP answers with the desk's own words."""
    try:
        yield
    except PermissionDenied as exc:
        raise HTTPException(403, str(exc)) from exc
    except AuthenticationError as exc:
        raise HTTPException(401, str(exc)) from exc
    except NotFoundError as exc:
        raise HTTPException(404, str(exc)) from exc
    except (TransitionError, FileExistsError, KeyReleaseDenied) as exc:
        raise HTTPException(409, str(exc)) from exc
    except (LawError, LegalError, StaffError, StoreError, ValueError) as exc:
        raise HTTPException(422, str(exc)) from exc


def legal_router(office: LegalOffice) -> APIRouter:
    router = APIRouter(prefix="/legal", tags=["legal desk"])
    desk = office.desk

    def session_of(request: Request) -> Any:
        session_id = request.cookies.get(SESSION_COOKIE)
        return office.session(session_id) if session_id else None

    def person(request: Request) -> Signer:
        """The authenticated person; a cookie session must prove its CSRF token on changes."""
        header = request.headers.get("authorization")
        if header is not None:
            scheme, _, token = header.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise HTTPException(401, "use Authorization: Bearer <token>")
            with answers():
                return office.bearer(token)
        session = session_of(request)
        if session is None:
            raise HTTPException(
                401,
                "log in (POST /legal/login) or send a bearer token",
                headers={"WWW-Authenticate": "Bearer"},
            )
        if request.method not in SAFE_METHODS and not hmac.compare_digest(
            request.headers.get(CSRF_HEADER, ""), session.csrf
        ):
            raise HTTPException(403, f"missing or wrong {CSRF_HEADER} (see GET /legal/me)")
        signer: Signer = session.signer
        return signer

    Person = Annotated[Signer, Depends(person)]

    @router.post("/login", summary="Log in with password and TOTP code; sets the session cookie")
    async def login(body: Login, request: Request, response: Response) -> dict[str, Any]:
        client = request.client.host if request.client else "unknown"
        try:
            session = await office.login(body.name, body.password, body.code, client)
        except LoginRefused as exc:
            raise HTTPException(429, str(exc), headers={"Retry-After": "900"}) from exc
        except AuthenticationError as exc:
            raise HTTPException(401, str(exc)) from exc
        response.set_cookie(
            SESSION_COOKIE, session.id, httponly=True, secure=True, samesite="strict", path="/"
        )
        return {"staff": session.signer.member.to_json(), "csrf": session.csrf}

    @router.post("/logout", summary="End the session")
    def logout(request: Request, response: Response, who: Person) -> dict[str, str]:
        session_id = request.cookies.get(SESSION_COOKIE)
        if session_id:
            office.sessions.close(session_id)
        response.delete_cookie(SESSION_COOKIE, path="/", secure=True, httponly=True)
        return {"logged_out": who.member.label}

    @router.get("/me", summary="Who is logged in, and the session's CSRF token")
    def me(request: Request, who: Person) -> dict[str, Any]:
        session = session_of(request)
        return {"staff": who.member.to_json(), "csrf": session.csrf if session else None}

    @router.post("/tokens", summary="A bearer token for automation (from a password login)")
    def create_token(body: TokenRequest, request: Request, who: Person) -> dict[str, str]:
        if session_of(request) is None:
            raise HTTPException(403, "tokens are made from a password and TOTP login")
        with answers():
            return {"token": office.roster.create_token(who, body.days, body.label)}

    @router.get("/requests", summary="The queue: open requests by nearest deadline first")
    def list_requests(who: Person) -> list[dict[str, Any]]:
        return queue(desk.requests(who))

    @router.post("/requests", status_code=201, summary="Intake: upload a request file (TOML/JSON)")
    def submit(who: Person, file: Annotated[UploadFile, File()]) -> dict[str, Any]:
        data = file.file.read(MAX_REQUEST_FILE + 1)
        if len(data) > MAX_REQUEST_FILE:
            raise HTTPException(413, f"a request file is at most {MAX_REQUEST_FILE} bytes")
        with answers():
            record = desk.submit(uploaded_request(file.filename, data), who)
        return request_view(record, desk.engine.book)

    @router.get("/requests/{request_id}", summary="A request: decisions, approvals, history")
    def show(request_id: int, who: Person) -> dict[str, Any]:
        with answers():
            return request_view(desk.view(request_id, who), desk.engine.book)

    @router.post("/requests/{request_id}/approve", summary="Approve as one reviewer (signed)")
    def approve(request_id: int, who: Person) -> dict[str, Any]:
        with answers():
            return request_view(desk.approve(request_id, who), desk.engine.book)

    @router.post("/requests/{request_id}/reject", summary="Reject with a reason (signed)")
    def reject(request_id: int, body: Rejection, who: Person) -> dict[str, Any]:
        with answers():
            return request_view(desk.reject(request_id, who, body.reason), desk.engine.book)

    @router.post("/requests/{request_id}/export", summary="Write the signed disclosure packages")
    def export(request_id: int, body: ExportRequest, who: Person) -> dict[str, Any]:
        with answers():
            folders = office.export(request_id, who, body.enforcing_state_confirmed)
            checks = {r: office.verify(f) for r, f in folders.items()}
        return {
            "packages": [
                {
                    "region": r,
                    "folder": f.name,
                    "files": checks[r].files_checked,
                    "ok": checks[r].ok,
                    "download": f"/legal/requests/{request_id}/packages/{r}",
                }
                for r, f in folders.items()
            ]
        }

    @router.get(
        "/requests/{request_id}/packages/{region}",
        summary="Download a package as a zip",
        response_class=FileResponse,
    )
    def download(request_id: int, region: str, who: Person) -> FileResponse:
        with answers():
            folder = office.package(request_id, region, who)
        archive = office.zipped(folder)
        return FileResponse(
            archive,
            media_type="application/zip",
            filename=f"{folder.name}.zip",
            background=BackgroundTask(os.unlink, archive),
        )

    @router.post("/requests/{request_id}/close", summary="Close; queues the user notices")
    def close(request_id: int, who: Person) -> dict[str, Any]:
        with answers():
            return request_view(desk.close(request_id, who), desk.engine.book)

    @router.get("/notices", summary="User notices (unsent and due by `due`, or all)")
    def notices(
        who: Person, due: date | None = None, every: Annotated[bool, Query(alias="all")] = False
    ) -> list[dict[str, Any]]:
        if every:
            rows = desk.notifications(who)
        else:
            rows = desk.due_notifications(due or datetime.now(UTC).date(), who)
        return [n.to_json() for n in rows]

    @router.post("/notices/{notice_id}/sent", summary="Record that a user notice was sent")
    def notice_sent(notice_id: int, who: Person) -> dict[str, Any]:
        with answers():
            return desk.mark_notified(notice_id, who).to_json()

    @router.get("/holds", summary="Live preservation holds")
    def holds(who: Person) -> list[dict[str, Any]]:
        return [hold_json(region, hold) for region, hold in desk.holds(who)]

    @router.post("/holds/{region}/{hold_id}/extend", summary="Extend a hold once (signed)")
    def extend(region: str, hold_id: int, body: HoldExtension, who: Person) -> dict[str, Any]:
        until = body.until
        if until is not None and until.tzinfo is None:
            until = until.replace(tzinfo=UTC)
        with answers():
            rid, end, limit = desk.extend_hold(hold_id, who, region, until, body.note)
        return {
            "region": rid,
            "id": hold_id,
            "until": end.isoformat(),
            "legal_maximum": limit.isoformat(),
        }

    @router.post("/holds/{region}/{hold_id}/release", summary="Release a hold (signed)")
    def release(region: str, hold_id: int, body: HoldRelease, who: Person) -> dict[str, Any]:
        with answers():
            rid = desk.release_hold(hold_id, who, body.reason, region)
        return {"region": rid, "id": hold_id, "released": True}

    @router.post("/verify", summary="Verify a package zip against the directory's keys")
    def verify(who: Person, file: Annotated[UploadFile, File()]) -> dict[str, Any]:
        with tempfile.NamedTemporaryFile(suffix=".zip") as archive:
            copied = 0
            while chunk := file.file.read(1 << 20):
                copied += len(chunk)
                if copied > MAX_PACKAGE_UPLOAD:
                    raise HTTPException(413, f"a package upload is at most {MAX_PACKAGE_UPLOAD}")
                archive.write(chunk)
            archive.flush()
            with answers(), unpacked(Path(archive.name)) as folder:
                result = office.verify(folder)
        return {
            "ok": result.ok,
            "public_key": result.public_key,
            "files": result.files_checked,
            "problems": result.problems,
        }

    @router.get("/report", summary="The transparency report (what `borderline report` writes)")
    def report(
        who: Person,
        first: Annotated[date, Query(alias="from")],
        last: Annotated[date, Query(alias="to")],
        fmt: Annotated[Literal["html", "csv", "json"], Query(alias="format")] = "html",
    ) -> Response:
        with answers():
            text = office.report(first, last, fmt)
        return Response(text, media_type=REPORT_TYPES[fmt])

    return router
