"""Prompt tools of the page: token counter, styles, extra-network cards, and their API lists."""
from __future__ import annotations

import os
from types import SimpleNamespace

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from modules import shared
from modules.styles import StyleDatabase
from modules.ui import extra_networks_ui as en
from modules.ui import styles_ui
from modules.ui import token_counter as tc

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def tokenizer():
    from modules import sd_models

    return sd_models.load_tokenizer("<|endoftext|>")


# ---------------------------------------------------------------- token counter

def count(text, tokenizer, **kw):
    return tc.count_prompt_tokens(text, tokenizer=tokenizer, **kw)


def test_counts_tokens_and_grows_by_chunks(tokenizer):
    assert count("", tokenizer) == (0, 75)
    assert count("a red cat", tokenizer) == (3, 75)
    assert count(" ".join(["cat"] * 75), tokenizer) == (75, 75)
    assert count(" ".join(["cat"] * 76), tokenizer) == (76, 150)
    # the comma backtrack moves the text after the last comma into chunk 2, as the encoder does
    tokens, maximum = count(", ".join(["cat"] * 40), tokenizer)
    assert (tokens, maximum) == (79, 150)


def test_counts_the_way_the_encoder_splits_the_prompt(tokenizer):
    assert count("a cat BREAK a dog", tokenizer) == (4, 150)                    # BREAK closes a chunk
    assert count("a cat <lora:style:0.8>", tokenizer) == count("a cat", tokenizer)   # tags are removed
    assert count("(a cat:1.3)", tokenizer) == count("a cat", tokenizer)            # emphasis is not text
    # prompt editing: the longest step counts
    assert count("[cat:a very big fluffy dog:0.5]", tokenizer) == (5, 75)
    # AND: each part is encoded alone in a positive prompt; a negative prompt has no AND
    assert count("a cat AND a very big dog", tokenizer) == (4, 75)
    assert count("a cat AND a very big dog", tokenizer, negative=True) == (7, 75)


def test_embedding_counts_its_vectors_not_its_name(tokenizer):
    from modules.textual_inversion import SINGLE, Embedding, ModelEmbeddings

    embedding = Embedding("easelstyle", "easelstyle.pt", {SINGLE: torch.zeros(6, 8)})
    embeddings = ModelEmbeddings({"easelstyle": embedding}, {}, [SINGLE])
    assert count("a easelstyle", tokenizer, embeddings=embeddings) == (7, 75)
    assert count("a easelstyle", tokenizer)[0] < 7


def test_counter_html_and_errors():
    counter = SimpleNamespace(negative=False)
    assert tc.counter_html(80, 150) == '<span class="easel-token-count">80/150</span>'
    # an emphasis weight that overflows is reported in the counter, not raised at the page
    huge = "9" * 200
    shown = tc.TokenCounter.update(counter, f"((cat:{huge}):{huge})")
    assert "easel-token-error" in shown and "overflows" in shown
    shown = tc.TokenCounter.update(counter, "(" * 3000 + "cat" + ")" * 3000)
    assert "easel-token-error" in shown and "nested too deeply" in shown


# ---------------------------------------------------------------- styles

STYLES_CSV = ('name,prompt,negative_prompt\n'
              'Cinematic,"film still of {prompt}, grain",cartoon\n'
              'Sharp,sharp focus,\n')


@pytest.fixture
def styles_file(tmp_path, monkeypatch):
    path = tmp_path / "styles.csv"
    path.write_text(STYLES_CSV, encoding="utf-8")
    monkeypatch.setattr(shared, "paths", SimpleNamespace(styles_file=path))
    return path


def test_apply_styles_writes_them_into_the_prompts(styles_file):
    assert styles_ui.style_names() == ["Cinematic", "Sharp"]
    assert styles_ui.apply_styles("a cat", "blurry", ["Cinematic", "Sharp"]) == \
        ("film still of a cat, grain, sharp focus", "blurry, cartoon")
    with pytest.raises(ValueError, match="Nope"):
        styles_ui.apply_styles("a cat", "", ["Nope"])


def test_save_edit_delete_styles_change_the_file(styles_file):
    assert styles_ui.save_style("Mine", "a cat, {prompt}", "dog") == "Saved style 'Mine'"
    assert StyleDatabase(styles_file).styles["Mine"].prompt == "a cat, {prompt}"
    assert styles_ui.load_style("Mine") == ("a cat, {prompt}", "dog")
    assert styles_ui.save_style("Mine", "a dog, {prompt}", "") == "Updated style 'Mine'"
    assert StyleDatabase(styles_file).styles["Mine"].negative_prompt == ""
    assert styles_ui.delete_style("Mine") == "Deleted style 'Mine'"
    assert list(StyleDatabase(styles_file).styles) == ["Cinematic", "Sharp"]
    with pytest.raises(ValueError, match="style name"):
        styles_ui.save_style("  ", "x", "")
    with pytest.raises(ValueError, match="empty"):
        styles_ui.save_style("Blank", "", " ")
    with pytest.raises(ValueError, match="Mine"):
        styles_ui.delete_style("Mine")


def test_selected_styles_are_applied_at_generation(styles_file):
    from modules.ui import txt2img

    from modules import processing

    p = txt2img.build_processing({"prompt": "a cat", "negative_prompt": "blurry", "styles": ["Cinematic"],
                                  "sampler": "Euler", "scheduler": "Automatic"})
    assert p.styles == ["Cinematic"]
    processing._apply_styles(p)   # what process_images does first, for the page and the API alike
    assert (p.prompt, p.negative_prompt) == ("film still of a cat, grain", "blurry, cartoon")
    plain = txt2img.build_processing({"prompt": "a cat", "sampler": "Euler", "scheduler": "Automatic"})
    processing._apply_styles(plain)
    assert (plain.prompt, plain.styles) == ("a cat", [])
    gone = txt2img.build_processing({"prompt": "a cat", "styles": ["Gone"], "sampler": "Euler"})
    with pytest.raises(ValueError, match="Gone"):
        processing._apply_styles(gone)


def test_img2img_generate_applies_the_selected_styles(styles_file, monkeypatch):
    from modules.ui import generation, img2img

    made = []
    monkeypatch.setattr(generation, "run_processing", lambda make, label, request, **_: iter([made.append(make())]))
    list(img2img.generate("img2img", Image.new("RGB", (64, 64)), None, None, None, "a cat", "", "Euler",
                          "Automatic", 2, 7, 64, 64, 1, 1, 1, 0.5, 0, 4, 0, 1, 0, 32, styles=["Cinematic", "Sharp"]))
    assert made[0].styles == ["Cinematic", "Sharp"]
    from modules import processing

    processing._apply_styles(made[0])
    assert made[0].prompt == "film still of a cat, grain, sharp focus" and made[0].negative_prompt == "cartoon"


# ---------------------------------------------------------------- extra networks cards

def _embedding_file(path, width, vectors=2):
    save_file({"emb_params": torch.randn(vectors, width)}, str(path))
    return path


@pytest.fixture
def folders(tmp_path, monkeypatch):
    lora_dir, emb_dir = tmp_path / "Lora", tmp_path / "embeddings"
    lora_dir.mkdir()
    emb_dir.mkdir()
    save_file({"lora_unet_x.alpha": torch.tensor(1.0)}, str(lora_dir / "ink_style.safetensors"),
              metadata={"ss_output_name": "ink"})
    save_file({"lora_unet_x.alpha": torch.tensor(1.0)}, str(lora_dir / "pastel.safetensors"))
    Image.new("RGB", (300, 200), "red").save(lora_dir / "ink_style.preview.png")
    _embedding_file(emb_dir / "easelstyle.safetensors", 8)
    Image.new("RGB", (40, 40), "blue").save(emb_dir / "easelstyle.png")
    checkpoints = [SimpleNamespace(title="model-a.safetensors [abc]", filename=str(tmp_path / "model-a.safetensors"))]
    loads = []
    models = SimpleNamespace(checkpoints=lambda: checkpoints, request_load=loads.append, current=None)
    monkeypatch.setattr(shared, "paths", SimpleNamespace(lora_dir=lora_dir, embeddings_dirs=[emb_dir]))
    monkeypatch.setattr(shared, "models", models)
    return SimpleNamespace(lora_dir=lora_dir, emb_dir=emb_dir, loads=loads)


def test_cards_list_every_network_with_its_preview(folders):
    cards = en.list_cards()
    assert [(c.kind, c.name) for c in cards] == [("checkpoint", "model-a.safetensors [abc]"), ("lora", "ink_style"),
                                                ("lora", "pastel"), ("embedding", "easelstyle")]
    previews = {c.name: c.preview for c in cards}
    assert previews["ink_style"] == str(folders.lora_dir / "ink_style.preview.png")
    assert previews["easelstyle"] == str(folders.emb_dir / "easelstyle.png")
    assert previews["pastel"] is None
    page = en.cards_html(cards)
    assert page.count('class="easel-card"') == 4 and page.count("data:image/jpeg;base64,") == 2
    assert 'data-kind="lora" data-name="ink_style"' in page


def test_search_filters_cards(folders):
    cards = en.list_cards()
    assert [c.name for c in en.filter_cards(cards, "INK")] == ["ink_style"]
    assert [c.name for c in en.filter_cards(cards, "style")] == ["ink_style", "easelstyle"]
    assert en.filter_cards(cards, "") == cards
    page = en.cards_html(cards, "pastel")
    assert page.count('class="easel-card"') == 1 and "Lora (1/2)" in page


def test_clicking_cards_edits_the_prompt_or_loads_the_checkpoint(folders):
    prompt, note = en.click_card("lora", "ink_style", "a cat")
    assert prompt == "a cat <lora:ink_style:1>" and note == ""
    assert en.click_card("lora", "ink_style", "a cat <lora:ink_style:0.6>, dog")[0] == "a cat, dog"  # toggles off
    assert en.click_card("embedding", "easelstyle", "")[0] == "easelstyle"
    assert en.click_card("embedding", "easelstyle", "a easelstyle")[0] == "a"
    assert en.click_card("embedding", "easelstyle", "a easelstyle2")[0] == "a easelstyle2 easelstyle"
    prompt, note = en.click_card("checkpoint", "model-a.safetensors [abc]", "a cat")
    assert prompt == "a cat" and folders.loads == ["model-a.safetensors [abc]"] and "Loading" in note
    with pytest.raises(ValueError, match="missing"):
        en.click_card("lora", "missing", "a cat")


def test_card_names_are_escaped(folders):
    save_file({"x": torch.zeros(1)}, str(folders.lora_dir / 'a"<b>.safetensors'))
    page = en.cards_html(en.list_cards(("lora",)))
    assert '<b>' not in page and 'data-name="a&quot;&lt;b&gt;"' in page


# ---------------------------------------------------------------- API lists

@pytest.fixture(scope="module")
def easel(tmp_path_factory):
    from tests.test_api_support import start_easel

    root = tmp_path_factory.mktemp("easel")
    (root / "Lora").mkdir()
    (root / "emb").mkdir()
    easel = start_easel(root, ["--nowebui", "--lora-dir", str(root / "Lora"), "--embeddings-dir", str(root / "emb"),
                               "--styles-file", str(root / "styles.csv")])
    yield easel
    easel.close()


def test_api_lists_loras_embeddings_and_styles(easel):
    from modules import textual_inversion

    root, client = easel.root, easel.client
    save_file({"lora_unet_x.alpha": torch.tensor(1.0)}, str(root / "Lora" / "ink.safetensors"),
              metadata={"ss_network_dim": "4"})
    width = textual_inversion.encoder_widths(easel.shared.models.current)[0]
    _embedding_file(root / "emb" / "fits.safetensors", width, vectors=3)
    _embedding_file(root / "emb" / "too_wide.safetensors", width + 1)
    (root / "emb" / "broken.pt").write_bytes(b"not a tensor file")
    (root / "styles.csv").write_text(STYLES_CSV, encoding="utf-8")

    assert client.post("/sdapi/v1/refresh-loras").status_code == 200
    assert client.get("/sdapi/v1/loras").json() == [
        {"name": "ink", "alias": "ink", "path": str(root / "Lora" / "ink.safetensors"),
         "metadata": {"ss_network_dim": "4"}}]
    assert client.post("/sdapi/v1/refresh-embeddings").status_code == 200
    embeddings = client.get("/sdapi/v1/embeddings").json()
    assert embeddings["loaded"] == {"fits": {"step": None, "sd_checkpoint": None, "sd_checkpoint_name": None,
                                             "shape": width, "vectors": 3}}
    assert set(embeddings["skipped"]) == {"too_wide", "broken"}
    assert embeddings["skipped"]["too_wide"]["shape"] == width + 1
    assert f"takes {width}" in embeddings["skipped"]["too_wide"]["reason"]
    assert embeddings["skipped"]["broken"]["shape"] is None
    assert client.get("/sdapi/v1/prompt-styles").json() == [
        {"name": "Cinematic", "prompt": "film still of {prompt}, grain", "negative_prompt": "cartoon"},
        {"name": "Sharp", "prompt": "sharp focus", "negative_prompt": ""}]
