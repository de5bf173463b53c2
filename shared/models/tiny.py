"""A tiny, randomly initialised Gemma 3-shaped model for tests: built in code, offline.

Shaped like Gemma 3 where it matters to activation memory: grouped-query attention
(one KV head), interleaved sliding-window and full-attention layers with different
RoPE bases, and a sliding window (16) much shorter than the prompts the tests use,
so the sliding layers' truncated caches are exercised. The tokenizer is byte-level
(one token per UTF-8 byte plus BOS/EOS/PAD), built with the ``tokenizers`` library:
no vocabulary file, nothing downloaded, and any text round-trips exactly.

Weights come from ``torch.manual_seed(seed)``, so two builds with the same seed have
the same fingerprint. Import only from the transformers backend (torch is heavy).
"""

from __future__ import annotations

from typing import Any

TINY_MODEL_ID = "memgrid/tiny-gemma3"
SPECIALS = ("<pad>", "<bos>", "<eos>")
SLIDING_WINDOW = 16


def build_tokenizer() -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    # Byte-level BPE with no merges: every UTF-8 byte is one token (ids after the specials).
    byte_chars = pre_tokenizers.ByteLevel.alphabet()
    vocab = {tok: i for i, tok in enumerate(SPECIALS)}
    for ch in sorted(byte_chars):
        vocab[ch] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>"
    )


def build_tiny(seed: int = 0, dtype: str = "float32") -> tuple[Any, Any]:
    """``(model, tokenizer)``: a 6-layer Gemma 3 text model (~0.2 M parameters)."""
    import torch
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    tokenizer = build_tokenizer()
    config = Gemma3TextConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=6,
        num_attention_heads=4,
        num_key_value_heads=1,
        head_dim=16,
        sliding_window=SLIDING_WINDOW,
        # Gemma 3's pattern, shortened: sliding, sliding, full, repeated.
        layer_types=["sliding_attention", "sliding_attention", "full_attention"] * 2,
        max_position_embeddings=16_384,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    model = Gemma3ForCausalLM(config)
    # Random init gives near-uniform logits; a larger spread makes the equivalence
    # tests meaningful (a wrong position or mask changes the argmax, not only 1e-7).
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() >= 2:
                p.normal_(0.0, 0.2)
    model = model.to(getattr(torch, dtype))
    model.eval()
    return model, tokenizer
