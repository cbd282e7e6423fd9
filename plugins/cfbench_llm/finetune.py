"""LoRA fine-tuning of the local model on (query -> counterfactual) pairs from the training split.

Teacher: by default each training row's nearest unlike neighbour that keeps its immutables and
respects bounds and directions (the core ``nearest-neighbour`` generator, restricted to
correctly classified rows); any registered method can be the teacher instead (``teacher=dice``).
Only the training split is used.

The training text is exactly what ``llm-finetuned`` decodes at inference: a one-line header, the
patient record and the counterfactual line.  The loss is the cross-entropy of the value tokens
and their terminators, over the tokens the constrained decoder can choose from (digits, '.',
'-', terminators), so no vocabulary-sized matmul is needed: training fits a 2-core CPU.
The adapter is cached under ``<cache>/llm/adapters/``, keyed by task data, base model and
settings, with its loss curve in ``meta.json``.  It is saved as safetensors (no code runs on
load) and ``meta.json`` records the SHA-256 of its files: an adapter with pickle weights, a
missing file or a changed hash is discarded with a warning and fine-tuned again.
What ``cfbench finetune`` runs around this (the task, the held-out check) is ``finetune_run``.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import shutil
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cfbench.api import FitContext, UserError, changed, phase, registry, warn
from cfbench_llm import models
from cfbench_llm.prompts import ExamplePool, PromptBuilder

KEY_VERSION = 1
#: What a usable adapter folder holds; hashed at training time into ``meta.json["files"]``.
ADAPTER_FILES = ("adapter_model.safetensors", "adapter_config.json")
#: Weight files loaded with pickle semantics: never accepted in a cached adapter.
PICKLE_PATTERNS = ("*.bin", "*.pt", "*.pth", "*.pkl", "*.pickle", "*.ckpt")
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj")


def teacher_pairs(context: FitContext, settings: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(X, source, CF)`` training pairs, ``settings.pairs`` of them at most, half per direction.

    ``teacher="sparse"`` takes the nearest-neighbour pairs through the sparsification of the
    edits examples (``ExamplePool(sparse=True)``) and keeps only the CFs the task's classifier
    puts in the target class (the nearest unlike row with the query's immutables copied into it
    is often not: a third to a half of them on heart).  It draws twice ``pairs`` rows so that
    about ``pairs`` valid ones are left, then keeps at most ``pairs // 2`` per direction.
    ``teacher="prototype"`` does the same with ``prototype_cfs``.
    """
    if settings.teacher == "nearest-neighbour":
        pool = ExamplePool(settings.pairs, seed=context.seed).fit(context)
        return pool.X_, pool.source_, pool.cf_
    if settings.teacher in ("sparse", "prototype"):
        sparse = settings.teacher == "sparse"
        pool = ExamplePool(2 * settings.pairs, seed=context.seed, sparse=sparse).fit(context)
        CF = pool.cf_ if sparse else prototype_cfs(context, pool.X_, pool.source_, PROTOTYPE_MARGIN)
        ok = teacher_valid(context, pool.X_, pool.source_, CF) & (CF != pool.X_).any(axis=1)
        rng = np.random.default_rng(context.seed)
        keep = np.sort(np.concatenate([
            rng.permutation(np.flatnonzero(ok & (pool.source_ == c)))[: max(settings.pairs // 2, 1)]
            for c in (0, 1)]))
        if not len(keep):
            raise UserError(f"teacher {settings.teacher!r} found no valid counterfactual for the training rows")
        return pool.X_[keep], pool.source_[keep], CF[keep]
    method, _, variant = settings.teacher.partition(":")
    spec = registry().generator(method)
    variant = variant or spec.variants[0]
    ok, hint = spec.status()
    if not ok:
        raise UserError(f"teacher {settings.teacher!r} is unavailable: {hint}")
    names = context.schema.names
    X = context.X_train[names]
    y = np.asarray(context.y_train)
    keep = np.flatnonzero(context.predict(X) == y)
    rng = np.random.default_rng(context.seed)
    idx = np.sort(rng.choice(keep, size=min(settings.pairs, len(keep)), replace=False))
    gen = spec.factory(variant).fit(context)
    res = gen.generate(X.iloc[idx].reset_index(drop=True), 1 - y[idx], 1, 30.0)
    good = [j for j, r in enumerate(res) if r.status == "ok" and r.cfs is not None and len(r.cfs)]
    if not good:
        raise UserError(f"teacher {settings.teacher!r} found no counterfactual for the training rows")
    cfs = np.stack([res[j].cfs[names].to_numpy(float)[0] for j in good])
    return X.iloc[idx[good]].to_numpy(float), y[idx[good]], cfs


#: the target-class probability a ``prototype`` teacher CF must reach: past the boundary, so a
#: student that imitates it loosely still lands in the target class.  On ai-readi's 100 test
#: queries the fine-tuned model was valid for 39 % / 45 % / 58 % at 0.7 / 0.8 / 0.9, changing
#: 3.1 / 4.7 / 6.5 features (few-shot: 48 %, 12.0); see docs/llm.md
PROTOTYPE_MARGIN = 0.9


def class_prototypes(context: FitContext) -> np.ndarray:
    """Per class ``c`` (rows 0 and 1), each feature's typical value among the training rows the
    classifier puts in ``c``: the median (rounded for integer features), the most common code
    for categorical and ordinal ones."""
    names = context.schema.names
    X = context.X_train[names].to_numpy(float)
    pred = np.asarray(context.predict(context.X_train[names]))
    out = np.empty((2, len(names)))
    for c in (0, 1):
        rows = X[pred == c] if (pred == c).any() else X
        for j, f in enumerate(context.schema.features):
            col = rows[:, j][np.isfinite(rows[:, j])]
            if not len(col):
                out[c, j] = np.nan
            elif f.kind in ("categorical", "ordinal"):
                vals, counts = np.unique(col, return_counts=True)
                out[c, j] = vals[np.argmax(counts)]
            else:
                out[c, j] = np.round(np.median(col)) if f.integer else np.median(col)
    return out


def prototype_cfs(context: FitContext, X: np.ndarray, source: np.ndarray,
                  margin: float = PROTOTYPE_MARGIN) -> np.ndarray:
    """Per row, a counterfactual that moves mutable features to the target class's typical value
    (``class_prototypes``) one at a time, each time the one that raises the target-class
    probability most, until that probability reaches ``margin``; a move against a feature's
    direction is never made.  A row that runs out of features first keeps its last state (the
    caller keeps it only if the classifier then puts it in the target class).  The values a
    student must write are then the same few per direction, and the CFs sit past the decision
    boundary, not on it."""
    names = context.schema.names
    proto = class_prototypes(context)
    dirs = context.schema.directions()
    mutable = context.schema.mask("mutable")
    X = np.asarray(X, float)
    target = 1 - np.asarray(source, int)
    CF = X.copy()
    V = proto[target]  # (rows, features): each row's target values
    allowed = mutable[None, :] & np.isfinite(V) & (V != X)
    allowed &= ~((dirs[None, :] > 0) & (V < X)) & ~((dirs[None, :] < 0) & (V > X))

    def p_target(rows: np.ndarray, Z: np.ndarray) -> np.ndarray:
        proba = np.asarray(context.predict_proba(pd.DataFrame(Z, columns=names)), float)
        cols = np.searchsorted(np.asarray(context.classes), target[rows])
        return proba[np.arange(len(Z)), cols]

    live = np.arange(len(X))
    live = live[p_target(live, CF[live]) < margin]
    while len(live):
        cand = [(r, j) for r in live for j in np.flatnonzero(allowed[r])]
        if not cand:
            break
        rr = np.array([r for r, _ in cand])
        jj = np.array([j for _, j in cand])
        trial = CF[rr].copy()
        trial[np.arange(len(cand)), jj] = V[rr, jj]
        p = p_target(rr, trial)
        best: dict[int, tuple[float, int]] = {}
        for r, j, pk in zip(rr, jj, p, strict=True):
            if r not in best or pk > best[r][0]:
                best[int(r)] = (float(pk), int(j))
        nxt = []
        for r, (pk, j) in best.items():
            CF[r, j] = V[r, j]
            allowed[r, j] = False
            if pk < margin:
                nxt.append(r)
        live = np.array(nxt, dtype=int)
    return CF


def teacher_valid(context: FitContext, X: np.ndarray, source: np.ndarray, CF: np.ndarray) -> np.ndarray:
    """Per pair: whether the task's classifier puts the teacher's CF in the target class."""
    names = context.schema.names
    if not len(CF):
        return np.zeros(0, bool)
    return np.asarray(context.predict(pd.DataFrame(np.asarray(CF, float), columns=names))) == 1 - np.asarray(source)


#: training rows set aside (never teacher pairs) to measure what the adapter learnt
HELDOUT_POOL = 200


def heldout_rows(context: FitContext, X_teacher: np.ndarray, n: int = HELDOUT_POOL) -> np.ndarray:
    """Up to ``n`` training-split positions, seeded, none of them a teacher pair's query, half
    from each predicted class: the rows ``cfbench finetune`` measures the adapter on.  They come
    from the training split, never the test split the benchmark queries are drawn from."""
    X = context.X_train[context.schema.names].to_numpy(float)
    seen = {row.tobytes() for row in np.asarray(X_teacher, float)}
    free = np.array([i for i, row in enumerate(X) if row.tobytes() not in seen], dtype=int)
    if not len(free):
        return free
    pred = np.asarray(context.predict(context.X_train[context.schema.names].iloc[free]))
    rng = np.random.default_rng([context.seed, 15])
    picks = [list(rng.permutation(free[pred == c])[: max(n // 2, 1)]) for c in np.unique(pred)]
    out = [i for group in itertools.zip_longest(*picks) for i in group if i is not None]
    return np.asarray(out[:n], dtype=int)  # classes interleaved: any prefix holds both


def loss_curve(losses: list[float], points: int = 8) -> list[float]:
    """The mean training loss over ``points`` equal windows of steps (fewer if there are fewer steps)."""
    if not losses:
        return []
    return [float(np.mean(w)) for w in np.array_split(np.asarray(losses, float), min(points, len(losses)))]


def data_fingerprint(context: FitContext) -> str:
    h = hashlib.sha256()
    h.update(pd.util.hash_pandas_object(context.X_train, index=False).values.tobytes())
    h.update(np.asarray(context.y_train, dtype=np.int64).tobytes())
    h.update(",".join(context.schema.names).encode())
    return h.hexdigest()


def classifier_fingerprint(context: FitContext) -> str:
    """The classifier as the teachers see it: its probabilities on the training rows (rounded to
    1e-9 against float noise).  Another model for the same data trains its own adapter."""
    proba = np.asarray(context.predict_proba(context.X_train[context.schema.names]), dtype=float)
    return hashlib.sha256(np.round(proba, 9).astype("<f8").tobytes()).hexdigest()


def train_dtype(settings: Any) -> str:
    """``bfloat16`` where the generators run the model in bfloat16 (``models.inference_dtype``):
    training then autocasts its matmuls to bfloat16; else ``float32``."""
    import torch  # heavy optional dependency: imported on first use

    dtype = models.inference_dtype(settings.device, settings.dtype, settings.quantize)
    return "bfloat16" if dtype == torch.bfloat16 else "float32"


def adapter_key(context: FitContext, settings: Any, builder: PromptBuilder) -> dict[str, Any]:
    """Everything the adapter depends on; its hash names the cache folder (a float32-trained
    adapter's key is the one it had before bfloat16 training existed)."""
    key = {
        "version": KEY_VERSION,
        "task": context.task_name,
        "data": data_fingerprint(context),
        "classifier": classifier_fingerprint(context),
        "model": models.model_id(settings.model, context.cache_dir),
        "seed": context.seed,
        "settings": {k: getattr(settings, k) for k in
                     ("pairs", "epochs", "lr", "rank", "ft_batch", "teacher", "digits", "row_style", "sep")},
        "templates": hashlib.sha256(
            (builder.templates["finetune"] + builder.templates["record"]).encode()).hexdigest()[:16],
    }
    if train_dtype(settings) == "bfloat16":
        key["train_dtype"] = "bfloat16"
    if settings.teacher == "prototype" and PROTOTYPE_MARGIN != 0.7:  # 0.7: the keys from before
        key["prototype_margin"] = PROTOTYPE_MARGIN
    return key


def adapter_dir(context: FitContext, key: dict[str, Any]) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in context.task_name)
    return models.llm_cache(context.cache_dir) / "adapters" / f"{safe}-{digest}"


def adapter_hashes(path: Path) -> dict[str, str]:
    """SHA-256 of each of ``ADAPTER_FILES`` in ``path`` (the ones present)."""
    return {name: hashlib.sha256((path / name).read_bytes()).hexdigest()
            for name in ADAPTER_FILES if (path / name).is_file()}


def adapter_problem(path: Path, info: Any) -> str | None:
    """Why the cached adapter in ``path`` must not be loaded, or None if it may be."""
    pickles = sorted(f.name for pat in PICKLE_PATTERNS for f in path.glob(pat))
    if pickles:
        return f"it holds pickle weights ({', '.join(pickles)})"
    if not isinstance(info, dict) or not isinstance(info.get("files"), dict):
        return "meta.json records no file hashes"
    missing = [n for n in ADAPTER_FILES if not (path / n).is_file()]
    if missing:
        return f"{missing[0]} is missing"
    now = adapter_hashes(path)
    for name in ADAPTER_FILES:
        if now[name] != info["files"].get(name):
            return f"the SHA-256 of {name} does not match the one recorded at training"
    return None


def ensure_adapter(context: FitContext, settings: Any, builder: PromptBuilder,
                   log: Any = None) -> tuple[Path, dict[str, Any]]:
    """The cached adapter for this task and settings, fine-tuning it first if there is none
    (or if the cached one fails its safetensors and hash checks)."""
    key = adapter_key(context, settings, builder)
    path = adapter_dir(context, key)
    meta = path / "meta.json"
    with models.file_lock(path.with_name(path.name + ".lock")):
        if meta.is_file() and not settings.force_finetune:
            try:
                info = json.loads(meta.read_text())
            except (OSError, ValueError):
                info = None
            why = adapter_problem(path, info)
            if why is None:
                return path, info
            warn(f"discarding cached adapter {path.name}: {why}; fine-tuning again")
        shutil.rmtree(path, ignore_errors=True)
        phase.say("LoRA fine-tuning the local model for this task (first use only, several minutes)")
        info = train(context, settings, builder, path, log=log)
        info["key"] = key
        info["files"] = adapter_hashes(path)
        meta.write_text(json.dumps(info, indent=1))
    return path, info


def _value_ids(vocab: Any, text: str) -> list[int]:
    ids = vocab.tokenizer.encode(text, add_special_tokens=False)
    if all(i in vocab.id_set for i in ids):
        return ids
    out = []
    for ch in text:  # a tokenizer that marks word starts: spell the value one character at a time
        one = [i for i, t in zip(vocab.ids, vocab.texts, strict=True) if t == ch]
        if not one:
            raise ValueError(f"character {ch!r} has no token of its own")
        out.append(one[0])
    return out


def build_examples(vocab: Any, builder: PromptBuilder, prefix_ids: list[int], X, src, CF) -> list[tuple[list[int], list[int]]]:
    """``(token ids, loss positions)`` per pair: positions predict a value token or a terminator."""
    # engine imports torch and transformers (heavy optional dependencies): imported on first use
    from cfbench_llm.engine import build_program

    out = []
    for x, s, cf in zip(X, src, CF, strict=True):
        head, tail = builder.query_text(x, int(s), 1 - int(s))
        segs = builder.cf_segments(x, tail)
        prog = build_program(vocab, head, segs, builder.formats)
        ids = list(prefix_ids) + list(prog.head)
        targets = []
        slot_features = [seg.slot for seg in segs if seg.slot >= 0]
        for slot, f in zip(prog.slots, slot_features, strict=True):
            for tid in _value_ids(vocab, builder.formats[f].format(cf[f])) + [slot.terminators[0]]:
                targets.append(len(ids) - 1)  # hidden state at the previous token predicts tid
                ids.append(tid)
            ids.extend(slot.after)
        out.append((ids, targets))
    return out


def train(context: FitContext, settings: Any, builder: PromptBuilder, out: Path, log: Any = None) -> dict[str, Any]:
    """LoRA fine-tune on teacher pairs and save the adapter in ``out``; returns the training record."""
    # heavy optional dependencies (engine imports torch and transformers): imported on first use
    import torch
    from peft import LoraConfig, get_peft_model

    from cfbench_llm.engine import NumberVocab

    say = log or (lambda msg: None)
    t0 = time.perf_counter()
    if settings.tune_malloc:
        models.tune_malloc()
    models.set_threads(settings.threads)
    torch.manual_seed(context.seed)
    X, src, CF = teacher_pairs(context, settings)
    heldout = heldout_rows(context, X)
    model, tok = models.load(settings.model, context.cache_dir, settings.device, fresh=True)
    vocab = NumberVocab(tok)
    prefix_ids = tok.encode(builder.finetune_header() + "\n", add_special_tokens=True)
    examples = build_examples(vocab, builder, prefix_ids, X, src, CF)
    terms = sorted({ids[p + 1] for ids, pos in examples for p in pos} - vocab.id_set)
    allowed = vocab.ids + terms
    col = {t: j for j, t in enumerate(allowed)}
    targets = [t for t in LORA_TARGETS if any(n.endswith(t) for n, _ in model.named_modules())]
    if not targets:
        raise UserError(f"model has none of the LoRA target modules {', '.join(LORA_TARGETS)}")
    cfg = LoraConfig(r=settings.rank, lora_alpha=2 * settings.rank, lora_dropout=0.0, target_modules=targets)
    with warnings.catch_warnings():  # peft calls a deprecated transformers property
        warnings.simplefilter("ignore", FutureWarning)
        peft_model = get_peft_model(model, cfg)
    peft_model.train()
    base = peft_model.get_base_model()
    if settings.checkpointing:
        # Keep only each layer's input and recompute its activations in the backward pass: the
        # stored activations of a batch of 8 records were most of the 7.9 GB peak on ai-readi
        # (3.7 GB with this).  The recomputation repeats the same operations on the same
        # tensors, so the adapter is bit for bit the one trained without it; ~1.4x the CPU time.
        enable = getattr(base, "activation_checkpointing_enable", None)
        with warnings.catch_warnings():  # older transformers: only the deprecated name exists
            warnings.simplefilter("ignore", FutureWarning)
            if enable is not None:
                enable({"use_reentrant": False})
            else:
                base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    decoder = base.get_decoder()
    # where the generators run in bfloat16, training runs its matmuls in bfloat16 too (autocast;
    # the weights, the adapter and the optimiser stay float32): several times faster on a CPU
    # with native bfloat16
    amp = train_dtype(settings) == "bfloat16"
    head_w = model.get_output_embeddings().weight.detach()
    W = head_w[torch.tensor(allowed, device=head_w.device)]
    params = [p for p in peft_model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=settings.lr, weight_decay=0.0)
    rng = np.random.default_rng(context.seed)
    n_steps = settings.epochs * math.ceil(len(examples) / settings.ft_batch)
    warm = max(1, n_steps // 10)
    sched = torch.optim.lr_scheduler.LambdaLR(  # linear warm-up, then linear decay to zero
        opt, lambda s: (s + 1) / warm if s < warm else max(0.0, (n_steps - s) / max(n_steps - warm, 1)))
    losses: list[float] = []
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    dev = head_w.device
    step = 0
    for epoch in range(settings.epochs):
        order = rng.permutation(len(examples))
        for start in range(0, len(order), settings.ft_batch):
            batch = [examples[i] for i in order[start:start + settings.ft_batch]]
            L = max(len(ids) for ids, _ in batch)
            ids = torch.full((len(batch), L), pad, dtype=torch.long)
            mask = torch.zeros((len(batch), L), dtype=torch.long)
            rows, cols, labels = [], [], []
            for b, (seq, pos) in enumerate(batch):
                ids[b, : len(seq)] = torch.tensor(seq)
                mask[b, : len(seq)] = 1
                rows += [b] * len(pos)
                cols += pos
                labels += [col[seq[p + 1]] for p in pos]
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp):
                hidden = decoder(input_ids=ids.to(dev), attention_mask=mask.to(dev), use_cache=False).last_hidden_state
                h = hidden[torch.tensor(rows, device=dev), torch.tensor(cols, device=dev)]
            logits = h.float() @ W.float().T
            loss = torch.nn.functional.cross_entropy(logits, torch.tensor(labels, device=dev))
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            step += 1
            losses.append(float(loss.detach()))
            say(f"step {step}/{n_steps} epoch {epoch + 1} loss {losses[-1]:.4f}")
            phase.step("LoRA fine-tuning (first use only): step", step, n_steps)
    out.mkdir(parents=True, exist_ok=True)
    peft_model.save_pretrained(out, safe_serialization=True)
    span = np.ptp(context.X_train[context.schema.names].to_numpy(float), axis=0)
    return {
        "pairs": len(examples),
        "teacher_changed": float(changed(X, CF, span).sum(axis=1).mean()),
        "teacher_validity": float(teacher_valid(context, X, src, CF).mean()),
        "steps": n_steps,
        "losses": losses,
        "loss_first": losses[0] if losses else None,
        "loss_last": losses[-1] if losses else None,
        "loss_curve": loss_curve(losses),
        "heldout_rows": [int(i) for i in heldout],
        "seconds": time.perf_counter() - t0,
        "tokens_per_example": float(np.mean([len(ids) for ids, _ in examples])),
        "lora_targets": targets,
        "train_dtype": "bfloat16 autocast" if amp else "float32",
        "trainable_params": int(sum(p.numel() for p in params)),
    }


def load_finetuned(name: str | None, adapter: Path, cache_dir: Path | None, device: str | None,
                   dtype: Any = None) -> tuple[Any, Any]:
    """A fresh copy of the base model with the adapter merged into its weights (as fast as the
    base), in the dtype it was trained in, then cast to ``dtype`` if one is given."""
    from peft import PeftModel  # heavy optional dependency: imported on first use

    if not (Path(adapter) / ADAPTER_FILES[0]).is_file() or any(
            f for pat in PICKLE_PATTERNS for f in Path(adapter).glob(pat)):
        raise UserError(f"{adapter}: an adapter must be {ADAPTER_FILES[0]} (safetensors) and hold "
                        "no pickle weight files")
    base, tok = models.load(name, cache_dir, device, fresh=True)
    with warnings.catch_warnings():  # peft calls a deprecated transformers property
        warnings.simplefilter("ignore", FutureWarning)
        merged = PeftModel.from_pretrained(base, str(adapter)).merge_and_unload()
    if dtype is not None:
        merged.to(dtype)
    merged.eval()
    return merged, tok
