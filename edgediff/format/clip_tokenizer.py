"""The CLIP BPE tokenizer's files (Radford et al. 2021), made offline from OpenAI's MIT-licensed merge list.

`mobile_models/clip-tokenizer/bpe_simple_vocab_16e6.txt.gz` is the file `clip` and `open_clip` ship; the 49 408-entry
vocab.json and merges.txt that transformers' `CLIPTokenizer` reads (as in openai/clip-vit-*'s `tokenizer/` folder)
are derived from it exactly as OpenAI's `simple_tokenizer.py` builds its encoder.
"""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

from edgediff.format.files import write_text
from edgediff.format.model_dir import shipped_models_dir

MERGES = 49152 - 256 - 2  # merges OpenAI's tokenizer uses from the file (the vocab is 49 408 tokens in all)
BOS, EOS = "<|startoftext|>", "<|endoftext|>"
MAX_LENGTH = 77


def source_file() -> Path:
    return shipped_models_dir() / "clip-tokenizer" / "bpe_simple_vocab_16e6.txt.gz"


def _bytes_to_unicode() -> dict[int, str]:
    """OpenAI's reversible byte → printable-character map (GPT-2's)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs), strict=True))


def vocab_and_merges() -> tuple[dict[str, int], list[str]]:
    lines = gzip.decompress(source_file().read_bytes()).decode("utf-8").split("\n")
    merges = lines[1:MERGES + 1]
    base = list(_bytes_to_unicode().values())
    tokens = base + [b + "</w>" for b in base] + ["".join(m.split()) for m in merges] + [BOS, EOS]
    return {t: i for i, t in enumerate(tokens)}, merges


def write_clip_tokenizer(dest: str | os.PathLike, *, max_length: int = MAX_LENGTH) -> Path:
    """Write a `tokenizer/` folder (vocab.json, merges.txt, tokenizer_config.json, special_tokens_map.json) that
    transformers' CLIPTokenizer and diffusers pipelines load, from the shipped merge list alone."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    vocab, merges = vocab_and_merges()
    write_text(dest / "vocab.json", json.dumps(vocab, ensure_ascii=False))
    write_text(dest / "merges.txt", "#version: 0.2\n" + "\n".join(merges) + "\n")
    special = {"bos_token": BOS, "eos_token": EOS, "unk_token": EOS, "pad_token": EOS}
    write_text(dest / "special_tokens_map.json", json.dumps(special, indent=2))
    write_text(dest / "tokenizer_config.json", json.dumps(
        {"tokenizer_class": "CLIPTokenizer", "model_max_length": max_length, "do_lower_case": True,
         "errors": "replace", "clean_up_tokenization_spaces": False, **special}, indent=2))
    return dest


def load_tokenizer(folder) -> object:
    """A transformers CLIPTokenizer built from a tokenizer folder's own files — tokenizer.json, or vocab.json +
    merges.txt — and its tokenizer_config.json, each read as JSON/text through edgediff's hardened reader (no
    `from_pretrained`: nothing in the folder is executed or unpickled)."""
    from edgediff.errors import ModelFileError, require
    from edgediff.format.jsonfile import read_json

    transformers = require("transformers", "diffusers")
    folder = Path(folder)
    config = read_json(folder / "tokenizer_config.json")
    special = read_json(folder / "special_tokens_map.json") if (folder / "special_tokens_map.json").is_file() else {}
    special = {**config, **special}  # the map wins, as transformers reads it
    kw = {k: _token(special[k]) for k in ("bos_token", "eos_token", "pad_token", "unk_token") if special.get(k)}
    if (folder / "tokenizer.json").is_file():
        model = read_json(folder / "tokenizer.json", max_bytes=64 << 20).get("model") or {}
        vocab, merges = model.get("vocab"), model.get("merges")
        merges = [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in merges or []]
    else:
        vocab = read_json(folder / "vocab.json", max_bytes=64 << 20)
        lines = (folder / "merges.txt").read_text(encoding="utf-8").splitlines()
        merges = [tuple(ln.split(" ", 1)) for ln in lines if ln and not ln.startswith("#version")]
    if not isinstance(vocab, dict) or not merges:
        raise ModelFileError(f"{folder}: no BPE vocab and merges found; expected a CLIP tokenizer's files")
    tokenizer = transformers.CLIPTokenizer(vocab=vocab, merges=merges, **kw)
    tokenizer.model_max_length = int(config.get("model_max_length") or MAX_LENGTH)
    return tokenizer


def shipped_tokenizer(*, max_length: int = MAX_LENGTH) -> object:
    """OpenAI's CLIP BPE tokenizer (SD 1.x's) built in memory from the shipped merge list: what the project's own
    text model reads, with its own max_length."""
    from edgediff.errors import require

    transformers = require("transformers", "diffusers")
    vocab, merges = vocab_and_merges()
    tokenizer = transformers.CLIPTokenizer(vocab=vocab, merges=[tuple(m.split(" ", 1)) for m in merges],
                                           bos_token=BOS, eos_token=EOS, unk_token=EOS, pad_token=EOS)
    tokenizer.model_max_length = max_length
    return tokenizer


def _token(value) -> str:
    return value.get("content", "") if isinstance(value, dict) else str(value)
