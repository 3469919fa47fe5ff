"""A local CloudTrail endpoint that serves LookupEvents from a JSON fixture.

moto 5.2 does not implement LookupEvents, so tests and demos that need a real
HTTP CloudTrail point boto3 at this server with AWS_ENDPOINT_URL_CLOUDTRAIL.
It speaks the JSON 1.1 protocol of LookupEvents, DescribeTrails and
GetEventSelectors, filters by one lookup attribute and by StartTime/EndTime,
returns events newest first, and pages with NextToken. It listens on
127.0.0.1 only and ignores request signatures.

The fixture is a list of events or an object with these keys, all optional:

    {"events": [...],            LookupEvents entries, or raw CloudTrail records
     "trails": [...],            DescribeTrails trailList entries
     "event_selectors": {NAME_OR_ARN: {"EventSelectors": [...]}},
     "throttle_requests": N,     the next N LookupEvents calls get ThrottlingException
     "errors": {"DescribeTrails": "AccessDeniedException"}}

An event's EventTime is ISO 8601 or epoch seconds. Fields missing from an
entry are taken from its CloudTrailEvent record (an object or a JSON string).

Change the fixture at run time by POSTing it to /fixture, or by editing the
file given with --events, which is read again on every request. GET /requests
returns the operations and parameters received so far.

Run it with `python tests/cloudtrail_server.py --port 0 --events FILE`; the
first line on stdout is the URL. Import it and call start_server(events).
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import signal
import sys
import threading
from collections.abc import Callable
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
TARGET_PREFIX = "com.amazonaws.cloudtrail.v20131101.CloudTrail_20131101."
MAX_PAGE_SIZE = 50
LOOKUP_FIELDS = {
    "EventId": "EventId",
    "EventName": "EventName",
    "ReadOnly": "ReadOnly",
    "Username": "Username",
    "EventSource": "EventSource",
    "AccessKeyId": "AccessKeyId",
}
DEFAULT_SELECTORS = [
    {
        "ReadWriteType": "All",
        "IncludeManagementEvents": True,
        "DataResources": [],
        "ExcludeManagementEventSources": [],
    }
]

Fixture = dict[str, Any]


class ServiceError(Exception):
    """An error returned to the client as a JSON 1.1 error body."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


class FixtureStore:
    """The current fixture: set in memory, or read again from a file on each request."""

    def __init__(self, fixture: Any = None, path: Path | None = None) -> None:
        self._lock = threading.Lock()
        self._path = path
        self._fixture = normalise_fixture(fixture)
        self._file_text: str | None = None
        self._throttled = 0
        self.requests: list[dict[str, Any]] = []

    def replace(self, fixture: Any) -> None:
        """Serve `fixture` from now on, instead of the file."""
        with self._lock:
            self._path = None
            self._fixture = normalise_fixture(fixture)
            self._throttled = 0

    def current(self) -> Fixture:
        with self._lock:
            if self._path is not None:
                self._reload()
            return self._fixture

    def _reload(self) -> None:
        assert self._path is not None
        text = self._path.read_text(encoding="utf-8")
        if text != self._file_text:
            self._file_text = text
            self._fixture = normalise_fixture(json.loads(text))
            self._throttled = 0

    def take_throttle(self) -> bool:
        """Return True while the fixture still requests a throttled LookupEvents call."""
        with self._lock:
            if self._throttled < int(self._fixture.get("throttle_requests", 0)):
                self._throttled += 1
                return True
            return False

    def record(self, operation: str, body: dict[str, Any]) -> None:
        with self._lock:
            self.requests.append({"operation": operation, "parameters": body})


def normalise_fixture(fixture: Any) -> Fixture:
    if fixture is None:
        return {"events": []}
    if isinstance(fixture, list):
        return {"events": [normalise_event(e) for e in fixture]}
    data = dict(fixture)
    data["events"] = [normalise_event(e) for e in data.get("events", [])]
    return data


def normalise_event(event: dict[str, Any]) -> dict[str, Any]:
    """Return a LookupEvents entry, filling gaps from its CloudTrail record."""
    record = event.get("CloudTrailEvent") or {}
    if isinstance(record, str):
        record = json.loads(record)
    entry = {
        "EventId": event.get("EventId") or record.get("eventID", ""),
        "EventName": event.get("EventName") or record.get("eventName", ""),
        "ReadOnly": str(event.get("ReadOnly", record.get("readOnly", "true"))).lower(),
        "EventTime": _epoch(event.get("EventTime") or record.get("eventTime")),
        "EventSource": event.get("EventSource") or record.get("eventSource", ""),
        "Username": event.get("Username") or _username(record),
        "Resources": event.get("Resources") or _resources(record),
        "CloudTrailEvent": json.dumps(record),
    }
    if event.get("AccessKeyId"):
        entry["AccessKeyId"] = event["AccessKeyId"]
    return entry


def _epoch(value: Any) -> float:
    if isinstance(value, int | float):
        return float(value)
    if not value:
        raise ValueError("every fixture event needs EventTime or eventTime")
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()


def _username(record: dict[str, Any]) -> str:
    identity = record.get("userIdentity") or {}
    return str(identity.get("userName") or identity.get("principalId") or "")


def _resources(record: dict[str, Any]) -> list[dict[str, str]]:
    return [
        {"ResourceType": str(r.get("type", "")), "ResourceName": str(r.get("ARN", ""))}
        for r in record.get("resources") or []
    ]


def lookup_events(store: FixtureStore, body: dict[str, Any]) -> dict[str, Any]:
    """Handle LookupEvents: filter, sort newest first, and return one page."""
    if store.take_throttle():
        raise ServiceError("ThrottlingException", "Rate exceeded")
    events = [e for e in store.current()["events"] if _matches(e, body)]
    events.sort(key=lambda e: e["EventTime"], reverse=True)

    size = int(body.get("MaxResults", MAX_PAGE_SIZE))
    if not 1 <= size <= MAX_PAGE_SIZE:
        raise ServiceError("InvalidMaxResultsException", "MaxResults must be 1 to 50")
    query = _query_digest(body)
    offset = _decode_token(body["NextToken"], query) if body.get("NextToken") else 0

    answer: dict[str, Any] = {"Events": events[offset : offset + size]}
    if offset + size < len(events):
        answer["NextToken"] = _encode_token(offset + size, query)
    return answer


def _matches(event: dict[str, Any], body: dict[str, Any]) -> bool:
    start, end = body.get("StartTime"), body.get("EndTime")
    if start is not None and end is not None and float(start) > float(end):
        raise ServiceError("InvalidTimeRangeException", "StartTime is after EndTime")
    if start is not None and event["EventTime"] < float(start):
        return False
    if end is not None and event["EventTime"] > float(end):
        return False

    attributes = body.get("LookupAttributes") or []
    if len(attributes) > 1:
        raise ServiceError(
            "InvalidLookupAttributesException", "give at most one lookup attribute"
        )
    return all(_attribute_matches(event, attribute) for attribute in attributes)


def _attribute_matches(event: dict[str, Any], attribute: dict[str, str]) -> bool:
    key, value = attribute["AttributeKey"], attribute["AttributeValue"]
    if key == "ResourceName":
        return any(r.get("ResourceName") == value for r in event["Resources"])
    if key == "ResourceType":
        return any(r.get("ResourceType") == value for r in event["Resources"])
    if key not in LOOKUP_FIELDS:
        raise ServiceError("InvalidLookupAttributesException", f"unknown key {key}")
    return str(event.get(LOOKUP_FIELDS[key], "")) == value


def _query_digest(body: dict[str, Any]) -> str:
    query = {k: body.get(k) for k in ("LookupAttributes", "StartTime", "EndTime")}
    return base64.urlsafe_b64encode(json.dumps(query, sort_keys=True).encode()).decode()


def _encode_token(offset: int, query: str) -> str:
    return base64.urlsafe_b64encode(f"{offset}|{query}".encode()).decode()


def _decode_token(token: str, query: str) -> int:
    try:
        offset, token_query = base64.urlsafe_b64decode(token).decode().split("|", 1)
        if token_query != query:
            raise ValueError("the token belongs to another query")
        return int(offset)
    except ValueError as exc:
        raise ServiceError(
            "InvalidNextTokenException", f"invalid NextToken: {exc}"
        ) from exc


def describe_trails(store: FixtureStore, body: dict[str, Any]) -> dict[str, Any]:
    trails = store.current().get("trails", [])
    names = body.get("trailNameList") or []
    if names:
        trails = [
            t for t in trails if t.get("Name") in names or t.get("TrailARN") in names
        ]
    return {"trailList": trails}


def get_event_selectors(store: FixtureStore, body: dict[str, Any]) -> dict[str, Any]:
    fixture = store.current()
    requested = body.get("TrailName", "")
    trail = next(
        (
            t
            for t in fixture.get("trails", [])
            if requested in (t.get("Name"), t.get("TrailARN"))
        ),
        None,
    )
    if trail is None:
        raise ServiceError("TrailNotFoundException", f"trail {requested} not found")
    selectors = fixture.get("event_selectors", {})
    found = selectors.get(trail.get("Name")) or selectors.get(trail.get("TrailARN"))
    answer = {"TrailARN": trail.get("TrailARN")}
    answer.update(found or {"EventSelectors": DEFAULT_SELECTORS})
    return answer


OPERATIONS: dict[str, Callable[[FixtureStore, dict[str, Any]], dict[str, Any]]] = {
    "LookupEvents": lookup_events,
    "DescribeTrails": describe_trails,
    "GetEventSelectors": get_event_selectors,
}


class CloudTrailHandler(BaseHTTPRequestHandler):
    """Dispatch CloudTrail operations by X-Amz-Target; serve /fixture and /requests."""

    server: CloudTrailServer

    def do_POST(self) -> None:
        body = self._read_json()
        if self.path == "/fixture":
            self.server.store.replace(body)
            self._send(204, None)
            return
        target = self.headers.get("X-Amz-Target", "")
        operation = target.removeprefix(TARGET_PREFIX)
        self.server.store.record(operation, body)
        try:
            self._send(200, self._answer(operation, body))
        except ServiceError as exc:
            self._send(exc.status, {"__type": exc.code, "message": str(exc)})

    def do_GET(self) -> None:
        if self.path == "/requests":
            self._send(200, self.server.store.requests)
        elif self.path == "/fixture":
            self._send(200, self.server.store.current())
        else:
            self._send(404, {"message": f"no such path {self.path}"})

    def _answer(self, operation: str, body: dict[str, Any]) -> Any:
        handler = OPERATIONS.get(operation)
        if handler is None:
            raise ServiceError("UnknownOperationException", f"unknown {operation!r}")
        injected = self.server.store.current().get("errors", {}).get(operation)
        if injected:
            raise ServiceError(
                injected, f"{operation} failed because the fixture injects {injected}"
            )
        return handler(self.server.store, body)

    def _read_json(self) -> Any:
        length = int(self.headers.get("Content-Length", 0))
        raw = self.rfile.read(length) if length else b""
        return json.loads(raw) if raw.strip() else {}

    def _send(self, status: int, payload: Any) -> None:
        data = b"" if payload is None else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/x-amz-json-1.1")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-amzn-RequestId", "00000000-0000-0000-0000-000000000000")
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)


class CloudTrailServer(ThreadingHTTPServer):
    """A ThreadingHTTPServer that carries the fixture store for its handlers."""

    daemon_threads = True

    def __init__(self, port: int, store: FixtureStore) -> None:
        super().__init__((HOST, port), CloudTrailHandler)
        self.store = store

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.server_address[1]}"


def start_server(
    events: Any = None, *, events_file: Path | None = None, port: int = 0
) -> tuple[str, Callable[[], None]]:
    """Start the server in a daemon thread; return its URL and a stop function."""
    server = CloudTrailServer(port, FixtureStore(events, events_file))
    # A short poll interval lets stop() return within about 50 ms.
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join()

    return server.url, stop


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--port", type=int, default=0, help="TCP port; 0 picks a free one"
    )
    parser.add_argument(
        "--events", type=Path, help="JSON fixture file, read on every request"
    )
    args = parser.parse_args(argv)

    server = CloudTrailServer(args.port, FixtureStore(path=args.events))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(server.url, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
