"""The "🎴 Extra networks" panel of a tab: cards for checkpoints, LoRA and embeddings.

A card shows the file's name and its preview picture when one sits beside
the file (NAME.png, NAME.preview.png, or .jpg/.jpeg/.webp: A1111's rule).
Clicking a LoRA card adds `<lora:NAME:1>` to the prompt, an embedding card
adds its name (clicking again removes it, as in A1111); a checkpoint card
queues loading that checkpoint (the top bar follows the load).

Cards are built when the panel is first opened, not at start-up: listing
embeddings reads their files and previews are shrunk to thumbnails (kept in
memory by path and modification time) and sent inline as data: URLs, so no
folder is exposed to Gradio's file server.
"""
from __future__ import annotations

import base64
import html
import io
import re
from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from modules import shared

KINDS = ("checkpoint", "lora", "embedding")
SECTION_TITLES = {"checkpoint": "Checkpoints", "lora": "Lora", "embedding": "Textual Inversion"}
PREVIEW_SUFFIXES = (".png", ".preview.png", ".jpg", ".jpeg", ".webp", ".preview.jpg", ".preview.jpeg",
                    ".preview.webp")
THUMBNAIL_SIZE = 256
DEFAULT_MULTIPLIER = 1    # A1111's extra_networks_default_multiplier
SEPARATOR = " "           # A1111's extra_networks_add_text_separator


@dataclass(frozen=True)
class Card:
    kind: str               # "checkpoint" | "lora" | "embedding"
    name: str               # what the card shows; for a checkpoint, its title (what request_load takes)
    filename: str
    preview: str | None     # path of the preview picture beside the file, or None

    @property
    def prompt_text(self) -> str | None:
        """What clicking the card adds to the prompt (None for a checkpoint)."""
        if self.kind == "lora":
            return f"<lora:{self.name}:{DEFAULT_MULTIPLIER}>"
        if self.kind == "embedding":
            return self.name
        return None


def find_preview(filename: str) -> str | None:
    """NAME.png / NAME.preview.png / ... beside `filename` (a file or a diffusers folder)."""
    path = Path(filename)
    stem = path.parent / (path.name if path.is_dir() else path.stem)
    for suffix in PREVIEW_SUFFIXES:
        candidate = Path(str(stem) + suffix)
        if candidate.is_file():
            return str(candidate)
    return None


def list_cards(kinds=KINDS) -> list[Card]:
    """Cards of every checkpoint, LoRA and embedding the app sees now."""
    cards: list[Card] = []
    if "checkpoint" in kinds and shared.models is not None:
        for info in shared.models.checkpoints():
            cards.append(Card("checkpoint", info.title, info.filename, find_preview(info.filename)))
    if "lora" in kinds and shared.paths is not None:
        from modules import lora

        for item in lora.list_loras(shared.paths.lora_dir).values():
            cards.append(Card("lora", item.name, item.filename, find_preview(item.filename)))
    if "embedding" in kinds and shared.paths is not None:
        from modules import textual_inversion

        db = textual_inversion.database()
        db.load()
        for embedding in db.embeddings.values():
            cards.append(Card("embedding", embedding.name, embedding.filename, find_preview(embedding.filename)))
    return cards


def filter_cards(cards: list[Card], query: str | None) -> list[Card]:
    """Cards whose name or file path contains every word of `query` (case-insensitive)."""
    words = (query or "").lower().split()
    return [c for c in cards if all(w in f"{c.name}\n{c.filename}".lower() for w in words)]


_thumbnails: dict[tuple, str] = {}


def thumbnail_url(path: str) -> str | None:
    """A small JPEG of the picture as a data: URL; None when it cannot be read."""
    from PIL import Image

    try:
        stat = Path(path).stat()
        key = (path, stat.st_mtime_ns, stat.st_size)
        if key not in _thumbnails:
            with Image.open(path) as image:
                image.thumbnail((THUMBNAIL_SIZE, THUMBNAIL_SIZE))
                buffer = io.BytesIO()
                image.convert("RGB").save(buffer, format="JPEG", quality=85)
            _thumbnails[key] = "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
        return _thumbnails[key]
    except OSError:  # unreadable or not a picture: show the card without it
        return None


def card_html(card: Card) -> str:
    url = thumbnail_url(card.preview) if card.preview else None
    picture = (f'<img src="{url}" alt="" loading="lazy">' if url
               else f'<div class="easel-card-noimage">{html.escape(card.name[:1].upper())}</div>')
    title = card.prompt_text or f"load {card.name}"
    return (f'<div class="easel-card" data-kind="{card.kind}" data-name="{html.escape(card.name, quote=True)}" '
            f'title="{html.escape(title, quote=True)}" role="button" tabindex="0">{picture}'
            f'<div class="easel-card-name">{html.escape(card.name)}</div></div>')


def cards_html(cards: list[Card], query: str | None = None) -> str:
    shown = filter_cards(cards, query)
    sections = []
    for kind in KINDS:
        of_kind = [c for c in shown if c.kind == kind]
        total = sum(c.kind == kind for c in cards)
        count = f"{len(of_kind)}/{total}" if query and query.strip() else f"{total}"
        body = "".join(card_html(c) for c in of_kind) or '<div class="easel-cards-empty">nothing here</div>'
        sections.append(f'<div class="easel-cards-section" data-kind="{kind}"><h4>{SECTION_TITLES[kind]} '
                        f'({count})</h4><div class="easel-cards">{body}</div></div>')
    return "".join(sections)


def _lora_tag(name: str) -> re.Pattern:
    return re.compile(rf"\s*<lora:{re.escape(name)}(?::[^>]*)?>")


def toggle_in_prompt(prompt: str, card: Card) -> str:
    """The prompt with the card's text added at the end, or removed when it is already there."""
    prompt = prompt or ""
    text = card.prompt_text
    if text is None:
        raise ValueError(f"{card.kind} cards do not go into the prompt")
    pattern = _lora_tag(card.name) if card.kind == "lora" else re.compile(rf"\s*(?<![\w-]){re.escape(text)}(?![\w-])")
    if pattern.search(prompt):
        return pattern.sub("", prompt, count=1).strip()
    return f"{prompt.rstrip()}{SEPARATOR}{text}" if prompt.strip() else text


def find_card(cards: list[Card], kind: str, name: str) -> Card:
    for card in cards:
        if card.kind == kind and card.name == name:
            return card
    raise ValueError(f"{kind} {name!r}: not found (press Refresh after adding or removing files)")


def click_card(kind: str, name: str, prompt: str, cards: list[Card] | None = None) -> tuple[str, str]:
    """(new prompt, message) after clicking a card."""
    card = find_card(cards if cards is not None else list_cards((kind,)), kind, name)
    if card.kind == "checkpoint":
        shared.models.request_load(card.name)
        return prompt, f"Loading checkpoint {card.name}…"
    return toggle_in_prompt(prompt, card), ""


# Card clicks reach Python as the HTML component's "click" event with the card's kind and name.
_CARDS_JS = """
element.addEventListener('click', (event) => {
  const card = event.target.closest('.easel-card');
  if (card) trigger('click', {kind: card.dataset.kind, name: card.dataset.name});
});
element.addEventListener('keydown', (event) => {
  const card = event.target.closest('.easel-card');
  if (card && (event.key === 'Enter' || event.key === ' ')) {
    event.preventDefault();
    trigger('click', {kind: card.dataset.kind, name: card.dataset.name});
  }
});
"""


def _message(text: str, error: bool = False) -> str:
    if not text:
        return ""
    return f'<div class="{"easel-error" if error else "easel-note"}">{html.escape(text)}</div>'


class ExtraNetworksUI:
    """The panel; create it where it should appear on the tab, then `wire` it to the prompt box."""

    def __init__(self, tab: str):
        self.tab = tab
        with gr.Accordion("🎴 Extra networks", open=False, elem_id=f"{tab}_extra_networks") as self.accordion:
            with gr.Row(equal_height=True):
                self.search = gr.Textbox(label="Search", elem_id=f"{tab}_extra_search", max_lines=1, scale=4,
                                         placeholder="Filter cards by name or path")
                self.refresh = gr.Button("🔄 Refresh", elem_id=f"{tab}_extra_refresh", scale=0, min_width=110)
            self.message = gr.HTML("", elem_id=f"{tab}_extra_message", js_on_load=None)
            self.cards = gr.HTML("", elem_id=f"{tab}_extra_cards", js_on_load=_CARDS_JS)

    def wire(self, prompt: gr.Textbox) -> None:
        common = dict(show_progress="hidden", concurrency_limit=None)

        def show(query):
            try:
                return cards_html(list_cards(), query), ""
            except (ValueError, OSError) as exc:
                return gr.skip(), _message(str(exc), error=True)

        # opened: list the files (never at start-up); refresh: list them again; search: filter them
        self.accordion.expand(show, inputs=[self.search], outputs=[self.cards, self.message], **common)
        self.refresh.click(show, inputs=[self.search], outputs=[self.cards, self.message], **common)
        self.search.change(show, inputs=[self.search], outputs=[self.cards, self.message],
                           trigger_mode="always_last", **common)

        def clicked(prompt_text, evt: gr.EventData):
            data = getattr(evt, "_data", None) or {}
            try:
                new_prompt, note = click_card(str(data.get("kind")), str(data.get("name")), prompt_text)
            except ValueError as exc:
                return gr.skip(), _message(str(exc), error=True)
            return new_prompt, _message(note)

        self.cards.click(clicked, inputs=[prompt], outputs=[prompt, self.message], **common)
