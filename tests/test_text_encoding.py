import os
from types import SimpleNamespace

import pytest
import torch
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

from modules import text_encoding as te
from modules.prompt_parser import parse_prompt_attention

torch.set_num_threads(1)

TOKENIZER_DIR = os.path.join(os.path.dirname(__file__), "..", "configs", "clip-tokenizer")
START, END = 49406, 49407


def tokenizer(pad="<|endoftext|>"):
    return CLIPTokenizer(vocab=os.path.join(TOKENIZER_DIR, "vocab.json"),
                         merges=os.path.join(TOKENIZER_DIR, "merges.txt"), pad_token=pad, model_max_length=77)


def realistic(encoder):
    """Random init leaves the final norm's bias at 0, so embeddings average ~0 and the mean
    restore of emphasis divides by ~0; trained CLIP encoders have a bias. Give them one."""
    with torch.no_grad():
        norm = getattr(encoder, "text_model", encoder).final_layer_norm
        norm.bias.copy_(0.3 + 0.1 * torch.randn_like(norm.bias))
    return encoder.eval()


def tiny_config(hidden=32, projection=None):
    return CLIPTextConfig(vocab_size=49408, hidden_size=hidden, intermediate_size=37, num_hidden_layers=3,
                          num_attention_heads=4, max_position_embeddings=77, bos_token_id=START,
                          eos_token_id=END, pad_token_id=1, projection_dim=projection or hidden)


@pytest.fixture(scope="module")
def sd1():
    torch.manual_seed(0)
    encoder = realistic(CLIPTextModel(tiny_config()))
    return SimpleNamespace(family=SimpleNamespace(id="sd1", conditioning="clip"), text_encoders=[encoder],
                           tokenizers=[tokenizer()], device=torch.device("cpu"), dtype=torch.float32)


@pytest.fixture(scope="module")
def sdxl():
    torch.manual_seed(1)
    enc1 = realistic(CLIPTextModel(tiny_config(32)))
    enc2 = realistic(CLIPTextModelWithProjection(tiny_config(48, projection=16)))
    return SimpleNamespace(family=SimpleNamespace(id="sdxl", conditioning="sdxl"), text_encoders=[enc1, enc2],
                           tokenizers=[tokenizer(), tokenizer("!")], device=torch.device("cpu"),
                           dtype=torch.float32)


def test_parse_prompt_attention_reference_example():
    got = parse_prompt_attention("a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).")
    expected = [["a ", 1.0], ["house", 1.573], [" ", 1.1], ["on", 1.0], [" a ", 1.1], ["hill", 0.55],
                [", sun, ", 1.1], ["sky", 1.4641], [".", 1.1]]
    assert [t for t, _ in got] == [t for t, _ in expected]
    assert [w for _, w in got] == pytest.approx([w for _, w in expected])


@pytest.mark.parametrize("text,expected", [
    ("plain", [["plain", 1.0]]),
    ("[x]", [["x", 1 / 1.1]]),
    ("((x))", [["x", 1.21]]),
    (r"\(x\) and \[y\]", [["(x) and [y]", 1.0]]),
    ("a (b", [["a ", 1.0], ["b", 1.1]]),
    ("(a:0.5) (b:0.5)", [["a", 0.5], [" ", 1.0], ["b", 0.5]]),
    ("a BREAK b", [["a", 1.0], ["BREAK", -1], ["b", 1.0]]),
    ("", [["", 1.0]]),
])
def test_parse_prompt_attention_rules(text, expected):
    got = parse_prompt_attention(text)
    assert [t for t, _ in got] == [t for t, _ in expected]
    assert [w for _, w in got] == pytest.approx([w for _, w in expected])


def test_clean_prompt_text():
    assert te.clean_prompt_text("a  &amp;\n\tb  ") == "a & b"
    assert te.clean_prompt_text("cafÃ©") == "café"  # mojibake fixed by ftfy


def test_short_prompt_equals_a_direct_text_encoder_call(sd1):
    """What a diffusers StableDiffusionPipeline computes for the same prompt."""
    tok, enc = sd1.tokenizers[0], sd1.text_encoders[0]
    ids = tok("a photo of a cat", padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids
    with torch.no_grad():
        expected = enc(ids)[0]
    cond = te.encode_prompts(sd1, ["a photo of a cat"])
    assert cond.embeds.shape == (1, 77, 32) and cond.pooled is None
    assert torch.allclose(cond.embeds, expected, atol=1e-6)


def test_chunks_of_a_1000_token_prompt(sd1):
    prompt = " ".join(["cat"] * 1000)
    chunks, count = te.tokenize_chunks(sd1.tokenizers[0], prompt, pad_id=END)
    assert count == 1000
    assert len(chunks) == 14  # 13 full chunks + 25 tokens
    for c in chunks:
        assert len(c.tokens) == 77 and c.tokens[0] == START and c.tokens[-1] == END
    assert chunks[-1].tokens[1:26] == [2368] * 25 and chunks[-1].tokens[26:] == [END] * 51
    assert te.count_tokens(sd1, prompt) == (1000, 1050)
    assert te.count_tokens(sd1.tokenizers[0], "a cat") == (2, 75)
    cond = te.encode_prompts(sd1, [prompt])
    assert cond.embeds.shape == (1, 77 * 14, 32) and cond.chunks == 14


def test_comma_backtrack_moves_text_after_the_last_comma(sd1):
    tok = sd1.tokenizers[0]
    prompt = " ".join(["cat"] * 70) + ", " + " ".join(["dog"] * 10)
    chunks, count = te.tokenize_chunks(tok, prompt, pad_id=END)
    cat, dog, comma = 2368, 1929, 267
    assert count == 81 and len(chunks) == 2
    assert chunks[0].tokens[1:72] == [cat] * 70 + [comma] and chunks[0].tokens[72:] == [END] * 5
    assert chunks[1].tokens[1:11] == [dog] * 10


def test_comma_further_back_than_20_tokens_does_not_move_text(sd1):
    prompt = " ".join(["cat"] * 50) + ", " + " ".join(["dog"] * 40)
    chunks, _ = te.tokenize_chunks(sd1.tokenizers[0], prompt, pad_id=END)
    assert chunks[0].tokens[52:76] == [1929] * 24  # filled to 75 with dogs
    assert chunks[1].tokens[1:17] == [1929] * 16


def test_break_starts_a_new_chunk(sd1):
    chunks, count = te.tokenize_chunks(sd1.tokenizers[0], "a cat BREAK a dog", pad_id=END)
    assert count == 4 and len(chunks) == 2
    assert chunks[0].tokens[:4] == [START, 320, 2368, END]
    assert chunks[1].tokens[:4] == [START, 320, 1929, END]
    assert te.count_tokens(sd1, "a cat BREAK a dog") == (4, 150)


def test_openclip_pads_with_zero_after_the_end_token():
    chunks, _ = te.tokenize_chunks(tokenizer("!"), "a cat", pad_id=0)
    assert chunks[0].tokens[:5] == [START, 320, 2368, END, 0]
    assert chunks[0].tokens[-1] == 0 and len(chunks[0].tokens) == 77


def test_pad_id_comes_from_model_then_tokenizer(sd1):
    assert te._pad_ids(sd1) == [END]
    sd2 = SimpleNamespace(**{**vars(sd1), "tokenizers": [tokenizer("!")], "family": SimpleNamespace(id="sd2")})
    assert te._pad_ids(sd2) == [0]
    forced = SimpleNamespace(**{**vars(sd1), "pad_token_id": 0})
    assert te._pad_ids(forced) == [0]


def test_emphasis_scales_the_token_and_keeps_the_mean(sd1):
    plain = te.encode_prompts(sd1, ["a cat"]).embeds
    weighted = te.encode_prompts(sd1, ["a (cat:1.5)"]).embeds
    assert torch.allclose(weighted.mean(), plain.mean(), atol=1e-6)
    ratio_other = weighted[0, 1] / plain[0, 1]    # "a": weight 1, only the mean correction
    ratio_cat = weighted[0, 2] / plain[0, 2]      # "cat": weight 1.5
    c = ratio_other.mean()
    assert torch.allclose(ratio_other, torch.full_like(ratio_other, c), atol=1e-5)
    assert torch.allclose(ratio_cat, torch.full_like(ratio_cat, 1.5 * c), atol=1e-5)
    down = te.encode_prompts(sd1, ["a [cat]"]).embeds
    assert ((down[0, 2] / plain[0, 2]) / (down[0, 1] / plain[0, 1])).mean() == pytest.approx(1 / 1.1, rel=1e-4)


def test_emphasis_modes(sd1):
    plain = te.encode_prompts(sd1, ["a cat"]).embeds
    assert torch.allclose(te.encode_prompts(sd1, ["a (cat:1.5)"], emphasis="Ignore").embeds, plain)
    no_norm = te.encode_prompts(sd1, ["a (cat:1.5)"], emphasis="No norm").embeds
    assert torch.allclose(no_norm[0, 2], plain[0, 2] * 1.5, atol=1e-6)
    with pytest.raises(ValueError, match="emphasis"):
        te.encode_prompts(sd1, ["a"], emphasis="Loud")


def test_clip_skip_uses_an_earlier_layer_and_the_final_norm(sd1):
    tok, enc = sd1.tokenizers[0], sd1.text_encoders[0]
    ids = tok("a cat", padding="max_length", max_length=77, return_tensors="pt").input_ids
    with torch.no_grad():
        out = enc(ids, output_hidden_states=True)
        expected = enc.final_layer_norm(out.hidden_states[-2])
    skipped = te.encode_prompts(sd1, ["a cat"], clip_skip=2).embeds
    assert torch.allclose(skipped, expected, atol=1e-6)
    assert not torch.allclose(skipped, te.encode_prompts(sd1, ["a cat"], clip_skip=1).embeds)
    with pytest.raises(ValueError, match="clip_skip"):
        te.encode_prompts(sd1, ["a cat"], clip_skip=9)


def test_batch_rows_equal_single_prompts_and_short_ones_get_empty_chunks(sd1):
    long_prompt = " ".join(["cat"] * 100)
    batch = te.encode_prompts(sd1, ["a dog", long_prompt])
    alone = te.encode_prompts(sd1, ["a dog"])
    empty = te.encode_prompts(sd1, [""])
    assert batch.embeds.shape == (2, 154, 32)
    assert torch.allclose(batch.embeds[0, :77], alone.embeds[0], atol=1e-5)
    assert torch.allclose(batch.embeds[0, 77:], empty.embeds[0], atol=1e-5)
    assert torch.allclose(batch.embeds[1], te.encode_prompts(sd1, [long_prompt]).embeds[0], atol=1e-5)


def test_pad_to_same_length_repeats_the_empty_chunk(sd1):
    cond = te.encode_prompts(sd1, [" ".join(["cat"] * 160)])   # 3 chunks
    uncond = te.encode_prompts(sd1, ["blurry"])
    a, b = te.pad_to_same_length(cond, uncond)
    assert a.embeds.shape == b.embeds.shape == (1, 231, 32)
    assert a is cond
    empty = te.encode_prompts(sd1, [""]).embeds
    assert torch.allclose(b.embeds[:, :77], uncond.embeds)
    assert torch.allclose(b.embeds[:, 77:154], empty, atol=1e-6)
    assert torch.allclose(b.embeds[:, 154:], empty, atol=1e-6)


def test_sdxl_concatenates_penultimate_states_and_pools_encoder_two(sdxl):
    cond = te.encode_prompts(sdxl, ["a photo of a cat"])
    assert cond.embeds.shape == (1, 77, 80) and cond.pooled.shape == (1, 16)
    enc1, enc2 = sdxl.text_encoders
    ids1 = sdxl.tokenizers[0]("a photo of a cat", padding="max_length", max_length=77, return_tensors="pt").input_ids
    ids2 = sdxl.tokenizers[1]("a photo of a cat", padding="max_length", max_length=77, return_tensors="pt").input_ids
    assert ids2[0, -1] == 0  # diffusers' SDXL tokenizer_2 pads with "!" = 0, as Easel does
    with torch.no_grad():
        h1 = enc1(ids1, output_hidden_states=True).hidden_states[-2]
        out2 = enc2(ids2, output_hidden_states=True)
    assert torch.allclose(cond.embeds, torch.cat([h1, out2.hidden_states[-2]], dim=-1), atol=1e-6)
    assert torch.allclose(cond.pooled, out2.text_embeds, atol=1e-6)

    long_cond = te.encode_prompts(sdxl, ["a photo of a cat BREAK in a hat"])
    assert long_cond.embeds.shape == (1, 154, 80)
    assert torch.allclose(long_cond.pooled, te.encode_prompts(sdxl, ["a photo of a cat"]).pooled, atol=1e-6)


def test_bad_model_family_is_named(sd1):
    odd = SimpleNamespace(**{**vars(sd1), "family": SimpleNamespace(id="x", conditioning="t5")})
    with pytest.raises(ValueError, match="conditioning"):
        te.encode_prompts(odd, ["a"])
