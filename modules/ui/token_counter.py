"""The `N/75` counter beside a prompt box (A1111's txt2img_token_counter and friends).

The count is the encoder's own: text_encoding.tokenize_chunks cuts the
prompt into 75-token chunks (BREAK, the comma backtrack and embeddings that
never split included), so the counter shows 75 * chunks as its maximum
(`80/150` = two chunks). Like A1111, extra-network tags (`<lora:...>`) are
removed first, a prompt-editing schedule (`[a:b:0.5]`) counts its longest
step, and a positive prompt counts its longest `AND` part (each part is
encoded on its own).

The tokenizer is the loaded model's, or else the CLIP tokenizer from
configs/clip-tokenizer, built on the first count: starting the page never
waits for it.
"""
from __future__ import annotations

import html
import threading

import gradio as gr

from modules import shared

DEFAULT_STEPS = 20          # prompt-editing fractions need a step count; the slider's value when wired
_lock = threading.Lock()


def tokenizer_and_embeddings():
    """(tokenizer, ModelEmbeddings | None): the loaded model's, else the stand-alone CLIP tokenizer."""
    model = shared.models.current if shared.models is not None else None
    if model is not None and getattr(model, "tokenizers", None):
        from modules import textual_inversion

        embeddings = textual_inversion.database().for_model(model) if shared.paths is not None else None
        return model.tokenizers[0], embeddings
    with _lock:  # two first keystrokes must not build two tokenizers
        from modules import sd_models

        return sd_models.load_tokenizer("<|endoftext|>"), None


def prompt_parts(text: str, steps: int = DEFAULT_STEPS, negative: bool = False) -> list[str]:
    """The texts the encoder will encode separately for this prompt box."""
    from modules import extra_networks, prompt_parser

    text, _ = extra_networks.parse_prompt(text or "")
    subprompts = [text] if negative else prompt_parser.get_multicond_prompt_list([text])[1]
    steps = max(1, int(steps or DEFAULT_STEPS))
    parts = []
    for schedule in prompt_parser.get_learned_conditioning_prompt_schedules(subprompts, steps):
        parts.extend(part_text for _, part_text in schedule)
    return parts or [""]


def count_prompt_tokens(text: str, steps: int = DEFAULT_STEPS, negative: bool = False, tokenizer=None,
                        embeddings=None) -> tuple[int, int]:
    """(tokens, 75 * chunks) of the part of the prompt with the most tokens."""
    from modules.text_encoding import count_tokens

    if tokenizer is None:
        tokenizer, embeddings = tokenizer_and_embeddings()
    return max((count_tokens(tokenizer, part, embeddings=embeddings) for part in prompt_parts(text, steps, negative)),
               key=lambda counted: counted[0])


def counter_html(tokens: int, maximum: int) -> str:
    return f'<span class="easel-token-count">{tokens}/{maximum}</span>'


def error_html(message: str) -> str:
    return f'<span class="easel-token-count easel-token-error" title="{html.escape(message)}">?/75</span>'


class TokenCounter:
    """A counter element; create it right after its prompt box, then `wire` it."""

    def __init__(self, elem_id: str, negative: bool = False):
        self.negative = negative
        self.html = gr.HTML(counter_html(0, 75), elem_id=elem_id, elem_classes=["easel-token-counter"],
                            js_on_load=None)

    def update(self, text, steps=DEFAULT_STEPS):
        try:
            return counter_html(*count_prompt_tokens(text, steps, self.negative))
        except ValueError as exc:  # e.g. an emphasis weight that overflows: say why on hover
            return error_html(str(exc))
        except RecursionError:     # thousands of nested brackets: the parsers recurse per level
            return error_html("prompt: brackets nested too deeply to parse")

    def wire(self, textbox: gr.Textbox, steps: gr.Slider | None = None) -> None:
        # .change also follows programmatic edits (styles, extra-network cards, PNG info);
        # always_last drops the keystrokes typed while a count runs: a debounce without a timer.
        inputs = [textbox] + ([steps] if steps is not None else [])
        textbox.change(self.update, inputs=inputs, outputs=[self.html], trigger_mode="always_last",
                       show_progress="hidden", concurrency_limit=None)
