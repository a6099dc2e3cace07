"""REST: schemathesis over ``/openapi.json`` (positive and negative cases per operation),
then hand-made boundary values from issue 9. Every answer is checked: no 5xx, no hang,
no redirect, and its status listed in the document for its operation."""

from __future__ import annotations

import time
from typing import Any

import httpx
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, seed, settings
from schemathesis import GenerationMode

from tests.fuzz.budget import Budget, Exhausted
from tests.fuzz.figures import Figures
from tests.fuzz.target import Target


def fuzz_rest(
    target: Target, figures: Figures, budget: Budget, *, deadline: float, rng: int
) -> None:
    phase = f"rest{'+keys' if target.key else ''}"
    spec = httpx.get(f"{target.url}/openapi.json", headers=target.headers).json()
    schema = schemathesis.openapi.from_url(f"{target.url}/openapi.json", headers=target.headers)
    # Server-Sent Events never end: the stream phase probes that route.
    operations = [
        operation
        for result in schema.get_all_operations()
        if not (operation := result.ok()).path.endswith("/events/stream")
    ]
    runs = [(op, mode) for op in operations for mode in _modes(op)]
    try:
        for index, (operation, mode) in enumerate(runs):
            examples = budget.share(len(runs) - index)
            fixed = {}
            if "{conversation_id}" in operation.path:
                fixed = {"conversation_id": _conversation(target)}
            _run_operation(
                target, figures, budget, spec, phase, operation, mode, fixed,
                examples=examples, deadline=deadline, rng=rng + index,
            )  # fmt: skip
        boundary_values(target, figures, budget, spec, phase, deadline=deadline)
    except Exhausted:
        pass


def _modes(operation: Any) -> list[GenerationMode]:
    """Negative cases need something to break: a query parameter or a body."""
    definition = operation.definition.raw
    has_input = "requestBody" in definition or any(
        parameter.get("in") == "query" for parameter in definition.get("parameters", [])
    )
    return (
        [GenerationMode.POSITIVE, GenerationMode.NEGATIVE]
        if has_input
        else [GenerationMode.POSITIVE]
    )


def _conversation(target: Target) -> str:
    response = httpx.post(f"{target.url}/api/conversations", json={}, headers=target.headers)
    response.raise_for_status()
    return str(response.json()["conversation_id"])


def _run_operation(
    target: Target,
    figures: Figures,
    budget: Budget,
    spec: dict[str, Any],
    phase: str,
    operation: Any,
    mode: GenerationMode,
    fixed: dict[str, str],
    *,
    examples: int,
    deadline: float,
    rng: int,
) -> None:
    # Half the cases name a real conversation, half whatever the generator makes.
    strategies = [operation.as_strategy(generation_mode=mode)]
    if fixed:
        strategies.append(operation.as_strategy(generation_mode=mode, path_parameters=fixed))
    for strategy in strategies:

        @seed(rng)
        @settings(
            max_examples=max(1, examples // len(strategies)),
            deadline=None,
            database=None,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(strategy)
        def attempt(case: Any) -> None:
            budget.spend()
            started = time.monotonic()
            try:
                response = case.call(base_url=target.url, headers=target.headers, timeout=deadline)
            except requests.Timeout:
                _record(figures, spec, phase, operation.label, None, case.as_curl_command())
                return
            except requests.ConnectionError as exc:
                figures.server_errors[f"{operation.label} (connection dropped)"] += 1
                figures.sample(f"{exc!r}: {case.as_curl_command()}")
                return
            if time.monotonic() - started > deadline:
                response = None
            _record(figures, spec, phase, operation.label, response, case.as_curl_command())

        try:
            attempt()
        except Exhausted:
            raise
        except Exception as exc:  # Hypothesis could not generate (Unsatisfiable, ...)
            figures.sample(f"{operation.label} {mode.value}: no cases: {type(exc).__name__}")


def _record(
    figures: Figures,
    spec: dict[str, Any],
    phase: str,
    label: str,
    response: Any,
    reproduction: str,
) -> None:
    figures.inputs[phase] += 1
    if response is None:
        figures.hangs[label] += 1
        figures.sample(f"hang: {reproduction}")
        return
    status = int(response.status_code)
    if status >= 500:
        figures.server_errors[label] += 1
        figures.sample(f"{status}: {reproduction}")
    elif 300 <= status < 400:
        figures.undocumented[f"{label} {status} (a redirect)"] += 1
        figures.sample(f"{status}: {reproduction}")
    elif not _documented(spec, label, status):
        figures.undocumented[f"{label} {status}"] += 1


def _documented(spec: dict[str, Any], label: str, status: int) -> bool:
    method, _, template = label.partition(" ")
    operation = spec["paths"].get(template, {}).get(method.lower())
    return operation is None or str(status) in operation["responses"]


# -- boundary values ---------------------------------------------------------------

HUGE = [2**63, 2**64, -(2**63) - 1, 10**30]
DATES = ["0001-01-01T00:00:00+23:59", "9999-12-31T23:59:59-23:59", "2024-02-30", "+275760-09-13"]


def _nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = {"a": [value]}
    return value


def boundary_requests(conversation_id: str) -> list[tuple[str, str, str, dict[str, Any]]]:
    """(label, method, path, httpx keyword arguments), as issue 9 found them."""
    base = f"/api/conversations/{conversation_id}"
    events = "GET /api/conversations/{conversation_id}/events"
    count = "GET /api/conversations/{conversation_id}/events/count"
    post_event = "POST /api/conversations/{conversation_id}/events"
    create = "POST /api/conversations"
    cases: list[tuple[str, str, str, dict[str, Any]]] = []
    for value in HUGE:
        for name in ("start_id", "end_id", "limit"):
            cases.append((events, "GET", f"{base}/events", {"params": {name: value}}))
        cases.append((count, "GET", f"{base}/events/count", {"params": {"end_id": value}}))
        cases.append(
            ("GET /api/events/search", "GET", "/api/events/search",
             {"params": {"q": "a", "cursor": value}})
        )  # fmt: skip
        cases.append(
            ("GET /api/conversations", "GET", "/api/conversations", {"params": {"page_id": value}})
        )
        for field in ("max_iterations", "priority", "max_budget_per_task"):
            cases.append((create, "POST", "/api/conversations", {"json": {field: value}}))
    for date in DATES:
        for name in ("start_date", "end_date"):
            cases.append((events, "GET", f"{base}/events", {"params": {name: date}}))
            cases.append((count, "GET", f"{base}/events/count", {"params": {name: date}}))
    deep = _nested(300)
    message = {"action": "message", "args": {"content": "x", "deep": deep}}
    cases += [
        (post_event, "POST", f"{base}/events", {"json": message}),
        (create, "POST", "/api/conversations", {"json": {"mcp_config": deep}}),
        (create, "POST", "/api/conversations", {"json": {"replay_json": '[{"a":' * 300}}),
        (create, "POST", "/api/conversations", {"json": {"title": "t" * 1024 * 1024}}),
        (create, "POST", "/api/conversations", {"json": {"image_urls": ["u"] * 1000}}),
        (create, "POST", "/api/conversations", {"content": b"\xff\xfe{"}),
        (create, "POST", "/api/conversations", {"content": b"[]"}),
        (post_event, "POST", f"{base}/events", {"content": b""}),
        (post_event, "POST", f"{base}/events", {"content": b"{" * 2 * 1024 * 1024}),
        (post_event, "POST", f"{base}/events", {"json": {"observation": "run", "content": ""}}),
        ("GET /api/conversations/{conversation_id}", "GET", "/api/conversations/%2e%2e%2f%2e%2e",
         {}),
        ("GET /api/conversations/{conversation_id}", "GET", "/api/conversations/%2e%2e", {}),
        ("GET /api/conversations/{conversation_id}", "GET", "/api/conversations/" + "x" * 5000, {}),
    ]  # fmt: skip
    return cases


def boundary_values(
    target: Target, figures: Figures, budget: Budget, spec: dict[str, Any], phase: str,
    *, deadline: float,
) -> None:  # fmt: skip
    conversation_id = _conversation(target)
    with httpx.Client(base_url=target.url, headers=target.headers, timeout=deadline) as client:
        for label, method, path, arguments in boundary_requests(conversation_id):
            budget.spend()
            reproduction = f"{method} {path} {_short(arguments)}"
            try:
                response: Any = client.request(method, path, follow_redirects=False, **arguments)
            except httpx.TimeoutException:
                response = None
            except httpx.TransportError as exc:
                figures.server_errors[f"{label} (connection dropped)"] += 1
                figures.sample(f"{exc!r}: {reproduction}")
                continue
            _record(figures, spec, phase, label, response, reproduction)


def _short(arguments: dict[str, Any]) -> str:
    text = repr(arguments)
    return text if len(text) < 160 else text[:160] + "..."
