"""Prompt text -> text-encoder conditioning, the way A1111 builds it.

1. Emphasis: prompt_parser.parse_prompt_attention splits the prompt into
   (text, weight) runs; BREAK marks a forced chunk end.
2. Each run is cleaned (ftfy, HTML entities, whitespace: transformers v5's
   CLIPTokenizer does none of it) and tokenised without special tokens.
3. Tokens are cut into chunks of 75. When a chunk fills and a comma lies
   within its last 20 tokens, the text after that comma moves to the next
   chunk. Each chunk is encoded as start + 75 + end = 77 tokens; positions
   after the first end token hold the pad token (the end token for CLIP-L,
   0 for OpenCLIP). Chunk encodings are concatenated along the sequence.
4. Each token's embedding is multiplied by its weight, then rescaled so the
   chunk's mean is what it was ("Original" emphasis).
5. Layer: SD1/SD2 use the last hidden state, or with clip skip N the hidden
   state N layers from the end followed by the final layer norm. SDXL uses
   the penultimate hidden state of both encoders, without the final norm,
   concatenated along the feature axis, and encoder 2's projected pooled
   output of the first chunk (clip skip is ignored, as in A1111's default).

Means for emphasis are taken per prompt and chunk (A1111 takes them over
the whole batch), so a prompt encodes the same in any batch.

Textual-inversion embeddings (modules/textual_inversion.py): a word naming
an embedding is found in the token ids and replaced by as many placeholder
positions as the embedding has vectors (never split across chunks: the
chunk closes early when they do not fit); the vectors are written over
those positions' token embeddings while the encoder runs (a forward hook
on the token-embedding layer, removed after the call). The tokenizer is
never changed.
"""

from __future__ import annotations

import contextlib
import html
import math
import re
from dataclasses import dataclass, field

import ftfy
import torch

from modules import prompt_parser

CHUNK_LENGTH = 75            # prompt tokens per chunk; +2 for start and end
COMMA_BACKTRACK = 20         # how far back from a full chunk's end a comma may move text
EMPHASIS_MODES = ("Original", "No norm", "Ignore", "None")


@dataclass
class Conditioning:
    embeds: torch.Tensor              # (batch, 77 * chunks, dim)
    pooled: torch.Tensor | None = None   # (batch, dim2) for sdxl
    empty_chunk: torch.Tensor | None = None  # (1, 77, dim): the empty prompt, used to pad to a common length
    embeddings_used: tuple = ()           # names of the textual-inversion embeddings the prompts use

    @property
    def chunks(self) -> int:
        return self.embeds.shape[1] // (CHUNK_LENGTH + 2)


@dataclass
class PromptChunk:
    tokens: list[int]       # 77 ids: start, 75 prompt/pad tokens, end
    weights: list[float]    # 77 emphasis weights (1.0 on start/end/pad)
    fixes: list = field(default_factory=list)  # (position in the 77, vectors (n, dim), embedding name)


def clean_prompt_text(text: str) -> str:
    """CLIP's text cleaning: fix mojibake, unescape HTML entities (twice, as CLIP does), collapse whitespace."""
    text = ftfy.fix_text(text)
    text = html.unescape(html.unescape(text))
    return re.sub(r"\s+", " ", text).strip()


def _tokenize(tokenizer, texts: list[str]) -> list[list[int]]:
    cleaned = [clean_prompt_text(t) for t in texts]
    if not cleaned:
        return []
    return [list(ids) for ids in tokenizer(cleaned, add_special_tokens=False, truncation=False)["input_ids"]]


def _special_ids(tokenizer) -> tuple[int, int, int]:
    start, end = tokenizer.bos_token_id, tokenizer.eos_token_id
    comma = tokenizer.convert_tokens_to_ids(",</w>")
    if start is None or end is None:
        raise ValueError("tokenizer: needs start (bos) and end (eos) tokens")
    return start, end, comma


def _parse(prompt: str, emphasis: str) -> list[list]:
    if emphasis not in EMPHASIS_MODES:
        raise ValueError(f"emphasis: {emphasis!r} is not one of {', '.join(EMPHASIS_MODES)}")
    if emphasis == "None":  # brackets are plain text
        return [[prompt, 1.0]]
    parsed = prompt_parser.parse_prompt_attention(prompt)
    for text, weight in parsed:
        if not math.isfinite(weight):
            raise ValueError(f"prompt: the emphasis weight of {text[:40]!r} overflows (nested weights multiply)")
    if emphasis == "Ignore":
        parsed = [part if part == prompt_parser.BREAK_MARK else [part[0], 1.0] for part in parsed]
    return parsed


EMBEDDING_PLACEHOLDER = 0   # token id under an embedding's vectors (its token embedding is overwritten)


def tokenize_chunks(tokenizer, prompt: str, pad_id: int, emphasis: str = "Original",
                    embeddings=None) -> tuple[list[PromptChunk], int]:
    """The prompt's 77-token chunks and its count of prompt tokens (without start/end/pad).

    `embeddings`: a textual_inversion.EmbeddingLookup for this tokenizer, or None.
    """
    start, end, comma = _special_ids(tokenizer)
    parsed = _parse(prompt, emphasis)
    token_lists = _tokenize(tokenizer, [text for text, _ in parsed])

    chunks: list[PromptChunk] = []
    tokens: list[int] = []
    weights: list[float] = []
    fixes: list = []              # (index into tokens, vectors, name) of the embeddings in this chunk
    last_comma = -1
    token_count = 0

    def close_chunk():
        nonlocal tokens, weights, fixes, last_comma, token_count
        token_count += len(tokens)
        fill = CHUNK_LENGTH - len(tokens)
        # the first pad position holds the end token; after it, the pad token
        body = tokens + ([end] + [pad_id] * (fill - 1) if fill > 0 else [])
        chunks.append(PromptChunk([start] + body + [end if fill == 0 else pad_id],
                                  [1.0] + weights + [1.0] * fill + [1.0],
                                  [(1 + i, vectors, name) for i, vectors, name in fixes]))
        tokens, weights, fixes, last_comma = [], [], [], -1

    for (text, weight), ids in zip(parsed, token_lists):
        if [text, weight] == prompt_parser.BREAK_MARK:
            close_chunk()
            continue
        i = 0
        while i < len(ids):
            hit = embeddings.match(ids, i) if embeddings is not None else None
            if hit is not None:
                name_length, embedding = hit
                vectors = embeddings.vectors(embedding)
                if len(tokens) + vectors.shape[0] > CHUNK_LENGTH:
                    close_chunk()  # an embedding never splits across chunks
                fixes.append((len(tokens), vectors, embedding.name))
                tokens.extend([EMBEDDING_PLACEHOLDER] * vectors.shape[0])
                weights.extend([float(weight)] * vectors.shape[0])
                i += name_length
                continue
            token = ids[i]
            i += 1
            if token == comma:
                last_comma = len(tokens)
            elif (len(tokens) == CHUNK_LENGTH and last_comma != -1
                  and len(tokens) - last_comma <= COMMA_BACKTRACK):
                # move the words after the last comma (embeddings among them included) to the next chunk
                cut = last_comma + 1
                moved, moved_w = tokens[cut:], weights[cut:]
                moved_fixes = [(at - cut, v, n) for at, v, n in fixes if at >= cut]
                tokens, weights = tokens[:cut], weights[:cut]
                fixes = [f for f in fixes if f[0] < cut]
                close_chunk()
                tokens, weights, fixes = moved, moved_w, moved_fixes
            if len(tokens) == CHUNK_LENGTH:
                close_chunk()
            tokens.append(token)
            weights.append(float(weight))

    if tokens or not chunks:
        close_chunk()
    return chunks, token_count


def count_tokens(model_or_tokenizer, text: str, embeddings=None) -> tuple[int, int]:
    """(prompt tokens, 75 * chunks): the page's "N/75" counter.

    `embeddings` (textual_inversion.ModelEmbeddings): count an embedding's vectors instead of its name's tokens.
    """
    tokenizer = model_or_tokenizer.tokenizers[0] if hasattr(model_or_tokenizer, "tokenizers") else model_or_tokenizer
    lookup = embeddings.lookup(tokenizer, 0) if embeddings is not None else None
    chunks, count = tokenize_chunks(tokenizer, text, pad_id=tokenizer.eos_token_id, embeddings=lookup)
    return count, CHUNK_LENGTH * len(chunks)


def _pad_ids(model) -> list[int]:
    """Pad token per text encoder: the model's own `pad_token_id`, else each tokenizer's, else the family rule."""
    if getattr(model, "pad_token_id", None) is not None:
        return [int(model.pad_token_id)] * len(model.tokenizers)
    pads = []
    for tokenizer in model.tokenizers:
        if tokenizer.pad_token_id is not None:
            pads.append(int(tokenizer.pad_token_id))
        elif str(model.family.id).startswith("sd2"):
            pads.append(0)
        else:
            pads.append(int(tokenizer.eos_token_id))
    return pads


def _final_layer_norm(encoder):
    """transformers v5's CLIPTextModel holds the norm itself; the projection model keeps a text_model."""
    inner = getattr(encoder, "text_model", encoder)
    return inner.final_layer_norm


@contextlib.contextmanager
def _embedding_vectors(encoder, chunks: list[PromptChunk]):
    """While active, the encoder's token embeddings at the chunks' embedding positions are the embeddings' vectors."""
    rows = [(row, at, vectors) for row, chunk in enumerate(chunks) for at, vectors, _ in chunk.fixes]
    if not rows:
        yield
        return

    def overwrite(module, inputs, output):
        output = output.clone()
        for row, at, vectors in rows:
            output[row, at:at + vectors.shape[0]] = vectors.to(output.device, output.dtype)
        return output

    handle = encoder.get_input_embeddings().register_forward_hook(overwrite)
    try:
        yield
    finally:
        handle.remove()


def _hidden(encoder, input_ids: torch.Tensor, layer: str, clip_skip: int):
    """(hidden states (B,77,dim), projected pooled output or None) for one chunk."""
    out = encoder(input_ids=input_ids, output_hidden_states=True)
    pooled = getattr(out, "text_embeds", None)
    if layer == "penultimate":
        return out.hidden_states[-2], pooled
    if clip_skip > 1:
        return _final_layer_norm(encoder)(out.hidden_states[-clip_skip]), pooled
    return out.last_hidden_state, pooled


def _apply_weights(z: torch.Tensor, weights: torch.Tensor, emphasis: str) -> torch.Tensor:
    if emphasis not in ("Original", "No norm") or bool((weights == 1.0).all()):
        return z
    # float64 (MPS has none): a huge weight such as (x:1000000000) stays finite through the mean restore
    wide = torch.float32 if z.device.type == "mps" else torch.float64
    zw = z.to(wide)
    weighted = zw * weights.to(wide)[..., None]
    if emphasis == "Original":
        before = zw.mean(dim=(1, 2), keepdim=True)
        weighted = weighted * (before / weighted.mean(dim=(1, 2), keepdim=True))
    result = weighted.to(z.dtype)
    if not bool(torch.isfinite(result).all()):
        raise ValueError(f"prompt: emphasis weights up to {float(weights.abs().max()):.3g} are too large to encode "
                         f"(emphasis mode {emphasis!r})")
    return result


def _encode_with(encoder, tokenizer, pad_id, prompts, layer, clip_skip, emphasis, device, lookup=None, used=None):
    """Embeddings (B, 77*chunks, dim) of one encoder, its pooled output of chunk 0, and the empty chunk."""
    per_prompt = [tokenize_chunks(tokenizer, p, pad_id, emphasis, lookup)[0] for p in prompts]
    if used is not None:
        for chunk in (c for chunks in per_prompt for c in chunks):
            used.extend(name for _, _, name in chunk.fixes if name not in used)
    empty = tokenize_chunks(tokenizer, "", pad_id, emphasis)[0][0]
    n_chunks = max(len(c) for c in per_prompt)
    pieces, pooled, empty_z = [], None, None
    for i in range(n_chunks):
        # prompts with fewer chunks are padded with the empty prompt's chunk, as A1111 does
        batch = [c[i] if i < len(c) else empty for c in per_prompt]
        if i == 0:
            batch = batch + [empty]
        ids = torch.tensor([c.tokens for c in batch], dtype=torch.long, device=device)
        weights = torch.tensor([c.weights for c in batch], dtype=torch.float64, device="cpu").to(device)
        with torch.no_grad(), _embedding_vectors(encoder, batch):
            z, pool = _hidden(encoder, ids, layer, clip_skip)
            z = _apply_weights(z, weights, emphasis)
        if i == 0:
            z, empty_z = z[:-1], z[-1:]
            pooled = pool[:-1] if pool is not None else None
        pieces.append(z)
    return torch.cat(pieces, dim=1), pooled, empty_z


def _check_clip_skip(clip_skip, encoder) -> int:
    layers = encoder.config.num_hidden_layers
    if isinstance(clip_skip, bool) or not isinstance(clip_skip, int) or not 1 <= clip_skip <= layers:
        raise ValueError(f"clip_skip: must be a whole number from 1 to {layers} for this text encoder, got {clip_skip!r}")
    return clip_skip


def encode_prompts(model, prompts: list[str], clip_skip: int = 1, emphasis: str = "Original",
                   embeddings=None) -> Conditioning:
    """Conditioning for a batch of prompts on `model` (a LoadedModel or anything with its fields).

    Prompts needing different numbers of chunks are padded to the longest
    with the empty prompt's chunk. `embeddings`: textual_inversion.ModelEmbeddings
    for this model (the words naming them are replaced by their vectors), or None.
    """
    if isinstance(prompts, str):
        prompts = [prompts]
    if not prompts:
        raise ValueError("prompts: need at least one prompt")
    conditioning = model.family.conditioning
    pads = _pad_ids(model)
    device = model.device
    if conditioning == "clip":
        encoder = model.text_encoders[0]
        clip_skip = _check_clip_skip(clip_skip, encoder)
        used: list[str] = []
        lookup = embeddings.lookup(model.tokenizers[0], 0) if embeddings is not None else None
        embeds, _, empty = _encode_with(encoder, model.tokenizers[0], pads[0], prompts, "last", clip_skip, emphasis,
                                        device, lookup, used)
        return Conditioning(embeds, None, empty, tuple(used))
    if conditioning == "sdxl":
        if len(model.text_encoders) != 2 or len(model.tokenizers) != 2:
            raise ValueError("model: an sdxl family model needs two text encoders and two tokenizers")
        used = []
        parts = [_encode_with(enc, tok, pad, prompts, "penultimate", 1, emphasis, device,
                              embeddings.lookup(tok, i) if embeddings is not None else None, used)
                 for i, (enc, tok, pad) in enumerate(zip(model.text_encoders, model.tokenizers, pads))]
        # the two encoders can split prompts into different chunk counts only in pathological
        # cases (same tokenizer); pad the shorter one so the features line up
        longest = max(p[0].shape[1] for p in parts)
        embeds = []
        for z, _, empty in parts:
            repeats = (longest - z.shape[1]) // empty.shape[1]
            embeds.append(torch.cat([z] + [empty.expand(z.shape[0], -1, -1)] * repeats, dim=1))
        pooled = parts[1][1]
        if pooled is None:
            raise ValueError("model: sdxl's second text encoder must be a CLIPTextModelWithProjection (pooled output)")
        return Conditioning(torch.cat(embeds, dim=-1), pooled, torch.cat([p[2] for p in parts], dim=-1), tuple(used))
    raise ValueError(f"model.family.conditioning: {conditioning!r} is not 'clip' or 'sdxl'")


def pad_to_same_length(a: Conditioning, b: Conditioning) -> tuple[Conditioning, Conditioning]:
    """Make cond and uncond the same number of chunks by appending the empty prompt's chunk (A1111's rule)."""
    def padded(c: Conditioning, chunks: int) -> Conditioning:
        missing = chunks - c.chunks
        if missing == 0:
            return c
        if c.empty_chunk is None:
            raise ValueError("conditioning: cannot pad without its empty_chunk (encode it with encode_prompts)")
        empty = c.empty_chunk.to(c.embeds.dtype).expand(c.embeds.shape[0], -1, -1)
        return Conditioning(torch.cat([c.embeds] + [empty] * missing, dim=1), c.pooled, c.empty_chunk)

    chunks = max(a.chunks, b.chunks)
    return padded(a, chunks), padded(b, chunks)
