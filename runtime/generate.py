"""The generation loop: prompt tokens -> streamed chunks.

``stream_generate`` is the one primitive: the engine, the server, the bridge
and the benchmark all drive it, and the non-streaming ``generate`` joins it.
It owns prefix reuse, sampling, incremental detokenization, stop strings, the
reasoning/answer split, the grammar phase of structured output,
reasoning-budget forcing and timings.

The loop picks its stepper once (``runtime.steppers``: plain, or speculative
guesses scored in one pass) and keeps the rest of its state in ``LoopState``:
the grammar phase is a ``GrammarPhase`` with one ``advance``, budget forcing
is ``budget_reached`` / ``force_close``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import Enum
from typing import Protocol

import numpy as np

from .backends.base import Backend
from .errors import ContextLengthExceeded, InvalidRequest
from .sampling import Sampler, entropy, log_softmax_at
from .speculative import DraftCosts, SpeculativeConfig
from .steppers import pick_stepper
from .textstream import Detokenizer, ReasoningSplitter, StopMatcher
from .types import Chunk, GenerationResult, SamplingParams, Timings


@dataclass
class ReasoningMarkup:
    """Where reasoning sits in the output. ``start_in_reasoning`` when the
    prompt already opened the tag; ``budget`` caps reasoning tokens, after which
    ``close`` is inserted and the answer is forced."""

    open: str | None = "<think>"
    close: str | None = "</think>"
    start_in_reasoning: bool = False
    budget: int | None = None
    # "close": insert the close tag and let the answer follow (pre-thinking);
    # "stop": end the generation (post-thinking: the answer is already out).
    on_budget: str = "close"


@dataclass
class GenerationPlan:
    """Everything the loop needs, resolved by the layers above it."""

    prompt_tokens: list[int]
    max_tokens: int = 256
    sampling: SamplingParams = field(default_factory=SamplingParams)
    stops: list[str] = field(default_factory=list)
    markup: ReasoningMarkup | None = None
    logprobs: bool = False
    # Returns None to go on, or a finish reason ("cancelled", "deadline").
    should_stop: Callable[[], str | None] = lambda: None
    started_at: float | None = None  # perf_counter of submission, for TTFT
    speculative: SpeculativeConfig | None = None  # n-gram drafting (greedy only); None: off
    draft_costs: DraftCosts | None = None  # drafting's measured costs, kept across generations by the caller
    # Structured output: a grammar state (``Grammar``) that the answer must follow, and
    # ``grammar_scope``, where it applies: "answer" (all of the output: no reasoning),
    # "after_reasoning" (pre-thinking: the reasoning is opened if the model does not, stays
    # free, and the answer after it is constrained), "before_reasoning" (post-thinking: the
    # answer comes first, constrained; once the grammar is complete the rationale block is opened).
    grammar: Grammar | None = None
    grammar_scope: str = "answer"
    # Read the final hidden state of the last prompt token in the prefill (``Backend.eval_hidden``);
    # the first chunk carries it as ``Chunk.hidden``.
    read_hidden: bool = False


class Grammar(Protocol):
    """What the loop needs of a grammar (``backends.llama_cpp.GrammarConstraint``)."""

    def allows(self, token_id: int) -> bool: ...

    def can_end(self) -> bool: ...

    def mask(self, logits): ...

    def accept(self, token_id: int) -> None: ...


def common_prefix_len(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def _prefill(backend: Backend, prompt: list[int], timings: Timings, read_hidden: bool = False):
    """Evaluate the prompt, reusing the KV cache's shared prefix: (logits, hidden state or None)."""
    reuse = common_prefix_len(backend.kv_tokens, prompt)
    if reuse == len(prompt):
        reuse -= 1  # we need at least one evaluated token to get fresh logits
    backend.truncate(reuse)
    t0 = time.perf_counter()
    if read_hidden:
        logits, hidden = backend.eval_hidden(prompt[reuse:])
    else:
        logits, hidden = backend.eval(prompt[reuse:]), None
    timings.prompt_ms = (time.perf_counter() - t0) * 1000
    timings.cached_tokens = reuse
    timings.prompt_tokens = len(prompt)
    return logits, hidden


class GrammarPhase(Enum):
    """Where the loop stands with the plan's grammar; ``advance`` is its one transition."""

    FREE = "free"  # no grammar, or it has let go (post-thinking's rationale)
    PENDING = "pending"  # pre-thinking: waits for the reasoning block to close
    ON = "on"  # every sampled token must be one the grammar allows
    COMPLETE = "complete"  # post-thinking: the answer is complete; the next token starts the rationale

    def advance(self) -> GrammarPhase:
        return _NEXT_PHASE.get(self, self)

    @property
    def constrains(self) -> bool:
        """Output in this phase is answer text, whatever it spells (a "<think>" inside a string)."""
        return self in (GrammarPhase.ON, GrammarPhase.COMPLETE)


_NEXT_PHASE = {GrammarPhase.PENDING: GrammarPhase.ON, GrammarPhase.ON: GrammarPhase.COMPLETE,
               GrammarPhase.COMPLETE: GrammarPhase.FREE}


def _first_phase(plan: GenerationPlan) -> GrammarPhase:
    if plan.grammar is None:
        return GrammarPhase.FREE
    if plan.grammar_scope != "after_reasoning":
        return GrammarPhase.ON
    # "after_reasoning" without markup has no block to wait for: the grammar never applies
    return GrammarPhase.PENDING if plan.markup is not None else GrammarPhase.FREE


class LoopState:
    """State of one generation: sampling, the grammar phase, budget forcing, the text
    pipeline (detokenizer, stop strings, reasoning split) and timings."""

    def __init__(self, backend: Backend, plan: GenerationPlan):
        self.backend, self.plan = backend, plan
        self.sampler = Sampler(plan.sampling, n_prompt=len(plan.prompt_tokens))
        self.detok = Detokenizer(backend.token_bytes)
        self.stopper = StopMatcher(plan.stops)
        mk = plan.markup
        self.splitter = (ReasoningSplitter(mk.open, mk.close, mk.start_in_reasoning)
                         if mk else ReasoningSplitter(None, None))
        self.history = list(plan.prompt_tokens)
        self.max_new = min(plan.max_tokens, backend.n_ctx - len(plan.prompt_tokens))
        self.n_out = 0
        self.reasoning_tokens = 0
        self.forced = False  # the budget's close tag went in (never forced twice)
        self.forced_tokens = 0
        self.phase = _first_phase(plan)
        self._grammar_next = False  # a forced close tag ends the pending phase once it is emitted
        self.hidden = None  # the prefill's hidden state, handed to the first chunk
        self.timings = Timings()
        self.t_start = plan.started_at or time.perf_counter()
        self.t_first: float | None = None

    def _chunk(self, **fields) -> Chunk:
        """A chunk; the first of the stream carries the prefill's hidden state."""
        hidden, self.hidden = self.hidden, None
        return Chunk(hidden=hidden, **fields)

    # --- the grammar phase --------------------------------------------------
    def note_reasoning_closed(self) -> None:
        """Pre-thinking: once the model closed the reasoning block, the grammar applies."""
        if self.phase is GrammarPhase.PENDING and self.splitter.reasoning_closed:
            self.phase = self.phase.advance()

    def answer_owed(self) -> bool:
        """An end-of-generation token inside the reasoning while the grammar's answer is owed."""
        return self.phase is GrammarPhase.PENDING and self.splitter.in_reasoning

    def forced_instead(self, tok: int) -> str | None:
        """The text the format requires in place of ``tok``, if any: the close tag when the
        model ends inside the reasoning with the answer owed; post-thinking's open tag once
        the answer is complete; or the reasoning up to its close tag when ``tok`` carries
        answer text past it (so the answer starts under the grammar)."""
        if self.backend.is_eog(tok):  # only reached with the answer owed
            self.forced = self._grammar_next = True  # once: a forced tag is never forced again
            return self.plan.markup.close
        if self.phase is GrammarPhase.COMPLETE:
            self.phase = self.phase.advance()  # before the tag: it opens the (free) rationale
            return self.plan.markup.open
        if self.phase is GrammarPhase.PENDING:
            closing = self._close_with_extra(tok)
            self._grammar_next = closing is not None
            return closing
        return None

    def _close_with_extra(self, tok: int) -> str | None:
        if not self.splitter.in_reasoning:
            return None
        close = self.plan.markup.close
        held = self.splitter.held
        text = held + self.backend.token_bytes(tok).decode("utf-8", errors="replace")
        idx = text.find(close)
        if idx < 0 or idx + len(close) >= len(text):
            return None
        return text[len(held): idx + len(close)]

    # --- one token ----------------------------------------------------------
    def sample(self, logits) -> int:
        """The next token: the sampler's choice, or, when the grammar refuses it, the
        sampler's choice among the tokens the grammar allows (llama.cpp's own order:
        check the sampled token first, mask the vocabulary only when it is refused)."""
        tok = self.sampler.sample(logits, self.history)
        if self.t_first is None:
            self.t_first = time.perf_counter()
            self.timings.ttft_ms = (self.t_first - self.t_start) * 1000
        g = self.plan.grammar
        if self.phase is not GrammarPhase.ON or g.allows(tok):
            return tok
        if self.plan.grammar_scope == "before_reasoning" and g.can_end():
            self.phase = self.phase.advance()  # complete: the rationale opens instead of this token
            return tok
        masked = g.mask(logits)
        if not np.isfinite(masked).any():
            raise InvalidRequest("the response format cannot be continued: the grammar allows none of this "
                                 "model's tokens here", param="response_format")
        return self.sampler.sample(masked, self.history)

    def take(self, tok: int, logits) -> tuple[Chunk, bool]:
        """Keep the sampled ``tok``: its chunk, and whether a stop string was hit."""
        if self.phase is GrammarPhase.ON:
            self.plan.grammar.accept(tok)
        self.n_out += 1
        self.history.append(tok)
        was_reasoning = self.splitter.in_reasoning
        extra = ({"logprobs": [log_softmax_at(logits, tok)], "entropies": [entropy(logits)]}
                 if self.plan.logprobs else {})
        chunk, hit = self.emit(self.detok.add(tok), [tok], **extra)
        if was_reasoning and self.splitter.in_reasoning:
            self.reasoning_tokens += 1  # tokens that open or close the block do not count
        return chunk, hit

    def force_text(self, text: str):
        """Insert ``text`` as if generated (a tag the format requires); returns (chunk, logits)."""
        toks = self.backend.tokenize(text, add_special=False, parse_special=True)
        self.history.extend(toks)
        self.forced_tokens += len(toks)
        chunk, _ = self.emit(text, toks)
        if self._grammar_next:  # after the tag went through the reasoning split: the answer is constrained
            self.phase, self._grammar_next = self.phase.advance(), False
        return chunk, self.backend.eval(toks)

    def emit(self, delta: str, token_ids: list[int], **extra) -> tuple[Chunk, bool]:
        safe, hit = self.stopper.feed(delta)
        if self.phase.constrains:
            return self._chunk(text=safe, token_ids=token_ids, **extra), hit
        answer, reasoning = self.splitter.feed(safe)
        return self._chunk(text=answer, reasoning=reasoning, token_ids=token_ids, **extra), hit

    # --- budget forcing -----------------------------------------------------
    def budget_reached(self) -> str | None:
        """None, or what the spent reasoning budget asks for: "close" (insert the close
        tag, the answer follows: pre-thinking) or "stop" (post-thinking: the answer is out)."""
        mk = self.plan.markup
        if (mk is None or mk.budget is None or self.forced or not self.splitter.in_reasoning
                or self.reasoning_tokens < mk.budget):
            return None
        return mk.on_budget

    def force_close(self):
        """Insert the close tag: the reasoning ends here and the answer follows."""
        self.forced = True
        return self.force_text(self.plan.markup.close)

    def finish(self, reason: str) -> Chunk:
        """The last chunk: held-back text, the finish reason and the timings."""
        t, t_end = self.timings, time.perf_counter()
        t.completion_tokens = self.n_out + self.forced_tokens
        if self.t_first is not None and self.n_out > 1:
            t.decode_ms = (t_end - self.t_first) * 1000
            t.decode_tok_s = (self.n_out - 1) / max(t_end - self.t_first, 1e-9)
        t.total_ms = (t_end - self.t_start) * 1000
        tail = self.detok.flush()
        safe, _ = self.stopper.feed(tail)
        safe += self.stopper.flush()  # held-back text that never became a stop string
        if self.phase.constrains:
            return self._chunk(text=safe, finish_reason=reason, timings=t)
        a, r = self.splitter.feed(safe)
        fa, fr = self.splitter.flush()
        return self._chunk(text=a + fa, reasoning=r + fr, finish_reason=reason, timings=t)


def stream_generate(backend: Backend, plan: GenerationPlan) -> Iterator[Chunk]:
    """Yield chunks for ``plan``; the last one carries ``finish_reason`` and ``timings``.

    Raises ``ContextLengthExceeded`` before any work if the prompt does not fit.
    With ``plan.speculative`` (greedy only) the guessed tokens of a draft are
    scored in one backend pass; each kept token still arrives as its own chunk,
    after the same checks (stop strings, tags, budget, cancel, deadline), so
    the output is the one plain decoding gives.
    """
    prompt = plan.prompt_tokens
    if not prompt:
        raise InvalidRequest("the prompt is empty after tokenization", param="prompt")
    if len(prompt) >= backend.n_ctx:
        raise ContextLengthExceeded(len(prompt), backend.n_ctx)
    loop = LoopState(backend, plan)
    stepper = pick_stepper(backend, plan.speculative, plan.sampling.greedy, plan.grammar is not None,
                           loop.history, loop.timings, plan.draft_costs)
    logits, loop.hidden = _prefill(backend, prompt, loop.timings, plan.read_hidden)
    if loop.phase is GrammarPhase.PENDING and not loop.splitter.in_reasoning:  # the answer must follow reasoning
        chunk, logits = loop.force_text(plan.markup.open)
        yield chunk
    reason = None
    # At the top of the loop ``logits`` follow loop.history; the KV cache holds
    # loop.history, or with a guess open, loop.history then the guess's unverified rest.
    while loop.n_out < loop.max_new and not (reason := plan.should_stop()):
        loop.note_reasoning_closed()
        tok = loop.sample(logits)
        stepper.verify(tok)
        if backend.is_eog(tok) and not loop.answer_owed():
            reason = "stop"
            break
        forced = loop.forced_instead(tok)
        if forced is not None:  # a tag the format requires goes in instead of ``tok``
            chunk, logits = loop.force_text(forced)
            yield chunk
            continue
        chunk, hit = loop.take(tok, logits)
        yield chunk
        if hit or loop.n_out >= loop.max_new:
            reason = "stop" if hit else None
            break
        on_budget = loop.budget_reached()
        if on_budget == "stop":
            reason = "stop"
            break
        if on_budget == "close":
            stepper.plain(tok)
            chunk, logits = loop.force_close()
            yield chunk
            continue
        logits = stepper.advance(tok, loop.max_new - loop.n_out)
    stepper.close()
    yield loop.finish(reason or "length")


def join_stream(chunks: Iterator[Chunk], model: str) -> GenerationResult:
    """Join a chunk stream into one result (the non-streaming call)."""
    text, reasoning, tokens, logprobs = [], [], [], []
    last = None
    decision = None
    for c in chunks:
        text.append(c.text)
        reasoning.append(c.reasoning)
        tokens.extend(c.token_ids)
        logprobs.extend(c.logprobs)
        decision = c.decision or decision
        last = c
    assert last is not None and last.finish_reason is not None
    return GenerationResult(text="".join(text), reasoning="".join(reasoning), tokens=tokens,
                            finish_reason=last.finish_reason, timings=last.timings or Timings(),
                            model=model, logprobs=logprobs, decision=decision)
