"""The `browser_*` tools: each one is an action on the container's browser page.

Handlers have the same shape as the IPC tools (context and arguments in,
reply text out), so both providers run them; the work itself is a function
of the page that `Browser.call` runs on the browser's thread. Playwright's
failures come back as plain sentences: a timeout names what was awaited, a
destination the egress policy refuses names the proxy's reason.
"""

from __future__ import annotations

import time
from typing import Any, Callable

from agent_runner.browser import (DOWNLOADS_DIR, MAX_TEXT_CHARS, MAX_TIMEOUT_S, OUTPUT_DIR, BrowserError, check_url,
                                  is_refusal_page, proxy_failure, proxy_refusal, refused, safe_name,
                                  unique_path)
from agent_runner.tool_types import Handler, ToolContext, ToolReply

NO_BROWSER = ("This container has no browser: the group runs the slim agent image. The full image "
              "(`nanoclaw image build`) carries Chromium.")
SETTLE_MS = 5_000  # after a click or a submit, how long to wait for a navigation it starts
DOWNLOAD_GRACE_MS = 300  # and for a download it starts to be announced
MAX_FIELDS = 50


def _timeout_ms(args: dict[str, Any], default_s: float) -> float:
    value = args.get("timeout_s")
    seconds = default_s if value is None else min(max(float(value), 0.1), MAX_TIMEOUT_S)
    return seconds * 1000


def _clip(text: str, limit: int = MAX_TEXT_CHARS) -> str:
    text = text.strip()
    if len(text) <= limit:
        return text
    return f"{text[:limit]}\n[... {len(text) - limit} more characters; read a part with a selector]"


def _page_text(page: Any, selector: str | None = None) -> str:
    if selector:
        return page.locator(selector).inner_text()
    return page.evaluate("() => document.body ? document.body.innerText : ''") or ""


def _where(page: Any) -> str:
    title = page.title()
    return f"{page.url}" + (f" ({title})" if title else "")


def _settle(page: Any) -> None:
    """Let a navigation or a download started by the last action begin and a page load finish.

    Never fails: the action may well have started neither.
    """
    try:
        page.wait_for_timeout(DOWNLOAD_GRACE_MS)
        page.wait_for_load_state("load", timeout=SETTLE_MS)
    except Exception:
        pass


# --- actions ---------------------------------------------------------------

def _open(args: dict[str, Any]) -> Callable[[Any], str]:
    url = check_url(args["url"])
    wait_until = args.get("wait_until") or "load"

    def action(page: Any) -> str:
        response = page.goto(url, wait_until=wait_until, timeout=_timeout_ms(args, 30))
        status = response.status if response is not None else None
        text = _page_text(page)
        if is_refusal_page(status, text):
            raise BrowserError(refused(url, text))
        shown = f"status {status}" if status is not None else "no HTTP status"
        return f"Opened {_where(page)}, {shown}.\n\n{_clip(text)}"

    return action


def _read(args: dict[str, Any]) -> Callable[[Any], str]:
    mode = args.get("format") or "text"
    selector = args.get("selector")

    def action(page: Any) -> str:
        if mode == "accessibility":
            tree = page.locator(selector or "body").aria_snapshot()
            return f"{_where(page)}, accessibility tree:\n{_clip(tree)}"
        if mode == "html":
            html = page.locator(selector).inner_html() if selector else page.content()
            return f"{_where(page)}, HTML:\n{_clip(html)}"
        return f"{_where(page)}:\n{_clip(_page_text(page, selector))}"

    return action


def _click(args: dict[str, Any]) -> Callable[[Any], str]:
    def action(page: Any) -> str:
        page.locator(args["selector"]).click(timeout=_timeout_ms(args, 15))
        _settle(page)
        return f"Clicked {args['selector']!r}; now at {_where(page)}."

    return action


def _type(args: dict[str, Any]) -> Callable[[Any], str]:
    def action(page: Any) -> str:
        target = page.locator(args["selector"])
        target.press_sequentially(args["text"], timeout=_timeout_ms(args, 15))
        if args.get("submit"):
            target.press("Enter")
            _settle(page)
        return f"Typed {len(args['text'])} characters into {args['selector']!r}; now at {_where(page)}."

    return action


def _fill(args: dict[str, Any]) -> Callable[[Any], str]:
    fields = args["fields"]
    if not fields or not all(isinstance(k, str) and isinstance(v, (str, bool)) for k, v in fields.items()):
        raise BrowserError("fields must map selectors to text (or true/false for a checkbox)")
    if len(fields) > MAX_FIELDS:
        raise BrowserError(f"at most {MAX_FIELDS} fields at once, not {len(fields)}")

    def action(page: Any) -> str:
        deadline = time.monotonic() + _timeout_ms(args, 15) / 1000  # one wait for the whole form
        for selector, value in fields.items():
            timeout = max((deadline - time.monotonic()) * 1000, 1)
            field = page.locator(selector)
            if isinstance(value, bool):
                field.set_checked(value, timeout=timeout)
            elif field.evaluate("e => e.tagName") == "SELECT":
                field.select_option(value, timeout=timeout)
            else:
                field.fill(value, timeout=timeout)
        done = f"Filled {len(fields)} field(s)"
        if args.get("submit"):
            page.locator(args["submit"]).click(timeout=max((deadline - time.monotonic()) * 1000, 1))
            _settle(page)
            done += f" and clicked {args['submit']!r}"
        return f"{done}; now at {_where(page)}."

    return action


def _wait(args: dict[str, Any]) -> Callable[[Any], str]:
    def action(page: Any) -> str:
        timeout = _timeout_ms(args, 15)
        if args.get("selector"):
            page.locator(args["selector"]).first.wait_for(timeout=timeout)
            return f"{args['selector']!r} is on the page ({_where(page)})."
        if args.get("text"):
            page.get_by_text(args["text"]).first.wait_for(timeout=timeout)
            return f"{args['text']!r} is on the page ({_where(page)})."
        if args.get("state"):
            page.wait_for_load_state(args["state"], timeout=timeout)
            return f"The page reached {args['state']} ({_where(page)})."
        page.wait_for_timeout(min(timeout, MAX_TIMEOUT_S * 1000))
        return f"Waited {timeout / 1000:g} s ({_where(page)})."

    return action


def _saver(kind: str, suffix: str) -> Callable[[ToolContext, dict[str, Any]], Callable[[Any], str]]:
    def make(ctx: ToolContext, args: dict[str, Any]) -> Callable[[Any], str]:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        name = safe_name(args.get("name") or "", f"{kind}-{stamp}")
        if not name.lower().endswith(suffix):
            name += suffix

        def action(page: Any) -> str:
            path = unique_path(ctx.browser.config.group_dir / OUTPUT_DIR, name)
            if kind == "pdf":
                page.pdf(path=str(path))
            elif args.get("selector"):
                page.locator(args["selector"]).screenshot(path=str(path))
            else:
                page.screenshot(path=str(path), full_page=bool(args.get("full_page")))
            relative = path.relative_to(ctx.browser.config.group_dir)
            return (f"Saved {_where(page)} as {path} ({path.stat().st_size} bytes). To show it in the chat, "
                    f"call send_file with path {str(relative)!r}.")

        return action

    return make


# --- the handlers ----------------------------------------------------------

def _handler(make: Callable[..., Callable[[Any], str]], *, with_context: bool = False) -> Handler:
    def handler(ctx: ToolContext, args: dict[str, Any]) -> ToolReply:
        if ctx.browser is None:
            return ToolReply(NO_BROWSER, is_error=True)
        from playwright.sync_api import Error as PlaywrightError
        from playwright.sync_api import TimeoutError as PlaywrightTimeout

        before = len(ctx.browser.downloads)
        try:
            action = make(ctx, args) if with_context else make(args)
            text = ctx.browser.call(action)
        except BrowserError as exc:
            return ToolReply(str(exc), is_error=True)
        except PlaywrightTimeout as exc:
            return ToolReply(f"Timed out: {_first_line(exc)}", is_error=True)
        except PlaywrightError as exc:
            return ToolReply(_explain(ctx, args, exc), is_error=True)
        except Exception as exc:  # the provider must never fall over because a page did something odd
            return ToolReply(f"The browser failed: {type(exc).__name__}: {_first_line(exc)}", is_error=True)
        for path in ctx.browser.downloads[before:]:
            text += f"\nDownloaded {path.name} into {DOWNLOADS_DIR}/ of the group's folder."
        return ToolReply(text)

    return handler


def _first_line(exc: Exception) -> str:
    message = str(getattr(exc, "message", "") or exc)
    return message.splitlines()[0] if message else type(exc).__name__


def _explain(ctx: ToolContext, args: dict[str, Any], exc: Exception) -> str:
    message = _first_line(exc)
    url = args.get("url")
    if url and proxy_failure(message):
        reason = proxy_refusal(ctx.browser.config.proxy_port, check_url(url))
        if reason:
            return refused(url, reason)
        return f"Could not reach {url} through the gateway's proxy ({message})."
    return f"The browser failed: {message}"


BROWSER_HANDLERS: dict[str, Handler] = {
    "browser_open": _handler(_open),
    "browser_read": _handler(_read),
    "browser_click": _handler(_click),
    "browser_type": _handler(_type),
    "browser_fill": _handler(_fill),
    "browser_wait": _handler(_wait),
    "browser_screenshot": _handler(_saver("screenshot", ".png"), with_context=True),
    "browser_pdf": _handler(_saver("pdf", ".pdf"), with_context=True),
}
