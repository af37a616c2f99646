"""The Bedrock Converse transport: ``POST /model/{modelId}/converse`` and ``/converse-stream``.

Requests are signed with SigV4 (service ``bedrock``) by botocore's signer, with credentials from
the standard AWS chain (environment, shared config and credentials files, SSO, container and
instance roles) or given to the constructor; a Bedrock API key (``AWS_BEARER_TOKEN_BEDROCK``) is
sent as a bearer token instead. botocore comes with the ``bedrock`` extra; the chain is resolved
once, off the event loop, and refreshed credentials are re-read when they expire. The body comes
from :mod:`.encode`, the answer is read by :mod:`.decode`, a stream by :mod:`.stream` and an
exception by :mod:`.errors`.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from typing import Any, ClassVar
from urllib.parse import quote

import aiohttp
from yarl import URL

from ....errors import AuthenticationError, ConfigurationError, LLMError, register_secret
from ....types import ChatRequest, ChatResponse
from ..base import HTTPTransport
from .decode import parse_converse
from .encode import converse_body
from .errors import exception_error, exception_name
from .stream import BedrockStreamParser, EventStreamDecoder

__all__ = ["BedrockTransport"]


class BedrockTransport(HTTPTransport):
    """The Converse API of Bedrock Runtime in one region.

    ``region`` defaults to ``AWS_REGION``, ``AWS_DEFAULT_REGION``, then the region of the AWS
    configuration; ``base_url`` to ``AWS_ENDPOINT_URL_BEDROCK_RUNTIME``, then
    ``https://bedrock-runtime.{region}.amazonaws.com``. Credentials: ``api_key`` (default
    ``AWS_BEARER_TOKEN_BEDROCK``) for a Bedrock API key, else SigV4 with ``credentials`` (a
    botocore credentials object), ``aws_access_key_id``/``aws_secret_access_key``/
    ``aws_session_token``, or the standard chain of ``profile`` (default: the chain's default).
    An ``aiohttp.ClientSession`` given first (or as ``session=``) is used for every call.
    """

    provider: ClassVar[str] = "bedrock"
    default_base_url: ClassVar[str] = ""
    env_api_key: ClassVar[str] = "AWS_BEARER_TOKEN_BEDROCK"
    env_base_url: ClassVar[str] = "AWS_ENDPOINT_URL_BEDROCK_RUNTIME"
    request_id_headers: ClassVar[tuple[str, ...]] = ("x-amzn-requestid", "x-amz-request-id")
    service: ClassVar[str] = "bedrock"

    def __init__(self, api_key: str | aiohttp.ClientSession | None = None,
                 base_url: str | None = None, *,
                 region: str | None = None, profile: str | None = None,
                 aws_access_key_id: str | None = None, aws_secret_access_key: str | None = None,
                 aws_session_token: str | None = None, credentials: Any = None,
                 **kwargs: Any) -> None:
        if isinstance(api_key, aiohttp.ClientSession):  # BedrockTransport(session)
            if "session" in kwargs:
                raise TypeError("BedrockTransport() got two aiohttp sessions")
            api_key, kwargs["session"] = None, api_key
        explicit = aws_access_key_id is not None or aws_secret_access_key is not None
        if explicit and (aws_access_key_id is None or aws_secret_access_key is None):
            raise TypeError("give both aws_access_key_id and aws_secret_access_key")
        if explicit and credentials is not None:
            raise TypeError("give credentials or the aws_* keys, not both")
        if api_key is None and not explicit and credentials is None and profile is None:
            api_key = os.environ.get(self.env_api_key)
        if api_key and (explicit or credentials is not None or profile is not None):
            raise TypeError("a Bedrock API key replaces AWS credentials; give one or the other")
        self._aws_session: Any = None
        region = region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
        if region is None and not api_key:
            region = self._botocore_session(profile).get_config_variable("region")
        if base_url is None:
            base_url = os.environ.get(self.env_base_url)
        if base_url is None:
            if not region:
                raise ConfigurationError(
                    "no AWS region: set AWS_REGION, pass region=, or configure one for the "
                    "profile", variable="AWS_REGION")
            base_url = f"https://bedrock-runtime.{region}.amazonaws.com"
        # "" when signing: the base class must not read the key variable a second time.
        super().__init__(api_key or "", base_url, **kwargs)
        self.region = region or ""
        self.profile = profile
        self._credentials: Any = credentials
        if aws_access_key_id is not None and aws_secret_access_key is not None:
            from botocore.credentials import Credentials

            register_secret(aws_secret_access_key)
            register_secret(aws_session_token)
            self._credentials = Credentials(aws_access_key_id, aws_secret_access_key,
                                            aws_session_token)
        self.signs_requests = not api_key
        if self.signs_requests and not self.region:
            raise ConfigurationError("SigV4 signing needs the AWS region: set AWS_REGION",
                                     variable="AWS_REGION")

    # -- credentials --------------------------------------------------------------------------

    def _botocore_session(self, profile: str | None) -> Any:
        if self._aws_session is None:
            try:
                import botocore.session
            except ImportError as exc:
                raise ConfigurationError(
                    "SigV4 signing for Bedrock needs botocore: pip install 'llm-async[bedrock]' "
                    "(or set AWS_BEARER_TOKEN_BEDROCK to use a Bedrock API key)",
                    variable="botocore") from exc
            self._aws_session = botocore.session.Session(profile=profile)
        return self._aws_session

    def _resolve_credentials(self) -> Any:
        credentials = self._botocore_session(self.profile).get_credentials()
        if credentials is None:
            raise AuthenticationError(
                "no AWS credentials found in the standard chain (environment, shared files, "
                "SSO, container or instance role)", provider=self.provider)
        return credentials

    async def _frozen_credentials(self) -> Any:
        credentials = self._credentials
        if credentials is None:
            credentials = self._credentials = await asyncio.to_thread(self._resolve_credentials)
        refresh = getattr(credentials, "refresh_needed", None)
        if refresh is not None and refresh():
            frozen = await asyncio.to_thread(credentials.get_frozen_credentials)
        else:
            frozen = credentials.get_frozen_credentials()
        register_secret(frozen.secret_key)
        register_secret(frozen.token)
        return frozen

    async def sign(self, url: str, headers: dict[str, str], body: bytes) -> None:
        """Sign the request with SigV4 (``Authorization``, ``X-Amz-Date`` and, for temporary
        credentials, ``X-Amz-Security-Token``)."""
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest

        try:
            frozen = await self._frozen_credentials()
        except LLMError:
            raise
        except Exception as exc:  # botocore's credential-provider errors
            raise AuthenticationError(f"could not load AWS credentials: {type(exc).__name__}",
                                      provider=self.provider) from exc
        aws_request = AWSRequest(method="POST", url=url, data=body, headers=dict(headers))
        SigV4Auth(frozen, self.service, self.region).add_auth(aws_request)
        headers.clear()
        headers.update(aws_request.headers.items())

    # -- HTTP ---------------------------------------------------------------------------------

    def _model_url(self, request: ChatRequest) -> str:
        return f"{self.base_url}/model/{quote(request.model, safe='')}"

    def url(self, request: ChatRequest) -> URL:
        # Sent exactly as signed: yarl would otherwise decode the model id's %3A to ':'.
        return URL(f"{self._model_url(request)}/converse", encoded=True)

    def stream_url(self, request: ChatRequest) -> URL:
        return URL(f"{self._model_url(request)}/converse-stream", encoded=True)

    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}

    def stream_decoder(self) -> EventStreamDecoder:
        return EventStreamDecoder(self.max_event_bytes)

    # -- request and response -----------------------------------------------------------------

    def build_payload(self, request: ChatRequest, *, stream: bool) -> dict[str, Any]:
        """The Converse body for ``request`` (raises
        :class:`~llm_async.errors.InvalidRequestError` for input Bedrock cannot take)."""
        return converse_body(request, self.provider)

    def parse_response(self, data: Any, request: ChatRequest) -> ChatResponse:
        return parse_converse(data, request, self.provider)

    def map_error(self, status: int, body: Any, headers: Mapping[str, str]) -> LLMError:
        """The class named by ``x-amzn-ErrorType`` (or the body's ``__type``), else the status
        table; the message from the body's ``message``."""
        name = exception_name(headers.get("x-amzn-errortype"))
        if name is None and isinstance(body, Mapping):
            name = exception_name(str(body.get("__type") or "") or None)
        return self.exception_error(name, body, status=status, headers=headers)

    def exception_error(self, name: str | None, body: Any, *, status: int | None = None,
                        headers: Mapping[str, str] | None = None) -> LLMError:
        """The typed error of a Bedrock exception (an error answer or a stream's exception
        event)."""
        return exception_error(name, body, provider=self.provider, status=status,
                               headers=headers,
                               request_id=self._request_id(headers) if headers else None)

    def stream_parser(self, request: ChatRequest) -> BedrockStreamParser:
        return BedrockStreamParser(self, request)


