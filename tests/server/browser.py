"""A page in a real browser for the tests: `tests/js/page.mjs` (playwright-core driving
Debian's chromium) answering one command at a time over its stdin and stdout."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.server.node import NodeScript, node_script


class Page:
    def __init__(self, script: NodeScript) -> None:
        self.script = script

    async def do(self, op: str, **arguments: Any) -> Any:
        """Run one command; fails the test, with what the page showed, if it fails."""
        await self.script.send({"op": op, **arguments})
        answer = await self.script.next_record(time_limit=60)
        if not answer["ok"]:
            pytest.fail(f"{op} {arguments}: {answer['error']}\npage: {answer['snapshot']}")
        return answer["value"]

    async def goto(self, url: str) -> None:
        await self.do("goto", url=url)

    async def click(self, selector: str) -> None:
        await self.do("click", selector=selector)

    async def fill(self, selector: str, value: str) -> None:
        await self.do("fill", selector=selector, value=value)

    async def wait(self, expression: str, arg: Any = None, time_limit: float = 20) -> Any:
        """Until the JavaScript function ``expression`` (called with ``arg``) is truthy in
        the page; returns its value."""
        return await self.do("wait", expression=expression, arg=arg, timeout=time_limit)

    async def eval(self, expression: str, arg: Any = None) -> Any:
        return await self.do("eval", expression=expression, arg=arg)

    # Reading the page by CSS selector, so the tests need little JavaScript.

    async def wait_for(self, selector: str) -> None:
        """Until an element matches ``selector``."""
        await self.wait("(s) => document.querySelector(s) !== null", selector)

    async def wait_text(self, selector: str, text: str) -> None:
        """Until the first element matching ``selector`` shows exactly ``text``."""
        await self.wait(
            "([s, t]) => document.querySelector(s)?.textContent === t", [selector, text]
        )

    async def wait_count(self, selector: str, count: int) -> None:
        """Until at least ``count`` elements match ``selector``."""
        await self.wait("([s, n]) => document.querySelectorAll(s).length >= n", [selector, count])

    async def text(self, selector: str) -> str:
        text: str = await self.eval("(s) => document.querySelector(s).textContent", selector)
        return text

    async def texts(self, selector: str) -> list[str]:
        texts: list[str] = await self.eval(
            "(s) => [...document.querySelectorAll(s)].map((e) => e.textContent)", selector
        )
        return texts

    async def data(self, selector: str, name: str) -> list[str]:
        """``data-<name>`` of every element matching ``selector`` (camelCase name)."""
        values: list[str] = await self.eval(
            "([s, n]) => [...document.querySelectorAll(s)].map((e) => e.dataset[n])",
            [selector, name],
        )
        return values

    async def prop(self, selector: str, name: str) -> Any:
        """A DOM property (``disabled``, ``hidden``, ``value``, ...) of the first match."""
        return await self.eval("([s, n]) => document.querySelector(s)[n]", [selector, name])

    async def shown_ids(self) -> list[int]:
        """The ids of the events on screen, in order (a plan row shows two: the plan,
        and the runtime's answer to it, ``data-also``)."""
        pairs = await self.eval(
            "() => [...document.querySelectorAll('#events > li')]"
            ".map((e) => [e.dataset.id, e.dataset.also ?? null])"
        )
        ids: list[int] = []
        for first, also in pairs:
            ids.append(int(first))
            if also is not None:
                ids.append(int(also))
        return ids

    async def screenshot(self, path: Path, *, full_page: bool = False) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        await self.do("screenshot", path=str(path), fullPage=full_page)

    async def errors(self, *, allow: tuple[str, ...] = ()) -> list[str]:
        """The page's uncaught errors and console errors, except those containing one of
        ``allow``."""
        records = await self.do("errors")
        return [
            f"{record['kind']}: {record['text']}"
            for record in records
            if not any(part in record["text"] for part in allow)
        ]


@contextlib.asynccontextmanager
async def open_page(width: int = 1280, height: int = 900) -> AsyncIterator[Page]:
    async with node_script(
        "page.mjs",
        "--width",
        str(width),
        "--height",
        str(height),
        needs="playwright-core",
        interactive=True,
    ) as script:
        yield Page(script)
        # End of input: the script closes the browser and exits.
        assert script.process.stdin is not None
        script.process.stdin.close()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(10):
                await script.process.wait()
