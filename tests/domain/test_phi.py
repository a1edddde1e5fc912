"""The offline PHI screen: every detector's true positives, clinical text and placeholders that stay clean."""

import time

import pytest

from app.domain.phi import (
    AGE_90_PLUS,
    DATE,
    EMAIL,
    ID_NUMBER,
    IP_ADDRESS,
    KINDS,
    PERSON_NAME,
    PHONE,
    SSN,
    STREET_ADDRESS,
    URL,
    ZIP_CODE,
    PhiHit,
    PhiReport,
    excerpt,
    screen,
)

# (text, expected hits as (kind, matched text)); the comparison is exact, so no other hit may appear.
DATA = [
    # date
    ("Seen on 2019-03-04.", [(DATE, "2019-03-04")]),
    ("Admitted 03/04/2019 for chest pain.", [(DATE, "03/04/2019")]),
    ("Follow-up 4/3/19.", [(DATE, "4/3/19")]),
    ("Surgery on March 4, 2019 went well.", [(DATE, "March 4, 2019")]),
    ("Seen 4 March 2019 in clinic.", [(DATE, "4 March 2019")]),
    ("Last seen Mar 2019.", [(DATE, "Mar 2019")]),
    ("Return visit March 4.", [(DATE, "March 4")]),
    ("Biopsy on the 4th of March.", [(DATE, "4th of March")]),
    ("ECG 04-MAR-19 normal.", [(DATE, "04-MAR-19")]),
    ("Ingresó el 4 de marzo de 2019.", [(DATE, "4 de marzo de 2019")]),
    ("Diagnosticado en marzo de 2019.", [(DATE, "marzo de 2019")]),
    ("Intervenida en enero del año 2001.", [(DATE, "enero del año 2001")]),
    ("Revisión el 25 de agosto.", [(DATE, "25 de agosto")]),
    ("Fecha: 13-noviembre-2017.", [(DATE, "13-noviembre-2017")]),
    ("Fecha de Ingreso: 21-03-07.", [(DATE, "21-03-07")]),
    ("Fecha de Ingreso: 12/04 /2011.", [(DATE, "12/04 /2011")]),
    ("Control 04.03.2019.", [(DATE, "04.03.2019")]),
    # phone
    ("Tel: 91 555 12 34", [(PHONE, "91 555 12 34")]),
    ("Call (555) 123-4567 today.", [(PHONE, "(555) 123-4567")]),
    ("Contact +34 912 345 678.", [(PHONE, "+34 912 345 678")]),
    ("Pager 555-123-4567.", [(PHONE, "555-123-4567")]),
    ("Toll free 1-800-555-1234.", [(PHONE, "1-800-555-1234")]),
    ("Fax: 985-27-36-14.", [(PHONE, "985-27-36-14")]),
    ("Tel.: 948 255 400 Fax: 948 296 500", [(PHONE, "948 255 400"), (PHONE, "948 296 500")]),
    ("Telfs.: 918 823 884 / 918 823 984.", [(PHONE, "918 823 884"), (PHONE, "918 823 984")]),
    # a nine-digit run is also a long digit run: overlapping hits of different kinds are both kept
    ("Tlf: 918038014.", [(PHONE, "918038014"), (ID_NUMBER, "918038014")]),
    # email, url, ip address, ssn
    ("Correo electrónico: ana.lopez@hospital.es.", [(EMAIL, "ana.lopez@hospital.es")]),
    ("Write to j_doe+notes@mail.example.org today.", [(EMAIL, "j_doe+notes@mail.example.org")]),
    ("See https://portal.example.org/record?x=7.", [(URL, "https://portal.example.org/record?x=7")]),
    ("Details at www.example-clinic.com, page 2.", [(URL, "www.example-clinic.com")]),
    ("Login from 192.168.10.25 at night.", [(IP_ADDRESS, "192.168.10.25")]),
    ("SSN 123-45-6789 on file.", [(SSN, "123-45-6789")]),
    # id numbers
    ("MRN: 1234567", [(ID_NUMBER, "1234567")]),
    ("Medical record number A1234567.", [(ID_NUMBER, "A1234567")]),
    ("Patient ID: AB-12345.", [(ID_NUMBER, "AB-12345")]),
    ("Acct# 4455667.", [(ID_NUMBER, "4455667")]),
    ("NHC: 368503.", [(ID_NUMBER, "368503")]),
    ("CIPA: nhc-789412.", [(ID_NUMBER, "nhc-789412")]),
    ("NASS: 26 63514095 07.", [(ID_NUMBER, "26 63514095 07")]),
    ("Nº historia clínica: 998877.", [(ID_NUMBER, "998877")]),
    ("Episodio: 7345609.", [(ID_NUMBER, "7345609")]),
    ("José MartínezNºCol: 28 28 70973.", [(ID_NUMBER, "28 28 70973")]),
    ("DNI 12345678Z.", [(ID_NUMBER, "12345678Z")]),
    ("Ref. 12345678Z y X1234567L.", [(ID_NUMBER, "12345678Z"), (ID_NUMBER, "X1234567L")]),
    ("Sample 1234567890 was sent.", [(ID_NUMBER, "1234567890")]),
    # age 90 or more
    ("A 92-year-old woman.", [(AGE_90_PLUS, "92-year-old")]),
    ("Lives alone, age 95.", [(AGE_90_PLUS, "95")]),
    ("95 yo male.", [(AGE_90_PLUS, "95 yo")]),
    ("Mujer de 95 años.", [(AGE_90_PLUS, "95 años")]),
    ("Aged 101 years.", [(AGE_90_PLUS, "101 years")]),
    # zip code
    ("Boston, MA 02115.", [(ZIP_CODE, "02115")]),
    ("ZIP: 12345-6789.", [(ZIP_CODE, "12345-6789")]),
    ("CP: 28016.", [(ZIP_CODE, "28016")]),
    ("Servicio de Urología. 28016 Madrid.", [(ZIP_CODE, "28016")]),
    ("Hospital General, E-47005 Valladolid.", [(ZIP_CODE, "47005")]),
    # person name
    ("Seen by Dr. Alvarez today.", [(PERSON_NAME, "Alvarez")]),
    ("Mr. John Smith was admitted.", [(PERSON_NAME, "John Smith")]),
    ("Mrs. O'Neil called.", [(PERSON_NAME, "O'Neil")]),
    ("Ms. Ana María López Pérez", [(PERSON_NAME, "Ana María López")]),
    ("Remitido por Dra. Itziar Palacios", [(PERSON_NAME, "Itziar Palacios")]),
    ("Sr. Pérez de Inestrosa acude.", [(PERSON_NAME, "Pérez de Inestrosa")]),
    ("D. Juan Pérez y Dña. Carmen Ruiz.", [(PERSON_NAME, "Juan Pérez"), (PERSON_NAME, "Carmen Ruiz")]),
    ("Patient: Jane Roe", [(PERSON_NAME, "Jane Roe")]),
    ("Name: Ernesto", [(PERSON_NAME, "Ernesto")]),
    ("Nombre: Ernesto.", [(PERSON_NAME, "Ernesto")]),
    ("Paciente: María López", [(PERSON_NAME, "María López")]),
    ("Prof. Dr. Smith", [(PERSON_NAME, "Smith")]),
    # street address
    ("Lives at 123 Main Street.", [(STREET_ADDRESS, "123 Main Street")]),
    ("Moved to 45 N. Oak Ave. last year.", [(STREET_ADDRESS, "45 N. Oak Ave.")]),
    ("Domicilio: Calle Miguel Benitez 90.", [(STREET_ADDRESS, "Calle Miguel Benitez 90")]),
    ("Vive en c/ del Abedul 5-7.", [(STREET_ADDRESS, "c/ del Abedul 5-7")]),
    ("Avda. de la Paz nº 12.", [(STREET_ADDRESS, "Avda. de la Paz nº 12")]),
    ("Plaza Mayor s/n.", [(STREET_ADDRESS, "Plaza Mayor s/n")]),
    # placeholders hide their content, text after them is still screened
    ("Seen by Dr. [**Smith**] on 2019-03-04.", [(DATE, "2019-03-04")]),
    ("<NAME> was admitted 03/04/2019.", [(DATE, "03/04/2019")]),
    # code points: the emoji and the byte-order mark count as one character each
    ("😀 MRN 1234567", [(ID_NUMBER, "1234567")]),
    ("\ufeffTel: 91 555 12 34", [(PHONE, "91 555 12 34")]),
]

NEGATIVE = [
    "Aspirin 81 mg daily and metformin 500 mg twice daily.",
    "Glucose 512 mg/dL, creatinine 1.2 mg/dL, potassium 4.1 mmol/L.",
    "BP 120/80, HR 88, RR 16, SpO2 95% on room air, T 37.2.",
    "Dose given at 08:30 and again at 14:45.",
    "See section 2.3.1 and 1.2.3.4 of the protocol.",
    "A 45-year-old man, age 45, 45 yo, 45 años.",
    "Follow up in 2 weeks; repeat labs in 3 months.",
    "Seen by Dr. smith in clinic.",
    "[**Name**] was seen by [**Doctor Last Name**] on [**2019-03-04**].",
    "Name: [**Name**]",
    "***",
    "Patient: *** MRN: ***",
    "[REDACTED]",
    "SSN XXX-XX-XXXX, phone XXX-XXX-XXXX.",
    "<NAME> called <PHONE> about <DATE>.",
    "[NAME] lives at [ADDRESS], [CITY] [ZIP].",
    "Mr. XXX and Dr. <NAME>.",
    "Heparin 25000 Units IV, then 1000 units/h.",
    "Platelets 250,000/µL; WBC 12.3 x 10^9/L; Hb 12,3 g/dl; plaquetas 250.000.",
    "Pain 7/10, EF 55-60%, grade 1-2, NYHA II.",
    "Capecitabina 1000 mg/m2/12h días 1-14/21.",
    "Atorvastatina (0-0-20).",
    "Paracetamol 1 g cada 8 h; TA 120/80 mmHg; FC 80 lpm; varón de 45 años.",
    "Group 3 may improve; arm 2 mar scores.",
    "Vitamin D. The level was low.",
    "ID consult recommended vancomycin 1000 mg.",
    "HbA1c 7.5%, CD4 350 cells/mm3, pH 7.35, BMI 32.1.",
    "Patient: stable overnight, tolerating diet.",
    "Started lisinopril, atorvastatin and amoxicillin-clavulanate.",
    "Temperature 99 F, O2 saturation 95% at rest, 90 days of therapy.",
    "Diagnosed in 2010; recurrence in the year 2014.",
]


def found(text: str) -> list[tuple[str, str]]:
    return sorted((hit.kind, text[hit.start : hit.end]) for hit in screen(text).hits)


@pytest.mark.parametrize("text,expected", DATA, ids=[text[:40] for text, _ in DATA])
def test_true_positives(text, expected):
    assert found(text) == sorted(expected)


@pytest.mark.parametrize("text", NEGATIVE, ids=[text[:40] for text in NEGATIVE])
def test_clinical_text_and_placeholders_are_not_flagged(text):
    assert found(text) == []
    assert not screen(text).flagged


def test_every_detector_has_a_true_positive_case():
    assert {kind for _, expected in DATA for kind, _ in expected} == set(KINDS)


def test_offsets_are_code_points():
    report = screen("😀 MRN 1234567")
    assert report.hits == (PhiHit(ID_NUMBER, 6, 13),)
    assert screen("\ufeffTel: 91 555 12 34").hits == (PhiHit(PHONE, 6, 18),)


def test_report_counts_and_flagged_and_carries_no_identifier():
    text = "Mr. John Smith, MRN 1234567, seen 2019-03-04 and 2019-04-05."
    report = screen(text)
    assert report.flagged
    assert report.counts() == {PERSON_NAME: 1, ID_NUMBER: 1, DATE: 2}
    assert "1234567" not in repr(report) and "Smith" not in repr(report)
    assert PhiReport(()).counts() == {} and not PhiReport(()).flagged


def test_identical_duplicates_are_dropped():
    # the keyword rule and the layout rule both find this number
    report = screen("Móvil +34 912 345 678")
    assert report.hits == (PhiHit(PHONE, 6, 21),)
    assert len(set(report.hits)) == len(report.hits)


def test_nested_hit_of_the_same_kind_is_dropped():
    # "63514095" is also a bare eight-digit run inside the NASS number
    assert found("NASS: 26 63514095") == [(ID_NUMBER, "26 63514095")]


def test_excerpt_shows_the_hit_in_context():
    text = "The patient was seen by Dr. Alvarez on the ward today."
    (hit,) = screen(text).hits
    assert excerpt(text, hit, context=8) == "… by Dr. Alvarez on the …"
    assert excerpt("Dr. Alvarez", PhiHit(PERSON_NAME, 4, 11)) == "Dr. Alvarez"


@pytest.mark.parametrize(
    "text",
    [
        "Dr. " * 3000,
        "[**" * 3000,
        "Name: Dr. " * 2000,
        ("a" * 60 + "!@") * 500,
        "1 " * 5000,
        "1/" * 5000,
        "Calle " + "de " * 3000 + "1",
        "NHC " + "x " * 3000,
    ],
    ids=["titles", "open-brackets", "labels", "at-signs", "digits", "slashes", "street", "keyword"],
)
def test_adversarial_input_stays_linear(text):
    started = time.perf_counter()
    screen(text)
    assert time.perf_counter() - started < 1.0  # quadratic backtracking would take seconds here
