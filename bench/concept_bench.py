"""Concept lookup benchmark: a vocabulary of 300,000 synonyms, uploaded and searched as the editor does.

Generates a deterministic vocabulary of drug-like concepts (100,000 concepts x 3 synonyms, plus each
preferred term: generic names built from syllables and a stem such as -pril or -mab, brand names,
salts, strengths and dose forms), uploads it through app.services.vocabularies.upload_vocabulary
(parse + COPY + index maintenance, timed), then runs lookups of three kinds through search_concepts:
exact (a synonym as typed, case changed), prefix (the first 3 to 6 characters of a term) and fuzzy
(a term with one typo). Prints p50/p95/p99 per kind and overall, how often the concept searched for
came back, and the query plans. Target (issue): p95 <= 50 ms.

    .venv/bin/python bench/concept_bench.py [--concepts 100000] [--synonyms 3] [--lookups 1000]
        [--seed 11] [--explain]
"""

import argparse
import json
import random
import string
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import text

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.db.models import User  # noqa: E402
from app.domain.concepts import normalise, parse_vocabulary  # noqa: E402
from app.runtime import open_runtime  # noqa: E402
from app.services import vocabularies  # noqa: E402
from app.settings import Settings  # noqa: E402

ONSETS = ["b", "c", "d", "f", "g", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "cl", "pr", "tr", "x"]
VOWELS = ["a", "e", "i", "o", "u", "y", "ae", "io"]
CODAS = ["", "", "", "n", "r", "l", "s", "x", "m"]
STEMS = ["pril", "olol", "sartan", "statin", "dipine", "azole", "cillin", "mycin", "vir", "mab", "nib",
         "tide", "prazole", "floxacin", "triptan", "parin", "lukast", "gliptin", "done", "caine"]  # fmt: skip
SALTS = ["hydrochloride", "sodium", "potassium", "succinate", "tartrate", "maleate", "mesylate", "besylate"]
FORMS = ["Oral Tablet", "Oral Capsule", "Injectable Solution", "Extended Release Oral Tablet",
         "Topical Cream", "Oral Suspension", "Prefilled Syringe", "Inhalation Powder"]  # fmt: skip
STRENGTHS = ["0.5 MG", "1 MG", "2.5 MG", "5 MG", "10 MG", "20 MG", "25 MG", "40 MG", "50 MG", "100 MG",
             "250 MG", "500 MG", "1000 MG", "10 MG/ML", "100 UNT/ML"]  # fmt: skip
SEMANTIC_TYPES = ["Clinical Drug", "Branded Drug", "Ingredient", "Pharmacologic Substance"]
KINDS = ("exact", "prefix", "fuzzy")


def syllable(rng: random.Random) -> str:
    return rng.choice(ONSETS) + rng.choice(VOWELS) + rng.choice(CODAS)


def generic_name(rng: random.Random) -> str:
    return "".join(syllable(rng) for _ in range(rng.randint(2, 3))) + rng.choice(STEMS)


def brand_name(rng: random.Random) -> str:
    return (
        "".join(syllable(rng) for _ in range(rng.randint(2, 3))) + rng.choice(["", "a", "ex", "ol", "on"])
    ).title()


def vocabulary_file(concepts: int, synonyms: int, seed: int) -> tuple[bytes, list[list[str]]]:
    """A TSV vocabulary, and each concept's terms (preferred first) to draw queries from."""
    rng = random.Random(seed)
    lines = ["code\tpreferred_term\tsynonyms\tsemantic_type"]
    terms_of: list[list[str]] = []
    for i in range(concepts):
        generic, brand = generic_name(rng), brand_name(rng)
        strength, form = rng.choice(STRENGTHS), rng.choice(FORMS)
        preferred = f"{generic.title()} {strength} {form}"
        pool = [
            brand,
            f"{generic} {rng.choice(SALTS)}",
            f"{brand} {strength.lower()} {form.split()[-1].lower()}",
            generic,
            f"{generic} {strength.lower()}",
            f"{brand} {rng.choice(['XR', 'ER', 'SR', 'forte', 'junior'])}",
        ]
        chosen = (pool + [f"{brand} pack {k}" for k in range(synonyms - len(pool))])[:synonyms]
        lines.append(f"{1_000_000 + i}\t{preferred}\t{'|'.join(chosen)}\t{rng.choice(SEMANTIC_TYPES)}")
        terms_of.append([preferred, *chosen])
    return ("\n".join(lines) + "\n").encode(), terms_of


def one_typo(rng: random.Random, term: str) -> str:
    """The term with one letter (not the first) substituted, dropped, doubled or swapped with the next."""
    letters = [i for i, ch in enumerate(term) if ch.isalpha() and i > 0]
    i = rng.choice(letters)
    kind = rng.choice(["substitute", "drop", "double", "swap"])
    if kind == "substitute":
        return (
            term[:i] + rng.choice([c for c in string.ascii_lowercase if c != term[i].lower()]) + term[i + 1 :]
        )
    if kind == "drop":
        return term[:i] + term[i + 1 :]
    if kind == "double":
        return term[:i] + term[i] + term[i:]
    j = i - 1 if i == len(term) - 1 else i
    return term[:j] + term[j + 1] + term[j] + term[j + 2 :]


def make_queries(rng: random.Random, terms_of: list[list[str]], n: int) -> list[tuple[str, str, str]]:
    """(kind, query, code searched for), the kinds interleaved."""
    queries = []
    for k in range(n):
        kind = KINDS[k % len(KINDS)]
        index = rng.randrange(len(terms_of))
        term = rng.choice(terms_of[index])
        code = str(1_000_000 + index)
        if kind == "exact":
            query = rng.choice([term, term.upper(), term.lower(), f"  {term} "])
        elif kind == "prefix":
            query = term[: rng.randint(3, 6)]
        else:
            # Misspelling the single name physicians type most: the generic, brand or salt synonym.
            query = one_typo(rng, rng.choice(terms_of[index][1:]))
        queries.append((kind, query, code))
    return queries


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


def explain(runtime, vocabulary_id: int, query: str) -> None:
    for name, statement in (("exact and prefix", vocabularies.EXACT_AND_PREFIX_LOOKUP),
                            ("fuzzy", vocabularies.FUZZY_LOOKUP)):  # fmt: skip
        parameters = vocabularies.lookup_parameters([vocabulary_id], normalise(query), 10)
        with runtime.sessions() as db:
            vocabularies.set_similarity_threshold(db, normalise(query))
            lines = db.scalars(text(f"EXPLAIN (ANALYZE, BUFFERS) {statement.text}"), parameters).all()
        print(f"\nEXPLAIN ANALYZE, {name} lookup of {query!r}:")
        print("\n".join(f"  {line}" for line in lines))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--concepts", type=int, default=100_000)
    parser.add_argument(
        "--synonyms", type=int, default=3, help="synonyms per concept (besides its preferred term)"
    )
    parser.add_argument("--lookups", type=int, default=1_000)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--explain", action="store_true", help="print EXPLAIN ANALYZE of both lookups")
    args = parser.parse_args()

    started = time.perf_counter()
    data, terms_of = vocabulary_file(args.concepts, args.synonyms, args.seed)
    synonyms = args.concepts * args.synonyms
    print(
        f"vocabulary: {args.concepts:,} concepts x {args.synonyms} synonyms = {synonyms:,} synonyms, "
        f"{len(data) / 2**20:.1f} MiB TSV (generated in {time.perf_counter() - started:.1f} s)"
    )
    runtime = open_runtime(
        Settings(data_dir=Path(tempfile.mkdtemp(prefix="clinann-concept-bench-")), secret_key="bench")
    )
    try:
        with runtime.sessions.begin() as db:
            admin = User(username="bench-admin", display_name="Bench admin", role="admin", password_hash="-")
            db.add(admin)
            db.flush()
            admin_id = admin.id

        started = time.perf_counter()
        parse_vocabulary("bench.tsv", data)
        parse_time = time.perf_counter() - started
        started = time.perf_counter()
        outcome = vocabularies.upload_vocabulary(
            runtime.sessions, "Bench drugs", "BENCH", "1", "bench.tsv", data, admin_id
        )
        upload_time = time.perf_counter() - started
        print(
            f"upload_vocabulary: {upload_time:.1f} s for {outcome.concepts:,} concepts and {outcome.terms:,} "
            f"terms (of which parsing {parse_time:.1f} s; the rest COPY, indexes, ANALYZE, commit)"
        )

        rng = random.Random(args.seed + 1)
        queries = make_queries(rng, terms_of, args.lookups)
        for _, query, _ in make_queries(random.Random(args.seed + 2), terms_of, 30):  # warm the caches
            vocabularies.search_concepts(runtime.sessions, [outcome.vocabulary_id], query)

        times: dict[str, list[float]] = {kind: [] for kind in KINDS}
        found_at_1: dict[str, int] = dict.fromkeys(KINDS, 0)
        found_in_10: dict[str, int] = dict.fromkeys(KINDS, 0)
        empty: dict[str, int] = dict.fromkeys(KINDS, 0)
        for kind, query, code in queries:
            started = time.perf_counter()
            results = vocabularies.search_concepts(runtime.sessions, [outcome.vocabulary_id], query)
            times[kind].append((time.perf_counter() - started) * 1000)
            codes = [r.code for r in results]
            found_at_1[kind] += bool(codes) and codes[0] == code
            found_in_10[kind] += code in codes
            empty[kind] += not codes

        print(f"\nsearch_concepts, {len(queries):,} lookups (limit 10), milliseconds:")
        print(f"  {'kind':<8} {'n':>5} {'p50':>7} {'p95':>7} {'p99':>7} {'max':>7}   concept searched for")
        summary = {}
        for kind, values in [*times.items(), ("all", [t for v in times.values() for t in v])]:
            p50, p95, p99 = (percentile(values, q) for q in (50, 95, 99))
            summary[kind] = {
                "n": len(values),
                "p50": round(p50, 2),
                "p95": round(p95, 2),
                "p99": round(p99, 2),
            }
            quality = ""
            if kind in KINDS:
                n = len(values)
                quality = (
                    f"first {found_at_1[kind] / n:6.1%}, in top 10 {found_in_10[kind] / n:6.1%}, "
                    f"no result {empty[kind] / n:5.1%}"
                )
            figures = f"{p50:7.2f} {p95:7.2f} {p99:7.2f} {max(values):7.2f}"
            print(f"  {kind:<8} {len(values):>5} {figures}   {quality}")
        overall = summary["all"]["p95"]
        verdict = "met" if overall <= 50 else "MISSED"
        print(f"\np95 over all lookups: {overall:.1f} ms (target <= 50 ms): {verdict}")
        print(
            "(prefix lookups of 3 characters find many concepts; the one searched for is rarely first there)"
        )

        if args.explain:
            fuzzy = next(query for kind, query, _ in queries if kind == "fuzzy")
            explain(runtime, outcome.vocabulary_id, fuzzy)
        print(
            json.dumps(
                {"upload_s": round(upload_time, 2), "parse_s": round(parse_time, 2), "lookups_ms": summary}
            )
        )
    finally:
        runtime.close()


if __name__ == "__main__":
    main()
