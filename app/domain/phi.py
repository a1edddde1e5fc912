"""Offline PHI screen: flags text that still looks like it carries identifiers (English and Spanish).

The screen is deliberately conservative and rule based: it runs on upload, before any note is shown
to an annotator, and holds a batch whose notes are flagged. It is not a de-identifier: a clean
report is no proof that a note is free of identifiers.

Offsets are code points (Python ``str`` indices), so a byte-order mark or an emoji counts as one.
Hits never carry the matched text: reports end up in logs and job records, which must not hold an
identifier. ``excerpt`` exists for showing a hit to an admin inside the page only.

Years on their own ("in 2010") are not flagged: HIPAA Safe Harbor lets the year of a date stay.

Speed: every detector makes one regex pass. Case-insensitive alternations are slow in ``re``, so
detectors keyed on words run on a lower-cased copy of the same length, and patterns start with a
character class (the boundary check comes after the first character) wherever that lets ``re``
skip ahead quickly.
"""

import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass

DATE = "date"
PHONE = "phone"
EMAIL = "email"
URL = "url"
IP_ADDRESS = "ip_address"
SSN = "ssn"
ID_NUMBER = "id_number"
AGE_90_PLUS = "age_90_plus"
ZIP_CODE = "zip_code"
PERSON_NAME = "person_name"
STREET_ADDRESS = "street_address"

KINDS = (
    DATE,
    PHONE,
    EMAIL,
    URL,
    IP_ADDRESS,
    SSN,
    ID_NUMBER,
    AGE_90_PLUS,
    ZIP_CODE,
    PERSON_NAME,
    STREET_ADDRESS,
)


@dataclass(frozen=True)
class PhiHit:
    """One suspected identifier: its kind and code-point span, never its text."""

    kind: str
    start: int
    end: int


@dataclass(frozen=True)
class PhiReport:
    """All hits in one text, sorted by position."""

    hits: tuple[PhiHit, ...]

    def counts(self) -> dict[str, int]:
        """Number of hits per kind."""
        return dict(Counter(hit.kind for hit in self.hits))

    @property
    def flagged(self) -> bool:
        """True when the text has at least one hit."""
        return bool(self.hits)


def excerpt(text: str, hit: PhiHit, context: int = 20) -> str:
    """The hit with some context, for display inside the page only (never log it)."""
    start, end = max(0, hit.start - context), min(len(text), hit.end + context)
    head = "…" if start > 0 else ""
    tail = "…" if end < len(text) else ""
    return head + text[start:end].replace("\n", " ") + tail


# --- text preparation ----------------------------------------------------------------------------
# Text already masked by an upstream de-identifier. Spans are overwritten with NUL (same length, so
# offsets hold) before the detectors run: NUL is neither a word, digit nor space character, so no
# detector matches inside a placeholder or joins text across one.
_PLACEHOLDER = re.compile(
    r"\[\*\*[^\n]{0,200}?\*\*\]"  # MIMIC style [**Known lastname 123**]; bounded: no quadratic scans
    r"|\*{3,}"
    r"|X{3,}"
    r"|<[A-Z][A-Z0-9_ -]*>"  # <NAME>, <DATE>, <PHONE_1>
    r"|\[[A-Z][A-Z0-9_ -]+\]"  # [REDACTED], [NAME]
)
_MASK = "\x00"


def _mask(text: str) -> str:
    """Overwrite placeholders with NUL, keeping every offset."""
    if "[" not in text and "**" not in text and "XXX" not in text and "<" not in text:
        return text  # substring tests are far cheaper than a regex pass
    return _PLACEHOLDER.sub(lambda m: _MASK * (m.end() - m.start()), text)


def _fold(text: str) -> str:
    """Lower-case the text without changing its length (offsets must stay valid)."""
    folded = text.lower()
    if len(folded) == len(text):
        return folded
    # A few characters lower-case to two code points ("İ"); those keep their case.
    return "".join(ch.lower() if len(ch.lower()) == 1 else ch for ch in text)


def _prev(text: str, index: int) -> str:
    """The character before index, or "" at the start."""
    return text[index - 1] if index > 0 else ""


# --- date ----------------------------------------------------------------------------------------
_SP = r"[ \t]"
_YEAR4 = r"(?:1[89]|20)\d\d"
_ORD = r"(?:st|nd|rd|th)?"
# Month names and abbreviations (English and Spanish), lower case, factored by first letter so that
# most positions fail on one character.
_MONTHS = (
    r"(?:j(?:an(?:uary)?|u(?:n(?:e|io)?|l(?:y|io)?))|f(?:eb(?:ruary|rero)?)|m(?:ar(?:ch|zo)?|ay(?:o)?)|"
    r"a(?:pr(?:il)?|br(?:il)?|ug(?:ust)?|go(?:sto)?)|s(?:ep(?:t(?:iembre|ember)?)?|etiembre)|"
    r"o(?:ct(?:ober|ubre)?)|n(?:ov(?:ember|iembre)?)|d(?:ec(?:ember)?|ic(?:iembre)?)|e(?:ne(?:ro)?))"
)
_ES_MONTHS = (
    r"(?:enero|febrero|ma(?:rzo|yo)|abril|agosto|ju(?:nio|lio)|se(?:ptiembre|tiembre)|octubre|noviembre|"
    r"diciembre)"
)


def _month(group: str) -> str:
    """A month name captured as group; a full stop is allowed after a three-letter abbreviation."""
    # A full stop belongs to an abbreviation ("Mar."), not to a full name ending a sentence.
    return rf"(?P<{group}>{_MONTHS})(?![a-zà-ÿ])(?:(?<![a-z]{{4}})\.)?"


_DATE = re.compile(  # runs on the folded text
    r"\b(?:"
    # ISO 2019-03-04
    rf"{_YEAR4}(?P<sep>[-/.])(?:0?[1-9]|1[0-2])(?P=sep)(?:0?[1-9]|[12]\d|3[01])(?!\d)"
    # month first: March 4, 2019 / Mar 2019 / marzo de 2019 / enero del año 2001 / March 4
    rf"|{_month('m1')}(?:"
    rf"{_SP}+\d{{1,2}}{_ORD},?{_SP}+{_YEAR4}\b"
    rf"|,?{_SP}+(?:of{_SP}+|del?{_SP}+(?:año{_SP}+)?)?{_YEAR4}\b"
    rf"|{_SP}+(?P<y1>\d{{1,2}}){_ORD}\b(?![.,:/]\d))"
    # day first
    r"|(?P<dd>\d{1,2})(?:"
    rf"{_ORD}{_SP}+(?:of{_SP}+)?{_month('m2')},?{_SP}+{_YEAR4}\b"  # 4 March 2019, 4th of March 2019
    rf"|{_SP}+de{_SP}+{_ES_MONTHS}\b(?:{_SP}+del?{_SP}+(?:año{_SP}+)?{_YEAR4}\b)?"  # 4 de marzo (de 2019)
    rf"|[-/ ]{_month('m3')}[-/ ](?:{_YEAR4}|\d\d)\b"  # 13-noviembre-2017, 04-mar-19
    # 03/04/2019, 4/3/19, 12/04 /2011 -- one separator kind per date: "1-14/21" is a dosing cycle
    rf"|{_SP}?/{{1,2}}(?P<d2>\d{{1,3}}){_SP}?/{{1,2}}(?:{_YEAR4}|\d\d)(?![\d/])"
    r"|-(?P<h2>\d{1,2})-(?:(?:1[89]|20)\d\d|\d\d)(?![\d/]|-\d)"  # 21-03-07
    rf"|\.(?P<e2>\d{{1,2}})\.{_YEAR4}(?!\d|\.\d)"  # 04.03.2019; "1.2.10" is a section number
    rf"|{_ORD}{_SP}+(?:of{_SP}+)?{_month('m4')}"  # yearless: 4th of March, 4 March
    r"))"
)
# Without a year, "may" and "mar" are too often ordinary words ("group 3 may ...") and must be
# capitalised; Spanish abbreviations collide with English words ("ago") and are not accepted.
_WEAK_MONTHS = frozenset({"may", "mar"})
_NO_YEARLESS = frozenset({"ago", "ene", "abr", "dic"})


def _day_month_ok(a: str, b: str) -> bool:
    """Both parts could be a day or a month and one of them is a month ("0-0-20" is a dose)."""
    x, y = int(a), int(b)
    return 1 <= x <= 31 and 1 <= y <= 31 and min(x, y) <= 12


def _dates(text: str, folded: str) -> Iterator[PhiHit]:
    for m in _DATE.finditer(folded):
        second = m.group("d2") or m.group("h2") or m.group("e2")
        if second is not None:
            if _prev(folded, m.start()) in ("/", ".", ",", "-") or not _day_month_ok(m.group("dd"), second):
                continue
        yearless = "m4" if m.group("m4") is not None else "m1" if m.group("y1") is not None else None
        if yearless is not None:
            month = m.group(yearless)
            if month in _NO_YEARLESS or (month in _WEAK_MONTHS and text[m.start(yearless)].islower()):
                continue
        yield PhiHit(DATE, m.start(), m.end())


# --- phone ---------------------------------------------------------------------------------------
# A phone number: optional +country or (area), then digits with at most one separator between them.
_PHONE_NUMBER = r"\+?(?:\(\d{1,5}\)[ .-]?)?\d(?:[ .\-]?\d){5,14}"
_PHONE_KEYWORD = (
    r"\b(?:t(?:el(?:[eé]f(?:onos?)?|fs?|ephone|efax)?|fno?s?|lf(?:nos?|s)?)|phone|fax|mobile|"
    r"cell(?:phone)?|m[oó]vil|pager|beeper)\b"
)
_PHONE_SEP = rf"{_SP}*(?:/|,|;|-|y|o|or|and){_SP}*"
_PHONE_CONTEXT = re.compile(  # runs on the folded text
    rf"{_PHONE_KEYWORD}[^\d\n]{{0,25}}?(?P<p1>{_PHONE_NUMBER})"
    rf"(?:{_PHONE_SEP}(?P<p2>{_PHONE_NUMBER}))?(?:{_PHONE_SEP}(?P<p3>{_PHONE_NUMBER}))?"
)
# Without a keyword only unmistakable layouts count: (555) 123-4567, 555-123-4567, 1-555-123-4567,
# +34 912 345 678. Each starts with a character class and checks the character before it afterwards.
_PHONE_BARE = re.compile(
    r"[(\d](?<![\w+(-][(\d])"
    r"(?:(?<=1)[ .-](?:\(\d{3}\)[ .-]?|\d{3}[.-])|(?<=\()\d{3}\)[ .-]?|(?<=\d)\d\d[.-])"
    r"\d{3}[ .-]\d{4}(?![\w]|-\d)"
    r"|\+(?<![\w+]\+)\d{1,3}[ .-]?(?:\(\d{1,4}\)[ .-]?)?\d{1,4}(?:[ .-]?\d{2,4}){1,4}(?![\w])"
)


def _digits(value: str) -> int:
    """How many digits value holds."""
    return sum(ch.isdigit() for ch in value)


def _phones(text: str, folded: str) -> Iterator[PhiHit]:
    for m in _PHONE_CONTEXT.finditer(folded):
        for group in ("p1", "p2", "p3"):
            value = m.group(group)
            if value is not None and 7 <= _digits(value) <= 15:
                yield PhiHit(PHONE, m.start(group), m.end(group))
    for m in _PHONE_BARE.finditer(text):
        # A North American number has ten digits; an international one at least nine after the "+".
        if 10 <= _digits(m.group()) <= 15 or (m.group()[0] == "+" and _digits(m.group()) >= 9):
            yield PhiHit(PHONE, m.start(), m.end())


# --- email, url, ip, ssn -------------------------------------------------------------------------
# Found from each "@": a regex tried at every word would cost a full pass for a rare character.
_EMAIL_LOCAL_REVERSED = re.compile(r"[\w.%+-]{0,64}")  # matched on the reversed text before "@"
_EMAIL_DOMAIN = re.compile(r"[\w-]+(?:\.[\w-]+)*\.[A-Za-z]{2,}\b")


def _emails(text: str, folded: str) -> Iterator[PhiHit]:
    at = text.find("@")
    while at != -1:
        start = at - _EMAIL_LOCAL_REVERSED.match(text[max(0, at - 64) : at][::-1]).end()
        while start < at and text[start] == ".":  # a sentence's full stop is not part of the address
            start += 1
        domain = _EMAIL_DOMAIN.match(text, at + 1)
        if start < at and domain is not None:
            yield PhiHit(EMAIL, start, domain.end())
        at = text.find("@", at + 1)


_URL = re.compile(r"\b(?:https?://|ftp://|www\.)[^\s<>\"'\x00]+")  # runs on the folded text
_URL_TAIL = ".,;:!?)]}"


def _urls(text: str, folded: str) -> Iterator[PhiHit]:
    if "://" not in folded and "www." not in folded:
        return
    for m in _URL.finditer(folded):
        end = m.end()
        while end > m.start() and text[end - 1] in _URL_TAIL:  # sentence punctuation is not the URL
            end -= 1
        yield PhiHit(URL, m.start(), end)


_IP = re.compile(r"\d(?<![\d.]\d)\d{0,2}(?:\.\d{1,3}){3}(?!\d|\.\d)")


def _ip_addresses(text: str, folded: str) -> Iterator[PhiHit]:
    for m in _IP.finditer(text):
        octets = m.group().split(".")
        # "1.2.3.4" is a section number far more often than an address.
        if all(int(o) <= 255 for o in octets) and any(len(o) > 1 for o in octets):
            yield PhiHit(IP_ADDRESS, m.start(), m.end())


_SSN = re.compile(r"\d(?<![\w-]\d)\d\d-\d\d-\d{4}(?![\w]|-\d)")


def _ssns(text: str, folded: str) -> Iterator[PhiHit]:
    for m in _SSN.finditer(text):
        area, group, serial = m.group().split("-")
        if area != "000" and group != "00" and serial != "0000":
            yield PhiHit(SSN, m.start(), m.end())


# --- id numbers ----------------------------------------------------------------------------------
_ID_KEYWORD = (  # folded; "id" must be upper case in the text (checked in _id_numbers)
    rf"(?:\b(?:id|mrn|mr{_SP}?#|medical\s+record(?:\s+(?:number|no\.?|#))?|record\s+(?:number|no\.?|#)|"
    r"acc(?:oun)?t(?:\s+(?:number|no\.?|#))?\.?|patient\s+(?:number|no\.?|#|id)|member\s+id|"
    r"policy(?:\s+(?:number|no\.?|#))?|insurance\s+(?:number|no\.?|#|id)|"
    r"nhc|nass|nuss|dni|nie|nif|cipa?|sip|tsi|episodio|"
    r"n(?:[úu]mero|º|o\.?)\s*(?:de\s+)?historia(?:\s+cl[íi]nica)?|historia\s+cl[íi]nica|"
    r"n[º°]?\s*(?:de\s+)?colegiado|colegiado|license|licencia|passport|pasaporte|"
    r"n[úu]mero\s+de\s+(?:afiliaci[óo]n|seguridad\s+social|tarjeta)|tarjeta\s+sanitaria|"
    r"seguridad\s+social)\b"
    r"|nºcol\b)"  # often glued to the name before it: "MartínezNºCol: 28 28 98702"
)
# A value starts with a digit (after an optional short letter prefix such as "nhc-"), may continue
# with digits, letters and - / . separators, and may be spread over space separated digit groups
# ("26 63514095 07"). Quantities with a unit are not identifiers.
_ID_VALUE = (
    r"(?<![\w-])(?:[a-z]{1,6}-?)?\d[a-z0-9]*(?:[-/.]?\d[a-z0-9]*|-[a-z]{1,3}\b|[ ]{1,2}\d{2,}[a-z]?)*"
    r"(?![\w])"
    r"(?!\s?(?:mg|ml|g|kg|mcg|µg|ug|mmol|l|dl|cc|units?|ui|iu|%|mm|cm|years?|años|days?|días|"
    r"weeks?|semanas|months?|meses|patients?|pacientes|hours?|horas|h)\b)"
)
_ID_CONTEXT = re.compile(rf"{_ID_KEYWORD}[^\d\n]{{0,25}}?(?P<v>{_ID_VALUE})")  # folded text
# After its first digit an identifier is digits and capitals; lower case there means a word.
_LOWER_AFTER_DIGIT = re.compile(r"\d.*[a-z]")
# Anywhere: Spanish DNI / NIE (12345678Z, X1234567L) and bare runs of eight or more digits ("not
# after letters": "rs121912744" is a gene variant).
_ID_BARE = re.compile(
    r"\d(?<![\w.,-]\d)(?:\d{7}-?[A-HJ-NP-TV-Z](?!\w)|\d{7,}(?!\d|[.,]\d))"
    r"|[XYZ](?<![\w-][XYZ])-?\d{7}-?[A-HJ-NP-TV-Z](?!\w)"
)


def _id_numbers(text: str, folded: str) -> Iterator[PhiHit]:
    for m in _ID_CONTEXT.finditer(folded):
        if m.group().startswith("id") and text[m.start() : m.start() + 2] != "ID":
            continue
        value = text[m.start("v") : m.end("v")]
        if sum(ch.isalnum() for ch in value) >= 5 and not _LOWER_AFTER_DIGIT.search(value):
            yield PhiHit(ID_NUMBER, m.start("v"), m.end("v"))
    for m in _ID_BARE.finditer(text):
        yield PhiHit(ID_NUMBER, m.start(), m.end())


# --- age -----------------------------------------------------------------------------------------
# The span covers the number and its unit ("92-year-old", "95 años"), or just the number after a
# prefix ("age 95"), like an annotator would mark it.
_AGE_NUMBER = r"(?:9\d|1[0-4]\d)"
_AGE = re.compile(  # runs on the folded text
    rf"\b(?:(?P<n>{_AGE_NUMBER})"
    r"(?:[- ]?(?:years?|yrs?|y)[- ]?old\b|-?years?[- ]of[- ]age\b|[ ]?y/o\b|[ ]?y\.o\.|[ ]?yo\b|[ ]a[ñn]os\b)"
    rf"|(?:aged?|edad(?:{_SP}+de)?)\b[ \t:]*(?:of[ \t]+)?(?P<m>{_AGE_NUMBER})\b(?![.,]\d)"
    rf"(?:{_SP}(?:years?|yrs?|a[ñn]os)\b)?)"
)


def _ages(text: str, folded: str) -> Iterator[PhiHit]:
    for m in _AGE.finditer(folded):
        start = m.start("n") if m.group("n") is not None else m.start("m")
        yield PhiHit(AGE_90_PLUS, start, m.end())


# --- zip code ------------------------------------------------------------------------------------
_STATES = (
    "AL|AK|AZ|AR|CA|CO|CT|DE|DC|FL|GA|HI|ID|IL|IN|IA|KS|KY|LA|ME|MD|MA|MI|MN|MS|MO|MT|NE|NV|NH|NJ|NM|"
    "NY|NC|ND|OH|OK|OR|PA|RI|SC|SD|TN|TX|UT|VT|VA|WA|WV|WI|WY|PR"
)
# Words that follow a five-digit quantity and are not a city ("25000 Units").
_NOT_A_CITY = frozenset(
    {"units", "unidades", "unit", "patients", "pacientes", "cells", "células", "copies", "copias", "years"}
)
# Every form has the five digits: find them first (a cheap pass), then look at their surroundings.
_ZIP_CANDIDATE = re.compile(r"\d(?<![\w.,/+]\d)\d{4}(?:-\d{4})?(?![\w/-]|[.,]\d)")
_ZIP_LABEL = re.compile(
    # US "Boston, MA 02115-1234"; "ZIP: 02115", "zip code 02115"; Spain "CP: 28016", "C.P. 28016"
    rf"(?:(?P<state>[a-z.],{_SP}+(?:{_STATES}))"
    rf"|\b(?:ZIP|[Zz]ip(?:{_SP}*[Cc]ode)?|C\.?{_SP}?P\.?|[Cc][óo]digo{_SP}+[Pp]ostal){_SP}*:?){_SP}*\Z"
)
_CITY = re.compile(rf"{_SP}*[,-]?{_SP}*([A-ZÁÉÍÓÚÑ][a-záéíóúñü]+)")


def _spanish_zip_context_ok(text: str, start: int) -> bool:
    """After punctuation, a house number or "s/n", not after a lowercase word ("Leucocitos 17850")."""
    before = _prev(text, start)
    if before == "" or before == "\n":
        return True
    if before == "-":
        return text[max(0, start - 2) : start] == "E-"
    if before in " \t":
        word_end = _prev(text, start - 1)
        return not word_end.islower() or text[max(0, start - 4) : start - 1] == "s/n"
    return not before.isalnum()


def _zip_codes(text: str, folded: str) -> Iterator[PhiHit]:
    for m in _ZIP_CANDIDATE.finditer(text):
        start, end = m.span()
        label = _ZIP_LABEL.search(text, max(0, start - 30), start)
        if label is not None and (label.group("state") is None or end - start in (5, 10)):
            if _prev(text, start) != "-":
                yield PhiHit(ZIP_CODE, start, end)
            continue
        # Spain: a postal code (01000-52999) right before a capitalised city ("..., 28016 Madrid").
        if end - start != 5 or text[start : start + 2] == "00" or text[start : start + 2] > "52":
            continue
        city = _CITY.match(text, end)
        if city and city.group(1).lower() not in _NOT_A_CITY and _spanish_zip_context_ok(text, start):
            yield PhiHit(ZIP_CODE, start, end)


# --- person name ---------------------------------------------------------------------------------
_UPPER = "A-ZÀ-ÖØ-Þ"
# A title or a field label after a label is not a name ("Médico: NºCol: ...", "Informe Médico: Paciente").
_NOT_NAME = r"(?!(?:Mr|Mrs|Ms|Dr|Dra|DR|DRA|Prof|Sr|Sra|NºCol|Name|Nombre|Patient|Paciente|Apellidos)\b)"
_NAME_WORD = rf"{_NOT_NAME}(?:[{_UPPER}][A-Za-zß-öø-ÿÀ-ÖØ-Þºª'’-]+|[{_UPPER}]\.)"
_PARTICLE = r"(?:de(?:l|[ \t]+la|[ \t]+los)?|van|von|da|di|du|le|la)"
_NAME = rf"{_NAME_WORD}(?:{_SP}+(?:{_PARTICLE}{_SP}+)?{_NAME_WORD}){{0,2}}"
# Titles are case sensitive: "Dr. smith" and "dr" in running text are not titles of a name. Titles
# may chain ("Prof. Dr. Smith") so that the second one is not taken for the name; one with a full
# stop or a label with a colon may be glued to the name ("Dra.Itziar").
_TITLE_WORD = (
    rf"(?:Mr|Mrs|Ms|Mx|Miss|Dr|Dra|Drs|Prof|Sr|Sra|Srta|Dña|DR|DRA)(?:[.:]{_SP}*|{_SP}+)|D\.{_SP}*|Dª{_SP}*"
)
_LABEL = (
    r"(?:Patient|Patient\s+name|Name|Full\s+name|First\s+name|Last\s+name|Surname|Referred\s+by|"
    r"Attending|Physician|Nombre|Nombre\s+y\s+apellidos|Apellidos|Paciente|Médico|Remitido\s+por|"
    rf"Responsable\s+cl[íi]nico):{_SP}*"
)
_TITLE = rf"\b(?:{_TITLE_WORD})"
_PERSON = re.compile(rf"(?=[A-Z])(?:(?P<title>{_TITLE})|\b{_LABEL}){_TITLE}{{0,2}}(?P<name>{_NAME})(?![\w])")


def _person_names(text: str, folded: str) -> Iterator[PhiHit]:
    for m in _PERSON.finditer(text):
        # "D." alone is also vitamin D at the end of a sentence; as a title it precedes a full name.
        if (m.group("title") or "").startswith("D.") and not re.search(r"\s", m.group("name")):
            continue
        yield PhiHit(PERSON_NAME, m.start("name"), m.end("name"))


# --- street address ------------------------------------------------------------------------------
# Only an abbreviated suffix takes the full stop after it ("Oak Ave."), a full word ends a sentence.
_STREET_SUFFIX = (
    r"(?:(?:Street|Avenue|Road|Boulevard|Lane|Drive|Court|Place|Terrace|Parkway|Highway|Circle|Way)\b"
    r"|(?:St|Ave|Rd|Blvd|Ln|Dr|Ct|Pl|Pkwy|Hwy|Cir)\b\.?)"
)
_ES_STREET = (
    r"(?:Calle|[Cc]/|Avda\.?|Avenida|Av[./]?|Avinguda|Plaza|Plaça|Pza\.?|Paseo|Passeig|Pso\.?|Pº|"
    r"Ronda|Camino|Carretera|Ctra\.?|Travesía|Glorieta|Urbanización|Urb\.|Carrer|Rúa|Rua)(?:(?<=[/.])|\b)"
)
_STREET = re.compile(
    r"(?=[\dCcAPRTGUp])"  # lets re skip to possible first characters
    # 123 Main Street, 45B N. Oak Ave.
    rf"\b(?:\d{{1,6}}[A-Za-z]?{_SP}+(?:[NSEW]\.?{_SP}+)?(?:[A-Z][a-z]+\.?{_SP}+){{1,4}}{_STREET_SUFFIX}"
    # Calle Miguel Benitez 90, c/ del Abedul 5-7, Avda. de la Paz nº 12, Plaza Mayor s/n
    rf"|{_ES_STREET}{_SP}*(?:[\w'’.-]+(?:,{_SP}*|{_SP}+)){{1,6}}?"
    rf"(?:(?:n[º°o]\.?|número){_SP}*)?(?:\d{{1,5}}[A-Za-z]?\b(?:{_SP}*-{_SP}*\d{{1,5}}\b)?|s/n))"
)


def _street_addresses(text: str, folded: str) -> Iterator[PhiHit]:
    for m in _STREET.finditer(text):
        yield PhiHit(STREET_ADDRESS, m.start(), m.end())


_DETECTORS: tuple[Callable[[str, str], Iterator[PhiHit]], ...] = (
    _dates,
    _phones,
    _emails,
    _urls,
    _ip_addresses,
    _ssns,
    _id_numbers,
    _ages,
    _zip_codes,
    _person_names,
    _street_addresses,
)


def screen(text: str) -> PhiReport:
    """Run every detector once over the text (placeholders masked) and report the distinct hits."""
    masked = _mask(text)
    folded = _fold(masked)
    hits: set[PhiHit] = set()  # a set: two alternatives of one detector may find the same span
    for detector in _DETECTORS:
        for hit in detector(masked, folded):
            if _MASK not in masked[hit.start : hit.end]:
                hits.add(hit)
    return PhiReport(_drop_nested(sorted(hits, key=lambda h: (h.start, -h.end, h.kind))))


def _drop_nested(hits: list[PhiHit]) -> tuple[PhiHit, ...]:
    """Drop a hit lying inside a longer hit of the same kind (its digits were already reported)."""
    kept: list[PhiHit] = []
    reach: dict[str, int] = {}  # per kind, the furthest end among the kept hits (sorted by start)
    for hit in hits:
        if reach.get(hit.kind, -1) >= hit.end:
            continue
        kept.append(hit)
        reach[hit.kind] = max(reach.get(hit.kind, -1), hit.end)
    return tuple(sorted(kept, key=lambda h: (h.start, h.end, h.kind)))
