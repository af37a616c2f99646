"""The synchronous facade: ``invoke_chat`` for code that is not async.

``from llm_async.facade import get_llm_client_service, invoke_chat, LLMClientService`` replaces
``from app.services.llm_client import invoke_chat`` and nothing else changes::

    client = get_llm_client_service()
    response = client.invoke_chat(model="gpt-4", messages=[{"role": "user", "content": "Hello"}])
    for chunk in client.stream_chat(model="gpt-4", messages=[...]):
        print(chunk.delta, end="")

How it works. A service owns **one** long-lived event loop, run by anyio in a daemon thread and
driven through an anyio :class:`~anyio.from_thread.BlockingPortal`; the real
:class:`~llm_async.AsyncLLMClient` is built and always used on that loop. A sync call hands a
coroutine to the portal and blocks the calling thread until it finishes — never one
``asyncio.run()`` per call, so connections, breakers, retry budgets and the cost ledger live as
long as the service. Because the loop is the service's own:

* many threads may call at once (the portal serialises nothing; calls run concurrently on the
  loop);
* a thread that already runs an event loop (a notebook, an async web framework calling legacy
  code) may call too: its loop is blocked for the call's duration, as any sync call blocks it,
  but nothing deadlocks. From ``async def`` code prefer ``await service.ainvoke_chat(...)``,
  which does not block the caller's loop;
* a sync stream is iterated by **one** task of the service's loop (a "pump") that hands chunks
  over a zero-buffer anyio memory stream, so the layers' context managers and context variables
  stay in one task; breaking out of the ``for`` loop (or ``close()``, or ``with``) cancels that
  task, which closes the stream and its connection.

Shutdown: ``close()`` (or ``with LLMClientService(...)``) closes the client — its aiohttp
sessions — on its own loop, then stops the loop and joins the thread. A service that is never
closed is closed when garbage-collected or at interpreter exit (a :func:`weakref.finalize`,
which runs from :mod:`atexit` after every non-daemon thread has finished), so no "unclosed client
session" or "event loop is closed" warning is printed.

Processes: after ``os.fork()`` the child has none of the parent's threads, so the service's loop
is gone there. A fork hook marks every service's runtime as left behind; the child's first call
builds a fresh runtime and client from the same arguments (connections, breakers and ledgers
start anew in the child), and a child that never calls exits without waiting for a loop that is
not there. The parent's objects are never touched in the child: their sockets and the loop's
selector are shared with the parent.

Why not :func:`anyio.from_thread.start_blocking_portal`: it runs the loop in a pooled
(non-daemon) thread in some anyio 4.x releases, which Python joins *before* ``atexit`` handlers
run, so a service still open at exit would hang the interpreter. The thread here is a plain
daemon thread running :func:`anyio.run`; the portal is anyio's.

The modules: ``runtime`` (the loop, its thread and portal; the fork hook), ``stream``
(:class:`SyncChatStream` and its pump), ``service`` (:class:`LLMClientService`), ``status`` (the
status readers) and ``process`` (the process-wide service); every name is importable from
``llm_async.facade``.
"""

from __future__ import annotations

from .process import (
    get_llm_client_service,
    invoke_chat,
    reset_llm_client_service,
    stream_chat,
)
from .service import LLMClientService
from .stream import SyncChatStream

__all__ = [
    "LLMClientService",
    "SyncChatStream",
    "get_llm_client_service",
    "invoke_chat",
    "reset_llm_client_service",
    "stream_chat",
]
