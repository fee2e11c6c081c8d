"""Runners: the in-process thinkling engine, the raw llama-cpp-python
baseline and a remote OpenAI-compatible endpoint, all timed the same way."""

from .base import SHORT_ANSWER_TOKENS, Runner, Sample, StreamClock

__all__ = ["Runner", "Sample", "StreamClock", "SHORT_ANSWER_TOKENS"]
