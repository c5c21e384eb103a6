"""Splitting texts into provider batches and enforcing the input-length policy (pure).

Token counts for HTTP providers are *approximate*: ``ceil(len(text) / 4)``, the usual rule of
thumb for English with BPE tokenizers (about four characters per token). It is only used to
stay under per-request and per-minute token limits and to truncate over-long inputs, never for
billing; set ``max_length`` / ``max_tokens_per_batch`` with some headroom below the provider's
real limits, especially for non-English text, where a token is often fewer characters.
"""

from __future__ import annotations

from collections.abc import Sequence

from switchyard.proxy.errors import EmbedderBadInput

CHARS_PER_TOKEN = 4


def approx_tokens(text: str) -> int:
    """Approximate token count of ``text`` (``ceil(len / 4)``, at least 1)."""
    return max(1, -(-len(text) // CHARS_PER_TOKEN))


def apply_truncation(texts: Sequence[str], max_tokens: int, policy: str) -> list[str]:
    """Texts cut to about ``max_tokens`` tokens (``policy="end"``), or an error (``"error"``).

    Raises :class:`EmbedderBadInput` naming the first offending input for ``"error"``.
    """
    limit = max_tokens * CHARS_PER_TOKEN
    out: list[str] = []
    for index, text in enumerate(texts):
        if len(text) <= limit:
            out.append(text)
        elif policy == "end":
            out.append(text[:limit])
        else:
            raise EmbedderBadInput(
                f"input {index} is about {approx_tokens(text)} tokens, over the model's limit of "
                f"{max_tokens} (truncate policy is 'error')"
            )
    return out


def plan_batches(token_counts: Sequence[int], max_batch: int, max_tokens: int) -> list[tuple[int, int]]:
    """Consecutive ``(start, end)`` slices with at most ``max_batch`` items and ``max_tokens`` tokens.

    An item bigger than ``max_tokens`` on its own still gets a batch of its own (the length
    policy, applied before, decides whether it may be sent at all).
    """
    batches: list[tuple[int, int]] = []
    start, used = 0, 0
    for index, count in enumerate(token_counts):
        if index > start and (index - start >= max_batch or used + count > max_tokens):
            batches.append((start, index))
            start, used = index, 0
        used += count
    if start < len(token_counts):
        batches.append((start, len(token_counts)))
    return batches
