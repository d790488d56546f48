"""Prompt parsing and text encoding cost: a 300-token prompt, and a batch of 8 images with one prompt.

    venv/bin/python -m benchmarks.bench_prompts [--threads N]

The text encoder is a CLIP ViT-L/14 text model of full size (12 layers, 768
wide) with random weights built from its config (nothing is downloaded):
encoding cost depends on the size, not on the weight values. Rows:
- parse: prompt editing/alternation schedules + AND split + emphasis, per prompt
- encode 300 tokens: 4 chunks of 77 through the encoder, once
- batch of 8, same prompt: what a job does (each distinct text encoded once,
  all 20 steps' conditioning looked up) against encoding the 8 copies
"""
from __future__ import annotations

import argparse
from types import SimpleNamespace

import torch

from benchmarks.timing import median_seconds, print_table


def full_size_clip_model():
    from transformers import CLIPTextConfig, CLIPTextModel

    from modules import model_families, sd_models

    config = CLIPTextConfig(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                            vocab_size=49408, max_position_embeddings=77, hidden_act="quick_gelu",
                            bos_token_id=49406, eos_token_id=49407, pad_token_id=49407)
    torch.manual_seed(0)
    encoder = CLIPTextModel(config).eval()
    return SimpleNamespace(family=model_families.get_family("sd1"), text_encoders=[encoder],
                           tokenizers=[sd_models.load_tokenizer("<|endoftext|>")], device=torch.device("cpu"),
                           pad_token_id=None)


def prompt_of_about(tokens: int) -> str:
    words = ("a (beautiful:1.2) [red:blue:0.5] house on a hill, [sunny|cloudy] sky, ((masterpiece)), "
             "detailed oil painting, warm light AND a garden:0.5, ")
    text = ""
    while len(text.split()) < tokens * 0.62:       # ~1.6 tokens per word in this text
        text += words
    return text


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from modules import prompt_parser, prompt_schedules, text_encoding

    model = full_size_clip_model()
    prompt = prompt_of_about(300)
    plain = prompt_parser.get_learned_conditioning_prompt_schedules([prompt], 20)[0][-1][1]
    _, tokens = text_encoding.tokenize_chunks(model.tokenizers[0], plain, 49407)
    steps = 20

    def parse():
        _, flat, _ = prompt_parser.get_multicond_prompt_list([prompt])
        for schedule in prompt_parser.get_learned_conditioning_prompt_schedules(flat, steps):
            for _, text in schedule:
                prompt_parser.parse_prompt_attention(text)

    def parse_uncached():
        prompt_parser._parse_schedule_tree.cache_clear()
        parse()

    def encode_once():
        text_encoding.encode_prompts(model, [plain])

    def job_batch_of_8():
        cache: dict = {}
        encode = prompt_schedules.text_cache_encoder(model, 1, "Original", cache)
        batch = prompt_schedules.BatchConditioning(encode, [plain] * 8, ["blurry"] * 8, steps)
        for step in range(steps):
            batch.at(step)

    def naive_batch_of_8():
        text_encoding.encode_prompts(model, [plain] * 8)

    rows = [
        ["parse (schedules + AND + emphasis)", f"{tokens} tokens", f"{median_seconds(parse_uncached, 5) * 1000:.1f} ms"],
        ["encode 300-token prompt", f"{tokens} tokens", f"{median_seconds(encode_once, 3) * 1000:.0f} ms"],
        ["batch of 8, same prompt, 20 steps (job)", "encoded once", f"{median_seconds(job_batch_of_8, 3) * 1000:.0f} ms"],
        ["batch of 8, same prompt (8 copies encoded)", "baseline", f"{median_seconds(naive_batch_of_8, 3) * 1000:.0f} ms"],
    ]
    print_table(f"Prompt parsing and encoding, CLIP-L size text encoder, CPU, {args.threads} thread(s)",
                ["what", "size", "median"], rows)


if __name__ == "__main__":
    main()
