"""A POST to one of Gradio's event routes, read exactly as Gradio 6.31 reads it.

The guard must judge the event and the session Gradio will act on, not a guess at them: every
way to name an event counts against the same caps. gradio/routes.py:

- `queue/join`: the body is a `PredictBody` (gradio/data_classes.py), validated by FastAPI in
  pydantic's lax mode, so `fn_index` may come as `1`, `"1"`, `1.0`, `"+1"` or `true`; the queue
  runs `fns[fn_index]` (gradio/queueing.py `Queue.push` → route_utils.get_fn with no api name);
- `run/{api}`, `api/{api}`: a `PredictBody` too; its `fn_index` wins over the name in the path
  (route_utils.get_fn);
- `call/{api}`: a `SimplePredictBody` (data, session_hash, oauth_token: an `fn_index` in it is
  dropped), the event is the one the path names; no session hash: the event's id is its session;
- `call/v2/{api}`: any JSON object; the event from the path, and never the body's session (its
  own id is the session);
- `cancel`: a `CancelBody` (session_hash, fn_index, event_id).

Gradio looks a session up (creating its state) before it looks the event up, so an unknown
event is refused here, before Gradio sees it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from gradio.data_classes import CancelBody, PredictBody, SimplePredictBody
from pydantic import ValidationError

JOIN, DIRECT, CALL, CALL_V2, CANCEL = "join", "direct", "call", "call/v2", "cancel"

_DIRECT = re.compile(r"/gradio_api/(?:run|api)/(?P<api>[^/]+)/?")
_CALL_V2 = re.compile(r"/gradio_api/call/v2/(?P<api>[^/]+)/?")
_CALL = re.compile(r"/gradio_api/call/(?P<api>[^/]+)/?")


@dataclass
class Call:
    """What a POST names: `route` (one of the constants above), the event, the session."""

    route: str
    data: dict = field(default_factory=dict)  # the JSON body (for the file paths it names)
    fn: Any = None  # Gradio's BlockFunction, None when the body names none that exists
    session: str | None = None  # the session Gradio acts on; None: none named (call/: the event's own)
    event_id: str | None = None  # cancel: the event it stops
    malformed: bool = False  # Gradio refuses the body (422)

    @property
    def opens_own_session(self) -> bool:
        """A REST call whose session will be its event's id."""
        return self.route == CALL_V2 or (self.route == CALL and self.session is None)


def route_of(method: str, path: str) -> str | None:
    """Which event route a request is, or None."""
    if method != "POST":
        return None
    bare = path.rstrip("/")
    if bare == "/gradio_api/queue/join":
        return JOIN
    if bare == "/gradio_api/cancel":
        return CANCEL
    if _DIRECT.fullmatch(path):
        return DIRECT
    if _CALL_V2.fullmatch(path):
        return CALL_V2
    if _CALL.fullmatch(path):
        return CALL
    return None


def read(route: str, path: str, body: bytes, fns: dict) -> Call:
    """The call a body makes on `route` (from `route_of`), `fns` being the Blocks' functions."""
    try:
        data = json.loads(body) if body else None
    except ValueError:
        data = None
    call = Call(route, data if isinstance(data, dict) else {})
    model = {JOIN: PredictBody, DIRECT: PredictBody, CALL: SimplePredictBody, CANCEL: CancelBody}.get(route)
    if not isinstance(data, dict):
        call.malformed = True
        return call
    if model is not None:
        try:
            parsed = model.model_validate(data)
        except ValidationError:
            call.malformed = True
            return call
    if route == CANCEL:
        call.session, call.event_id = parsed.session_hash, parsed.event_id
        call.fn = fns.get(parsed.fn_index)
        return call
    pattern = {DIRECT: _DIRECT, CALL: _CALL, CALL_V2: _CALL_V2}.get(route)
    match = pattern.fullmatch(path) if pattern is not None else None
    api_name = match["api"] if match else None
    fn_index = parsed.fn_index if route in (JOIN, DIRECT) else None  # call/: SimplePredictBody has none; v2 builds its own
    if fn_index is not None:
        call.fn = fns.get(fn_index)
    elif api_name is not None:
        call.fn = next((fn for fn in fns.values() if fn.api_name == api_name), None)
    if route != CALL_V2:
        call.session = parsed.session_hash
    return call
