"""What open conversations hold in memory, bounded per client and in all.

A conversation keeps its pictures decoded (at the size the model saw them, or a display size:
`demo.media.pictures`), its videos' sampled frames and its text; `Limits` bounds one conversation
(about 200 MB of pixels at the defaults), and `demo.web.clients` the conversations one client
may have open (64 by default, for the many people behind one school's or company's address). So
one address could hold 64 full conversations; here what a client's conversations hold together
is bounded (`per_client`), and what all of them hold (`total`), before a message or a Load adds
to it. A refusal is one sentence; the conversation stays as it was.

A client is an address as `demo.web.clients.client_key` counts it. Pure and thread-safe.
"""

from __future__ import annotations

import threading

from demo.record.conversation import Conversation

MB = 2**20

CLIENT_FULL = (
    "The conversations open from your address already hold {held:,.0f} MB of pictures and text, and this "
    "would make {would:,.0f} MB, over the {cap:,.0f} MB one address may hold: close a tab or clear a conversation first."
)
APP_FULL = "The app holds as many pictures as it can right now; try again in a few minutes, or send fewer or smaller ones."


def held_bytes(conversation: Conversation) -> int:
    """The bytes `conversation`'s pictures, video frames and text take in memory, its hidden versions
    included (pixels at their bands' bytes, each image once; text at one byte a character)."""
    total, seen = 0, set()
    pending = list(conversation.turns)
    while pending:
        turn = pending.pop()
        total += len(turn.text) + len(turn.answer) + len(turn.reasoning) + len(turn.error)
        for version in turn.versions:
            pending.extend([version.turn, *version.later])
        for attachment in turn.attachments:
            images = attachment.video.frames if attachment.video is not None else (attachment.image,)
            for image in images:
                if image is not None and id(image) not in seen:
                    seen.add(id(image))
                    total += image.width * image.height * len(image.getbands())
    return total


class Held:
    """session -> (its client, the bytes its conversation holds)."""

    def __init__(self, per_client_mb: float = 1024, total_mb: float = 8192) -> None:
        if per_client_mb <= 0 or total_mb <= 0:
            raise ValueError("per_client_mb and total_mb must be positive")
        self.per_client = int(per_client_mb * MB)
        self.total = int(total_mb * MB)
        self._held: dict[str, tuple[str, int]] = {}
        self._lock = threading.Lock()

    def hold(self, session: str, client: str, conversation: Conversation) -> str | None:
        """`session` (of `client`) now holds `conversation`: None, or the sentence why it may not
        (and nothing is changed). A conversation smaller than the one it replaces always may."""
        nbytes = held_bytes(conversation)
        with self._lock:
            before = self._held.get(session, (client, 0))[1]
            if nbytes > before:
                mine = sum(n for s, (c, n) in self._held.items() if c == client and s != session)
                if mine + nbytes > self.per_client:
                    return CLIENT_FULL.format(held=(mine + before) / MB, would=(mine + nbytes) / MB, cap=self.per_client / MB)
                if sum(n for s, (_, n) in self._held.items() if s != session) + nbytes > self.total:
                    return APP_FULL
            self._held[session] = (client, nbytes)
            return None

    def release(self, session: str) -> None:
        """The session has ended: what it held is free."""
        with self._lock:
            self._held.pop(session, None)

    def of_client(self, client: str) -> int:
        with self._lock:
            return sum(n for c, n in self._held.values() if c == client)

    def __len__(self) -> int:
        return len(self._held)
