"""Auxiliary caption-attribute classifiers on the demo text encoder (training only, never exported).

Why: the text encoder is trained from scratch, and it only learns to tell
words apart where the U-Net's loss asks it to. In the previous demo model
(run demo4, trained without these classifiers) the final hidden states of "a red circle in the left" and "... in the right"
differ by 2% (relative norm), against 39% for "red" / "blue" and 12% for
"circle" / "square": the position words reach the U-Net as near-identical
conditioning, so the U-Net has nothing to follow, and it never starts to
follow them because nothing pushes the words apart (position accuracy 7%).

Real Stable Diffusion gets a text encoder that already separates such words
(CLIP, pretrained). Here a linear classifier per attribute reads the pooled
(end-of-text) state and must recover what the caption says: object colour
and shape (first and second object), size, position, background colour.
Its cross-entropy, weighted, is added to the diffusion loss. The labels
come from the caption text itself (`parse_prompt_meta`, the evaluator's
parser), so they are exactly what the words say. With weight 0.1 run
demo8 follows 98% of position words (docs/demo-model.md).

The pooled classifiers cost something measurable: in demo8 the state of the
noun after a colour ("background" in "on a blue background", "circle" in
"a purple circle") carried far less of that colour than in demo4 (relative
difference blue/red "background" 0.33 against 1.04, purple/green "circle"
0.33 against 1.22), and background accuracy fell from 97% to 77%. The
noun-colour classifier (`NounColourHead`) asks every noun state to name the
colour word right before it, so the colour stays bound to the noun the U-Net
attends to for that region. Run demo9 (weight 0.1) restored the binding and
gained colour (86% -> 91%) and background (77% -> 84%) but lost shape
(79% -> 69%), one pass of 112 images each. Its second seed, run demo9s1,
judged over three passes (336 images) against the same for demo8: background
80% -> 100%, colour 85% -> 88%, shape 79% -> 72%. It ships (weight 0.1): the
shape loss reproduces, but the model is nearer every goal it misses
(docs/demo-model.md).

In demo9 the noun state had also become mostly its colour: "circle" in
"a red circle" and "square" in "a red square" differed by 0.18 (relative
norm) against 0.90 in demo8. The noun-identity classifier (`NounIdentityHead`)
asks every noun state to still name its own noun. Run demo10 (both at 0.1)
kept the shape in the noun states (0.97-1.03) and the colour (1.12-1.18),
and still lost shape (61%), so that was not why shape fell; it ships off too.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from training.shapes_dataset import BACKGROUND_COLOURS, COLOURS, POSITIONS, SHAPES, SIZES, parse_prompt_meta

IGNORE = -100   # cross_entropy's ignore_index: tokens that are not a noun right after a colour

NONE = "none"   # the caption does not name this attribute (or the caption was dropped for CFG)
CLASSES: dict[str, tuple[str, ...]] = {
    "colour": (NONE, *COLOURS), "shape": (NONE, *SHAPES),
    "colour2": (NONE, *COLOURS), "shape2": (NONE, *SHAPES),
    "size": (NONE, *SIZES), "position": (NONE, *POSITIONS), "background": (NONE, *BACKGROUND_COLOURS),
}


def caption_labels(captions: list[str]) -> dict[str, torch.Tensor]:
    """Class index of every attribute for each caption (0 = not named)."""
    rows = []
    for caption in captions:
        meta = parse_prompt_meta(caption)
        colours, shapes = meta["colours"] + [NONE, NONE], meta["shapes"] + [NONE, NONE]
        named = {"colour": colours[0], "shape": shapes[0], "colour2": colours[1], "shape2": shapes[1],
                 "size": meta["size"] or NONE, "position": meta["position"] or NONE,
                 "background": meta["background"] or NONE}
        rows.append({name: CLASSES[name].index(value) for name, value in named.items()})
    return {name: torch.tensor([row[name] for row in rows]) for name in CLASSES}


class CaptionHeads(torch.nn.Module):
    """One linear classifier per attribute over the text encoder's pooled output."""

    def __init__(self, width: int, tokenizer=None):  # tokenizer unused: the labels come from the caption text
        super().__init__()
        self.heads = torch.nn.ModuleDict({name: torch.nn.Linear(width, len(classes))
                                          for name, classes in CLASSES.items()})

    def loss(self, pooled: torch.Tensor, labels: dict[str, torch.Tensor]) -> torch.Tensor:
        """Mean cross-entropy over the attributes."""
        losses = [F.cross_entropy(head(pooled.float()), labels[name].to(pooled.device))
                  for name, head in self.heads.items()]
        return torch.stack(losses).mean()

    def side_loss(self, encoded, ids: torch.Tensor, captions: list[str]) -> torch.Tensor:
        return self.loss(encoded.pooler_output, caption_labels(captions))


NOUNS = (*SHAPES, "background")


def word_ids(tokenizer, word: str) -> tuple[int, ...]:
    return tuple(tokenizer(word, add_special_tokens=False).input_ids)


def _token_loss(classifier: torch.nn.Linear, states: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over the labelled tokens (0 when the batch has none)."""
    targets = targets.to(states.device)
    picked = targets != IGNORE
    if not picked.any():
        return states.sum() * 0.0
    return F.cross_entropy(classifier(states[picked].float()), targets[picked])


class _PerTokenHead(torch.nn.Module):
    """A linear classifier over the text encoder's per-token states; subclasses say which
    tokens it labels (`targets`) and with what."""

    def targets(self, ids: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def loss(self, states: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy over the labelled tokens (0 when the batch has none)."""
        return _token_loss(self.classifier, states, self.targets(ids))

    def side_loss(self, encoded, ids: torch.Tensor, captions: list[str]) -> torch.Tensor:
        return self.loss(encoded.last_hidden_state, ids)


class NounColourHead(_PerTokenHead):
    """A linear classifier over per-token states: each shape noun or "background" that
    directly follows a colour word must name that colour (other tokens are ignored)."""

    def __init__(self, width: int, tokenizer):
        super().__init__()
        self.classifier = torch.nn.Linear(width, len(BACKGROUND_COLOURS))
        self._nouns = {word_ids(tokenizer, noun)[-1] for noun in NOUNS}
        # some colours are several BPE tokens ("cyan" is "cy" + "an"): match the whole run
        self._colours = [(word_ids(tokenizer, name), index) for index, name in enumerate(BACKGROUND_COLOURS)]

    def targets(self, ids: torch.Tensor) -> torch.Tensor:
        """(batch, tokens) colour index for each noun that follows a colour word, IGNORE elsewhere."""
        rows = ids.tolist()
        out = torch.full(ids.shape, IGNORE, dtype=torch.long)
        for b, row in enumerate(rows):
            for p, token in enumerate(row):
                if token not in self._nouns:
                    continue
                for colour_ids, index in self._colours:
                    n = len(colour_ids)
                    if p >= n and tuple(row[p - n:p]) == colour_ids:
                        out[b, p] = index
                        break
        return out


class NounIdentityHead(_PerTokenHead):
    """A linear classifier over per-token states: each shape noun or "background" must
    name itself, so that a colour pulled into its state does not erase which noun it is."""

    def __init__(self, width: int, tokenizer):
        super().__init__()
        self.classifier = torch.nn.Linear(width, len(NOUNS))
        # a noun's last BPE token stands for it (all of them are one token today)
        self._index = {word_ids(tokenizer, noun)[-1]: index for index, noun in enumerate(NOUNS)}

    def targets(self, ids: torch.Tensor) -> torch.Tensor:
        """(batch, tokens) noun index at every noun token, IGNORE elsewhere."""
        return torch.tensor([[self._index.get(token, IGNORE) for token in row] for row in ids.tolist()],
                            dtype=torch.long)


@dataclass(frozen=True)
class SideHead:
    """How train_demo runs one classifier: `build(width, tokenizer)` makes it, its loss
    (`side_loss(encoded text, token ids, captions)`) times `args.<weight_arg>` joins the
    diffusion loss when that weight is above 0."""
    name: str             # its loss column in losses.csv
    checkpoint_key: str   # where checkpoint.pt keeps its weights (the names earlier runs wrote)
    weight_arg: str
    build: Callable[[int, object], torch.nn.Module]


# In losses.csv order.
SIDE_HEADS = (
    SideHead("caption", "caption_heads", "caption_loss_weight", CaptionHeads),
    SideHead("noun_colour", "noun_colour_head", "noun_colour_weight", NounColourHead),
    SideHead("noun_identity", "noun_identity_head", "noun_identity_weight", NounIdentityHead),
)
