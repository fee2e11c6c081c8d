"""Structured output: response formats -> llama.cpp grammars, applied to the answer only.

Three layers: the schema gate (no model), the generation loop's grammar policy per
thinking mode (the scripted backend with a tiny Python grammar, so every token can be
asserted), and real llama.cpp grammars on the real embedded model and on the Gemma
student, where the answer must parse and validate against its schema.
"""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import numpy as np
import pytest
from scripted_backend import ID, VOCAB, ScriptedBackend
from test_thinking import PROFILE, REF

from thinkling.runtime import Engine, EngineConfig, GenerationRequest, Message, SamplingParams
from thinkling.runtime.backends.base import Capabilities
from thinkling.runtime.errors import InvalidRequest
from thinkling.runtime.generate import join_stream
from thinkling.runtime.structured import check_schema, grammar_for, response_format_from
from thinkling.runtime.thinking import ThinkingController
from thinkling.runtime.types import ResponseFormat

# --- the schema gate ------------------------------------------------------------


@pytest.mark.parametrize("schema, path", [
    ({"type": "object", "properties": {"n": {"type": "integer", "minimum": 0}}}, "$.properties.n.minimum"),
    ({"type": "array", "items": {"type": "string"}, "uniqueItems": True}, "$.uniqueItems"),
    ({"not": {"type": "null"}}, "$.not"),
    ({"type": "object", "properties": {"a": {"$ref": "https://example.com/s.json"}}}, "$.properties.a.$ref"),
    ({"type": "string", "pattern": "[a-z]+"}, "$.pattern"),
    ({"type": "string", "format": "email"}, "$.format"),
    ({"anyOf": [{"type": "integer"}, {"type": "number", "multipleOf": 2}]}, "$.anyOf[1].multipleOf"),
    ({"type": "object", "properties": {"x": {"type": "strng"}}}, "$.properties.x.type"),
])
def test_unenforceable_or_invalid_schema_is_refused_with_its_path(schema, path):
    with pytest.raises(InvalidRequest) as exc:
        check_schema(schema)
    assert exc.value.message.startswith(path + ":"), exc.value.message
    assert exc.value.param == "response_format.json_schema.schema"


@pytest.mark.parametrize("body, param", [
    ("json", "response_format"),
    ({"type": "xml"}, "response_format.type"),
    ({"type": "json_schema"}, "response_format.json_schema"),
    ({"type": "json_schema", "json_schema": {"name": "a"}}, "response_format.json_schema.schema"),
    ({"type": "json_schema", "json_schema": {"name": 3, "schema": {}}}, "response_format.json_schema.name"),
])
def test_malformed_response_format_is_refused(body, param):
    with pytest.raises(InvalidRequest) as exc:
        response_format_from(body)
    assert exc.value.param == param


def test_text_is_no_constraint_and_schemas_become_grammars():
    assert response_format_from(None) is None and response_format_from({"type": "text"}) is None
    assert "root" in grammar_for(ResponseFormat("json_object"))
    fmt = response_format_from({"type": "json_schema", "json_schema": {"name": "a", "schema": ANSWER}})
    gbnf = grammar_for(fmt)
    assert "root ::=" in gbnf and '\\"answer\\"' in gbnf


# --- the loop's policy, token by token ----------------------------------------------


class WordGrammar:
    """A stand-in for llama.cpp's grammar over the scripted vocabulary: the constrained
    text must spell one of ``words`` (which may include ``<think>`` to test that a tag
    inside constrained text is not taken for a tag)."""

    def __init__(self, words):
        self.words, self.text, self.accepted = list(words), "", []

    def _piece(self, tok):
        return VOCAB[tok]

    def allows(self, tok):
        if tok == ID["<|end|>"]:
            return self.can_end()
        return any(w.startswith(self.text + self._piece(tok)) for w in self.words)

    def can_end(self):
        return self.text in self.words

    def mask(self, logits):
        out = logits.copy()
        for t in range(len(out)):
            if not self.allows(t):
                out[t] = -float("inf")
        return out

    def accept(self, tok):
        assert self.allows(tok), f"accepted a refused token {VOCAB[tok]!r}"
        self.text += self._piece(tok)
        self.accepted.append(tok)


class GrammarBackend(ScriptedBackend):
    capabilities = Capabilities(grammar=True, hidden_state=True)

    def __init__(self, words):
        super().__init__()
        self.words, self.grammars = words, []

    def constraint(self, gbnf):
        assert "root" in gbnf  # the controller compiled a real grammar first
        self.grammars.append(WordGrammar(self.words))
        return self.grammars[-1]


def ask(backend, think, question="12 + 30", profile=None, **kw):
    ctl = ThinkingController(backend, REF, profile=profile)
    req = GenerationRequest(messages=[Message("user", question)], sampling=SamplingParams(temperature=0),
                            max_tokens=64, think=think, response_format=ResponseFormat("json_object"), **kw)
    return join_stream(ctl.stream(req, should_stop=lambda: None), "scripted")


def test_off_constrains_the_whole_answer():
    b = GrammarBackend(["7"])
    r = ask(b, "off")
    assert (r.text, r.reasoning, r.finish_reason) == ("7", "", "stop")
    assert r.decision.constrained == "answer"


def test_on_leaves_the_reasoning_free_and_constrains_what_follows():
    b = GrammarBackend(["7"])
    r = ask(b, "on", reasoning_budget=5)  # the scripted chain closes only when forced
    assert r.reasoning == "abcde"  # the chain, untouched by the grammar
    assert r.text == "7" and r.decision.constrained == "after_reasoning"
    assert b.grammars[0].text == "7"  # nothing of the reasoning went through the grammar


def test_post_constrains_the_answer_then_frees_the_rationale():
    b = GrammarBackend(["7"])
    r = ask(b, "post")
    assert r.text == "7" and r.decision.constrained == "before_reasoning"
    assert b.grammars[0].text == "7"


def test_a_tag_spelled_inside_the_constrained_answer_stays_answer():
    r = ask(GrammarBackend(["4<think>2"]), "off")
    assert r.text == "4<think>2" and r.reasoning == ""


def test_auto_probe_answer_is_regenerated_under_the_format():
    b = GrammarBackend(["7"])
    r = ask(b, "auto", profile=PROFILE)  # a confident probe: off, but answered again
    assert r.text == "7" and r.decision.mode == "off" and "response format" in r.decision.reason


def test_a_grammar_the_vocabulary_cannot_continue_is_a_typed_error():
    with pytest.raises(InvalidRequest) as exc:
        ask(GrammarBackend(["{"]), "off")  # no '{' in the scripted vocabulary
    assert exc.value.param == "response_format"


def test_a_backend_without_grammars_refuses_structured_output():
    with pytest.raises(InvalidRequest) as exc:
        ask(ScriptedBackend(), "off")
    assert exc.value.param == "response_format" and "grammar" in exc.value.message


# --- real llama.cpp grammars on real models -------------------------------------------

ANSWER = {"type": "object", "properties": {"answer": {"type": "integer"}}, "required": ["answer"],
          "additionalProperties": False}
SCHEMAS = {
    "answer": ANSWER,
    "enum": {"type": "object", "properties": {"verdict": {"enum": ["yes", "no", "unsure"]},
                                              "confidence": {"type": "number"}},
             "required": ["verdict", "confidence"]},
    "person": {"type": "object", "properties": {"name": {"type": "string", "maxLength": 12},
                                                "age": {"type": "integer"}, "alive": {"type": "boolean"}},
               "required": ["name", "age", "alive"]},
    "list": {"type": "object", "properties": {"items": {"type": "array", "items": {"type": "integer"},
                                                        "minItems": 1, "maxItems": 3}},
             "required": ["items"]},
}


def fmt(name):
    return response_format_from({"type": "json_schema", "json_schema": {"name": name, "schema": SCHEMAS[name]}})


def gen(eng, question, think, rf, max_tokens=96):
    return eng.generate(GenerationRequest(messages=[Message("user", question)], max_tokens=max_tokens, think=think,
                                          sampling=SamplingParams(temperature=0), response_format=rf))


@pytest.mark.parametrize("name, question", [
    ("answer", "What is 12 + 30?"), ("enum", "Is the sky green?"),
    ("person", "Describe a famous scientist."), ("list", "Give me some prime numbers."),
])
def test_embedded_model_answer_validates_against_the_schema(engine, name, question):
    engine.reset_cache()
    r = gen(engine, question, "off", fmt(name))
    assert r.finish_reason == "stop", r
    jsonschema.validate(json.loads(r.text), SCHEMAS[name])
    engine.reset_cache()  # cold cache the second time, as the first (batch sizes change the last bits)
    again = gen(engine, question, "off", fmt(name))
    engine.reset_cache()
    assert again.text == r.text  # greedy under a grammar stays deterministic


def test_embedded_model_json_object_is_an_object(engine):
    # A question with a small answer: the bare "Reply with a JSON object." makes the 270M model list
    # the same keys until max_tokens on llama-cpp-python 0.3.36 (finish "length"), a model habit, not the grammar's.
    r = gen(engine, "Reply with a JSON object giving the capital of France.", "off", ResponseFormat("json_object"))
    assert r.finish_reason == "stop" and isinstance(json.loads(r.text), dict), r


RECIPE = Path(__file__).resolve().parent.parent / "distill" / "artifacts" / "gemma-arith" / "student.json"


@pytest.fixture(scope="module")
def student():
    if not RECIPE.exists():
        pytest.skip("Gemma student adapter not built (docs/distill.md)")
    with Engine("gemma-3-270m-arith", EngineConfig(n_ctx=512, n_threads=2, queue_size=2)) as eng:
        yield eng


@pytest.mark.parametrize("think", ["off", "on", "post", "auto"])
@pytest.mark.parametrize("name", ["answer", "enum"])
def test_student_answer_validates_in_every_mode(student, think, name):
    student.backend.truncate(0)
    r = gen(student, "What is 23 + 4 * 5?", think, fmt(name), max_tokens=160)
    assert r.finish_reason == "stop", r
    jsonschema.validate(json.loads(r.text), SCHEMAS[name])
    if r.decision.mode == "on":
        assert r.reasoning and "=" in r.reasoning  # the chain stayed free text
    student.backend.truncate(0)
    assert gen(student, "What is 23 + 4 * 5?", think, fmt(name), max_tokens=160).text == r.text


class MergedCloseBackend(ScriptedBackend):
    """A model whose closing token also carries the first answer character ("</think>4"):
    the loop must end the block exactly at the tag, so the answer starts under the grammar.
    The scripted backend's cache and lifecycle, over its own small vocabulary and script."""

    name, n_ctx = "merged", 64
    VOCAB = ["<|end|>", "<think>", "</think>", "</think>4", "a", "4", "7", "q"]
    n_vocab = len(VOCAB)
    SCRIPT = ["a", "a", "</think>4", "4", "<|end|>"]  # after the forced "<think>"

    def tokenize(self, text, *, add_special, parse_special=True):
        """Tags and single characters (the merged token only ever comes from sampling)."""
        out, i = [], 0
        while i < len(text):
            tag = next((t for t in ("<|end|>", "<think>", "</think>") if text.startswith(t, i)), text[i])
            out.append(self.VOCAB.index(tag) if tag in self.VOCAB else self.VOCAB.index("q"))
            i += len(tag)
        return out

    def token_bytes(self, t):
        return self.VOCAB[t].encode()

    def is_eog(self, t):
        return t == 0

    def eval(self, tokens):
        self._kv.extend(tokens)
        steps = len(self._kv) - self._kv.index(1) - 1 if 1 in self._kv else 0  # tokens after "<think>"
        logits = np.zeros(self.n_vocab, dtype=np.float32)
        logits[self.VOCAB.index(self.SCRIPT[min(steps, len(self.SCRIPT) - 1)])] = 8.0
        return logits


def test_a_closing_token_that_carries_answer_text_is_cut_at_the_tag():
    from thinkling.runtime.generate import GenerationPlan, ReasoningMarkup, stream_generate

    b = MergedCloseBackend()
    g = WordGrammarOver(b.VOCAB, ["7"])
    plan = GenerationPlan(prompt_tokens=b.tokenize("q", add_special=False), max_tokens=16,
                          sampling=SamplingParams(temperature=0), markup=ReasoningMarkup(),
                          grammar=g, grammar_scope="after_reasoning")
    r = join_stream(stream_generate(b, plan), "merged")
    assert r.reasoning == "aa" and r.text == "7", r
    assert g.text == "7"  # the "4" glued to the tag never reached the answer


class WordGrammarOver(WordGrammar):
    def __init__(self, vocab, words):
        super().__init__(words)
        self.vocab = vocab

    def _piece(self, tok):
        return self.vocab[tok]

    def allows(self, tok):
        if tok == 0:
            return self.can_end()
        return super().allows(tok)


def test_a_deeply_nested_schema_is_a_clear_refusal():
    schema: dict = {"type": "integer"}
    for _ in range(3000):
        schema = {"type": "array", "items": schema}
    with pytest.raises(InvalidRequest) as exc:
        check_schema(schema)
    assert exc.value.param == "response_format.json_schema.schema"


def test_a_schema_the_converter_cannot_translate_is_a_clear_refusal():
    with pytest.raises(InvalidRequest) as exc:  # anchored, valid JSON Schema, but a lookahead the converter lacks
        grammar_for(ResponseFormat("json_schema", {"type": "string", "pattern": "^(?=a)a$"}))
    assert exc.value.param == "response_format.json_schema.schema"


def test_a_too_deep_schema_is_refused_through_the_request_mapping_too():
    schema: dict = {"type": "integer"}
    for _ in range(3000):
        schema = {"type": "array", "items": schema}
    with pytest.raises(InvalidRequest) as exc:
        response_format_from({"type": "json_schema", "json_schema": {"name": "deep", "schema": schema}})
    assert exc.value.param == "response_format.json_schema.schema"
