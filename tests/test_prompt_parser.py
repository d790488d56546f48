"""A1111's prompt language: editing, alternation, AND, emphasis edge cases; never a crash on any text."""
from __future__ import annotations

import math

from hypothesis import given, settings, strategies as st

from modules.prompt_parser import (get_learned_conditioning_prompt_schedules as schedules,
                                   get_multicond_prompt_list, parse_prompt_attention, text_at_step)


def test_editing_with_fraction_and_absolute_step():
    assert schedules(["a [b:c:0.5] d"], 10) == [[[5, "a b d"], [10, "a c d"]]]
    assert schedules(["a [b:c:3] d"], 10) == [[[3, "a b d"], [10, "a c d"]]]
    # "1" is step 1, "1.0" is the whole run
    assert schedules(["[b:c:1]"], 10) == [[[1, "b"], [10, "c"]]]
    assert schedules(["[b:c:1.0]"], 10) == [[[10, "b"]]]


def test_add_and_remove_after_a_step():
    assert schedules(["a [b:0.3]"], 10) == [[[3, "a "], [10, "a b"]]]
    assert schedules(["a [b::0.3]"], 10) == [[[3, "a b"], [10, "a "]]]


def test_a1111_documented_example():
    prompt = ("fantasy landscape with a [mountain:lake:0.25] and [an oak:a christmas tree:0.75]"
              "[ in foreground::0.6][ in background:0.25] [shoddy:masterful:0.5]")
    assert schedules([prompt], 10)[0] == [
        [2, "fantasy landscape with a mountain and an oak in foreground shoddy"],
        [5, "fantasy landscape with a lake and an oak in foreground in background shoddy"],
        [6, "fantasy landscape with a lake and an oak in foreground in background masterful"],
        [7, "fantasy landscape with a lake and an oak in background masterful"],
        [10, "fantasy landscape with a lake and a christmas tree in background masterful"],
    ]


def test_nested_editing_keeps_emphasis_text():
    assert schedules(["([cat:dog:2]:1.3) [[b:c:2]:d:4]"], 6)[0] == [
        [2, "(cat:1.3) b"], [4, "(dog:1.3) c"], [6, "(dog:1.3) d"]]


def test_alternation_cycles_every_step():
    assert schedules(["[cat|dog] x"], 4)[0] == [[1, "cat x"], [2, "dog x"], [3, "cat x"], [4, "dog x"]]
    assert [t for _, t in schedules(["[fe|||]male"], 5)[0]] == ["female", "male", "male", "male", "female"]


def test_sampling_step_picks_entry_like_a1111():
    schedule = schedules(["[b:c:0.5]"], 10)[0]   # [[5, b], [10, c]]
    assert [text_at_step(schedule, i) for i in range(10)] == ["b"] * 6 + ["c"] * 4


def test_hires_and_old_scheduling_keywords():
    # with a hires pass, fractions count over both passes: 0.5 ended in the first pass
    assert schedules(["[b:c:0.5]"], 10, hires_steps=20) == [[[20, "c"]]]
    assert schedules(["[b:c:1.5]"], 10, hires_steps=20) == [[[10, "b"], [20, "c"]]]
    assert schedules(["[b:c:15]"], 10, hires_steps=20) == [[[5, "b"], [20, "c"]]]
    # old rules: below 1 is a fraction, so "0.5" and ".5" agree and "2" is a step
    assert schedules(["[b:c:2]"], 10, use_old_scheduling=True) == [[[2, "b"], [10, "c"]]]


def test_text_that_is_not_syntax_stays_text():
    assert schedules(["[a:b:c]"], 5) == [[[5, "[a:b:c]"]]]
    assert schedules(["[a:b:-1]"], 5) == [[[5, "[a:b:-1]"]]]
    assert schedules(["a: b ) ] \\[x\\]"], 5) == [[[5, "a: b ) ] \\[x\\]"]]]
    assert schedules(["(unclosed [b:c:2]"], 5) == [[[5, "(unclosed [b:c:2]"]]]   # A1111 too: no parse, no editing
    assert schedules(["[a:b:" + "9" * 400 + "]"], 5) == [[[5, "a"]]]              # a when beyond the end
    assert schedules([""], 5) == [[[5, ""]]]


def test_and_splits_with_weights():
    res, flat, indexes = get_multicond_prompt_list(["a cat AND a dog:0.5 AND a cat", "fish :-2"])
    assert flat == ["a cat", " a dog", " a cat", "fish"]
    assert res == [[(0, 1.0), (1, 0.5), (2, 1.0)], [(3, -2.0)]]
    assert indexes["fish"] == 3
    # "ANDROID" and "and" are not AND
    assert get_multicond_prompt_list(["ANDROID and robots"])[1] == ["ANDROID and robots"]


def test_emphasis_reference_example_and_huge_weights():
    parsed = parse_prompt_attention("a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).")
    weights = {text: round(w, 4) for text, w in parsed}
    assert weights["house"] == 1.573 and weights["on"] == 1.0 and weights["hill"] == 0.55 and weights["sky"] == 1.4641
    assert parse_prompt_attention("(x:1e9)") == [["x:1e9", 1.1]]            # not a number A1111 reads: text
    assert parse_prompt_attention("(x:1000000000)") == [["x", 1e9]]
    assert parse_prompt_attention("(x:" + "9" * 400 + ")")[0][1] == 1.1    # inf is no weight


PROMPT_TEXT = st.lists(st.sampled_from(list("ab :|()[]\\.0123456789-,<>") + [" AND ", " BREAK ", "lora", "e9"]),
                      max_size=40).map("".join)


@settings(max_examples=300, deadline=None)
@given(PROMPT_TEXT, st.integers(min_value=1, max_value=40))
def test_any_text_parses_without_crashing(text, steps):
    for schedule in schedules([text], steps):
        assert schedule[-1][0] == steps
        assert all(isinstance(t, str) for _, t in schedule)
        assert [end for end, _ in schedule] == sorted({end for end, _ in schedule})
    res, flat, _ = get_multicond_prompt_list([text])
    assert all(math.isfinite(w) for _, w in res[0])
    assert all(0 <= i < len(flat) for i, _ in res[0])


@settings(max_examples=300, deadline=None)
@given(PROMPT_TEXT)
def test_emphasis_weights_are_finite_and_positive_without_minus_or_zero(text):
    parsed = parse_prompt_attention(text)
    for part, weight in parsed:
        if part == "BREAK" and weight == -1:
            continue
        assert math.isfinite(weight)
        if "-" not in text and "0" not in text:
            assert weight > 0


def test_extra_network_tags_are_removed_and_parsed():
    from modules import extra_networks

    text, data = extra_networks.parse_prompt("a cat <lora:style:0.8> <lora:b:te=0.5:unet=1>, <hypernet:h:1>")
    assert text == "a cat  , "
    assert [p.items for p in data["lora"]] == [["style", "0.8"], ["b", "te=0.5", "unet=1"]]
    assert data["lora"][1].positional == ["b"] and data["lora"][1].named == {"te": "0.5", "unet": "1"}
    texts, first = extra_networks.parse_prompts(["plain", "x <lora:a:1>", "y <lora:b:1>"])
    assert texts == ["plain", "x ", "y "] and [p.items for p in first["lora"]] == [["a", "1"]]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(list("<>:=ab1.-e ") + ["lora", "<lora:", "inf", "nan"]), max_size=30).map("".join))
def test_extra_network_parsing_never_crashes(text):
    from modules import extra_networks, lora

    stripped, data = extra_networks.parse_prompt(text)
    assert len(stripped) <= len(text)
    requests, warnings = lora.parse_requests(data.get("lora", []))
    assert all(math.isfinite(r.te_multiplier) and math.isfinite(r.unet_multiplier) for r in requests)
