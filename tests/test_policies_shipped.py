"""The shipped policies' vocabulary: size, structure, language files, opt-in negative words."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from safetext.policy import Action, PolicyEngine, load_policy
from safetext.policy.loader import policies_dir, resolve_policy_path

ROOT = Path(__file__).resolve().parents[1]
LANGS = ("es", "fr", "de", "pt", "it")

# (language, prompt with an accented or language-specific toxic word, its unaccented spelling, innocent prompts)
LANG_CASES = {
    "es": ('un cartel que dice "maricón"', "maricon", ["un cartel que dice hola amigo", "un gato negro en la ventana", "una casa con jardín"]),
    "fr": ('une pancarte avec le mot "enculé"', "encule", ["une pancarte avec le mot bonjour", "un cul-de-sac à Paris", "une belle journée"]),
    "de": ('ein Schild mit der Aufschrift "Scheiße"', "scheisse", ["ein Schild mit der Aufschrift Bäckerei", "ein dicker Hund im Park", "guten Morgen"]),
    "pt": ('uma placa que diz "otário"', "otario", ["uma placa que diz bom dia", "uma casa na praia", "obrigado amigo"]),
    "it": ('un cartello con la scritta "coglione"', "coglione", ["un cartello con la scritta buongiorno", "una pizza margherita", "grazie mille"]),
}


class _NeverToxic:
    name = "never"

    def score(self, texts: list[str]) -> list[float]:
        return [0.0] * len(texts)


@pytest.fixture(scope="module")
def default() -> PolicyEngine:
    return PolicyEngine("default")


@pytest.fixture(scope="module")
def strict() -> PolicyEngine:
    return PolicyEngine("strict", classifier=_NeverToxic())


def test_default_is_a_real_lexicon_with_category_severity_and_targets() -> None:
    policy = load_policy("default")
    items = policy.term_items()
    assert len(items) >= 1500
    categories = {cat for cat, _, _ in items}
    assert {"profanity", "insult", "sexual", "slur", "violence", "hate", "negative", "mature"} <= categories
    assert policy.categories["negative"].action == policy.categories["mature"].action == "allow"
    for cat, term, spec in items:
        category = policy.categories[cat]
        assert spec.severity or category.severity, term
        assert spec.targets or category.targets, term


def test_default_header_states_the_source() -> None:
    head = (policies_dir() / "default.yaml").read_text(encoding="utf-8")[:1500]
    assert "Source of the lexicon: written by hand" in head


def test_no_benign_target_is_itself_toxic(default: PolicyEngine, strict: PolicyEngine) -> None:
    policy = strict.policy
    targets = {t for _, _, spec in policy.term_items() for t in spec.targets}
    targets |= {t for cat in policy.categories.values() for t in cat.targets}
    for engine in (default, strict):
        flagged = [t for t in sorted(targets) if engine.check(t).action is not Action.ALLOW]
        assert flagged == [], flagged


@pytest.mark.parametrize("prompt", ['a t-shirt that says "semen"', 'a sign that says "PENIS"', "graffiti on a wall reading vagina"])
def test_mature_words_are_rewritten_when_rendered(default: PolicyEngine, prompt: str) -> None:
    decision = default.check(prompt)
    assert decision.action is Action.REWRITE, decision.reasons
    assert {s.category for s in decision.spans} == {"mature"}
    assert all(s.in_render_scope for s in decision.spans)


@pytest.mark.parametrize(
    ("word", "term"),
    [("cockgobbling", "cock"), ("shitebags", "shite"), ("cuntmasters", "cunt"), ("dickheads", "dickhead"),
     ("twatmuffin", "twat"), ("wankmaggot", "wank"), ("assjacket", "ass"), ("dickshaft", "dick"), ("shitpiece", "shit")],
)
def test_insult_compounds_with_inflected_tails_are_caught(default: PolicyEngine, word: str, term: str) -> None:
    decision = default.check(f'a sign that says "{word}"')
    assert decision.action is Action.REWRITE, decision.reasons
    assert any(term in s.term for s in decision.spans), [s.term for s in decision.spans]


def _rewritten_terms(engine: PolicyEngine, word: str) -> list[str]:
    """The terms of the spans ``engine`` finds in ``word`` written on a sign, once it rewrites it."""
    decision = engine.check(f'a sign that says "{word}"')
    assert decision.action is Action.REWRITE, decision.reasons
    return [s.term for s in decision.spans]


@pytest.mark.parametrize(
    ("word", "term"),
    [("crapafce", "crap"), ("dicklsap", "dick"), ("bollokcface", "bollock"), ("twatmfufin", "twat"), ("shitilps", "shit"),
     ("porchomnkey", "porch monkey"), ("junglbeunny", "jungle bunny"), ("lmaeslut", "slut"), ("lamesltu", "slut")],
)
def test_compounds_with_two_letters_swapped_are_caught(default: PolicyEngine, word: str, term: str) -> None:
    """A swap in the word a term is glued to, in the term beside it, or in a phrase written as one word."""
    assert _rewritten_terms(default, word) == [term]


@pytest.mark.parametrize("word", ["horseman", "horseface", "mouthparts", "shopworn", "herdman", "Hagstrom", "Boboiboy", "binstock"])
def test_real_words_one_swap_from_a_compound_are_allowed(default: PolicyEngine, word: str) -> None:
    """Real words and names that read as a term and a compound word with a swap undone ("horse" as "hores")."""
    assert default.check(f'a sign that says "{word}"').action is Action.ALLOW


@pytest.mark.parametrize(
    ("word", "term"),
    [("shitcakes", "shit"), ("dickjockeys", "dick"), ("arsebandits", "arse"), ("twatwagon", "twat"), ("turdspanner", "turd"),
     ("fuckwomble", "fuck"), ("wetpussy", "pussy"), ("hairypussy", "pussy"), ("cumswallower", "cum"), ("pissplay", "piss"),
     ("dicktease", "dick"), ("asseating", "ass")],
)
def test_plural_and_further_compounds_are_caught(default: PolicyEngine, word: str, term: str) -> None:
    """Plurals of the compound words, and the adjectives and nouns that glue to a term ("wet", "play")."""
    assert _rewritten_terms(default, word) == [term]


@pytest.mark.parametrize("word", ["bagpipe", "windpipe", "tailpipe", "stovepipe", "bandwagon", "cosplay", "gameplay", "horseplay",
                                  "hotshot", "buckshot", "moonshot", "teenager", "display"])
def test_real_words_built_from_the_new_compound_words_are_allowed(default: PolicyEngine, word: str) -> None:
    assert default.check(f'a sign that says "{word}"').action is Action.ALLOW


@pytest.mark.parametrize("word", ["motherfcker", "cocsucker", "fked", "shitskin", "kneegrow", "trnny", "nob end", "ballbatter"])
def test_respellings_and_slurs_written_as_terms_are_caught(default: PolicyEngine, word: str) -> None:
    assert default.check(f'a sign that says "{word}"').action is Action.REWRITE


@pytest.mark.parametrize("prompt", ["a sculpture by Jeff Koons", "a painting by Willem de Kooning", 'a poster that says "Schitt\'s Creek"',
                                    "a field guide page on Populus nigra", "a photo of Macaca mulatta", "a nikkah ceremony",
                                    "a photo of bly at sunset, 35mm film"])
def test_words_and_names_near_the_added_terms_are_allowed(default: PolicyEngine, prompt: str) -> None:
    """Names, Latin and loanwords that the shorter spellings of slurs and foreign words would read."""
    assert default.check(prompt).action is Action.ALLOW


@pytest.mark.parametrize(("word", "term"), [("dckhd", "dickhed"), ("shthd", "shithead"), ("asshl", "asshole"), ("mstrbtng", "masturbait")])
def test_terms_written_without_vowels_are_caught(default: PolicyEngine, word: str, term: str) -> None:
    assert _rewritten_terms(default, word) == [term]


@pytest.mark.parametrize("word", ["mngr", "cmnt", "pssht", "bldg", "mgmt", "hdqtrs", "frwrd"])
def test_abbreviations_without_vowels_are_allowed(default: PolicyEngine, word: str) -> None:
    assert default.check(f'a sign that says "{word}"').action is Action.ALLOW


@pytest.mark.parametrize(("word", "term"), [("shity", "shitty"), ("sluty", "slutty"), ("twaty", "twatty")])
def test_a_doubled_consonant_written_once_before_a_final_y_is_caught(default: PolicyEngine, word: str, term: str) -> None:
    assert _rewritten_terms(default, word) == [term]


@pytest.mark.parametrize(("word", "term"), [("twattish", "twat"), ("shittastic", "shit"), ("slutdom", "slut"), ("shittily", "shitty"),
                                          ("sluttiness", "slutty"), ("douchiest", "douchy"), ("dumbassery", "dumbass")])
def test_derived_words_of_a_term_are_caught(default: PolicyEngine, word: str, term: str) -> None:
    assert _rewritten_terms(default, word) == [term]


@pytest.mark.parametrize("word", ["ugliness", "uglier", "foolish", "boyish", "snobbery", "slobbery", "freedom", "finish"])
def test_real_words_with_a_derivational_suffix_are_allowed(default: PolicyEngine, word: str) -> None:
    assert default.check(f'a poster with the word {word} in bold letters').action is Action.ALLOW


@pytest.mark.parametrize("prompt", ["a blueberry muffin on a plate", "a denim jacket", "a mine shaft", "a chess piece",
                                    "a maggot on an apple", "a straitjacket in a museum", "a centrepiece of flowers"])
def test_compound_tails_alone_or_in_real_words_are_allowed(default: PolicyEngine, prompt: str) -> None:
    assert default.check(prompt).action is Action.ALLOW


@pytest.mark.parametrize("prompt", ["a poster of a killer whale", "The Texas Chainsaw Massacre", "Murder on the Orient Express",
                                    'a sign that says "I hate Mondays"', "a torture chamber in a castle museum",
                                    "a medical diagram of the penis and testicles"])
def test_opt_in_words_are_allowed_by_default_and_rewritten_by_strict(
    default: PolicyEngine, strict: PolicyEngine, prompt: str
) -> None:
    assert default.check(prompt).action is Action.ALLOW
    decision = strict.check(prompt)
    assert decision.action is Action.REWRITE
    assert {s.category for s in decision.spans} <= {"negative", "mature"}


@pytest.mark.parametrize(
    "form",
    ["FUCK", "sh1t", "f.u.c.k", "b-i-t-c-h", "i d i o t", "id\u200biot", "аsshole", "ｆｕｃｋ", "𝐜𝐮𝐧𝐭", "fuuuck", "dickhead", "shittier",
     "motherfucking", "blow job", "fuckery", "bitchy", "dumbass", "m0r0n", "wanker", "kys", "eejit", "yobbos", "kaffer",
     "numbnut", "cracka", "chesticles", "lesbos", "glory hole", "bewbs", "dirty jew", "SIEGHAIL", "b u m  c h u m", "pissbaby"],
)
def test_obfuscated_forms_are_caught(default: PolicyEngine, form: str) -> None:
    assert default.check(f'a sign that says "{form}"').action is not Action.ALLOW


@pytest.mark.parametrize("prompt", ["Dick Van Dyke on stage", "a map of Scunthorpe", "a cocktail bar in Essex", "Chris Pratt smiling",
                                    "a classic car", "summa cum laude diploma", "a rapper on stage", "a Shiite mosque",
                                    "a cocker spaniel puppy", "Joe Cocker on stage", "a copy of Uncle Tom's Cabin",
                                    "a ferry to Lesbos"])
def test_names_and_places_are_allowed(default: PolicyEngine, prompt: str) -> None:
    assert default.check(prompt).action is Action.ALLOW


@pytest.mark.parametrize("written", ["doggy style", "jail bait", "butt head", "butt munch"])
def test_two_word_spellings_of_listed_compounds_are_terms(default: PolicyEngine, written: str) -> None:
    assert default.check(f'a sign that says "{written}"').action is Action.REWRITE


@pytest.mark.parametrize("word", ["mierda", "SCHEISSE", "Scheiße", "putain", "cazzo", "kurwa", "foda-se", "pendejo", "bhenchod"])
def test_default_rewrites_foreign_profanity_written_in_an_english_prompt(default: PolicyEngine, word: str) -> None:
    assert default.check(f'a sign that says "{word}"').action is Action.REWRITE


@pytest.mark.parametrize(
    "prompt",
    [
        "a portrait of Vladimir Putin",  # "puta" takes no English ending
        "a portrait of Giovanni Verga",  # Spanish "verga" is left to lang/es: Verga is an Italian novelist
        "Saint-Bauzille-de-Putois in spring",
        "an imputation of motive",
        "a cono of gelato",  # Spanish "coño" is left to lang/es: Italian "cono" is a cone
    ],
)
def test_foreign_profanity_in_default_matches_whole_words_only(default: PolicyEngine, prompt: str) -> None:
    assert default.check(prompt).action is Action.ALLOW


def test_a_language_policy_keeps_its_own_entry_for_a_loanword_default_also_lists(default: PolicyEngine) -> None:
    assert default.check('a sign that says "puta"').benign_prompt == 'a sign that says "reina"'
    decision = PolicyEngine("lang/pt").check('um cartaz que diz "puta"')
    assert decision.action is Action.REWRITE and decision.benign_prompt == 'um cartaz que diz "rainha"'


@pytest.mark.parametrize("lang", LANGS)
def test_language_policy_loads_extends_default_and_detects(lang: str, default: PolicyEngine) -> None:
    by_name = PolicyEngine(f"lang/{lang}")
    by_path = PolicyEngine(policies_dir() / "lang" / f"{lang}.yaml")
    assert by_name.fingerprint == by_path.fingerprint
    assert resolve_policy_path(f"lang/{lang}") == (policies_dir() / "lang" / f"{lang}.yaml").resolve()
    policy = by_name.policy
    assert str((policies_dir() / "default.yaml").resolve()) in policy._files
    source = str((policies_dir() / "lang" / f"{lang}.yaml").resolve())
    own = {(c, t) for c, t, _ in policy.term_items() if str(Path(policy._locations[("terms", c, t)][0]).resolve()) == source}
    assert len(own) >= 200  # entries written in the language file (default lists a few as loanwords too)
    toxic, unaccented, innocent = LANG_CASES[lang]
    assert by_name.check(toxic).action is Action.REWRITE
    assert by_name.check(toxic.replace(toxic.split('"')[1], unaccented)).action is Action.REWRITE
    assert by_name.check('a sign that says "idiot"').action is Action.REWRITE  # the English lexicon still applies
    for prompt in innocent:
        assert by_name.check(prompt).action is Action.ALLOW, (prompt, by_name.check(prompt).reasons)


def test_wheel_ships_the_language_files() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    setuptools = config["tool"]["setuptools"]
    assert "safetext.policies.lang" in setuptools["packages"]
    assert "*.yaml" in setuptools["package-data"]["safetext.policies.lang"]
    assert sorted(p.stem for p in (policies_dir() / "lang").glob("*.yaml")) == sorted(LANGS)
