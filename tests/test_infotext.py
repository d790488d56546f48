import pytest

from modules.infotext import create_infotext, parse_infotext

BASE = {
    "Steps": 20, "Sampler": "Euler a", "Schedule type": "Automatic", "CFG scale": 7, "Seed": 1234,
    "Size": "512x768", "Model hash": "0123456789", "Model": "demo",
}


def test_layout_and_key_order():
    params = {"Version": "v1", "Hires upscale": 2, "Seed": 5, "Model": "m", "Steps": 20, "Sampler": "Euler",
              "Clip skip": 2, "Size": "64x64", "CFG scale": 7.5, "VAE": None}
    text = create_infotext("a cat", "blurry", params)
    assert text == ("a cat\nNegative prompt: blurry\n"
                    "Steps: 20, Sampler: Euler, CFG scale: 7.5, Seed: 5, Size: 64x64, Model: m, Clip skip: 2, "
                    "Hires upscale: 2, Version: v1")


def test_empty_negative_prompt_line_is_left_out():
    assert create_infotext("a cat", "", {"Steps": 1}) == "a cat\nSteps: 1"


def test_defaults_are_left_out_when_a1111_leaves_them_out():
    text = create_infotext("x", "", {"Steps": 1, "Clip skip": 1, "RNG": "GPU", "Seed": 2, "ENSD": None})
    assert text == "x\nSteps: 1, Seed: 2"
    assert "RNG: CPU" in create_infotext("x", "", {"Steps": 1, "RNG": "CPU"})


def test_values_with_separators_are_json_quoted():
    text = create_infotext("p", "", {"Steps": 1, "Model": "a, b: c", "Lora hashes": "x: 1, y: 2", "Seed": 3})
    assert 'Model: "a, b: c"' in text
    assert 'Lora hashes: "x: 1, y: 2"' in text


def test_bad_key_is_refused():
    with pytest.raises(ValueError, match="key"):
        create_infotext("p", "", {"Bad, key": 1})


def test_parse_a1111_example():
    text = ("masterpiece, 1girl, (red hair:1.2)\nNegative prompt: lowres, bad anatomy\n"
            "Steps: 28, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 3456, Size: 512x768, "
            'Model hash: 0123456789, Model: anything, Lora hashes: "detail: abc123, x: def456", Version: v1.10.1')
    res = parse_infotext(text)
    assert res["Prompt"] == "masterpiece, 1girl, (red hair:1.2)"
    assert res["Negative prompt"] == "lowres, bad anatomy"
    assert res["Steps"] == "28"
    assert res["Sampler"] == "DPM++ 2M" and res["Schedule type"] == "Karras"
    assert res["Size-1"] == "512" and res["Size-2"] == "768"
    assert res["Lora hashes"] == "detail: abc123, x: def456"
    assert res["Version"] == "v1.10.1"


def test_missing_keys_get_defaults():
    res = parse_infotext("cat\nSteps: 20, Sampler: Euler, CFG scale: 7, Seed: 1")
    assert res["Clip skip"] == "1"
    assert res["Schedule type"] == "Automatic"
    assert res["RNG"] == "GPU"
    assert res["Negative prompt"] == ""


def test_legacy_sampler_name_is_split():
    res = parse_infotext("cat\nSteps: 20, Sampler: DPM++ 2M Karras, CFG scale: 7, Seed: 1")
    assert res["Sampler"] == "DPM++ 2M" and res["Schedule type"] == "Karras"
    res = parse_infotext("cat\nSteps: 20, Sampler: Some Future Sampler, CFG scale: 7, Seed: 1")
    assert res["Sampler"] == "Some Future Sampler"


def test_last_line_with_fewer_than_three_pairs_belongs_to_the_prompt():
    res = parse_infotext("a photo\nstyle: oil, mood: calm")
    assert res["Prompt"] == "a photo\nstyle: oil, mood: calm"
    assert "style" not in res


def test_prompt_only():
    assert parse_infotext("just a prompt")["Prompt"] == "just a prompt"


def test_multiline_negative_prompt():
    res = parse_infotext("p1\np2\nNegative prompt: n1\nn2\nSteps: 1, Seed: 2, CFG scale: 3")
    assert res["Prompt"] == "p1\np2"
    assert res["Negative prompt"] == "n1\nn2"


TRICKY = [
    ("a cat, sitting: on a mat", "ugly, blurry"),
    ("line one\nline two, with comma\nline: three", "neg\nsecond: line"),
    ('a "quoted" word, and \\backslash\\', 'he said "no"'),
    ("ünïcødé 猫 🐱, émoji: ✓", "негатив"),
    ("(house:1.3) [on] a (hill:0.5), BREAK sky", ""),
    ("Steps: 5, Sampler: fake, Seed: 3", ""),  # a prompt that looks like a parameters line
]


@pytest.mark.parametrize("prompt,negative", TRICKY)
def test_round_trip_tricky_prompts(prompt, negative):
    params = {**BASE, "Model": 'weird, "name": v2', "Hires prompt": "x\ny, z", "Note": '"starts with quote'}
    res = parse_infotext(create_infotext(prompt, negative, params))
    assert res["Prompt"] == prompt
    assert res["Negative prompt"] == negative
    assert res["Model"] == 'weird, "name": v2'
    assert res["Hires prompt"] == "x\ny, z"
    assert res["Note"] == '"starts with quote'
    assert res["Steps"] == "20" and res["Seed"] == "1234" and res["Sampler"] == "Euler a"
    assert (res["Size-1"], res["Size-2"]) == ("512", "768")
