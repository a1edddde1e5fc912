"""Recall of the PHI screen on MEDDOCAN (Spanish clinical cases with annotated PHI), per identifier type.

A gold span counts as found when a hit of the corresponding kind overlaps it. The floors are the
recall the screen reaches today minus a small margin, so a regression fails the run. Bare years
("en 2010") are annotated as dates but deliberately not flagged (Safe Harbor keeps the year); they
are most of the missed dates. ``pytest -s`` prints the table.
"""

from collections import Counter
from pathlib import Path

import pytest

from app.domain.brat import check_offsets, parse_ann
from app.domain.phi import DATE, EMAIL, ID_NUMBER, PHONE, screen

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
MEDDOCAN = FIXTURES / "meddocan-train" / "brat"
CHIA = FIXTURES / "chia" / "chia_with_scope"

# MEDDOCAN label -> the kind of hit that must overlap it. The corpus has no NUMERO_IDENTIF or
# ID_EMPLEO_PERSONAL_SANITARIO; OTROS_SUJETO_ASISTENCIA holds phrases ("raza negroide"), not numbers.
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
FLOORS = {DATE: 0.90, PHONE: 0.93, EMAIL: 0.97, ID_NUMBER: 0.93}


def _measure() -> tuple[Counter, Counter, Counter, int]:
    """Found and total gold spans per label, all labels seen, and the number of documents."""
    found: Counter = Counter()
    total: Counter = Counter()
    labels: Counter = Counter()
    documents = sorted(MEDDOCAN.glob("*.txt"))
    for path in documents:
        # Offsets count a byte-order mark, so it must stay in the text ("utf-8", not "utf-8-sig").
        text = path.read_text(encoding="utf-8")
        annotations = parse_ann(path.with_suffix(".ann").read_text(encoding="utf-8"), source=path.name)
        check_offsets(annotations, text, source=path.name)  # fails if the BOM were stripped
        hits = screen(text).hits
        for entity in annotations.entities.values():
            labels[entity.label] += 1
            kind = LABEL_KIND.get(entity.label)
            if kind is None:
                continue
            start, end = entity.fragments[0].start, entity.fragments[-1].end
            total[entity.label] += 1
            if any(hit.kind == kind and hit.start < end and start < hit.end for hit in hits):
                found[entity.label] += 1
    return found, total, labels, len(documents)


@pytest.fixture(scope="module")
def measured() -> tuple[Counter, Counter, Counter, int]:
    if not MEDDOCAN.is_dir():
        pytest.skip("tests/fixtures/meddocan-train is missing")
    return _measure()


def test_fixture_is_the_full_train_split_with_a_byte_order_mark_somewhere(measured):
    *_, documents = measured
    assert documents == 500
    assert any(p.read_text(encoding="utf-8").startswith("\ufeff") for p in MEDDOCAN.glob("*.txt"))


def test_mapped_labels_exist_in_the_corpus(measured):
    _, _, labels, _ = measured
    assert set(LABEL_KIND) <= set(labels)


def test_recall_per_identifier_type(measured):
    found, total, _, _ = measured
    print("\nMEDDOCAN train recall (gold span overlapped by a hit of the kind)")
    print(f"{'label':36} {'kind':10} {'found':>6} {'gold':>6} {'recall':>7}")
    for label, kind in LABEL_KIND.items():
        print(f"{label:36} {kind:10} {found[label]:6} {total[label]:6} {found[label] / total[label]:7.3f}")
    recall = {}
    for kind in FLOORS:
        labels = [label for label, k in LABEL_KIND.items() if k == kind]
        hit, gold = sum(found[x] for x in labels), sum(total[x] for x in labels)
        recall[kind] = hit / gold
        print(f"{'all ' + kind:36} {kind:10} {hit:6} {gold:6} {recall[kind]:7.3f}")
    for kind, floor in FLOORS.items():
        assert recall[kind] >= floor, f"{kind} recall {recall[kind]:.3f} fell below {floor}"


def test_few_chia_eligibility_criteria_are_flagged():
    # Chia holds no patient data: a flag there is a false positive (or a trial date range).
    if not CHIA.is_dir():
        pytest.skip("tests/fixtures/chia is missing")
    texts = sorted(CHIA.glob("*.txt"))
    flagged = sum(screen(path.read_text(encoding="utf-8")).flagged for path in texts)
    share = flagged / len(texts)
    print(f"\nChia: {flagged}/{len(texts)} documents flagged ({share:.2%})")
    assert share <= 0.02
