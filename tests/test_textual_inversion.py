"""Textual-inversion embeddings: file formats, substitution at the token-embedding stage, chunks, skips, infotext."""
from __future__ import annotations

import hashlib
import pickle

import torch
from safetensors.torch import save_file

from modules import paths, processing, shared, text_encoding, textual_inversion
from tests.factories import make_tiny_checkpoint

torch.set_num_threads(1)


def token_vectors(model, words: str, encoder_index: int = 0) -> torch.Tensor:
    """The token embeddings of `words`: an embedding made of them must encode exactly like the words."""
    ids = model.tokenizers[encoder_index](words, add_special_tokens=False)["input_ids"]
    return model.text_encoders[encoder_index].get_input_embeddings().weight[ids].detach().clone()


def test_embedding_word_encodes_like_the_words_its_vectors_come_from(sd1_model, tmp_path):
    torch.save({"string_to_param": {"*": token_vectors(sd1_model, "red ball")}, "name": "ignored", "step": 10},
               tmp_path / "shiny.pt")
    embeddings = textual_inversion.EmbeddingDatabase([tmp_path]).for_model(sd1_model)
    assert list(embeddings.usable) == ["shiny"] and embeddings.usable["shiny"].vector_count == 2
    for prompt, reference in [("a shiny on grass", "a red ball on grass"), ("a (shiny:1.3)", "a (red ball:1.3)")]:
        got = text_encoding.encode_prompts(sd1_model, [prompt], embeddings=embeddings)
        want = text_encoding.encode_prompts(sd1_model, [reference])
        assert torch.allclose(got.embeds, want.embeds, atol=1e-6), prompt
        assert got.embeddings_used == ("shiny",)
    # without the database the word is just a word
    assert not torch.allclose(text_encoding.encode_prompts(sd1_model, ["a shiny on grass"]).embeds,
                              text_encoding.encode_prompts(sd1_model, ["a red ball on grass"]).embeds)


def test_safetensors_emb_params_and_unusable_files(sd1_model, tmp_path):
    save_file({"emb_params": torch.randn(3, 32)}, str(tmp_path / "three.safetensors"))
    save_file({"emb_params": torch.randn(1, 768)}, str(tmp_path / "wide.safetensors"))
    save_file({"clip_l": torch.randn(1, 32), "clip_g": torch.randn(1, 32)}, str(tmp_path / "xl.safetensors"))
    save_file({"something": torch.randn(1, 32)}, str(tmp_path / "odd.safetensors"))

    class Evil:
        def __reduce__(self):
            return (print, ("code ran",))

    (tmp_path / "evil.pt").write_bytes(pickle.dumps({"string_to_param": {"*": Evil()}}))
    embeddings = textual_inversion.EmbeddingDatabase([tmp_path]).for_model(sd1_model)
    assert list(embeddings.usable) == ["three"]
    assert "width 768" in embeddings.skipped["wide"] and "32" in embeddings.skipped["wide"]
    assert "SDXL" in embeddings.skipped["xl"]
    assert "emb_params" in embeddings.skipped["odd"]
    assert "refused" in embeddings.skipped["evil"]


def test_multi_vector_embedding_never_splits_across_chunks(sd1_model, tmp_path):
    save_file({"emb_params": torch.randn(5, 32)}, str(tmp_path / "five.safetensors"))
    embeddings = textual_inversion.EmbeddingDatabase([tmp_path]).for_model(sd1_model)
    tokenizer = sd1_model.tokenizers[0]
    lookup = embeddings.lookup(tokenizer, 0)
    prompt = " ".join(["cat"] * 72) + " five dog"      # 72 tokens, then 5 vectors would cross position 75
    chunks, count = text_encoding.tokenize_chunks(tokenizer, prompt, tokenizer.eos_token_id, embeddings=lookup)
    assert len(chunks) == 2 and count == 72 + 5 + 1
    assert chunks[0].fixes == [] and [(at, name) for at, _, name in chunks[1].fixes] == [(1, "five")]
    assert chunks[1].tokens[1:6] == [text_encoding.EMBEDDING_PLACEHOLDER] * 5
    encoded = text_encoding.encode_prompts(sd1_model, [prompt], embeddings=embeddings)
    assert encoded.embeds.shape[1] == 154


def test_sdxl_embedding_gives_each_encoder_its_vectors(tmp_path):
    from modules import sd_models

    model = sd_models.load_model(str(make_tiny_checkpoint(tmp_path, "sdxl")), torch.device("cpu"), torch.float32)
    save_file({"clip_l": token_vectors(model, "red ball", 0), "clip_g": token_vectors(model, "red ball", 1)},
              str(tmp_path / "shiny.safetensors"))
    embeddings = textual_inversion.EmbeddingDatabase([tmp_path]).for_model(model)
    got = text_encoding.encode_prompts(model, ["a shiny"], embeddings=embeddings)
    want = text_encoding.encode_prompts(model, ["a red ball"])
    assert torch.allclose(got.embeds, want.embeds, atol=1e-6) and torch.allclose(got.pooled, want.pooled, atol=1e-6)


def test_job_uses_embeddings_folder_writes_ti_hashes_and_warns_on_skipped(sd1_model, tmp_path, monkeypatch):
    folder = tmp_path / "embeddings"
    folder.mkdir()
    torch.save({"string_to_param": {"*": token_vectors(sd1_model, "red ball")}}, folder / "shiny.pt")
    save_file({"emb_params": torch.randn(1, 768)}, str(folder / "wide.safetensors"))
    monkeypatch.setattr(shared, "paths", paths.Paths(repo=paths.repo_root(), data_dir=tmp_path,
                                                     models_dir=tmp_path / "models"))

    def run(prompt):
        return processing.process_images(processing.StableDiffusionProcessingTxt2Img(
            sd_model=sd1_model, prompt=prompt, width=64, height=64, steps=2, seed=1, sampler_name="Euler",
            do_not_save_samples=True))

    with_embedding, with_words = run("a shiny, wide"), run("a red ball, wide")
    assert torch.allclose(with_embedding.latents[0], with_words.latents[0], atol=1e-5)
    digest = hashlib.sha256((folder / "shiny.pt").read_bytes()).hexdigest()[:12]
    assert f'TI hashes: "shiny: {digest}"' in with_embedding.infotexts[0]
    assert "TI hashes" not in with_words.infotexts[0]
    assert any("'wide' was not used" in w and "768" in w for w in with_embedding.warnings)


def test_token_counter_counts_embedding_vectors(sd1_model, tmp_path):
    save_file({"emb_params": torch.randn(6, 32)}, str(tmp_path / "six.safetensors"))
    embeddings = textual_inversion.EmbeddingDatabase([tmp_path]).for_model(sd1_model)
    assert text_encoding.count_tokens(sd1_model, "a six") == (2, 75)          # "six" is just a word
    assert text_encoding.count_tokens(sd1_model, "a six", embeddings) == (7, 75)
