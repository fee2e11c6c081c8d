"""A scripted backend for testing the thinking controller's logic exactly.

It implements the runtime's Backend protocol over a tiny vocabulary (special
tokens + single characters); the next token is chosen by a script that reads
the context, and the logits' sharpness is scripted too, so probe confidence,
budget forcing and post-thinking order can be asserted token by token. The
real-model behaviour is tested separately on the real student and llama.cpp.
"""

from __future__ import annotations

import numpy as np

from thinkling.runtime.backends.base import Capabilities

SPECIALS = ["<|bos|>", "<|end|>", "<|user|>", "<|assistant|>", "<|direct|>", "<|think|>", "<|post|>",
            "<think>", "</think>"]
CHARS = list("0123456789 +-*=?abcdefghijklmnopqrstuvwxyzWHAT\n")
VOCAB = SPECIALS + CHARS
ID = {t: i for i, t in enumerate(VOCAB)}

TEMPLATE = (
    "{%- if thinking_mode is defined and thinking_mode == 'direct' -%}{%- set mode = '<|direct|>' -%}"
    "{%- elif thinking_mode is defined and thinking_mode == 'post' -%}{%- set mode = '<|post|>' -%}"
    "{%- else -%}{%- set mode = '<|think|>' -%}{%- endif -%}"
    "<|bos|>{%- for m in messages -%}<|user|>{{ m['content'] }}{{ mode }}<|assistant|>{%- endfor -%}"
)


class ScriptedBackend:
    """Answers ``42``; reasons with an endless ``abc...`` chain until closed.

    Direct answers are confident unless the question contains ``hard``.
    """

    name = "scripted"
    n_ctx = 512
    n_vocab = len(VOCAB)
    capabilities = Capabilities(hidden_state=True)
    n_threads = None
    governor = None
    bos_text = "<|bos|>"
    eos_text = "<|end|>"

    def __init__(self):
        self._kv: list[int] = []
        self.evals = 0
        self.hidden_calls: list[int] = []

    @property
    def kv_tokens(self):
        return self._kv

    def tokenize(self, text, *, add_special, parse_special=True):
        out, i = [], 0
        while i < len(text):
            for s in SPECIALS:
                if parse_special and text.startswith(s, i):
                    out.append(ID[s])
                    i += len(s)
                    break
            else:
                out.append(ID.get(text[i], ID["?"]))
                i += 1
        return out

    def token_bytes(self, token_id):
        return VOCAB[token_id].encode()

    def is_eog(self, token_id):
        return token_id == ID["<|end|>"]

    def truncate(self, n_keep):
        del self._kv[n_keep:]

    def _next(self) -> tuple[int, float]:
        text = "".join(VOCAB[t] for t in self._kv)
        prompt, _, out = text.rpartition("<|assistant|>")
        hard = "hard" in prompt
        mode = "direct" if prompt.endswith("<|direct|>") else "post" if prompt.endswith("<|post|>") else "think"
        if mode == "think":
            if not out:
                return ID["<think>"], 8.0
            if "</think>" not in out:
                return ID["abcdefghij"[len(out.split("<think>")[1]) % 10]], 8.0
            ans = out.split("</think>")[1]
        elif mode == "post":
            if len(out) < 2:
                return ID["42"[len(out)]], 8.0
            if "<think>" not in out:
                return ID["<think>"], 8.0
            if "</think>" in out:
                return ID["<|end|>"], 8.0
            body = out.split("<think>")[1]
            return (ID["xyz"[len(body) % 3]], 8.0) if len(body) < 6 else (ID["</think>"], 8.0)
        else:
            ans = out
        if len(ans) < 2:
            return ID["42"[len(ans)]], (0.5 if hard else 8.0)
        return ID["<|end|>"], 8.0

    def eval(self, tokens):
        self.evals += 1
        self._kv.extend(tokens)
        tok, sharp = self._next()
        logits = np.zeros(self.n_vocab, dtype=np.float32)
        logits[tok] = sharp
        return logits

    def eval_hidden(self, tokens):
        """``eval`` plus a scripted 4-wide "hidden state" of the context: [hard?, 'w' count,
        length / 100, 1]; records how many tokens each call evaluated."""
        self.hidden_calls.append(len(tokens))
        logits = self.eval(tokens)
        text = "".join(VOCAB[t] for t in self._kv)
        prompt = text.rpartition("<|assistant|>")[0]
        return logits, np.array([float("hard" in prompt), float(prompt.count("w")), len(prompt) / 100, 1.0],
                                dtype=np.float32)

    def metadata(self):
        return {}

    def chat_template(self):
        return TEMPLATE

    def close(self):
        pass


class ScriptedManyBackend(ScriptedBackend):
    """The scripted backend plus ``eval_many`` (logits after each token of a pass),
    so the speculative loop can be checked token by token."""

    capabilities = Capabilities(score_many=True, hidden_state=True)

    def __init__(self):
        super().__init__()
        self.passes: list[int] = []  # tokens per backend call

    def eval(self, tokens):
        self.passes.append(len(tokens))
        return super().eval(tokens)

    def eval_many(self, tokens):
        self.passes.append(len(tokens))
        rows = []
        for t in tokens:
            self._kv.append(t)
            tok, sharp = self._next()
            row = np.zeros(self.n_vocab, dtype=np.float32)
            row[tok] = sharp
            rows.append(row)
        self.evals += 1
        return np.stack(rows)
