"""How the runner configures the Claude Agent SDK.

One place for every option the CLI subprocess gets: working directory,
memory and system prompt, tools and permissions, the in-process `nanoclaw`
MCP server wrapping `tools.py`, and the environment. The only key the CLI
holds is the run's gateway token: the host's gateway adds the real
credential to each call.
"""

from __future__ import annotations

import asyncio
from typing import Any, Callable

from claude_agent_sdk import (
    ClaudeAgentOptions,
    HookMatcher,
    SdkMcpTool,
    create_sdk_mcp_server,
)

from agent_runner.protocol import GatewayAccess, log
from agent_runner.providers import RunContext
from agent_runner.providers.transcript_archive import archive_transcript
from agent_runner.tool_types import ToolSpec
from agent_runner.tools import call_tool, tools_for
from agent_runner.workspace import claude_config_dir

MCP_SERVER_NAME = "nanoclaw"
MCP_SERVER_VERSION = "1.0.0"
AUTO_COMPACT_WINDOW = "165000"
CLI_MAX_RETRIES = 2

# v1's tool list; `Agent` is the newer CLI's name for `Task`. Skills are
# switched on through the SDK's `skills` option, which allows `Skill`.
BUILTIN_TOOLS = (
    "Bash", "Read", "Write", "Edit", "Glob", "Grep", "WebSearch", "WebFetch",
    "Task", "Agent", "TaskOutput", "TaskStop", "TeamCreate", "TeamDelete",
    "SendMessage", "TodoWrite", "ToolSearch", "NotebookEdit",
)


def mcp_tool_name(name: str) -> str:
    return f"mcp__{MCP_SERVER_NAME}__{name}"


def build_options(
    ctx: RunContext,
    *,
    resume: str | None,
    resume_at: str | None,
    on_stderr: Callable[[str], None],
) -> ClaudeAgentOptions:
    specs = tools_for(ctx.request.is_main, has_browser=ctx.tools.browser is not None)
    return ClaudeAgentOptions(
        cwd=str(ctx.workspace.group),
        resume=resume,
        resume_session_at=resume_at if resume else None,
        add_dirs=[str(path) for path in ctx.workspace.extra_dirs()],
        system_prompt=system_prompt(ctx),
        allowed_tools=[*BUILTIN_TOOLS, *(mcp_tool_name(spec.name) for spec in specs)],
        permission_mode="bypassPermissions",
        setting_sources=["project", "user"],
        skills="all",
        mcp_servers={MCP_SERVER_NAME: nanoclaw_server(ctx, specs)},
        env=sdk_env(ctx.request.gateway),
        stderr=on_stderr,
        hooks={"PreCompact": [HookMatcher(hooks=[_pre_compact_hook(ctx)])]},
    )


def system_prompt(ctx: RunContext) -> dict[str, Any]:
    """Claude Code's prompt; non-main groups get the global CLAUDE.md appended."""
    preset: dict[str, Any] = {"type": "preset", "preset": "claude_code"}
    if not ctx.request.is_main:
        global_memory = ctx.workspace.global_memory()
        if global_memory:
            preset["append"] = global_memory
    return preset


def sdk_env(gateway: GatewayAccess | None) -> dict[str, str]:
    """Variables for the CLI child, on top of the container's environment.

    The model API is the gateway's local port and the key is the run's token.
    """
    env = {
        "CLAUDE_CODE_AUTO_COMPACT_WINDOW": AUTO_COMPACT_WINDOW,
        # Without this the CLI hides MCP tools behind ToolSearch and the model
        # never sees `mcp__nanoclaw__*` in its tool list.
        "ENABLE_TOOL_SEARCH": "false",
        "CLAUDE_CONFIG_DIR": str(claude_config_dir()),
        "DISABLE_TELEMETRY": "1",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        # The CLI's own retries, bounded: a refused key or an outage is reported in seconds, and the host
        # decides what to retry (without this one attempt took minutes of silent retrying).
        "CLAUDE_CODE_MAX_RETRIES": str(CLI_MAX_RETRIES),
    }
    if gateway is not None:
        env["ANTHROPIC_BASE_URL"] = gateway.api_url
        env["ANTHROPIC_API_KEY"] = gateway.token
    return env


def nanoclaw_server(ctx: RunContext, specs: list[ToolSpec]) -> Any:
    """The in-process MCP server whose tools are `tools.py`'s functions."""
    return create_sdk_mcp_server(
        MCP_SERVER_NAME, MCP_SERVER_VERSION, tools=[_wrap(ctx, spec) for spec in specs]
    )


def _wrap(ctx: RunContext, spec: ToolSpec) -> SdkMcpTool[Any]:
    async def handler(args: dict[str, Any]) -> dict[str, Any]:
        # File writes are quick, but keep them off the loop that reads the CLI.
        reply = await asyncio.to_thread(call_tool, spec.name, ctx.tools, args)
        if ctx.request.verbose or reply.is_error:
            log(f"tool {spec.name}{' error' if reply.is_error else ''}: {reply.text}")
        return {"content": [{"type": "text", "text": reply.text}], "is_error": reply.is_error}

    return SdkMcpTool(
        name=spec.name, description=spec.description, input_schema=spec.schema, handler=handler
    )


def _pre_compact_hook(ctx: RunContext) -> Callable[..., Any]:
    async def hook(input_data: dict[str, Any], tool_use_id: str | None, context: Any) -> dict[str, Any]:
        try:
            path = archive_transcript(
                transcript_path=input_data.get("transcript_path") or "",
                session_id=input_data.get("session_id") or "",
                group_dir=ctx.workspace.group,
                assistant_name=ctx.request.assistant_name,
            )
            if path:
                log(f"archived the conversation to {path}")
        except Exception as exc:  # archiving must never block compaction
            log(f"could not archive the transcript: {exc}")
        return {}

    return hook
