"""Token grounding for the demo model: each object's words attend to that object's pixels.

Why: the demo model (run demo16) drew two objects for "a green star and a black
cross", but both came out in one colour (two-object prompts: colour 22%,
shape 3%). Its cross-attention reads "green" and
"black" all over the image, so each object takes a mixture of both words.
The training images are drawn procedurally, so the exact pixels of every
object are known. This loss asks the U-Net's cross-attention maps of an
object's colour word and shape noun to fall inside that object, the grounding
term of TokenCompose (Wang et al., CVPR 2024: for a token's attention map A
and the object's mask M, (1 - sum(A * M) / sum(A))^2), with soft masks
averaged down to each attention resolution.

Training only: a recorder wraps diffusers' classic attention processor to
keep the cross-attention probabilities; the exported model is unchanged.

Measured (run demo11, weight 0.02, docs/demo-model.md): the attention did
what was asked (grounding loss 0.75-0.86 -> 0.15-0.41), the images did not.
Two-object colour went from 22% to 33%, and the background from 100% to 33%:
it came out as a mixture of its colour and the object's. Grounding the background's
words as well, with the padding kept quiet (training/quiet_padding.py, run demo12):
background 85%, colour 97%, two-object colour 86%, but shape 36%. Grounding the
colour words only (run demo15) still lost the shapes (50%). Off by default. Run
demo16 grounds the colour and background words only in a last phase of
600 steps, once the shapes are learned (train_demo --grounding-steps): the shapes
stay, and two-object colour stays at 22%.

`exclusive=True` asks less: of the attention an object's words give to the two
objects, the share on the *other* object should be 0. How much goes to the
background, and how much to their own object against the other words, stays
free. It only acts on two-object images, so a one-object image (nine in ten of
the evaluation) gets no pull on its attention: the grounding above pulled the
colour word's attention onto the filled object, where it took the mass the shape
noun needs for the outline (the likely reason runs demo11-15 lost shapes).
A first form, the share of all the word's attention that falls on the other
object, had an easy way out: within 150 steps of a run from scratch the words
attended to the background only (share on their own object 0.1%, measured at
step 462), which keeps them off the other object and binds nothing. Dividing by
the attention on both objects closes it: a word that ignores both objects
scores the two objects' area ratio, not 0.
Measured (run demo21, shipped: demo16 fine-tuned 400 steps with it, weight 0.05):
two-object colour 22% -> 50%, colour 87% -> 92%, shape 75% -> 79%, size 92% -> 87%.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import AttnProcessor

from training.caption_heads import word_ids
from training.shapes_dataset import COLOURS, SHAPES, parse_prompt_meta

# Every cross-attention layer of the demo U-Net (16x16, 8x8 and 4x4) is grounded: at 4x4 a small
# object covers parts of a few cells, and the soft mask still says which half of the image it is in.
MIN_SIDE = 4
# token_objects' index for the background's words (objects are 0 and 1, in caption order)
BACKGROUND = 2


class _RecordingAttention:
    """Stands in for an Attention module inside AttnProcessor: everything is the module's own,
    except that the attention probabilities it computes are also kept."""

    def __init__(self, attn, maps: list):
        self._attn, self._maps = attn, maps

    def __getattr__(self, name):
        return getattr(self._attn, name)

    def get_attention_scores(self, query, key, attention_mask=None):
        probs = self._attn.get_attention_scores(query, key, attention_mask)
        self._maps.append((self._attn.heads, probs))
        return probs


class _RecordingProcessor(AttnProcessor):
    """diffusers' classic processor; cross-attention calls record their probabilities."""

    def __init__(self, maps: list):
        super().__init__()
        self.maps = maps

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None,
                 *args, **kwargs):
        if encoder_hidden_states is not None:
            attn = _RecordingAttention(attn, self.maps)
        return super().__call__(attn, hidden_states, encoder_hidden_states, attention_mask, temb)


def record_cross_attention(unet) -> list:
    """Install recording processors on every attention layer of `unet` (same maths as
    AttnProcessor); returns the list the maps land in: (heads, (batch*heads, pixels, tokens))
    per cross-attention call. Clear it before each forward pass."""
    maps: list = []
    unet.set_attn_processor(_RecordingProcessor(maps))
    return maps


class TokenGrounding:
    """Which token positions belong to which object, and the grounding loss over recorded maps."""

    def __init__(self, tokenizer, background: bool = False, shape_nouns: bool = True, exclusive: bool = False):
        if exclusive and background:
            raise ValueError("exclusive grounding keeps each object's words off the other object; "
                             "the background's words have no other object (use background=False)")
        self.exclusive = exclusive
        # a colour may be several BPE tokens ("cyan"); each of them is grounded
        self._words = {word: word_ids(tokenizer, word) for word in (*COLOURS, *SHAPES)}
        # Without shape nouns only the colour words are grounded. A filled mask says where an
        # object is, not its outline: runs demo12/13 grounded the nouns with the padding quiet,
        # and circles and stars came out as blobs (docs/demo-model.md).
        self.shape_nouns = shape_nouns
        # With background on, the words of "on a {colour} [and|to {colour}] [striped|gradient]
        # background" are grounded too, onto the pixels no object covers (slot BACKGROUND).
        self.background = background
        self._on = word_ids(tokenizer, "on")
        self._background_word = word_ids(tokenizer, "background")

    def token_objects(self, ids: torch.Tensor, captions: list[str]) -> torch.Tensor:
        """(batch, tokens) long: the index of the object (0 or 1, caption order) whose colour word
        or (with shape_nouns) shape noun the token is part of, BACKGROUND for the background's words when grounded;
        -1 elsewhere. Each object takes the first unused
        occurrence of its words, so "a red square and a blue square" grounds each "square" apart."""
        out = torch.full(ids.shape, -1, dtype=torch.long)
        for b, (row, caption) in enumerate(zip(ids.tolist(), captions)):
            meta = parse_prompt_meta(caption)   # a dropped caption ("") names nothing
            used: set[int] = set()
            if self.background:
                span = self._background_span(row)
                used.update(span)
                out[b, list(span)] = BACKGROUND
            for k, words in enumerate(zip(meta["colours"][:2], meta["shapes"][:2])):
                for word in words if self.shape_nouns else words[:1]:
                    run = self._words[word]
                    for p in range(1, len(row) - len(run) + 1):
                        span = range(p, p + len(run))
                        if tuple(row[p:p + len(run)]) == run and not used.intersection(span):
                            used.update(span)
                            out[b, list(span)] = k
                            break
        return out

    def _background_span(self, row: list[int]) -> range:
        """Token positions from the word after the last "on" before "background" through
        "background" itself (the colours, "and"/"to", the pattern word); empty if none."""
        n = len(self._background_word)
        end = next((p for p in range(len(row) - n, 0, -1) if tuple(row[p:p + n]) == self._background_word), None)
        if end is None:
            return range(0)
        start = next((p + len(self._on) for p in range(end - 1, 0, -1)
                      if tuple(row[p:p + len(self._on)]) == self._on), None)
        if start is None:
            return range(0)
        # skip the article: "on a red background" grounds "red background"
        return range(start + 1, end + n)

    def loss(self, maps: list, token_objects: torch.Tensor, coverage: torch.Tensor) -> torch.Tensor:
        """Mean over grounded tokens and attention layers of (1 - attention inside the object)^2,
        or with exclusive, of the other object's share of the attention on both objects.

        maps: recorded (heads, probs) pairs; token_objects: (batch, tokens) from token_objects;
        coverage: (batch, objects, H, W) pixel coverage of each object in [0, 1]."""
        if not maps:
            return torch.zeros(())
        device = maps[0][1].device
        coverage = coverage.to(device)
        picked = (token_objects >= 0).to(device)
        index = token_objects.clamp(min=0).to(device)
        if self.exclusive:   # only two-object images, and only the objects' words
            present = coverage.flatten(2).amax(-1) > 0                          # (batch, objects)
            picked = picked & (token_objects < BACKGROUND).to(device) & present.all(1, keepdim=True)
            index = index.clamp(max=1)
        index = index[:, :, None]                                               # (batch, tokens, 1)
        if self.background:   # slot 2: what no object covers
            coverage = torch.cat([coverage, (1 - coverage.sum(1, keepdim=True)).clamp(min=0)], 1)
        masks = {}   # side -> each token's object mask (batch, tokens, pixels), shared by layers of one size
        terms = []
        for heads, probs in maps:
            pixels = probs.shape[1]
            side = int(round(pixels ** 0.5))
            if side < MIN_SIDE or not picked.any():
                continue
            if side not in masks:
                cover = F.adaptive_avg_pool2d(coverage, side).flatten(2)        # (batch, objects, pixels)
                masks[side] = torch.gather(cover, 1, index.expand(-1, -1, pixels))
                if self.exclusive:   # the other object's mask (objects 0 and 1 only)
                    masks[side] = masks[side], torch.gather(cover, 1, (1 - index).expand(-1, -1, pixels))
            attention = probs.float().unflatten(0, (-1, heads)).mean(1).transpose(1, 2)  # (batch, tokens, pixels)
            if self.exclusive:   # the other object's share of what the word gives both; linear, so its pull does not fade near 0
                own, other = ((attention * mask).sum(-1) for mask in masks[side])
                terms.append((other / (own + other).clamp(min=1e-12))[picked])
                continue
            inside = (attention * masks[side]).sum(-1) / attention.sum(-1).clamp(min=1e-8)
            terms.append(((1 - inside) ** 2)[picked])
        if not terms:
            return maps[0][1].sum() * 0.0
        return torch.cat(terms).mean()
