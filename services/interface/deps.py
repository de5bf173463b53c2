"""Shared pieces of the routers: app state accessors and the strict JSON route class."""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Annotated, Any

import pydantic_core
from fastapi import Depends, Request, Response
from fastapi.routing import APIRoute

from services.interface.extractors import Extractor
from services.interface.reader import MemReader
from shared.ports.scheduler import SchedulerAPI
from shared.ports.vault import VaultAPI
from shared.settings import Settings


class StrictJSONRequest(Request):
    """Parses bodies with pydantic-core's parser instead of ``json.loads``.

    It refuses what ``json.loads`` lets through and the rest of the system cannot
    store or send back: lone UTF-16 surrogates (``"\\ud800"``), ``NaN`` and
    ``Infinity`` literals, nesting deeper than a couple of hundred levels. The
    error is raised as a JSONDecodeError, which FastAPI turns into a validation
    error that our handler answers with 400 ``invalid_json``.
    """

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            body = await self.body()
            try:
                self._json = pydantic_core.from_json(body, allow_inf_nan=False)
            except ValueError as exc:
                doc = body.decode("utf-8", "replace")
                raise json.JSONDecodeError(str(exc), doc, 0) from None
        return self._json


class StrictJSONRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def strict_handler(request: Request) -> Response:
            return await handler(StrictJSONRequest(request.scope, request.receive))

        return strict_handler


def get_vault(request: Request) -> VaultAPI:
    vault: VaultAPI = request.app.state.vault
    return vault


def get_scheduler(request: Request) -> SchedulerAPI:
    scheduler: SchedulerAPI = request.app.state.scheduler_api
    return scheduler


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_reader(request: Request) -> MemReader:
    reader: MemReader = request.app.state.reader
    return reader


def get_extractor(request: Request) -> Extractor:
    extractor: Extractor = request.app.state.extractor
    return extractor


VaultDep = Annotated[VaultAPI, Depends(get_vault)]
SchedulerDep = Annotated[SchedulerAPI, Depends(get_scheduler)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
ReaderDep = Annotated[MemReader, Depends(get_reader)]
ExtractorDep = Annotated[Extractor, Depends(get_extractor)]
