"""Quiet padding (training/quiet_padding.py): which states are padding, and a loss that makes
the padding forget the caption while the words keep it."""
import pytest
import torch

from training.quiet_padding import padding_loss, padding_mask
from training.train_demo import build_models, load_tokenizer


def _ids(tokenizer, captions):
    return tokenizer(captions, padding="max_length", max_length=77, return_tensors="pt").input_ids


def test_padding_is_everything_after_the_first_end_of_text_token():
    tokenizer = load_tokenizer()
    ids = _ids(tokenizer, ["a red circle", ""])
    mask = padding_mask(ids, tokenizer.eos_token_id)
    # "a red circle": BOS, 3 words, EOT at 4, padding from 5; the empty caption: BOS, EOT, padding from 2
    assert mask[0].nonzero().flatten().tolist() == list(range(5, 77))
    assert mask[1].nonzero().flatten().tolist() == list(range(2, 77))
    no_eot = torch.ones(1, 77, dtype=torch.long)
    assert not padding_mask(no_eot, tokenizer.eos_token_id).any()


def test_the_loss_compares_padding_only():
    tokenizer = load_tokenizer()
    ids = _ids(tokenizer, ["a red circle"])
    empty = torch.randn(1, 77, 8)
    states = empty.clone()
    states[0, :5] += 3.0                       # the words and end-of-text differ: not padding
    assert padding_loss(states, ids, empty, tokenizer.eos_token_id) == 0
    states[0, 5:] += 0.5
    assert torch.isclose(padding_loss(states, ids, empty, tokenizer.eos_token_id), torch.tensor(0.25))


def test_training_on_it_moves_the_colour_out_of_the_padding_while_the_words_keep_it():
    """As in training: another loss needs the colour (here a classifier on the colour word's
    state, standing in for the diffusion loss), and this one keeps it out of the padding."""
    tokenizer = load_tokenizer()
    torch.manual_seed(0)
    _, _, text_encoder = build_models(0)
    ids = _ids(tokenizer, ["a red circle", "a blue circle"])
    eot, colour = tokenizer.eos_token_id, 2   # the colour word follows "a"
    head = torch.nn.Linear(text_encoder.config.hidden_size, 2)

    def gaps():
        with torch.no_grad():
            states = text_encoder(ids).last_hidden_state
        return ((states[0, 20] - states[1, 20]).norm().item(),           # padding of red vs blue
                (states[0, colour] - states[1, colour]).norm().item())   # the colour word itself

    padding_before, word_before = gaps()
    opt = torch.optim.Adam([*text_encoder.parameters(), *head.parameters()], lr=1e-3)
    for _ in range(30):
        with torch.no_grad():
            empty = text_encoder(_ids(tokenizer, [""])).last_hidden_state
        states = text_encoder(ids).last_hidden_state
        loss = (padding_loss(states, ids, empty, eot)
                + torch.nn.functional.cross_entropy(head(states[:, colour]), torch.tensor([0, 1])))
        opt.zero_grad()
        loss.backward()
        opt.step()
    padding_after, word_after = gaps()
    assert padding_after < 0.2 * padding_before
    assert word_after > 0.5 * word_before


def test_the_colourless_target_is_the_captions_own_padding_without_its_colours():
    from training.quiet_padding import align_padding, without_colours

    assert without_colours("a small cyan star and a gray cross on a red to blue gradient background") == \
        "a small star and a cross on a to gradient background"
    assert without_colours("a large ring, white") == "a large ring,"
    assert without_colours("") == ""

    tokenizer = load_tokenizer()
    _, _, text_encoder = build_models(0)
    eot = tokenizer.eos_token_id
    captions = ["a red circle and a cyan star", "a large square"]
    ids = _ids(tokenizer, captions)
    stripped = _ids(tokenizer, [without_colours(c) for c in captions])
    with torch.no_grad():
        states = text_encoder(ids).last_hidden_state
        target = text_encoder(stripped).last_hidden_state
    aligned = align_padding(target, stripped, ids, eot)
    # "a red circle and a cyan star": 8 tokens ("cyan" is two) and the end-of-text, padding from 10;
    # "a circle and a star": padding from 7, so the target's state 7 faces the caption's 10
    assert torch.equal(aligned[0, 10], target[0, 7]) and torch.equal(aligned[0, 76], target[0, 73])
    assert torch.equal(aligned[1], target[1])   # nothing to take out: the caption's own padding
    assert padding_loss(states[1:], ids[1:], aligned[1:], eot) == 0
    assert padding_loss(states, ids, aligned, eot) > 0
    with pytest.raises(ValueError, match="longer"):
        align_padding(states, ids, stripped, eot)
