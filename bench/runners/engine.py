"""thinkling in process: ``Engine.stream``, the path the server drives."""

from __future__ import annotations

from thinkling.runtime.engine import Engine

from ..profiles import Profile
from ..prompts import PromptCase
from .base import SHORT_ANSWER_TOKENS, Sample, StreamClock


class EngineRunner:
    """Loads the model with a profile's settings and times ``Engine.stream``.

    Every run starts from an empty KV cache (cold prefix, ``engine.reset_cache()``,
    which runs on the engine's worker): the engine would otherwise reuse the
    previous run's identical prompt and TTFT would measure only the last token.
    """

    name = "thinkling"

    def __init__(self, model: str | None, profile: Profile, *, max_tokens: int | None = None,
                 think: str = "off", short_tokens: int = SHORT_ANSWER_TOKENS, speculative: str = "off"):
        self.profile = profile
        self.max_tokens, self.think, self.short_tokens = max_tokens, think, short_tokens
        self.speculative = speculative
        self.engine = Engine(model, profile.engine_config())
        self.load_ms: float | None = self.engine.load_ms
        self._prompt_tokens: dict[str, list[int]] = {}
        self._completion_tokens: dict[str, int] = {}

    @property
    def n_ctx(self) -> int:
        return self.engine.describe().n_ctx

    def prompt_tokens(self, case: PromptCase) -> list[int] | None:
        """The exact prompt tokens of ``case`` as thinkling rendered them on
        its last run (chat template and all), for the baseline to reuse."""
        return self._prompt_tokens.get(case.name)

    def completion_tokens(self, case: PromptCase) -> int | None:
        return self._completion_tokens.get(case.name)

    def run(self, case: PromptCase, run: int) -> Sample:
        request = case.request(max_tokens=self.max_tokens, think=self.think)
        request.speculative = self.speculative
        self.engine.reset_cache()
        text: list[str] = []
        last = None
        clock = StreamClock(self.short_tokens)
        for chunk in self.engine.stream(request):
            clock.chunk(len(chunk.token_ids), bool(chunk.text or chunk.reasoning))
            text.append(chunk.text)
            last = chunk
        clock.finish()
        t = last.timings
        self._prompt_tokens[case.name] = self.engine.cache_tokens()[:t.prompt_tokens]
        self._completion_tokens[case.name] = t.completion_tokens
        return clock.sample(
            runner=self.name, profile=self.profile.name, case=case.name, run=run,
            prompt_tokens=t.prompt_tokens, cached_tokens=t.cached_tokens,
            completion_tokens=t.completion_tokens, finish_reason=last.finish_reason, text="".join(text),
            engine={"queue_ms": t.queue_ms, "prompt_ms": t.prompt_ms, "ttft_ms": t.ttft_ms,
                    "decode_tok_s": t.decode_tok_s, "total_ms": t.total_ms,
                    "drafted_tokens": t.drafted_tokens, "accepted_tokens": t.accepted_tokens,
                    "mode": last.decision.mode if last.decision else None},
        )

    def model_info(self) -> dict:
        return self.engine.info().to_dict()

    def close(self) -> None:
        self.engine.close()
