"""Each detector's quantity on small synthetic inputs whose value is known by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from extraction.store import Decoding
from training.benchmark_stats import paired_bootstrap, seed_metrics
from training.detectors import sampling, scores
from training.detectors.fitting import LOGISTIC_GRID, Split, fit_select, training_free


def causal(weights: torch.Tensor) -> torch.Tensor:
    """Rows normalised to sum to 1 over the causal (lower-triangular) part."""
    lower = torch.tril(weights)
    return lower / lower.sum(-1, keepdim=True)


def test_answer_positions_fall_back_to_the_last_prompt_token():
    assert scores.answer_positions(6, 4).tolist() == [4, 5]
    assert scores.answer_positions(6, 6).tolist() == [5]


def test_diagonal_attention_has_log_determinant_zero():
    attention = torch.eye(5).expand(3, 5, 5)
    assert scores.llmcheck_attention_score(attention, scores.answer_positions(5, 2)) == 0.0


def test_attention_score_sums_heads_of_the_mean_log_diagonal():
    attention = torch.zeros(2, 4, 4)
    attention[:, 2, 2] = attention[:, 3, 3] = 0.5
    expected = 2 * math.log(0.5)  # each head: mean of log 0.5 over the two answer tokens
    assert scores.llmcheck_attention_score(attention, scores.answer_positions(4, 2)) == (
        pytest.approx(expected)
    )


def test_answer_attending_only_to_the_prompt_has_lookback_ratio_one():
    attention = torch.zeros(2, 5, 5)
    attention[:, 3:, :3] = 1 / 3  # answer tokens 3, 4 spread over prompt tokens 0..2
    ratio = scores.lookback_ratio(attention, 3, scores.answer_positions(5, 3))
    assert ratio.tolist() == pytest.approx([1.0, 1.0])


def test_lookback_ratio_of_self_attention_is_zero_and_of_a_half_split_one_half():
    attention = torch.eye(4).expand(1, 4, 4).clone()
    answer = scores.answer_positions(4, 2)
    assert scores.lookback_ratio(attention, 2, answer).tolist() == [0.0]
    attention[0, 2] = torch.tensor([0.5, 0.0, 0.5, 0.0])
    attention[0, 3] = torch.tensor([0.25, 0.25, 0.25, 0.25])
    assert scores.lookback_ratio(attention, 2, answer).tolist() == pytest.approx([0.5])


def test_laplacian_eigenvalues_equal_the_full_eigendecomposition():
    torch.manual_seed(0)
    attention = causal(torch.rand(2, 6, 6))
    got = scores.laplacian_eigenvalues(attention, 4)
    for head in range(2):
        a = attention[head].double().numpy()
        degree = a.sum(0) / np.arange(6, 0, -1)
        eigenvalues = np.sort(np.linalg.eigvals(np.diag(degree) - a).real)[::-1][:4]
        assert got[head].numpy() == pytest.approx(eigenvalues, abs=1e-5)


def test_laplacian_of_diagonal_attention_and_padding():
    got = scores.laplacian_eigenvalues(torch.eye(3).expand(1, 3, 3), 5)
    # d_ii = 1 / (T - i), a_ii = 1: eigenvalues 1/1 - 1, 1/2 - 1, 1/3 - 1, then zero padding.
    assert got[0].tolist() == pytest.approx([0.0, -0.5, -2 / 3, 0.0, 0.0])


def test_mean_log_eigenvalue_by_hand():
    one = torch.tensor([[1.0, -1.0, 1.0, -1.0]])  # centred; variance over features 1
    assert scores.mean_log_eigenvalue(one) == pytest.approx(math.log(1 + scores.RIDGE))
    two = torch.tensor([[1.0, -1.0, 0.0, 0.0], [0.0, 0.0, 1.0, -1.0]])  # orthogonal, 0.5 each
    assert scores.mean_log_eigenvalue(two) == pytest.approx(math.log(0.5 + scores.RIDGE))
    hidden = torch.cat([torch.zeros(3, 4), two])
    assert scores.llmcheck_hidden_score(hidden, scores.answer_positions(5, 3)) == pytest.approx(
        math.log(0.5 + scores.RIDGE)
    )


def test_shifts_are_zero_between_equal_layers():
    rows = causal(torch.rand(1, 4, 4))[0, 2:]
    assert scores.attention_shift(rows, rows).tolist() == pytest.approx([0.0, 0.0], abs=1e-6)
    state = torch.randn(8)
    assert scores.hidden_shift(state, state).tolist() == pytest.approx([0.0, 0.0], abs=1e-6)


def test_shifts_by_hand():
    first, last = torch.tensor([[1.0, 0, 0, 0]]), torch.tensor([[0, 0, 0, 1.0]])
    # All mass moves 3 positions (of T = 4); the rows are orthogonal.
    assert scores.attention_shift(first, last).tolist() == pytest.approx([0.75, 1.0])
    state = torch.tensor([1.0, -1.0, 2.0, -2.0])
    # The same values (Wasserstein 0) in the opposite direction (cosine distance 2).
    assert scores.hidden_shift(state, -state).tolist() == pytest.approx([0.0, 2.0])


def test_sequence_uncertainty_and_token_probabilities():
    logprobs = torch.tensor([0.5, 0.25]).log()
    entropy = torch.tensor([1.0, 3.0])
    got = scores.sequence_uncertainty(logprobs, entropy)
    assert got.tolist() == pytest.approx([math.log(0.5 * 0.25) / 2, math.log(0.25), 2.0, 3.0])
    probs = scores.token_probability_features(logprobs)
    assert probs.tolist() == pytest.approx([0.375, 0.25, 0.5, math.sqrt(2) * 0.125])
    empty = torch.zeros(0)
    assert scores.sequence_uncertainty(empty, empty).tolist() == [-1e3, -1e3, 1e3, 1e3]
    assert scores.token_probability_features(empty).tolist() == [0.0] * 4


def one_hot(ids: list[int], width: int = 4) -> torch.Tensor:
    """Answer embeddings that are equal for equal ids and orthogonal otherwise."""
    return torch.nn.functional.one_hot(torch.tensor(ids), width).float()


def test_semantic_entropy_of_clusters_by_hand():
    embeddings = one_hot([0, 0, 1, 2])
    assert sampling.semantic_clusters(embeddings) == [0, 0, 1, 2]
    p = np.array([0.5, 0.25, 0.25])
    assert sampling.semantic_entropy(embeddings) == pytest.approx(-(p * np.log(p)).sum())
    assert sampling.semantic_entropy(one_hot([3, 3, 3])) == 0.0
    # cosine 0.6 < 0.8: two meanings; scaled copies (cosine 1): one
    near = torch.tensor([[1.0, 0.0], [0.6, 0.8], [2.0, 0.0]])
    assert sampling.semantic_clusters(near) == [0, 1, 0]


def test_eigenscore_is_insides_reference_computation():
    """INSIDE's getEigenIndicator_v0: mean(log10(svd(torch.cov(Z) + 1e-3 I)))."""
    z = torch.randn(5, 64, generator=torch.Generator().manual_seed(0))
    covariance = np.cov(z.numpy().astype(float))  # rows are the K answers, as torch.cov
    singular = np.linalg.svd(covariance + 1e-3 * np.eye(5), compute_uv=False)
    assert sampling.eigenscore(z) == pytest.approx(np.mean(np.log10(singular)), rel=1e-6)
    same = z[:1].expand(5, 64)  # K equal answers: one eigenvalue, the rest the ridge
    assert sampling.eigenscore(same) < sampling.eigenscore(z)


def test_lexical_similarity_is_the_mean_over_pairs():
    matrix = torch.tensor([[1.0, 0.5, 0.0], [0.5, 1.0, 0.25], [0.0, 0.25, 1.0]])
    assert sampling.lexical_similarity(matrix) == pytest.approx(0.25)
    assert sampling.lexical_similarity(torch.ones(1, 1)) == 1.0


def test_skip_reason_needs_two_generations_of_some_question():
    decoding = Decoding(num_beams=5, do_sample=False)
    reason = sampling.skip_reason({"q1": ["q1"], "q2": ["q2"]}, decoding)
    assert reason.startswith("single-generation store") and "num_beams=5" in reason
    assert "--num_generations" in reason
    assert sampling.skip_reason({"q1": ["q1#0", "q1#1"], "q2": ["q2#0"]}, decoding) is None


def toy_split(n: int = 60, seed: int = 0) -> Split:
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    order = rng.permutation(n)
    rows = {"train": order[:30], "val": order[30:45], "test": order[45:]}
    return Split(rows=rows, labels={k: labels[v] for k, v in rows.items()}), labels


def test_training_free_chooses_candidate_and_orientation_on_train_and_val():
    split, labels = toy_split()
    noise = np.random.default_rng(1).normal(size=len(labels))
    outcome = training_free({"noise": noise, "signal": -labels + 0.01 * noise}, split)
    assert outcome.settings["chosen"] == "signal" and outcome.settings["sign"] == -1
    assert seed_metrics(outcome.test_scores, split.labels["test"])["auroc"] == 1.0


def test_fit_select_chooses_the_informative_layer_on_validation():
    split, labels = toy_split()
    rng = np.random.default_rng(2)
    noise = rng.normal(size=(len(labels), 3))
    informative = noise + 3 * labels[:, None]
    outcome = fit_select({"layer 0": noise, "layer 1": informative}, LOGISTIC_GRID, split, 0)
    assert outcome.settings["chosen"] == "layer 1"
    assert seed_metrics(outcome.test_scores, split.labels["test"])["auroc"] > 0.9


def test_metrics_include_auprc_of_the_correct_class():
    labels = np.array([1, 1, 1, 0])
    got = seed_metrics(np.array([0.9, 0.8, 0.7, 0.1]), labels)
    assert got == {"auroc": 1.0, "auprc": 1.0, "auprc_correct": 1.0}
    assert math.isnan(seed_metrics(np.array([0.1, 0.2]), np.array([1, 1]))["auroc"])


def test_paired_bootstrap_of_identical_and_of_better_detectors():
    _, labels = toy_split()
    rng = np.random.default_rng(3)
    random = rng.normal(size=len(labels))
    same = paired_bootstrap([random], [random], [labels], resamples=200)
    assert same == {"difference": 0.0, "low": 0.0, "high": 0.0}
    better = paired_bootstrap([labels + 0.1 * random], [random], [labels], resamples=200)
    assert better["low"] > 0 and better["difference"] == pytest.approx(
        1.0 - seed_metrics(random, labels)["auroc"]
    )


def test_split_keep_filters_every_split_with_its_labels():
    split, labels = toy_split(12)
    first = np.arange(12) % 3 == 0  # e.g. generation 0 of questions of three traces
    kept = split.keep(first)
    for name in ("train", "val", "test"):
        assert first[kept.rows[name]].all() and set(kept.rows[name]) <= set(split.rows[name])
        assert len(kept.rows[name]) == first[split.rows[name]].sum()
        assert (kept.labels[name] == labels[kept.rows[name]]).all()
