"""PHI screen benchmark: recall on MEDDOCAN, flagged share on Chia, throughput on 5 KB notes.

Prints recall per identifier type on tests/fixtures/meddocan-train (a gold span counts as found when
a hit of the corresponding kind overlaps it), the share of Chia eligibility-criteria documents that
get flagged (Chia has no patient data, so a flag is a false positive or a trial date range), and
how many 5 KB notes per minute one process screens. Target: >= 10,000 notes per minute on a 2-core
machine.

    .venv/bin/python bench/phi_bench.py [--notes 3000] [--repeat 3]
"""

import argparse
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.domain.brat import parse_ann  # noqa: E402
from app.domain.phi import DATE, EMAIL, ID_NUMBER, PHONE, screen  # noqa: E402

MEDDOCAN = ROOT / "tests" / "fixtures" / "meddocan-train" / "brat"
CHIA_IN_REPO = ROOT / "tests" / "fixtures" / "chia" / "chia_with_scope"
CHIA_SHARED = ROOT.parent / "shared" / "data" / "chia" / "chia_with_scope"
LABEL_KIND = {
    "FECHAS": DATE,
    "NUMERO_TELEFONO": PHONE,
    "NUMERO_FAX": PHONE,
    "CORREO_ELECTRONICO": EMAIL,
    "ID_SUJETO_ASISTENCIA": ID_NUMBER,
    "ID_ASEGURAMIENTO": ID_NUMBER,
    "ID_CONTACTO_ASISTENCIAL": ID_NUMBER,
    "ID_TITULACION_PERSONAL_SANITARIO": ID_NUMBER,
}
NOTE_SIZE = 5_000


def meddocan_recall() -> None:
    found: Counter = Counter()
    total: Counter = Counter()
    for path in sorted(MEDDOCAN.glob("*.txt")):
        text = path.read_text(encoding="utf-8")  # keep the byte-order mark: offsets count it
        hits = screen(text).hits
        for entity in parse_ann(path.with_suffix(".ann").read_text(encoding="utf-8")).entities.values():
            kind = LABEL_KIND.get(entity.label)
            if kind is None:
                continue
            start, end = entity.fragments[0].start, entity.fragments[-1].end
            total[kind] += 1
            found[kind] += any(h.kind == kind and h.start < end and start < h.end for h in hits)
    print(f"Recall on {MEDDOCAN.relative_to(ROOT)} (gold span overlapped by a hit of the kind)")
    print(f"  {'kind':10} {'found':>6} {'gold':>6} {'recall':>7}")
    for kind in (DATE, PHONE, EMAIL, ID_NUMBER):
        print(f"  {kind:10} {found[kind]:6} {total[kind]:6} {found[kind] / total[kind]:7.3f}")


def chia_dir() -> Path:
    return CHIA_IN_REPO if CHIA_IN_REPO.is_dir() else CHIA_SHARED


def chia_flagged() -> None:
    paths = sorted(chia_dir().glob("*.txt"))
    kinds: Counter = Counter()
    flagged = 0
    for path in paths:
        report = screen(path.read_text(encoding="utf-8"))
        flagged += report.flagged
        kinds.update(report.counts())
    print(f"\nChia flagged documents ({chia_dir()})")
    print(f"  {flagged}/{len(paths)} = {flagged / len(paths):.2%}   hits by kind: {dict(kinds)}")


def five_kb_notes(count: int) -> list[str]:
    """Notes of exactly 5,000 characters, cut from the MEDDOCAN and Chia texts laid end to end."""
    sources = sorted(MEDDOCAN.glob("*.txt")) + sorted(chia_dir().glob("*.txt"))
    corpus = "\n".join(p.read_text(encoding="utf-8") for p in sources)
    notes = [corpus[i : i + NOTE_SIZE] for i in range(0, len(corpus) - NOTE_SIZE, NOTE_SIZE)]
    while len(notes) < count:
        notes += notes
    return notes[:count]


def throughput(count: int, repeat: int) -> None:
    notes = five_kb_notes(count)
    rates = []
    for _ in range(repeat):
        started = time.perf_counter()
        for note in notes:
            screen(note)
        rates.append(len(notes) / (time.perf_counter() - started) * 60)
    best, median = max(rates), statistics.median(rates)
    verdict = "meets" if median >= 10_000 else "MISSES"
    print(f"\nThroughput, one process, {len(notes)} notes of {NOTE_SIZE} characters, {repeat} runs")
    print(f"  median {median:,.0f} notes/min (best {best:,.0f}); target >= 10,000/min: {verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--notes", type=int, default=3000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    meddocan_recall()
    chia_flagged()
    throughput(args.notes, args.repeat)


if __name__ == "__main__":
    main()
