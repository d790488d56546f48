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
parser), so they are exactly what the words say. With weight 0.1 the
shipped model (run demo8) follows 98% of position words (docs/demo-model.md).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from training.shapes_dataset import BACKGROUND_COLOURS, COLOURS, POSITIONS, SHAPES, SIZES, parse_prompt_meta

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

    def __init__(self, width: int):
        super().__init__()
        self.heads = torch.nn.ModuleDict({name: torch.nn.Linear(width, len(classes))
                                          for name, classes in CLASSES.items()})

    def loss(self, pooled: torch.Tensor, labels: dict[str, torch.Tensor]) -> torch.Tensor:
        """Mean cross-entropy over the attributes."""
        losses = [F.cross_entropy(head(pooled.float()), labels[name].to(pooled.device))
                  for name, head in self.heads.items()]
        return torch.stack(losses).mean()
