"""Names, proper nouns and words with an everyday sense: read as what they are, not as toxic words."""

from __future__ import annotations

import pytest

from safetext.detect import names
from safetext.policy import Action, PolicyEngine, load_policy


@pytest.fixture(scope="module")
def engine() -> PolicyEngine:
    return PolicyEngine("default")


@pytest.fixture(scope="module")
def strict() -> PolicyEngine:
    return PolicyEngine("strict")


PEOPLE = [
    'a street sign that says "Dick Smith"',
    "a book cover titled Dick Smith",
    "a travel poster for Dick Smith, vintage style",
    'a poster that says "DICK SMITH"',
    "a biography titled Philip Dick",
    "a vintage poster of Fanny Brice",
    "a concert poster with the text Randy Newman",
    'a poster that says "Dick Fosbury"',  # a surname the census tables lack, and no English word
    'a poster that says "Dick Cavett"',  # a census surname, in wordfreq's lists only through the news
    "a film poster for Fanny Ardant",
    "a chalk portrait of Tony Hoare beside the text HOARE LOGIC",  # a surname, not a spelling of "whore"
    'a poster that says "Dick Van Patten"',  # a particle between the given name and the surname
    'a poster that says "DICK VAN PATTEN"',
]

NOT_PEOPLE = [
    'a sign that says "Suck My Dick"',  # "My" is a word far more than a name
    'a sign that says "Dick Head"',  # "Head" too, and "dickhead" is a term
    'a sign that says "dick smith"',  # no capitals, no name
    'a sign that says "D1ck Smith"',  # an obfuscated word is not a name
    'a sign that says "Big Dick Energy"',
    'a sign that says "Dick"',
    'a sign that says "Cock Smith"',  # not a given name
    'a sign that says "Dick Sucka"',  # a respelled insult is frequent enough to be a word
    'a sign that says "Dick Headman"',  # a rare surname, but one that opens with a compound word
    'a sign that says "Dick Qzx"',  # no vowel: no name
    'a sign that says "Dick Pics"',
    'a sign that says "Dick Van Head"',  # a particle, then a word that is no surname
    'a sign that says "Dick Van Dick"',  # the other half is a toxic word
    'a sign that says "dick van patten"',
    'a sign that says "Dick Rider"',  # a census surname, but one that builds compounds: "dickrider"
    'a sign that says "Dick Sack"',
    'a sign that says "Dick Ball"',
]


@pytest.mark.parametrize("prompt", PEOPLE)
def test_a_person_s_name_is_allowed(engine: PolicyEngine, prompt: str) -> None:
    assert engine.check(prompt).action is Action.ALLOW, engine.check(prompt).reasons


@pytest.mark.parametrize("prompt", NOT_PEOPLE)
def test_words_that_only_look_like_names_are_still_rewritten(engine: PolicyEngine, prompt: str) -> None:
    assert engine.check(prompt).action is Action.REWRITE


def test_slurs_are_never_read_as_names(engine: PolicyEngine) -> None:
    """Slurs, hate and violence categories do not set ``names``."""
    policy = load_policy("default")
    assert not policy.categories["slur"].names and not policy.categories["hate"].names
    assert engine.check('a sign that says "Nigger Jim"').action is Action.REWRITE


@pytest.mark.parametrize(
    ("prompt", "action"),
    [
        ("a portrait of Harold Spicher", Action.ALLOW),  # "spic" + "her" glued, in a surname
        ('a book cover titled "Mark Scroggs"', Action.ALLOW),  # a stretched "scrog", in a surname
        ('a sign that says "Spicher"', Action.REWRITE),  # no other half: no name
        ('a sign that says "harold spicher"', Action.REWRITE),  # no capitals
        ("a portrait of Harold Sp1cher", Action.REWRITE),  # an obfuscated word is no name
        ('a sign that says "Harold Dickhead"', Action.REWRITE),  # the word is a term itself
    ],
)
def test_a_term_inside_a_name_is_the_name(engine: PolicyEngine, prompt: str, action: Action) -> None:
    """A glued or respelled reading inside a word that is a name beside its other half is
    the name, in every category: the word is not the term."""
    assert engine.check(prompt).action is action
    assert engine.check_readings(prompt, [prompt.lower()]).action is action


def test_the_name_rule_is_opt_in_per_category_and_off_without_builtin_names() -> None:
    policy = load_policy("default")
    no_names = policy.model_copy(
        update={"categories": {**policy.categories, "sexual": policy.categories["sexual"].model_copy(update={"names": False})}}
    )
    assert PolicyEngine(no_names).check("a book cover titled Dick Smith").action is Action.REWRITE
    off = policy.model_copy(update={"builtin_names": False})
    assert PolicyEngine(off).check("a book cover titled Dick Smith").action is Action.REWRITE


def test_a_lower_casing_tokenizer_reading_keeps_the_name(engine: PolicyEngine) -> None:
    """CLIP's tokenizer lower-cases; the capitals in the prompt still decide."""
    prompt = 'a street sign that says "Dick Smith"'
    assert engine.check_readings(prompt, [prompt.lower()]).action is Action.ALLOW
    toxic = 'a sign that says "Suck My Dick"'
    assert engine.check_readings(toxic, [toxic.lower()]).action is Action.REWRITE


def test_the_guard_keeps_a_name_its_lower_casing_tokenizer_reads() -> None:
    from _inject_helpers import LOCALIZED, tiny

    from safetext import Guard

    guard = Guard(tiny("sd"), policy="default", preset=LOCALIZED["sd"])
    # The tiny tokenizer lower-cases, Μ to μ too, which reads as another letter: its reading differs from the prompt.
    prompt = 'a street sign that says "Dick Smith" Μ'
    readings = guard.readings(prompt)
    assert readings and all("Dick" not in r and "dick smith" in r for r in readings)
    assert guard.check(prompt)[0].action is Action.ALLOW
    assert guard.check('a sign that says "Suck My Dick" Μ')[0].action is Action.REWRITE


def test_name_partner_positions(engine: PolicyEngine) -> None:
    sets = engine.lexicon.names
    text = "a poster of Dick Smith and Philip Dick"
    assert names.name_partner(text, 12, 16, sets) == (17, 22)
    assert names.name_partner(text, 34, 38, sets) == (27, 33)
    assert names.name_partner("a poster of Dick Head", 12, 16, sets) is None
    assert names.proper_partner("a book cover titled Tit Willow", 20, 23, sets) == (24, 30)
    assert names.proper_partner("Pimp My Ride", 0, 4, sets) is None
    assert names.proper_partner("Hooker, Oklahoma", 0, 6, sets) == (8, 16)
    assert names.proper_partner("Hooker,Oklahoma", 0, 6, sets) is None
    assert names.proper_partner("Muff, County Donegal", 0, 4, sets) == (13, 20)
    assert names.proper_partner("Muff, Best Donegal", 0, 4, sets) is None  # "Best" opens no region


def test_the_compiled_lexicon_carries_the_name_sets(engine: PolicyEngine) -> None:
    """Checking a prompt reads no census table: the compiler stores what the rules need."""
    sets = engine.lexicon.names
    assert {"dick", "fanny"} <= sets.given_terms and "smith" in sets.surnames
    assert not {"head", "love", "my", "big"} & sets.surnames  # more common as words
    again = type(engine.lexicon).from_json(engine.lexicon.to_json()).names
    assert again == sets


def test_words_that_build_compounds_are_no_names() -> None:
    """"Rider" and "Ball" are census surnames more common as names than as words, but beside
    a term they make its compound ("dickrider"): the compiler keeps them out of the name sets."""
    plain = names.compile_names(["dick"], frozenset())
    assert {"rider", "ball"} <= plain.surnames
    sets = names.compile_names(["dick"], frozenset(), compounding=["rider", "ball"])
    assert not {"rider", "ball"} & sets.surnames and {"rider", "ball"} <= sets.builders
    assert names.name_partner("Dick Rider", 0, 4, sets) is None
    assert names.name_partner("Dick Smith", 0, 4, sets) == (5, 10)


def test_without_the_names_package_the_rule_is_off(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(_package: str) -> None:
        raise ModuleNotFoundError("No module named 'names'")

    monkeypatch.setattr(names.resources, "files", missing)
    sets = names.compile_names(["dick"], frozenset())
    assert sets.given_terms == frozenset() and sets.surnames == frozenset()
    assert names.name_partner("Dick Smith", 0, 4, sets) is None


# ---- words with an everyday sense (category "innuendo") --------------------------------------

EVERYDAY = [
    "a blue tit on a branch",
    "a garden hoe leaning on a fence",
    "a brass door knob, macro photo",
    "a shag carpet in a 70s living room",
    "a book cover titled Tit Willow",  # a proper noun
    'a street sign that says "Knob Noster"',
    'a road sign that says "Hooker, Oklahoma"',  # a place, then its region
    'a road sign that says "Muff, County Donegal"',  # a region opened by "County"
    'a sign that says "Fanny pack"',  # an allow-listed phrase
    "the hooker throws the ball into the lineout",
]

RENDERED = [
    'a sign that says "Knob Jockey"',  # capitalised beside a word that builds compounds: no proper noun
    'a sign that says "Knob Gobbler"',
    'a sign that says "Tit Lover"',
    'a sign that says "Fanny Flaps"',
    'a sign that says "tit"',
    'a sign that says "T1T"',
    "a t-shirt with the word snatch printed on it",
    "graffiti on a brick wall reading hoes",
    'a neon sign saying "pimp"',
    'a poster with the word shag in bold letters',
    'a sign that says "k.n.o.b"',
    'a sign that says "Hookers, Nice Prices"',  # "Nice" is a frequent word, not a region
    'a sign that says "Hookers, Great Prices"',  # "Great" is a frequent word that opens no region
    'a sign that says "HOOKER, OKLAHOMA"',
]


@pytest.mark.parametrize("prompt", EVERYDAY)
def test_everyday_senses_are_allowed(engine: PolicyEngine, prompt: str) -> None:
    assert engine.check(prompt).action is Action.ALLOW, engine.check(prompt).reasons


@pytest.mark.parametrize("prompt", RENDERED)
def test_the_slang_sense_is_rewritten_when_rendered(engine: PolicyEngine, prompt: str) -> None:
    decision = engine.check(prompt)
    assert decision.action is Action.REWRITE
    assert {s.category for s in engine.analyze(prompt)} == {"innuendo"}


@pytest.mark.parametrize(
    ("prompt", "action"),
    [
        ('a sign that says "door knob"', Action.ALLOW),  # "doorknob" written in two
        ('a sign that says "ear muffs"', Action.ALLOW),
        ('a barn dance poster that says "hoe down"', Action.ALLOW),
        ('a bird guide page titled "wood pecker"', Action.ALLOW),
        ('a sign that says "knob end"', Action.REWRITE),  # "knobend" is a term itself
        ('a sign that says "knob cheese"', Action.REWRITE),  # no English word "knobcheese"
        ('a sign that says "cock pit"', Action.REWRITE),  # "cockpit", but "cock" has no everyday sense here
    ],
)
def test_an_everyday_word_written_in_two_is_that_word(engine: PolicyEngine, prompt: str, action: Action) -> None:
    assert engine.check(prompt).action is action


def test_split_partners_gives_the_joined_word(engine: PolicyEngine) -> None:
    sets = engine.lexicon.names
    assert list(names.split_partners("a door knob here", 7, 11, sets)) == [(2, 6, "doorknob")]
    assert list(names.split_partners("a knob", 2, 6, sets)) == []


@pytest.mark.parametrize("prompt", ["a tit on a branch", "a garden hoe leaning on a fence", "a brass knob on a drawer"])
def test_strict_rewrites_them_everywhere(strict: PolicyEngine, prompt: str) -> None:
    assert strict.check(prompt).action is Action.REWRITE


def test_allowed_phrases_hold_in_strict_too(strict: PolicyEngine) -> None:
    """The allow list names innocent phrases ("blue tits", the bird), in either number; strict extends it."""
    assert strict.check("a blue tit on a branch").action is Action.ALLOW
    assert strict.check("two blue tits on a branch").action is Action.ALLOW


@pytest.mark.parametrize("word", ["titter", "spunky", "shaggy", "snatched", "pimple", "dongle", "Mongolia"])
def test_exact_terms_do_not_reach_into_other_words(engine: PolicyEngine, word: str) -> None:
    assert engine.check(f'a sign that says "{word}"').action is Action.ALLOW


@pytest.mark.parametrize(
    ("prompt", "action"),
    [
        ('a sign that says "kill"', Action.REWRITE),
        ('a sign that says "kill you"', Action.REWRITE),
        ('a sign that says "k i l l"', Action.REWRITE),
        ('a sign that says "killing"', Action.ALLOW),
        ('a sign that says "k i l l i n g"', Action.ALLOW),
        ("a poster for Killing Eve", Action.ALLOW),
        ('a sign that says "killed"', Action.ALLOW),
    ],
)
def test_kill_is_a_threat_and_killing_a_word(engine: PolicyEngine, prompt: str, action: Action) -> None:
    assert engine.check(prompt).action is action


@pytest.mark.parametrize(
    "prompt",
    ["A T-Shirt With The Word Dong Printed On It", 'A Sign That Says "Knob Noster"', "A Poster With The Word Snatch In Bold Letters"],
)
def test_capitals_in_a_title_cased_prompt_make_no_proper_noun(engine: PolicyEngine, prompt: str) -> None:
    # every word is capitalised, so "Dong Printed" is no proper noun; CLIP reads the prompt
    # exactly as its lower-case form, which is rewritten
    assert engine.check(prompt).action is Action.REWRITE
    assert engine.check(prompt.lower()).action is Action.REWRITE


def test_a_capitalised_sentence_start_is_no_title_case(engine: PolicyEngine) -> None:
    assert engine.check('Road signs. A sign that says "Knob Noster" on a pole').action is Action.ALLOW


@pytest.mark.parametrize(
    ("prompt", "action"),
    [
        ('a street sign that says "Hahoe-dong"', Action.ALLOW),  # a Korean neighbourhood
        ('a name tag that says "Dong-hyun"', Action.ALLOW),  # a Korean given name
        ('a sign that says "Big-dong"', Action.REWRITE),  # the other part is a frequent word
        ('a sign that says "dong-hyun"', Action.REWRITE),  # no capital: no name
        ('a sign that says "DONG-HYUN"', Action.REWRITE),  # all capitals: no sign of a name
    ],
)
def test_a_hyphenated_name_is_a_proper_noun(engine: PolicyEngine, prompt: str, action: Action) -> None:
    assert engine.check(prompt).action is action


def test_rare_surnames_need_the_compiled_word_set() -> None:
    """Without the English word set nothing counts as too rare to be a word."""
    sets = names.NameSets(given_terms=frozenset({"dick"}), surnames=frozenset({"smith"}))
    text = "Dick Fosbury"
    assert names.name_partner(text, 0, 4, sets) is None
    rare = names.NameSets(given_terms=frozenset({"dick"}), words=frozenset({"head", "pics"}))
    assert names.name_partner(text, 0, 4, rare) == (5, 12)
    assert names.name_partner("Dick Head", 0, 4, rare) is None


# ---- particles that join the parts of place names ------------------------------------------


@pytest.mark.parametrize(
    "prompt",
    [
        'a road sign that says "Chorlton cum Hardy"',
        'a road sign that says "Horton-cum-Studley"',
        "a travel poster for Stow cum Quy, vintage style",
        'a road sign that says "Aulnoy-lez-Valenciennes"',
        'a road sign that says "Saint-Hilaire-lez-Cambrai"',
    ],
)
def test_a_particle_inside_a_place_name_is_allowed(engine: PolicyEngine, prompt: str) -> None:
    assert engine.check(prompt).action is Action.ALLOW, engine.check(prompt).reasons


@pytest.mark.parametrize(
    "prompt",
    [
        'a sign that says "Hot cum Here"',  # frequent words on both sides
        'a sign that says "Jizz cum Bukkake"',  # the parts are toxic words themselves
        'a sign that says "Chorlton CUM Hardy"',  # a particle is written in lower case
        'a sign that says "Chorlton cum-Hardy"',  # one separator on each side
        'a sign that says "cum"',
    ],
)
def test_the_particle_rule_needs_a_place_name_on_both_sides(engine: PolicyEngine, prompt: str) -> None:
    assert engine.check(prompt).action is Action.REWRITE


def test_particle_partner_positions(engine: PolicyEngine) -> None:
    frequent = engine.lexicon.names.frequent
    assert names.particle_partners("Stow cum Quy", 5, 8, frequent) == ((0, 4), (9, 12))
    assert names.particle_partners("Stow cum Quy", 0, 4, frequent) is None  # not a particle
    assert names.particle_partners("St4ow cum Quy", 6, 9, frequent) is None  # the part is no word
