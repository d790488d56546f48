"""Derive CLIP's tokenizer files (vocab.json, merges.txt) from open_clip's BPE data file.

Nothing can be downloaded from a model hub here, so Easel ships the tokenizer
files in configs/clip-tokenizer/. They are rebuilt from the
`bpe_simple_vocab_16e6.txt.gz` file that the open-clip-torch package carries
(install it with `pip install --no-deps open-clip-torch` just to read it):

    venv/bin/python scripts/make_clip_tokenizer.py [path/to/bpe_simple_vocab_16e6.txt.gz]

The vocabulary is built the way CLIP's SimpleTokenizer builds it: 256 byte
symbols, the same with the end-of-word marker, the 48,894 merges, then the
start and end tokens: 49,408 entries, start 49406, end 49407.
"""
import gzip
import importlib.util
import json
import sys
from pathlib import Path

OUT_DIR = Path(__file__).resolve().parent.parent / "configs" / "clip-tokenizer"
MERGE_COUNT = 49152 - 256 - 2


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible byte -> printable unicode character table."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    codes = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            codes.append(256 + extra)
            extra += 1
    return dict(zip(printable, map(chr, codes)))


def find_bpe_file() -> Path:
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("open_clip is not installed: pip install --no-deps open-clip-torch, or pass the .txt.gz path")
    return Path(list(spec.submodule_search_locations)[0]) / "bpe_simple_vocab_16e6.txt.gz"


def main() -> None:
    bpe_path = Path(sys.argv[1]) if len(sys.argv) > 1 else find_bpe_file()
    lines = gzip.open(bpe_path, "rt", encoding="utf-8").read().split("\n")
    merges = [tuple(line.split()) for line in lines[1 : MERGE_COUNT + 1]]
    byte_symbols = list(bytes_to_unicode().values())
    vocab = byte_symbols + [s + "</w>" for s in byte_symbols]
    vocab += ["".join(m) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    assert len(vocab) == 49408, len(vocab)
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    (OUT_DIR / "vocab.json").write_text(json.dumps({tok: i for i, tok in enumerate(vocab)}, ensure_ascii=False), encoding="utf-8")
    (OUT_DIR / "merges.txt").write_text("#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n", encoding="utf-8")
    print(f"wrote {OUT_DIR}/vocab.json ({len(vocab)} tokens) and merges.txt ({len(merges)} merges)")


if __name__ == "__main__":
    main()
