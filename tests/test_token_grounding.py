"""Token grounding (training/token_grounding.py): which tokens belong to which object, object
coverage from the dataset, and a loss that is low exactly when an object's words attend to it."""
import numpy as np
import pytest
import torch

from training.shapes_dataset import COLOURS, ShapesDataset, object_coverage
from training.token_grounding import BACKGROUND, TokenGrounding, record_cross_attention
from training.train_demo import build_models, load_tokenizer


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer()


def _grounded_words(tokenizer, captions, background=False, shape_nouns=True):
    ids = tokenizer(captions, padding="max_length", max_length=77, return_tensors="pt").input_ids
    objects = TokenGrounding(tokenizer, background, shape_nouns).token_objects(ids, captions)
    return [[(tokenizer.decode([int(t)]), int(k)) for t, k in zip(row, ks) if k >= 0] for row, ks in zip(ids, objects)]


def test_each_object_takes_its_own_colour_word_and_noun(tokenizer):
    words = _grounded_words(tokenizer, [
        "a cyan triangle and a purple triangle on a red background",   # same noun twice; "cyan" is two tokens
        "a large star, red in the bottom",                             # colour after the noun
        "top left: a small pink ring on a blue and white striped background",
        ""])                                                           # a caption dropped for CFG
    assert words[0] == [("cy", 0), ("an", 0), ("triangle", 0), ("purple", 1), ("triangle", 1)]
    assert words[1] == [("star", 0), ("red", 0)]
    assert words[2] == [("pink", 0), ("ring", 0)]   # background colours are not the object's
    assert words[3] == []


def test_with_background_on_the_backgrounds_words_are_its_own(tokenizer):
    words = _grounded_words(tokenizer, [
        "a cyan triangle and a purple triangle on a red background",
        "top left: a small pink ring on a blue and white striped background",
        "a red circle on a red to blue gradient background in the top",   # the object's colour named twice
        "a small star, green",                                            # no background named
        ""], background=True)
    assert words[0] == [("cy", 0), ("an", 0), ("triangle", 0), ("purple", 1), ("triangle", 1),
                        ("red", BACKGROUND), ("background", BACKGROUND)]
    assert words[1] == [("pink", 0), ("ring", 0)] + [(w, BACKGROUND) for w in
                                                     ("blue", "and", "white", "striped", "background")]
    assert words[2] == [("red", 0), ("circle", 0)] + [(w, BACKGROUND) for w in
                                                      ("red", "to", "blue", "gradient", "background")]
    assert words[3] == [("star", 0), ("green", 0)]
    assert words[4] == []


def test_without_shape_nouns_only_the_colour_words_are_grounded(tokenizer):
    words = _grounded_words(tokenizer, [
        "a red square and a red circle on a blue background",   # the same colour twice: one each
        "a large star, green in the bottom",
        ""], background=True, shape_nouns=False)
    assert words[0] == [("red", 0), ("red", 1), ("blue", BACKGROUND), ("background", BACKGROUND)]
    assert words[1] == [("green", 0)]
    assert words[2] == []


def test_coverage_is_where_the_dataset_drew_each_object():
    ds = ShapesDataset(seed=3)
    for index in range(40):
        sample = ds.sample(index)
        cover = object_coverage(sample.objects)
        image = np.asarray(sample.image, np.float32)
        for k, obj in enumerate(sample.objects):
            inside = cover[k] > 0.99
            assert inside.sum() > 30
            assert np.abs(image[inside] - COLOURS[obj.colour]).max() <= 1, (sample.caption, k)
        if len(sample.objects) == 1:
            assert not cover[1].any()
    images, captions, batch_cover = ds.batch(0, 4, coverage=True)
    assert np.array_equal(images, ds.batch(0, 4)[0]) and batch_cover.shape == (4, 2, 64, 64)


def _tiny_unet_and_text():
    unet, _, text_encoder = build_models(0)
    return unet, text_encoder


def test_recording_keeps_the_unets_output_and_records_every_cross_attention(tokenizer):
    unet, text_encoder = _tiny_unet_and_text()
    ids = tokenizer(["a red circle"] * 2, padding="max_length", max_length=77, return_tensors="pt").input_ids
    context = text_encoder(ids).last_hidden_state
    latents, t = torch.randn(2, 4, 32, 32), torch.tensor([10, 900])
    with torch.no_grad():
        plain = unet(latents, t, encoder_hidden_states=context).sample
        maps = record_cross_attention(unet)
        recorded = unet(latents, t, encoder_hidden_states=context).sample
    assert torch.equal(plain, recorded)
    sides = sorted(int(round(probs.shape[1] ** 0.5)) for _, probs in maps)
    assert sides == [4] * 4 + [8] * 3 + [16] * 3   # one per down block, the mid block, two per up block
    heads, probs = maps[0]
    assert probs.shape[0] == 2 * heads and probs.shape[2] == 77
    assert torch.allclose(probs.sum(-1), torch.ones(()), atol=1e-5)


def test_the_loss_is_low_when_the_words_attend_inside_their_object_and_trains_both_models(tokenizer):
    grounding = TokenGrounding(tokenizer)
    captions = ["a red circle and a blue square"]
    ids = tokenizer(captions, padding="max_length", max_length=77, return_tensors="pt").input_ids
    token_objects = grounding.token_objects(ids, captions)
    cover = torch.zeros(1, 2, 64, 64)
    cover[0, 0, :, :32] = 1   # first object: left half
    cover[0, 1, :, 32:] = 1   # second: right half

    def maps_attending(left_tokens_left: bool):
        probs = torch.full((1, 16, 16, 77), 1e-6)
        for p, k in enumerate(token_objects[0].tolist()):
            if k >= 0:
                goes_left = (k == 0) == left_tokens_left
                probs[0, :, :8, p] = 1.0 if goes_left else 1e-6
                probs[0, :, 8:, p] = 1e-6 if goes_left else 1.0
        probs = probs / probs.sum(-1, keepdim=True)
        return [(1, probs.flatten(1, 2))]

    assert grounding.loss(maps_attending(True), token_objects, cover) < 1e-4
    assert grounding.loss(maps_attending(False), token_objects, cover) > 0.99

    unet, text_encoder = _tiny_unet_and_text()
    maps = record_cross_attention(unet)
    unet(torch.randn(1, 4, 32, 32), torch.tensor([500]), encoder_hidden_states=text_encoder(ids).last_hidden_state)
    loss = grounding.loss(maps, token_objects, cover)
    loss.backward()
    assert 0 < loss.item() < 1
    assert text_encoder.embeddings.token_embedding.weight.grad.abs().sum() > 0
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for n, p in unet.named_parameters() if "attn2.to_q" in n)


def test_background_words_are_low_only_where_no_object_is(tokenizer):
    grounding = TokenGrounding(tokenizer, background=True)
    captions = ["a red circle on a blue background"]
    ids = tokenizer(captions, padding="max_length", max_length=77, return_tensors="pt").input_ids
    token_objects = grounding.token_objects(ids, captions)
    cover = torch.zeros(1, 2, 64, 64)
    cover[0, 0, :32, :32] = 1   # the circle fills the top-left quarter; the rest is background

    def maps_with_background_words_on(top_left: bool):
        probs = torch.full((1, 16, 16, 77), 1e-6)
        probs[..., 0] = 1.0   # pixels nothing names attend to the start token, as trained models do
        for p, k in enumerate(token_objects[0].tolist()):
            if k >= 0:
                where = torch.zeros(16, 16, dtype=torch.bool)
                where[:8, :8] = True
                if k == BACKGROUND and not top_left:
                    where = ~where
                probs[0, :, :, p] = torch.where(where, 1.0, 1e-6)
        probs = probs / probs.sum(-1, keepdim=True)
        return [(1, probs.flatten(1, 2))]

    assert grounding.loss(maps_with_background_words_on(False), token_objects, cover) < 1e-4
    # the object's two words stay grounded, the background's two attend inside the object
    assert grounding.loss(maps_with_background_words_on(True), token_objects, cover) > 0.49


def test_exclusive_grounding_only_keeps_each_objects_words_off_the_other_object(tokenizer):
    grounding = TokenGrounding(tokenizer, exclusive=True)
    captions = ["a red circle and a blue square", "a green star"]
    ids = tokenizer(captions, padding="max_length", max_length=77, return_tensors="pt").input_ids
    token_objects = grounding.token_objects(ids, captions)
    cover = torch.zeros(2, 2, 64, 64)
    cover[0, 0, :, :16] = 1    # first object: the left quarter
    cover[0, 1, :, 48:] = 1    # second: the right quarter; the middle half is background
    cover[1, 0, 16:48, 16:48] = 1   # the one-object image: no other object, so nothing to keep off

    def maps(where) -> list:
        """Each object token of image 0 attends where(k) says (a column slice of the 16x16 map);
        image 1's tokens attend to its other half, which must not count."""
        probs = torch.full((2, 16, 16, 77), 1e-6)
        probs[..., 0] = 1.0   # pixels nothing names attend to the start token, as trained models do
        for p, k in enumerate(token_objects[0].tolist()):
            if k >= 0:
                probs[0, :, where(k), p] = 1.0
        for p, k in enumerate(token_objects[1].tolist()):
            if k >= 0:
                probs[1, :, :, p] = 1.0
        probs = probs / probs.sum(-1, keepdim=True)
        return [(1, probs.flatten(1, 2))]

    own = lambda k: slice(0, 4) if k == 0 else slice(12, 16)
    other = lambda k: slice(12, 16) if k == 0 else slice(0, 4)
    assert grounding.loss(maps(own), token_objects, cover) < 1e-4
    # the background is free: words spread over their object and the middle cost nothing
    assert grounding.loss(maps(lambda k: slice(0, 12) if k == 0 else slice(4, 16)), token_objects, cover) < 1e-4
    assert grounding.loss(maps(other), token_objects, cover) > 0.99
    # the whole image: each word gives both objects the same
    assert abs(grounding.loss(maps(lambda k: slice(0, 16)), token_objects, cover) - 0.5) < 1e-3
    # no way out through the background: words that ignore both objects are not kept off either
    assert abs(grounding.loss(maps(lambda k: slice(6, 10)), token_objects, cover) - 0.5) < 1e-3


def test_exclusive_grounding_has_no_background_slot(tokenizer):
    with pytest.raises(ValueError, match="background"):
        TokenGrounding(tokenizer, background=True, exclusive=True)
