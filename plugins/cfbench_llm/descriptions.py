"""One-line descriptions shown by ``cfbench list methods`` (kept apart so listing imports nothing heavy)."""

LOCAL = {
    "zeroshot": "SenseCF zero-shot, local HF model (default embedded Gemma 3 270M); "
                "default = constrained numeric decoding, freetext = JSON",
    "fewshot": "SenseCF few-shot (3 nearest-unlike-neighbour examples per direction), local HF model; "
               "default = fixed examples, retrieval = per-query nearest examples, freetext = JSON, "
               "fast = fixed examples, bare values in, at most 3 edited features out, int8",
    "finetuned": "SenseCF LoRA fine-tuned local model (trained on first use or by `cfbench finetune`, cached); "
                 "constrained decoding",
}
API = {
    "zeroshot": "SenseCF zero-shot on an OpenAI-compatible chat endpoint (CFBENCH_API_BASE/MODEL/KEY); JSON answers",
    "fewshot": "SenseCF few-shot on an OpenAI-compatible chat endpoint; default = fixed examples, "
               "retrieval = per-query nearest examples, verified = fixed examples, candidates checked "
               "with the classifier over rounds; JSON answers",
}
