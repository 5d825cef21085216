"""A streamer for `model.generate` that hands on the answer's text token by token.

transformers' `TextIteratorStreamer` holds text back until a word ends (a space or newline) so
that a word is never shown half-decoded. With byte-level BPE tokenizers (every Qwen VL
checkpoint) decoded text only changes at its end, and only while a character's UTF-8 bytes are
split across tokens: so this streamer passes on each token's text at once and holds back only
an incomplete character (decoded as U+FFFD). It decodes a sliding window of tokens, not the
whole line, so a long answer costs the same per token as a short one (the offsets scheme of
text-generation-inference and vLLM).

It knows nothing of special tokens: the caller chooses `skip_special_tokens` and cleans.
"""

from __future__ import annotations

from transformers import TextIteratorStreamer

INCOMPLETE = "\ufffd"  # what decoding gives for a character whose bytes have not all arrived


class TokenStreamer(TextIteratorStreamer):
    """`TextIteratorStreamer` that yields text after every token, not after every word."""

    def __init__(self, tokenizer, skip_prompt: bool = True, timeout: float | None = None, **decode_kwargs) -> None:
        super().__init__(tokenizer, skip_prompt=skip_prompt, timeout=timeout, **decode_kwargs)
        self._tokens: list[int] = []
        self._prefix = 0  # window start: decoding from here gives the right spacing for what follows
        self._read = 0  # tokens before this have been handed on

    def put(self, value) -> None:
        if value.dim() > 1:
            if value.shape[0] > 1:
                raise ValueError("TokenStreamer only supports batch size 1")
            value = value[0]
        if self.skip_prompt and self.next_tokens_are_prompt:
            self.next_tokens_are_prompt = False
            return
        self._tokens.extend(value.tolist())
        shown = self.tokenizer.decode(self._tokens[self._prefix : self._read], **self.decode_kwargs)
        text = self.tokenizer.decode(self._tokens[self._prefix :], **self.decode_kwargs)
        if len(text) <= len(shown) or text.endswith(INCOMPLETE):
            return  # nothing new yet, or half a character: wait for the next token
        del self._tokens[: self._prefix]  # keep only the window
        self._prefix, self._read = self._read - self._prefix, len(self._tokens)
        self.on_finalized_text(text[len(shown) :])

    def end(self) -> None:
        """Hand on what is held back (an incomplete character stays as U+FFFD) and end the stream."""
        shown = self.tokenizer.decode(self._tokens[self._prefix : self._read], **self.decode_kwargs)
        text = self.tokenizer.decode(self._tokens[self._prefix :], **self.decode_kwargs)
        self._tokens, self._prefix, self._read = [], 0, 0
        self.next_tokens_are_prompt = True
        self.on_finalized_text(text[len(shown) :], stream_end=True)
