"""The teacher, the noisy teacher, the filter and the tokenizer of distill/ (no torch needed)."""

from __future__ import annotations

import json
import random

import pytest

from thinkling.distill.chat import (
    CHAT_TEMPLATE, MODE_TOKENS, SPECIAL_TOKENS, THINKLING_JSON, render_prompt, split_completion,
)
from thinkling.distill.data import ADAPTER_MIX, BASE_MIX, make_dataset
from thinkling.distill.filter import filter_report, parse_steps, verify_completion, verify_steps
from thinkling.distill.noise import MISTAKES, inject
from thinkling.distill.problems import (
    Problem, apply_op, canonical_partials, is_valid, parse_problem, sample_problem, split_of,
)
from thinkling.distill.teacher import MAX_PATHS, MIN_PATHS, Step, teach


def _problems(n_per_op: int = 300, seed: int = 0) -> list[Problem]:
    rng = random.Random(seed)
    return [sample_problem(rng, k) for k in (1, 2, 3, 4) for _ in range(n_per_op)]


PROBLEMS = _problems()


def test_grammar_constraints_hold():
    for p in PROBLEMS:
        assert 1 <= p.n_ops <= 4 and is_valid(p)
        assert all(0 <= n <= 99 for n in p.numbers)
        for i, op in enumerate(p.ops):
            if op == "*":
                assert min(p.numbers[i], p.numbers[i + 1]) <= 9
        assert all(0 <= v <= 999 for v in canonical_partials(p))
        assert parse_problem(p.text) == p == parse_problem(f"What is {p.text}?")


def test_grammar_rejects_out_of_range_partials():
    assert not is_valid(parse_problem("3 - 5 + 10"))  # 3 - 5 < 0 on the way
    assert not is_valid(parse_problem("12 * 34"))  # no single-digit operand
    assert not is_valid(parse_problem("3 * 4 * 45"))  # 12 * 45: no single-digit operand
    assert not is_valid(parse_problem("99 * 9 + 99 + 99"))  # 891 + 99 + 99 > 999
    assert is_valid(parse_problem("37 + 4 * 12 - 9"))


def test_value_is_python_precedence():
    for p in PROBLEMS:
        assert p.value == eval(p.text)  # noqa: S307 - digits and + - * only


def _check_path(p: Problem, steps) -> None:
    for st in steps:
        assert apply_op(st.a, st.op, st.b) == st.c and 0 <= st.c <= 999
    assert steps[-1].c == p.value


def test_every_path_is_correct_and_distinct():
    few = 0
    for p in PROBLEMS:
        sol = teach(p)
        assert sol.answer == eval(p.text)  # noqa: S307
        assert 1 <= len(sol.paths) <= MAX_PATHS
        assert len(set(sol.paths)) == len(sol.paths)
        few += len(sol.paths) < MIN_PATHS
        for steps in sol.paths:
            _check_path(p, steps)
            assert verify_steps(p, list(steps), sol.answer).ok
    # Only tiny problems such as '3 - 2' or '7 * 7' admit fewer than 3 paths.
    assert few / len(PROBLEMS) < 0.05


def test_three_to_five_paths_for_multi_operation_problems():
    for p in PROBLEMS:
        if p.n_ops >= 3:
            assert MIN_PATHS <= len(teach(p).paths) <= MAX_PATHS


def test_example_paths_include_splits():
    sol = teach(parse_problem("7 * 48"))
    texts = ["\n".join(st.text for st in path) for path in sol.paths]
    assert texts[0] == "7 * 48 = 336"
    assert "7 * 40 = 280\n7 * 8 = 56\n280 + 56 = 336" in texts


def test_completions_in_all_formats():
    sol = teach(parse_problem("37 + 4 * 12 - 9"))
    assert sol.completion("direct") == "76<|end|>"
    assert sol.completion("think") == "<think>4 * 12 = 48\n37 + 48 = 85\n85 - 9 = 76</think>76<|end|>"
    assert sol.completion("post") == "76<think>4 * 12 = 48\n37 + 48 = 85\n85 - 9 = 76</think><|end|>"
    assert render_prompt("37 + 4 * 12 - 9", "think") == (
        "<|bos|><|user|>37 + 4 * 12 - 9<|think|><|assistant|>")
    for p in PROBLEMS[::7]:
        sol = teach(p)
        for mode in ("direct", "think", "post"):
            for k in range(len(sol.paths)):
                completion = sol.completion(mode, k)
                assert split_completion(completion, mode)[1] == str(p.value)
                assert verify_completion(p, completion, mode).ok


@pytest.mark.parametrize("mistake", MISTAKES)
def test_filter_rejects_injected_mistakes(mistake):
    rng = random.Random(1)
    rejected = total = 0
    for p in PROBLEMS:
        steps = list(teach(p).paths[0])
        injected = inject(rng, steps, p.value, mistake)
        if injected is None:
            continue
        total += 1
        rejected += not verify_steps(p, *injected).ok
    assert total > 500
    # A leap can go unnoticed when the skipped value is derivable from the problem's numbers.
    assert rejected / total >= (0.85 if mistake == "skipped_step" else 1.0)


def test_filter_rejects_handwritten_mistakes():
    p = parse_problem("37 + 4 * 12 - 9")
    good = "4 * 12 = 48\n37 + 48 = 85\n85 - 9 = 76"
    assert verify_completion(p, f"<think>{good}</think>76<|end|>", "think").ok
    wrong_step = "4 * 12 = 46\n37 + 46 = 83\n83 - 9 = 74"
    assert not verify_completion(p, f"<think>{wrong_step}</think>74<|end|>", "think").ok
    leap = "37 + 48 = 85\n85 - 9 = 76"
    assert not verify_completion(p, f"<think>{leap}</think>76<|end|>", "think").ok
    forgot = "4 * 12 = 48\n37 + 48 = 85"
    assert not verify_completion(p, f"<think>{forgot}</think>85<|end|>", "think").ok
    assert not verify_completion(p, f"<think>{good}</think>77<|end|>", "think").ok
    assert not verify_completion(p, f"77<think>{good}</think><|end|>", "post").ok
    assert not verify_completion(p, "<think>4 * 12 is 48</think>76<|end|>", "think").ok
    assert parse_steps("4 * 12 = 48") == [Step(4, "*", 12, 48)]


def test_filter_report_precision_and_recall():
    report = filter_report(n=3000, seed=0)
    assert report["precision"] == 1.0
    assert report["recall"] >= 0.95
    assert report["injected"] > 500


def test_training_data_is_filtered_and_from_the_train_split():
    for mix in (BASE_MIX, ADAPTER_MIX):
        examples, stats = make_dataset(0, mix, 400)
        assert stats.false_rejections == 0 and stats.written > stats.kept
        for ex in examples:
            question = ex.prompt.split("<|user|>")[1].split("<|")[0]
            problem = parse_problem(question)
            assert split_of(problem) == "train"
            assert ex.prompt == render_prompt(question, ex.mode)
            assert split_completion(ex.completion, ex.mode)[1] == str(problem.value)
    modes = {ex.mode for ex in examples}
    assert modes == {"direct", "think", "post"}


def test_heldout_split_is_about_ten_percent():
    share = sum(split_of(p) == "eval" for p in PROBLEMS) / len(PROBLEMS)
    assert 0.05 < share < 0.15


def test_thinkling_json_matches_chat_tokens():
    assert THINKLING_JSON["modes"] == {
        "off": MODE_TOKENS["direct"], "on": MODE_TOKENS["think"], "post": MODE_TOKENS["post"]}
    assert THINKLING_JSON["think_open"] == "<think>" and THINKLING_JSON["eos"] == "<|end|>"


def test_chat_template_renders_the_prompt():
    jinja2 = pytest.importorskip("jinja2", reason="jinja2 renders the chat template")
    template = jinja2.Environment().from_string(CHAT_TEMPLATE)
    messages = [{"role": "user", "content": "37 + 4 * 12 - 9"}]
    assert template.render(messages=messages) == render_prompt("37 + 4 * 12 - 9", "think")
    for mode in ("direct", "think", "post"):
        assert template.render(messages=messages, thinking_mode=mode) == render_prompt(
            "37 + 4 * 12 - 9", mode)


def test_tokenizer_files_round_trip(tmp_path):
    tokenizers = pytest.importorskip("tokenizers", reason="the tokenizer is built with HF tokenizers")
    from thinkling.distill.tokenizer import build_tokenizer, save_tokenizer

    save_tokenizer(build_tokenizer(), tmp_path)
    tok = tokenizers.Tokenizer.from_file(str(tmp_path / "tokenizer.json"))
    text = render_prompt("What is 37 + 4 * 12 - 9?", "think") + teach(
        parse_problem("37 + 4 * 12 - 9")).completion("think", 1)
    ids = tok.encode(text).ids
    assert tok.decode(ids, skip_special_tokens=False) == text
    for special in SPECIAL_TOKENS:
        assert tok.encode(special).ids == [tok.token_to_id(special)]
    assert tok.encode("336").tokens == ["3", "3", "6"]  # one token per digit
    spec = json.loads((tmp_path / "tokenizer.json").read_text())
    assert spec["model"]["type"] == "BPE" and len(spec["model"]["merges"]) > 0
    assert spec["pre_tokenizer"]["type"] == "ByteLevel" and spec["pre_tokenizer"]["use_regex"]
    assert tok.get_vocab_size() == 256 + len(spec["model"]["merges"]) + len(SPECIAL_TOKENS)
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    assert config["add_bos_token"] is False
    assert (config["bos_token"], config["eos_token"], config["pad_token"]) == (
        "<|bos|>", "<|end|>", "<|pad|>")
    assert config["chat_template"] == CHAT_TEMPLATE
    special_map = json.loads((tmp_path / "special_tokens_map.json").read_text())
    assert special_map["eos_token"] == "<|end|>"


def test_model_card_status_needs_the_targets_through_the_runtime_too():
    import copy
    import json
    from pathlib import Path

    from thinkling.distill import card_arith as card

    root = Path(__file__).resolve().parent.parent
    report = json.loads((root / "distill/artifacts/arith-student/build_report.json").read_text())
    modes = json.loads((root / "bench/results/modes-arith-student.json").read_text())
    good = copy.deepcopy(report)
    good["accuracy"]["direct"] = {"1": 0.95, "2": 0.2, "3": 0.1, "4": 0.05}
    good["accuracy"]["think"] = {"1": 0.95, "2": 0.9, "3": 0.8, "4": 0.7}
    assert "this build meets" in card.render(good)
    fast = copy.deepcopy(modes)
    fast["accuracy_by_ops"]["off"] = {"1": 0.8, "2": 0.2, "3": 0.1, "4": 0.05}  # 1 op below 90%
    text = card.render(good, fast)
    assert "**does not meet**" in text and "| direct (`off`) | 80% |" in text
