"""A tiny, randomly initialised causal LM and character tokenizer, saved as a normal HF folder.

For fast tests of the loading, decoding, fine-tuning and serving paths without the real model:
every character is one token, so numbers are spelled digit by digit as with Gemma's tokenizer.
"""

from __future__ import annotations

import string
from pathlib import Path

CHARS = string.ascii_letters + string.digits + string.punctuation + " \n"
SPECIALS = ["<pad>", "<eos>", "<bos>", "<unk>"]
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}{{ m['role'] + ': ' + m['content'] + '\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ 'assistant: ' }}{% endif %}"
)


def tiny_tokenizer():
    """A character-level ``PreTrainedTokenizerFast``: one token per character, BOS prepended."""
    # heavy optional dependencies: imported on first use
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(SPECIALS + list(CHARS))}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tk.decoder = decoders.Fuse()
    tk.post_processor = processors.TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", vocab["<bos>"])])
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<bos>", eos_token="<eos>",
                                  pad_token="<pad>", unk_token="<unk>")
    tok.chat_template = CHAT_TEMPLATE
    return tok


#: architectures ``tiny_model_dir`` can write: the default model's, and those of the SenseCF
#: paper's models (Llama-3.1-8B: llama; BioMistral-7B: mistral, with its sliding window)
ARCHS = ("gemma3", "llama", "mistral")


def tiny_model_dir(path: str | Path, seed: int = 0, sliding_window: int = 16, layers: int = 4,
                   arch: str = "gemma3") -> Path:
    """Write a tiny text model (random weights) of architecture ``arch`` and its tokenizer to ``path``.

    gemma3: half of the layers use a sliding window of ``sliding_window`` tokens, shorter than any
    real prompt, so tests exercise the sliding-window cache as the real model does past 512
    tokens; mistral: every layer slides; llama: full attention only.
    """
    # heavy optional dependencies: imported on first use
    import torch
    import transformers

    if arch not in ARCHS:
        raise ValueError(f"arch {arch!r}: expected one of {', '.join(ARCHS)}")
    path = Path(path)
    tok = tiny_tokenizer()
    torch.manual_seed(seed)
    common = dict(
        vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=layers,
        num_attention_heads=2, num_key_value_heads=1, head_dim=16, max_position_embeddings=8192,
        pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
        tie_word_embeddings=True,
    )
    if arch == "gemma3":
        cfg = transformers.Gemma3TextConfig(
            **common, sliding_window=sliding_window,
            layer_types=["sliding_attention" if i % 2 == 0 else "full_attention" for i in range(layers)])
        model = transformers.Gemma3ForCausalLM(cfg).eval()
    elif arch == "llama":
        model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**common)).eval()
    else:
        cfg = transformers.MistralConfig(**common, sliding_window=sliding_window)
        model = transformers.MistralForCausalLM(cfg).eval()
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path
