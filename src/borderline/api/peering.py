"""The inter-region endpoint: another region asks one served here whether a password is
right (borderline.peering). Everything it takes is sealed and signed; it answers only what
the home region signs."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

from fastapi import APIRouter, FastAPI, HTTPException, Request, Response

from borderline.api.app import bounded_body
from borderline.peering import MAX_QUESTION_BYTES, PeeringError
from borderline.peers import QUESTION_PATH, QuestionAnswerer
from borderline.throttle import PASSWORD_CHECKS


def mount_peering(served: Callable[[str], QuestionAnswerer | None]) -> Callable[[FastAPI], None]:
    """A mount for the API app: POST QUESTION_PATH, answered by the home region named in the
    question if this process serves it (404 otherwise, 403 for a question that does not
    verify)."""

    def mount(app: FastAPI) -> None:
        router = APIRouter()

        @router.post(QUESTION_PATH, include_in_schema=False)
        async def password_question(request: Request) -> Response:
            wire = await bounded_body(request, MAX_QUESTION_BYTES)
            try:
                home = str(json.loads(wire)["home"])
            except (ValueError, KeyError, TypeError):
                raise HTTPException(400, "not a password question") from None
            region = served(home)
            if region is None:
                raise HTTPException(404, f"region {home!r} is not served here")
            try:
                # argon2: off the event loop, one of the process's bounded password checks.
                answer = await asyncio.get_running_loop().run_in_executor(
                    PASSWORD_CHECKS, region.answer_password_question, wire
                )
            except PeeringError as exc:
                raise HTTPException(403, str(exc)) from None
            return Response(answer, media_type="application/json")

        app.include_router(router)

    return mount
