"""The fact question set: deterministic, big enough, fair to the model (no answer in the
question, every correct answer accepted) and read by ``--dataset facts`` like the demo set."""

from __future__ import annotations

import hashlib
import json

import pytest

from extraction.facts import DEFAULT_NUM_QUESTIONS, fact_questions, relation_pool
from extraction.label_methods import label_answer
from extraction.labels import alias_tokens, normalize_tokens
from extraction.questions import load_questions
from tests.helpers import assert_one_line_errors, run_extraction


@pytest.fixture(scope="module")
def default_set():
    return fact_questions()


def _by_subject(relation: str, subject: str):
    (question,) = [q for q in relation_pool(relation) if q.subject == subject]
    return question


def _gold(question) -> dict:
    return {"aliases": list(question.aliases), "distractors": list(question.distractors)}


def test_same_seed_same_set_other_seed_other_draw():
    first = fact_questions(300, seed=1)
    assert first == fact_questions(300, seed=1)
    assert [q.question_id for q in first] != [q.question_id for q in fact_questions(300, seed=2)]


# sha256 of the default set's rows as `questions facts` writes them: the set the SmolLM2 fact
# store was made from (b4af34d). A change here changes `--dataset facts`: make it deliberately.
DEFAULT_SET_SHA256 = "008dc2500b3e62410ed05441ee099a37989ada509047f5d0548f4130817bff8a"


def test_default_set_is_the_one_the_store_was_made_from(default_set):
    text = "".join(json.dumps(q.row(), ensure_ascii=False) + "\n" for q in default_set)
    assert hashlib.sha256(text.encode()).hexdigest() == DEFAULT_SET_SHA256


def test_default_set_is_large_varied_and_unique(default_set):
    assert len(default_set) == DEFAULT_NUM_QUESTIONS >= 5000
    assert len({q.question_id for q in default_set}) == len(default_set)
    assert len({q.question for q in default_set}) == len(default_set)
    assert len({q.relation for q in default_set}) >= 8
    assert all(q.popularity >= 0 and q.subject in q.question for q in default_set)


def test_no_question_contains_an_answer(default_set):
    for question in default_set:
        tokens = set(normalize_tokens(question.subject))
        assert not any(tokens & set(alias) for alias in alias_tokens(_gold(question))), question


def test_common_country_names_are_aliases():
    cities = {q.aliases[0]: q for q in relation_pool("city_country")}
    assert {"United States", "USA", "US"} <= set(cities["United States"].aliases)
    assert {"Côte d'Ivoire", "Ivory Coast"} <= set(cities["Ivory Coast"].aliases)
    assert label_answer("It is in the USA.", _gold(cities["United States"])).label == 0
    # An ISO code that is an ordinary word is no alias: "in" must not match India.
    assert label_answer("It is in Spain.", _gold(cities["India"])).label == 1


def test_several_correct_answers_are_all_accepted_or_the_subject_dropped():
    south_africa = _gold(_by_subject("country_capital", "South Africa"))
    for capital in ("Pretoria", "Cape Town", "Bloemfontein"):
        assert label_answer(capital, south_africa).label == 0
    china = _gold(_by_subject("country_neighbour", "China"))
    assert label_answer("India", china).label == 0 and label_answer("Japan", china).label == 1
    # Two cities are called Paris (France, Texas): neither is asked about.
    assert not [q for q in relation_pool("city_country") if q.subject == "Paris"]


def test_a_wrong_name_containing_the_right_one_is_wrong():
    cities = {q.aliases[0]: q for q in relation_pool("city_country")}
    guinea = _gold(cities["Guinea"])
    assert label_answer("Papua New Guinea", guinea).label == 1
    assert label_answer("It is in Guinea.", guinea).label == 0
    taiwan = _gold(cities["Taiwan"])
    assert label_answer("The People's Republic of China", taiwan).label == 1
    assert label_answer("Republic of China", taiwan).label == 0
    virginia = next(q for q in relation_pool("us_city_state") if q.aliases[0] == "Virginia")
    assert label_answer("West Virginia", _gold(virginia)).label == 1
    assert label_answer("Virginia", _gold(virginia)).label == 0


def test_a_country_on_two_continents_accepts_both():
    russia = _gold(_by_subject("country_continent", "Russia"))
    assert label_answer("Asia", russia).label == 0 and label_answer("Europe", russia).label == 0
    # Its cities are on one or the other: not asked about.
    assert not [q for q in relation_pool("city_continent") if q.subject == "Novosibirsk"]


def test_numeric_answers_match_digits_and_words():
    iron = _gold(_by_subject("atomic_number", "Iron"))
    assert label_answer("The atomic number of iron is 26.", iron).label == 0
    assert label_answer("Twenty-six.", iron).label == 0
    assert label_answer("27", iron).label == 1
    oganesson = _gold(_by_subject("atomic_number", "Oganesson"))
    assert label_answer("It is one hundred and eighteen.", oganesson).label == 0
    assert label_answer("118", oganesson).label == 0 and label_answer("100", oganesson).label == 1


def test_bad_input_is_one_line_and_writes_nothing(capsys, tmp_path):
    out = tmp_path / "f.jsonl"
    assert_one_line_errors(
        run_extraction,
        [
            f"questions facts --output {out} --relations country_capital capitals",
            f"questions facts --output {out} --relations state_capital --num_questions 51",
            f"questions facts --output {out.with_suffix('.txt')}",
            f"questions facts --output {out} --max_rank 0",
            f"questions facts --output {out} --sampling sideways",
            "questions facts",
            "questions nofacts",
        ],
        capsys,
    )
    assert run_extraction("questions", "facts", "--output", out, "--relations", "x") == 2
    assert "country_capital" in capsys.readouterr().err
    assert run_extraction("questions", "facts", "--output", out, "--num_questions", "99999") == 2
    assert "hold" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_written_file_and_dataset_facts_give_the_same_questions(tmp_path):
    out = tmp_path / "facts.jsonl"
    assert run_extraction("questions", "facts", "--output", out) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert set(rows[0]) == {
        "question_id",
        "question",
        "answer",
        "relation",
        "subject",
        "popularity",
    }
    assert all(
        {"value", "aliases"} <= set(r["answer"]) <= {"value", "aliases", "distractors"}
        for r in rows
    )
    from_file = load_questions(dataset_file=str(out), num_samples=50)
    generated = load_questions(dataset="facts", num_samples=50)
    assert from_file == generated
    gold = generated[0].gold
    assert {"aliases", "relation", "subject", "popularity"} <= set(gold)
    assert gold["aliases"][0] == rows[0]["answer"]["value"]
