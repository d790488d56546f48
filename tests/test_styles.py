"""styles.csv: A1111's columns and merge rule, add/delete/save, extracting styles back from a prompt."""
from __future__ import annotations

import pytest

from modules.styles import StyleDatabase, merge_prompts


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def test_reads_a1111_file_and_applies_in_order(tmp_path):
    path = write(tmp_path / "styles.csv", 'name,prompt,negative_prompt\n'
                 'Cinematic,"cinematic still of {prompt}, film grain","cartoon, drawing"\n'
                 'Sharp,"sharp focus",\n')
    db = StyleDatabase(path)
    assert list(db.styles) == ["Cinematic", "Sharp"]
    assert db.apply_styles_to_prompt("a cat", ["Cinematic", "Sharp"]) == "cinematic still of a cat, film grain, sharp focus"
    assert db.apply_negative_styles_to_prompt("blurry", ["Cinematic"]) == "blurry, cartoon, drawing"
    assert db.apply_negative_styles_to_prompt("", ["Cinematic"]) == "cartoon, drawing"
    assert db.get_style_prompts(["Sharp"]) == ["sharp focus"]


def test_merge_rule():
    assert merge_prompts("{prompt}, 4k", "a dog") == "a dog, 4k"
    assert merge_prompts("4k", " a dog ") == "a dog, 4k"
    assert merge_prompts("", "a dog") == "a dog"


def test_add_delete_save_roundtrip_keeps_commas_and_quotes(tmp_path):
    db = StyleDatabase(tmp_path / "styles.csv")          # missing file: no styles
    assert db.styles == {}
    db.add("Quoted", 'a "quoted", {prompt}', "x, y")
    db.add("Plain", "oil painting")
    again = StyleDatabase(tmp_path / "styles.csv")
    assert again.styles == db.styles
    again.delete("Plain")
    assert list(StyleDatabase(tmp_path / "styles.csv").styles) == ["Quoted"]
    with pytest.raises(KeyError, match="Plain"):
        again.delete("Plain")
    with pytest.raises(ValueError, match="name"):
        again.add("  ")
    with pytest.raises(KeyError, match="Nope"):
        again.apply_styles_to_prompt("x", ["Nope"])


def test_bad_header_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="name"):
        StyleDatabase(write(tmp_path / "styles.csv", "prompt,negative\nx,y\n"))


def test_extract_styles_from_prompt(tmp_path):
    db = StyleDatabase(tmp_path / "styles.csv")
    db.add("Cinematic", "cinematic still of {prompt}, film grain", "cartoon")
    db.add("Sharp", "sharp focus")
    prompt = db.apply_styles_to_prompt("a cat", ["Cinematic", "Sharp"])
    negative = db.apply_negative_styles_to_prompt("blurry", ["Cinematic", "Sharp"])
    assert db.extract_styles_from_prompt(prompt, negative) == (["Cinematic", "Sharp"], "a cat", "blurry")
    assert db.extract_styles_from_prompt("a dog", "") == ([], "a dog", "")
