"""The Gemma student's data: the same teacher and filter as arith-student, written in
Gemma's chat format; the chat template the runtime renders must give exactly the
prompts the student was trained on."""

from __future__ import annotations

import pytest

from thinkling.distill.data import GEMMA_MIX, make_dataset
from thinkling.distill.filter import verify_completion
from thinkling.distill.chat import GEMMA_FORMAT, MODES
from thinkling.distill.chat import render_completion as arith_completion
from thinkling.distill.problems import parse_problem
from thinkling.runtime.prompts import render_chat
from thinkling.runtime.thinking.formats import FORMATS
from thinkling.runtime.types import Message

CHAT_TEMPLATE, EOT = GEMMA_FORMAT.chat_template, GEMMA_FORMAT.eos
render_prompt, render_completion, split_completion = (
    GEMMA_FORMAT.render_prompt, GEMMA_FORMAT.render_completion, GEMMA_FORMAT.split_completion)


@pytest.mark.parametrize("mode", MODES)
def test_runtime_template_renders_the_training_prompt(mode):
    fmt = FORMATS["template-mode"]
    runtime_mode = {"direct": "off", "think": "on", "post": "post"}[mode]
    rendered = render_chat([Message("user", "What is 37 + 4 * 12?")], CHAT_TEMPLATE, "<bos>", EOT,
                           **fmt.template_vars[runtime_mode])
    assert rendered.text == render_prompt("What is 37 + 4 * 12?", mode)
    assert not rendered.add_bos  # the template writes <bos> itself


def test_dataset_is_filtered_gemma_format_and_deterministic():
    a, stats = make_dataset(3, GEMMA_MIX, 300, GEMMA_FORMAT)
    b, _ = make_dataset(3, GEMMA_MIX, 300, GEMMA_FORMAT)
    assert a == b and stats.kept == 300 and stats.written > stats.kept  # the noisy teacher was filtered
    modes = {ex.mode for ex in a}
    assert modes == {"direct", "think", "post"}
    for ex in a:
        assert ex.prompt.startswith("<bos><start_of_turn>user\n") and ex.completion.endswith(EOT)
        assert "<|" not in ex.prompt + ex.completion  # no token of the toy student's vocabulary
        question = ex.prompt.split("user\n", 1)[1].split("\n", 1)[0]
        reasoning, answer = split_completion(ex.completion, ex.mode)
        if "</think>" in ex.completion and ex.mode == "think" and not reasoning.strip():
            continue  # a chain cut at its start by the truncation share
        # what the student sees passes the filter in the canonical format (truncated chains aside)
        verdict = verify_completion(parse_problem(question), arith_completion(answer, reasoning, ex.mode), ex.mode)
        assert verdict.ok or ex.mode == "think", (ex, verdict)


def test_round_trip_of_each_mode():
    for mode in MODES:
        text = render_completion("76", "4 * 12 = 48\n37 + 48 = 85\n85 - 9 = 76", mode)
        reasoning, answer = split_completion(text, mode)
        assert answer == "76" and reasoning == ("" if mode == "direct" else "4 * 12 = 48\n37 + 48 = 85\n85 - 9 = 76")


def test_chains_mostly_take_the_fully_split_path():
    examples, _ = make_dataset(0, GEMMA_MIX, 400, GEMMA_FORMAT)
    chains = [split_completion(e.completion, e.mode)[0] for e in examples if e.mode == "think" and e.n_ops >= 2]
    chains = [c for c in chains if c and all(len(line.split()) == 5 for line in c.splitlines())]  # not cut
    # every step of the fully split path has a one-digit operand or a round ten (7 * 40, 280 + 50, 330 + 6)
    def one_digit_step(line: str) -> bool:
        a, _, b, _, _ = line.split()
        return min(int(a), int(b)) < 10 or int(a) % 10 == 0 or int(b) % 10 == 0
    split = [c for c in chains if c and all(one_digit_step(line) for line in c.splitlines())]
    assert len(split) / len(chains) > 0.75


def test_polish_mix_shifts_toward_one_operation_direct_answers():
    from collections import Counter

    from thinkling.distill.data import GEMMA_POLISH_MIX, MIXES

    assert MIXES["gemma"] is GEMMA_MIX and MIXES["gemma-polish"] is GEMMA_POLISH_MIX
    base, _ = make_dataset(1, GEMMA_MIX, 2000, GEMMA_FORMAT)
    polish, _ = make_dataset(1, GEMMA_POLISH_MIX, 2000, GEMMA_FORMAT)
    assert polish == make_dataset(1, GEMMA_POLISH_MIX, 2000, GEMMA_FORMAT)[0]  # deterministic for a seed

    def share(examples, mode, n_ops=None):
        c = Counter((e.mode, e.n_ops) for e in examples)
        return sum(v for (m, k), v in c.items() if m == mode and (n_ops is None or k == n_ops)) / len(examples)

    assert share(polish, "direct", 1) > 1.4 * share(base, "direct", 1)
    assert share(polish, "direct") > share(base, "direct") and share(polish, "think") > 0.35  # chains stay


def test_a_second_phase_starts_from_the_saved_adapter(tmp_path):
    torch = pytest.importorskip("torch")
    pytest.importorskip("peft")
    transformers = pytest.importorskip("transformers")
    from peft import LoraConfig, get_peft_model
    from safetensors.torch import load_file, save_file

    from thinkling.distill.recipes import ATTENTION_MLP
    from thinkling.distill.trainer import load_adapter_weights

    LORA_TARGETS = list(ATTENTION_MLP)

    cfg = transformers.Gemma3TextConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                        num_attention_heads=2, num_key_value_heads=1, head_dim=16)

    def peft_model(targets=LORA_TARGETS):
        torch.manual_seed(0)
        base = transformers.Gemma3ForCausalLM(cfg)
        return get_peft_model(base, LoraConfig(r=4, lora_alpha=4, target_modules=targets, init_lora_weights=False))

    first = peft_model()
    first.save_pretrained(tmp_path / "a")
    weights = tmp_path / "a" / "adapter_model.safetensors"
    save_file({k: v.half().contiguous() for k, v in load_file(weights).items()}, weights)  # as committed
    torch.manual_seed(1)
    second = get_peft_model(transformers.Gemma3ForCausalLM(cfg),
                            LoraConfig(r=4, lora_alpha=4, target_modules=LORA_TARGETS))  # B = 0 at init
    load_adapter_weights(second, tmp_path / "a")
    got = {n: p for n, p in second.named_parameters() if "lora_" in n}
    want = {n: p for n, p in first.named_parameters() if "lora_" in n}
    assert got.keys() == want.keys() and all(torch.equal(got[n], want[n].half().float()) for n in got)

    torch.manual_seed(2)
    wider = get_peft_model(transformers.Gemma3ForCausalLM(cfg),
                           LoraConfig(r=8, lora_alpha=8, target_modules=LORA_TARGETS))
    # the wider model's base is another random init: give it the first model's base weights
    wider.base_model.model.load_state_dict(
        {k: v for k, v in first.base_model.model.state_dict().items() if "lora_" not in k}, strict=False)
    load_adapter_weights(wider, tmp_path / "a")  # rank 4 -> rank 8: same function at the start
    ids = torch.tensor([[1, 5, 9, 33, 2]])
    with torch.no_grad():
        narrow = peft_model()  # rank 4 with the saved (fp16-rounded) weights
        load_adapter_weights(narrow, tmp_path / "a")
        assert torch.allclose(wider(ids).logits, narrow(ids).logits, atol=1e-5)
    wa = dict(wider.named_parameters())
    a_key = next(n for n in wa if "lora_A" in n)
    assert wa[a_key].shape[0] == 8 and wa[a_key][4:].abs().sum() > 0  # new A rows random, so they can learn
    b_key = next(n for n in wa if "lora_B" in n)
    assert torch.count_nonzero(wa[b_key][:, 4:]) == 0

    partial = peft_model(["q_proj"])
    partial.save_pretrained(tmp_path / "q")
    with pytest.raises(ValueError, match="lacks"):
        load_adapter_weights(second, tmp_path / "q")  # an adapter for other modules is refused
