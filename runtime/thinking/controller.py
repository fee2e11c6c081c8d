"""The adaptive-thinking controller: per request, decide whether the student
reasons, in which format, and with what budget; then stream the generation.

Modes: ``off`` (direct answer), ``on`` (reasoning, then the answer), ``post``
(answer first, then the rationale, which a budget can cut or skip), ``auto``
(decided here). ``auto`` is a cascade: the profile's gate scores the question
text alone and sends plainly hard queries straight to reasoning; the rest get
a short direct-answer probe scored with the profile; a confident probe *is*
the answer (no wasted work), otherwise the model reasons, and a probe that can
no longer become confident is stopped at the token where that is certain. A
deadline turns into a reasoning budget from the measured speed of this model on
this device.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace

from ..backends.base import Backend
from ..errors import InvalidRequest
from ..generate import GenerationPlan, ReasoningMarkup, stream_generate
from ..models import ModelRef
from ..prompts import render_chat
from ..speculative import DraftCosts, speculative_config
from ..structured import grammar_for
from ..types import Chunk, Decision, GenerationRequest, Message
from .formats import ThinkingFormat, detect_format
from .profile import Speed, ThinkingProfile, find_profile, probe_signals, query_features, signals_of

log = logging.getLogger(__name__)
MIN_USEFUL_BUDGET = 4  # below this many reasoning tokens, answering directly is the better bet
# Where a response format's grammar applies, per mode (runtime.generate.GenerationPlan.grammar_scope).
CONSTRAIN = {"off": "answer", "on": "after_reasoning", "post": "before_reasoning"}


@dataclass
class _Probe:
    """What one probe found: its chunks, every feature scored, and how it ended early
    (``gated``: the hidden-state gate sent the query to reasoning after the prefill;
    ``best``: the best score it could still reach when it was stopped)."""

    feats: dict[str, float]
    chunks: list[Chunk] = field(default_factory=list)
    gate: float | None = None
    gated: bool = False
    best: float | None = None
    prefill_ms: float = 0.0


class ThinkingController:
    """Chooses the reasoning mode per request and streams the generation."""

    def __init__(self, backend: Backend, ref: ModelRef, profile: ThinkingProfile | None = None):
        self.backend = backend
        self.ref = ref
        self.template = backend.chat_template()
        self.format: ThinkingFormat = detect_format(ref, self.template)
        self.speed = Speed()
        self.set_profile(profile or find_profile(ref.path))
        self.draft_costs = DraftCosts()  # speculative decoding's measured costs on this model
        self.bos_token = backend.bos_text
        self.eos_token = self.format.eos or backend.eos_text

    def set_profile(self, profile: ThinkingProfile | None) -> None:
        """Use ``profile`` for ``auto`` (None: the family's default mode). The measured
        speed restarts from a profile's; without one it is kept (calibration measures on)."""
        self.profile = profile
        if profile is not None:
            self.speed = Speed(**vars(profile.speed))

    # --- planning -----------------------------------------------------------
    def _grammar(self, req: GenerationRequest) -> str | None:
        """The GBNF grammar of the request's response format (None: free text)."""
        if req.response_format is None or not req.response_format.constrained:
            return None
        if not self.backend.capabilities.grammar:
            raise InvalidRequest(f"structured output needs llama.cpp's grammar sampler; the {self.backend.name} "
                                 "backend has none (serve a GGUF model)", param="response_format")
        return grammar_for(req.response_format)

    def _plan(self, req: GenerationRequest, mode: str, should_stop, *, max_tokens: int | None = None,
              budget: int | None = None, logprobs: bool | None = None,
              grammar: str | None = None, read_hidden: bool = False) -> GenerationPlan:
        fmt = self.format
        messages = list(req.messages)
        for q, a in fmt.fewshot.get(mode, []):
            messages[-1:-1] = [Message("user", q), Message("assistant", a)]
        rendered = render_chat(messages, self.template, self.bos_token, self.eos_token,
                               **fmt.template_vars.get(mode, {}))
        text = rendered.text + fmt.prompt_suffix.get(mode, "")
        tokens = self.backend.tokenize(text, add_special=rendered.add_bos, parse_special=True)
        markup = None
        if fmt.open and fmt.close:
            markup = ReasoningMarkup(fmt.open, fmt.close, fmt.start_in_reasoning.get(mode, False),
                                     budget=budget, on_budget="stop" if mode == "post" else "close")
        return GenerationPlan(prompt_tokens=tokens, max_tokens=max_tokens or req.max_tokens,
                              sampling=req.sampling, stops=list(req.stop) + rendered.stops, markup=markup,
                              logprobs=req.logprobs if logprobs is None else logprobs,
                              should_stop=should_stop, started_at=req.submitted_at,
                              speculative=speculative_config(req.speculative), draft_costs=self.draft_costs,
                              grammar=self.backend.constraint(grammar) if grammar else None,
                              grammar_scope=CONSTRAIN.get(mode, "answer") if markup else "answer",
                              read_hidden=read_hidden or req.hidden_state)

    def _deadline_budget(self, req: GenerationRequest, prompt_tokens: int,
                         decision: Decision) -> tuple[int | None, Decision]:
        """Reasoning tokens that fit the deadline, from measured speed (None = no cap),
        and the decision noting how the deadline was applied."""
        budget = req.reasoning_budget
        if req.deadline_s is None:
            return budget, decision
        if self.speed.decode_tok_s <= 0 or self.speed.prefill_tok_s <= 0:
            return budget, replace(decision, deadline="speed of this model not measured yet; "
                                                      "deadline enforced as a hard stop only")
        elapsed = time.perf_counter() - req.submitted_at
        per_tok = 1.0 / self.speed.decode_tok_s
        answer_tokens = self.profile.mean_answer_tokens if self.profile else 8.0
        left = req.deadline_s - elapsed - prompt_tokens / self.speed.prefill_tok_s - answer_tokens * per_tok
        fit = max(0, int(0.8 * left / per_tok))  # 20% margin for noise
        return (fit if budget is None else min(budget, fit)), replace(decision, deadline_budget=fit)

    def choose_mode(self, req: GenerationRequest) -> tuple[str, Decision]:
        """The mode for a non-probed request (explicit, or auto without a profile)."""
        fmt = self.format
        if req.think == "auto":
            mode, why = fmt.default_mode, f"no calibrated profile; {fmt.family} default"
        elif req.think in fmt.modes:
            mode, why = req.think, "requested"
        else:
            mode, why = fmt.default_mode, f"{fmt.family} does not support {req.think!r}; using its default"
        return mode, Decision(mode=mode, requested=req.think, reason=why, family=fmt.family)

    # --- the probe --------------------------------------------------------
    def _probe(self, req: GenerationRequest, question: str, qfeats: dict[str, float],
               should_stop) -> _Probe:
        """A short direct answer with token confidences.

        Where the profile reads the hidden state, the probe's prefill reads it and
        the gate decides on the first chunk, before any decode pass: a query the
        gate sends to reasoning costs the prefill alone. The probe stops as soon as
        the best score it can still reach falls below the threshold (the model would
        reason whatever its next tokens are), which saves its remaining decode passes.
        """
        prof = self.profile
        max_tokens = min(req.max_tokens, prof.probe_max_tokens)
        plan = self._plan(req, "off", should_stop, max_tokens=max_tokens, logprobs=True,
                          read_hidden=prof.uses_hidden)
        out = _Probe(feats=dict(qfeats))
        logprobs: list[float] = []
        entropies: list[float] = []
        t0 = time.perf_counter()
        stream = stream_generate(self.backend, plan)
        try:
            for chunk in stream:
                if not out.chunks and prof.uses_hidden:
                    out.feats.update(prof.hidden_features(chunk.hidden))
                    out.prefill_ms = (time.perf_counter() - t0) * 1000
                    if prof.gate_uses_hidden:
                        out.gate = prof.gate_score(out.feats)
                        if prof.skips_probe(out.gate):
                            out.gated = True
                            return out
                out.chunks.append(chunk)
                logprobs += chunk.logprobs
                entropies += chunk.entropies
                if chunk.finish_reason is None and chunk.logprobs:
                    best = prof.best_reachable(out.feats, logprobs, entropies, max_tokens)
                    if best < prof.threshold:
                        out.best = best
                        break
        finally:
            stream.close()  # a stopped probe's next pass never runs
        out.feats.update(probe_signals(question, out.chunks))
        return out

    def _auto(self, req: GenerationRequest, should_stop) -> tuple[str, Decision, list[Chunk] | None]:
        prof = self.profile
        question = next((m.content for m in reversed(req.messages) if m.role == "user"), "")
        qfeats = query_features(question)
        gate = None if prof.gate_uses_hidden else prof.gate_score(qfeats)
        base = Decision(mode="on", requested="auto", reason="", family=self.format.family,
                        skip_below=prof.skip_below if prof.gate_weights else None)
        gate_signal = "+".join(signals_of(prof.gate_weights))
        if prof.skips_probe(gate):
            return "on", replace(base, gate_score=round(gate, 4), stage="gate", signal=gate_signal, cost_ms=0.0,
                                 score=round(gate, 4), threshold=prof.skip_below,
                                 features={k: round(v, 4) for k, v in qfeats.items()},
                                 reason=f"question alone says reason (p={gate:.2f} < {prof.skip_below:.2f}); "
                                        "reasoning without a probe"), None
        t0 = time.perf_counter()
        probe = self._probe(req, question, qfeats, should_stop)
        gate = probe.gate if gate is None else gate
        if gate is not None:
            base = replace(base, gate_score=round(gate, 4))
        feats = {k: round(v, 4) for k, v in probe.feats.items()}
        if probe.gated:
            return "on", replace(base, stage="gate", signal=gate_signal, cost_ms=round(probe.prefill_ms, 2),
                                 score=round(gate, 4), threshold=prof.skip_below, features=feats,
                                 reason=f"the prompt's hidden state says reason (p={gate:.2f} < "
                                        f"{prof.skip_below:.2f}); reasoning after the prefill alone"), None
        chunks = probe.chunks
        score = prof.score(probe.feats)
        thr = prof.threshold
        probe_ms = round((time.perf_counter() - t0) * 1000, 2)
        probed = replace(base, stage="probe", signal="+".join(signals_of(prof.weights)), cost_ms=probe_ms,
                         score=round(score, 4), threshold=thr, probe_ms=probe_ms, features=feats)
        if chunks[-1].finish_reason in ("cancelled", "deadline"):
            return "off", replace(probed, mode="off", reason=f"probe ended: {chunks[-1].finish_reason}"), chunks
        if probe.best is not None:
            n = int(probe.feats["probe_tokens"])
            return "on", replace(probed, mode="on", reason=f"probe stopped after {n} token{'s' * (n > 1)}: "
                                                            f"it could reach at most p={probe.best:.2f} < {thr:.2f}; "
                                                            "reasoning"), None
        if score >= thr and probe.feats["probe_finished"]:
            return "off", replace(probed, mode="off", reason=f"probe confident (p={score:.2f} >= {thr:.2f}); "
                                                             "its answer is returned"), chunks
        why = "probe unsure" if probe.feats["probe_finished"] else "probe did not finish its answer"
        return "on", replace(probed, mode="on", reason=f"{why} (p={score:.2f} < {thr:.2f}); reasoning"), None

    # --- streaming ----------------------------------------------------------
    def stream(self, req: GenerationRequest, should_stop: Callable[[], str | None]) -> Iterator[Chunk]:
        """Plan ``req`` and yield its chunks; the last chunk carries the decision."""
        if req.prompt is not None:
            yield from self._stream_raw(req, should_stop)
            return
        fmt = self.format
        grammar = self._grammar(req)
        ready: list[Chunk] | None = None
        if req.think == "auto" and self.profile and {"off", "on"} <= set(fmt.modes):
            mode, decision, ready = self._auto(req, should_stop)
            if ready is not None and grammar is not None and mode == "off":
                # The probe answered freely; the answer the client gets follows its format.
                ready = None
                decision = replace(decision, reason=decision.reason + "; answered again under the response format")
        else:
            mode, decision = self.choose_mode(req)
        if ready is None:
            plan = self._plan(req, mode, should_stop, grammar=grammar)
            if mode in ("on", "post") and plan.markup is not None:
                plan.markup.budget, decision = self._deadline_budget(req, len(plan.prompt_tokens), decision)
                if mode == "on" and plan.markup.budget is not None and plan.markup.budget < MIN_USEFUL_BUDGET \
                        and req.reasoning_budget is None and "off" in fmt.modes:
                    mode = "off"
                    decision = replace(decision, mode="off",
                                       reason=decision.reason + "; deadline leaves no room to reason")
                    plan = self._plan(req, "off", should_stop, grammar=grammar)
            decision = replace(decision, planned=True, budget=plan.markup.budget if plan.markup else None)
            if grammar is not None:
                decision = replace(decision, response_format=req.response_format.type, constrained=plan.grammar_scope)
            ready = stream_generate(self.backend, plan)
        for chunk in ready:
            if chunk.finish_reason is not None:
                chunk = replace(chunk, decision=decision)
                t = chunk.timings
                if t is not None and t.prompt_tokens > t.cached_tokens:
                    self.speed.update(t.prompt_tokens - t.cached_tokens, t.prompt_ms, t.decode_tok_s)
            yield chunk

    def _stream_raw(self, req: GenerationRequest, should_stop) -> Iterator[Chunk]:
        if not req.prompt:
            raise InvalidRequest("prompt must not be empty", param="prompt")
        tokens = self.backend.tokenize(req.prompt, add_special=True, parse_special=False)
        grammar = self._grammar(req)
        plan = GenerationPlan(prompt_tokens=tokens, max_tokens=req.max_tokens, sampling=req.sampling,
                              stops=list(req.stop), logprobs=req.logprobs, should_stop=should_stop,
                              started_at=req.submitted_at, speculative=speculative_config(req.speculative),
                              draft_costs=self.draft_costs,
                              grammar=self.backend.constraint(grammar) if grammar else None)
        for chunk in stream_generate(self.backend, plan):
            if chunk.finish_reason is not None:
                chunk = replace(chunk, decision=Decision(mode="raw", requested=req.think,
                                                         reason="raw completion prompt"))
            yield chunk
