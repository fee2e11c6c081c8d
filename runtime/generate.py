"""The generation loop: prompt tokens -> streamed chunks.

``stream_generate`` is the one primitive: the engine, the server, the bridge
and the benchmark all drive it, and the non-streaming ``generate`` joins it.
It owns prefix reuse, sampling, incremental detokenization, stop strings, the
reasoning/answer split, reasoning-budget forcing and timings; the backend only
evaluates tokens.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from .backends.base import Backend
from .errors import ContextLengthExceeded, InvalidRequest
from .sampling import Sampler, entropy, log_softmax_at
from .speculative import DraftCosts, NgramDrafter, SpeculativeConfig
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
    # Structured output: a grammar state (``GrammarConstraint``) that the answer must follow,
    # and where it applies: "answer" (all of the output: no reasoning), "after_reasoning"
    # (pre-thinking: the reasoning is opened if the model does not, stays free, and the
    # answer after it is constrained), "before_reasoning" (post-thinking: the answer comes
    # first, constrained; once the grammar is complete the rationale block is opened).
    constraint: Constraint | None = None
    constrain: str = "answer"
    # Read the final hidden state of the last prompt token in the prefill (``Backend.eval_hidden``);
    # the first chunk carries it as ``Chunk.hidden``.
    read_hidden: bool = False


class Constraint(Protocol):
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


class _Loop:
    """State of one generation; split out so each step stays small."""

    def __init__(self, backend: Backend, plan: GenerationPlan):
        self.backend, self.plan = backend, plan
        self.sampler = Sampler(plan.sampling, n_prompt=len(plan.prompt_tokens))
        self.detok = Detokenizer(backend.token_bytes)
        self.stopper = StopMatcher(plan.stops)
        mk = plan.markup
        self.splitter = (ReasoningSplitter(mk.open, mk.close, mk.start_in_reasoning)
                         if mk else ReasoningSplitter(None, None))
        self.history = list(plan.prompt_tokens)
        self.reasoning_tokens = 0
        self.forced = False
        self.forced_tokens = 0
        self.grammar = plan.constraint
        # whether the grammar is applied to the next token; "after_reasoning" waits for the close tag
        self.grammar_on = self.grammar is not None and plan.constrain != "after_reasoning"
        self._answer_complete = False  # post-thinking: sample() returned a token past a complete answer
        self.hidden = None  # the prefill's hidden state, handed to the first chunk

    def _first(self, chunk: Chunk) -> Chunk:
        """Attach the prefill's hidden state to the first chunk of the stream."""
        if self.hidden is not None:
            chunk.hidden, self.hidden = self.hidden, None
        return chunk

    def sample(self, logits) -> int:
        """The next token: the sampler's choice, or, when the grammar refuses it, the
        sampler's choice among the tokens the grammar allows (llama.cpp's own order:
        check the sampled token first, mask the vocabulary only when it is refused)."""
        tok = self.sampler.sample(logits, self.history)
        g = self.grammar
        if not self.grammar_on or g.allows(tok):
            return tok
        if self.plan.constrain == "before_reasoning" and g.can_end():
            self._answer_complete = True  # the caller opens the rationale instead of this token
            return tok
        masked = g.mask(logits)
        if not np.isfinite(masked).any():
            raise InvalidRequest("the response format cannot be continued: the grammar allows none of this "
                                 "model's tokens here", param="response_format")
        return self.sampler.sample(masked, self.history)

    def grammar_releases(self) -> bool:
        """Post-thinking: whether the token just sampled falls outside a complete answer (the
        rationale starts); the grammar lets go."""
        if not self._answer_complete:
            return False
        self._answer_complete, self.grammar_on = False, False
        return True

    def close_with_extra(self, tok: int) -> str | None:
        """Pre-thinking with a grammar pending: if ``tok`` closes the reasoning block and
        carries answer text after the close tag, the text up to the tag's end (so the
        loop inserts just that, and the answer starts under the grammar)."""
        if self.grammar is None or self.grammar_on or not self.splitter.in_reasoning:
            return None
        close = self.plan.markup.close
        held = self.splitter.held
        text = held + self.backend.token_bytes(tok).decode("utf-8", errors="replace")
        idx = text.find(close)
        if idx < 0 or idx + len(close) >= len(text):
            return None
        return text[len(held): idx + len(close)]

    def force_text(self, text: str):
        """Insert ``text`` as if generated (a tag the format requires); returns (chunk, logits)."""
        toks = self.backend.tokenize(text, add_special=False, parse_special=True)
        self.history.extend(toks)
        self.forced_tokens += len(toks)
        chunk, _ = self.emit(text, toks)
        return chunk, self.backend.eval(toks)

    def emit(self, delta: str, token_ids: list[int]) -> tuple[Chunk, bool]:
        safe, hit = self.stopper.feed(delta)
        if self.grammar_on:  # constrained text is answer, whatever it spells (a "<think>" inside a string)
            return self._first(Chunk(text=safe, token_ids=token_ids)), hit
        answer, reasoning = self.splitter.feed(safe)
        return self._first(Chunk(text=answer, reasoning=reasoning, token_ids=token_ids)), hit

    def budget_reached(self) -> bool:
        mk = self.plan.markup
        return (mk is not None and mk.budget is not None and not self.forced
                and self.splitter.in_reasoning and self.reasoning_tokens >= mk.budget)

    def force_close(self):
        """Insert the close tag: the reasoning ends here and the answer follows."""
        self.forced = True
        return self.force_text(self.plan.markup.close)

    def finish(self, reason: str, timings: Timings) -> Chunk:
        tail = self.detok.flush()
        safe, _ = self.stopper.feed(tail)
        safe += self.stopper.flush()  # held-back text that never became a stop string
        if self.grammar_on:
            return self._first(Chunk(text=safe, finish_reason=reason, timings=timings))
        a, r = self.splitter.feed(safe)
        fa, fr = self.splitter.flush()
        return self._first(Chunk(text=a + fa, reasoning=r + fr, finish_reason=reason, timings=timings))


class _Guess:
    """A draft in flight: guessed tokens scored in one pass, verified one by one.

    ``rows[i]`` are the logits after the i-th token of the pass (the pass is the
    last sampled token followed by the guess), a view valid until the next
    backend call.
    """

    def __init__(self, tokens: list[int], rows):
        self.tokens, self.rows = tokens, rows
        self.kept = 0

    def next_logits(self):
        return self.rows[self.kept]

    def verify(self, tok: int) -> bool:
        """Whether the token plain decoding produced here is the guessed one."""
        if self.kept < len(self.tokens) and tok == self.tokens[self.kept]:
            self.kept += 1
            return True
        return False

    @property
    def open(self) -> bool:
        return self.kept < len(self.tokens)


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
    t_start = plan.started_at or time.perf_counter()
    timings = Timings()
    loop = _Loop(backend, plan)
    drafter = _drafter(backend, plan, loop.history)
    guess: _Guess | None = None
    logits, loop.hidden = _prefill(backend, prompt, timings, plan.read_hidden)
    max_new = min(plan.max_tokens, backend.n_ctx - len(prompt))
    n_out, t_first, reason = 0, None, "length"
    pending_grammar = loop.grammar is not None and plan.constrain == "after_reasoning" and plan.markup is not None
    if pending_grammar and not loop.splitter.in_reasoning:  # the answer must come after a reasoning block
        chunk, logits = loop.force_text(plan.markup.open)
        yield chunk
    # At the top of the loop ``logits`` follow loop.history; the KV cache holds
    # loop.history, or with a guess open, loop.history then the guess's unverified rest.
    while n_out < max_new:
        stop_reason = plan.should_stop()
        if stop_reason:
            reason = stop_reason
            break
        if pending_grammar and loop.splitter.reasoning_closed:
            loop.grammar_on, pending_grammar = True, False
        tok = loop.sample(logits)
        if t_first is None:
            t_first = time.perf_counter()
            timings.ttft_ms = (t_first - t_start) * 1000
        if guess is not None and not guess.verify(tok):  # plain decoding differs here: the guess ends
            _end_guess(backend, drafter, guess, timings, len(loop.history))
            guess = None
        if backend.is_eog(tok):
            if pending_grammar and loop.splitter.in_reasoning:  # the answer is still owed
                chunk, logits = loop.force_close()
                loop.grammar_on, pending_grammar = True, False  # once: a forced tag is never forced again
                yield chunk
                continue
            reason = "stop"
            break
        if loop.grammar_releases():  # post-thinking: the answer is complete, the rationale follows
            chunk, logits = loop.force_text(plan.markup.open)
            yield chunk
            continue
        if pending_grammar:
            closing = loop.close_with_extra(tok)
            if closing is not None:  # end the block exactly at its tag; the answer starts under the grammar
                chunk, logits = loop.force_text(closing)
                loop.grammar_on, pending_grammar = True, False
                yield chunk
                continue
        if loop.grammar_on:
            loop.grammar.accept(tok)
        n_out += 1
        loop.history.append(tok)
        was_reasoning = loop.splitter.in_reasoning
        chunk, hit = loop.emit(loop.detok.add(tok), [tok])
        if was_reasoning and loop.splitter.in_reasoning:
            loop.reasoning_tokens += 1  # tokens that open or close the block do not count
        if plan.logprobs:
            chunk.logprobs, chunk.entropies = [log_softmax_at(logits, tok)], [entropy(logits)]
        yield chunk
        if hit:
            reason = "stop"
            break
        if n_out >= max_new:
            break
        if loop.budget_reached():
            if plan.markup.on_budget == "stop":
                reason = "stop"
                break
            if guess is not None:  # back to the plain state: the cache holds history minus ``tok``
                _end_guess(backend, drafter, guess, timings, len(loop.history) - 1)
                guess = None
            logits = backend.eval([tok])
            chunk, logits = loop.force_close()
            yield chunk
            continue
        if guess is not None:  # the position after ``tok`` was scored in the guess's pass already
            logits = guess.next_logits()
            if not guess.open:  # every guessed token was kept: the cache holds exactly the history
                _end_guess(backend, drafter, guess, timings, len(loop.history))
                guess = None
            continue
        if drafter is None:
            logits = backend.eval([tok])
            continue
        tokens = drafter.propose(min(max_new - n_out - 1, backend.n_ctx - len(loop.history) - 1))
        t_pass = time.perf_counter()
        drafter.begin_pass(1 + len(tokens), t_pass)
        if tokens:
            timings.drafted_tokens += len(tokens)
            guess = _Guess(tokens, backend.eval_many([tok] + tokens))
            logits = guess.next_logits()
        else:
            logits = backend.eval([tok])
        drafter.observe_pass(1 + len(tokens), time.perf_counter() - t_pass)
    if guess is not None:
        _end_guess(backend, drafter, guess, timings, len(loop.history))
    t_end = time.perf_counter()
    timings.completion_tokens = n_out + loop.forced_tokens
    if t_first is not None and n_out > 1:
        timings.decode_ms = (t_end - t_first) * 1000
        timings.decode_tok_s = (n_out - 1) / max(t_end - t_first, 1e-9)
    timings.total_ms = (t_end - t_start) * 1000
    yield loop.finish(reason, timings)


def _drafter(backend: Backend, plan: GenerationPlan, history: list[int]) -> NgramDrafter | None:
    """A drafter when the plan asks for one and it can be exact: greedy decoding
    on a backend that scores several positions in one pass (``eval_many``)."""
    if (plan.speculative is None or plan.sampling.temperature > 0 or not hasattr(backend, "eval_many")
            or plan.constraint is not None):  # a grammar checks every token as it is sampled
        return None
    return NgramDrafter(plan.speculative, history, plan.draft_costs)


def _end_guess(backend: Backend, drafter: NgramDrafter, guess: _Guess, timings: Timings, keep: int) -> None:
    """Close a guess: count what was kept, tell the drafter, and roll the KV
    cache back to its first ``keep`` positions (dropping unverified guesses)."""
    timings.accepted_tokens += guess.kept
    drafter.feedback(len(guess.tokens), guess.kept)
    backend.truncate(keep)


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
