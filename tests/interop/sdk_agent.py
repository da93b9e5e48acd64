"""A small ACP agent built on the official Python SDK (PyPI
`agent-client-protocol`), run behind the relay by tests/interop_python_sdk.rs.

Each prompt turn: streams three agent_message_chunk updates, starts a tool
call, asks the client for permission through `session/request_permission`,
reports the outcome, reads `notes.txt` from the session's cwd through the
client's `fs/read_text_file` when the client offers it, and ends the turn.
Logs go to stderr; stdout carries only the SDK's JSON-RPC.
"""

import asyncio
import logging
import os
import sys
import uuid
from typing import Any

from acp import (
    PROTOCOL_VERSION,
    Agent,
    InitializeResponse,
    NewSessionResponse,
    PromptResponse,
    run_agent,
    start_tool_call,
    update_agent_message_text,
    update_tool_call,
)
from acp.interfaces import Client
from acp.schema import (
    AgentCapabilities,
    AllowedOutcome,
    ClientCapabilities,
    Implementation,
    PermissionOption,
    ToolCallUpdate,
)


class SdkAgent(Agent):
    _conn: Client

    def __init__(self) -> None:
        self._cwd: dict[str, str] = {}
        self._caps: ClientCapabilities | None = None
        self._turns = 0

    def on_connect(self, conn: Client) -> None:
        self._conn = conn

    async def initialize(
        self,
        protocol_version: int,
        client_capabilities: ClientCapabilities | None = None,
        client_info: Implementation | None = None,
        **kwargs: Any,
    ) -> InitializeResponse:
        self._caps = client_capabilities
        logging.info("initialize from %s", client_info.name if client_info else "?")
        return InitializeResponse(
            protocol_version=PROTOCOL_VERSION,
            agent_capabilities=AgentCapabilities(load_session=False),
            agent_info=Implementation(name="python-sdk-test-agent", title="Python SDK test agent", version="0.1.0"),
        )

    async def new_session(self, cwd: str, mcp_servers: list | None = None, **kwargs: Any) -> NewSessionResponse:
        session_id = "py-" + uuid.uuid4().hex[:12]
        self._cwd[session_id] = cwd
        return NewSessionResponse(session_id=session_id)

    async def prompt(self, session_id: str, prompt: list, **kwargs: Any) -> PromptResponse:
        self._turns += 1
        text = " ".join(getattr(b, "text", "") for b in prompt)
        for i in range(1, 4):
            await self._conn.session_update(session_id, update_agent_message_text(f"sdk chunk {i} of 3 ({text}). "))
            await asyncio.sleep(0.01)

        tool_id = f"tool-{self._turns}"
        await self._conn.session_update(
            session_id, start_tool_call(tool_id, "Python SDK action", kind="other", status="pending")
        )
        answer = await self._conn.request_permission(
            session_id=session_id,
            tool_call=ToolCallUpdate(tool_call_id=tool_id, title="Python SDK action"),
            options=[
                PermissionOption(option_id="allow", name="Allow", kind="allow_once"),
                PermissionOption(option_id="reject", name="Reject", kind="reject_once"),
            ],
        )
        outcome = answer.outcome
        chosen = outcome.option_id if isinstance(outcome, AllowedOutcome) else "cancelled"
        await self._conn.session_update(session_id, update_agent_message_text(f"sdk permission: {chosen}. "))
        await self._conn.session_update(
            session_id,
            update_tool_call(tool_id, status="completed" if chosen == "allow" else "failed"),
        )

        fs = self._caps.fs if self._caps else None
        if fs is not None and fs.read_text_file:
            path = os.path.join(self._cwd.get(session_id, os.getcwd()), "notes.txt")
            try:
                read = await self._conn.read_text_file(session_id=session_id, path=path)
                first = read.content.splitlines()[0] if read.content else ""
                await self._conn.session_update(session_id, update_agent_message_text(f"sdk read: {first}"))
            except Exception as e:  # the relay's answer is an error: say so
                await self._conn.session_update(session_id, update_agent_message_text(f"sdk read failed: {e}"))
        return PromptResponse(stop_reason="end_turn")

    async def cancel(self, session_id: str, **kwargs: Any) -> None:
        logging.info("cancel %s", session_id)


async def main() -> None:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    await run_agent(SdkAgent())


if __name__ == "__main__":
    asyncio.run(main())
