"""Label schema and study settings: each bad input names the field it is about."""

import pytest

from app.domain.label_schema import LabelSchemaError, parse_label_schema, parse_study_settings

GOOD = {
    "entity_types": [
        {"name": "Drug", "color": "#1F77B4", "hotkey": "D"},
        {"name": "Strength", "color": "#ff7f0e", "hotkey": "s"},
    ],
    "relation_types": [{"name": "Strength-Drug", "head_types": ["Strength"], "tail_types": ["Drug"]}],
    "span_attributes": [{"name": "negation", "values": ["present", "absent"], "default": "present"}],
    "document_questions": [
        {"key": "primary_diagnosis", "prompt": "Primary diagnosis", "kind": "text"},
        {"key": "confidence", "prompt": "Confidence", "kind": "scale", "scale_min": 1, "scale_max": 5},
    ],
}


def with_change(path: str, value):
    """GOOD with one value replaced: path like 'entity_types.1.hotkey'."""
    import copy

    schema = copy.deepcopy(GOOD)
    *parents, last = path.split(".")
    target = schema
    for part in parents:
        target = target[int(part)] if part.isdigit() else target[part]
    if last.isdigit():
        target[int(last)] = value
    else:
        target[last] = value
    return schema


def test_a_good_schema_is_normalised():
    schema = parse_label_schema(GOOD)
    assert [e.name for e in schema.entity_types] == ["Drug", "Strength"]
    assert schema.entity_types[0].color == "#1f77b4"
    assert schema.entity_types[0].hotkey == "d"


def test_a_schema_with_no_labels_yet_is_valid():
    """A project made from a folder of plain notes starts empty; its lead adds the labels (issue 18)."""
    assert parse_label_schema({"entity_types": []}).entity_types == []


BAD_SCHEMAS = [
    # (what is wrong, schema, field named, words in the message)
    ("not an object", ["Drug"], "(schema)", "JSON object"),
    ("colour not hex", with_change("entity_types.0.color", "blue"), "entity_types[0].color", "colour"),
    ("hotkey two chars", with_change("entity_types.1.hotkey", "ss"), "entity_types[1].hotkey", "one"),
    ("hotkey reserved", with_change("entity_types.1.hotkey", "z"), "entity_types[1].hotkey", "reserved"),
    ("hotkey reused", with_change("entity_types.1.hotkey", "d"), "entity_types[1].hotkey", "Drug"),
    ("name with space", with_change("entity_types.0.name", "Drug name"), "entity_types[0].name", "a letter"),
    (
        "unknown field",
        with_change("entity_types.0.colour", "#000000"),
        "entity_types[0].colour",
        "not a field clinann knows",
    ),
    ("duplicate type", with_change("entity_types.1.name", "Drug"), "entity_types[1].name", "twice"),
    (
        "relation to unknown type",
        with_change("relation_types.0.tail_types", ["Dose"]),
        "relation_types[0].tail_types[0]",
        "Dose",
    ),
    (
        "attribute default not a value",
        with_change("span_attributes.0.default", "maybe"),
        "span_attributes[0]",
        "maybe",
    ),
    (
        "attribute on unknown type",
        with_change("span_attributes.0.applies_to", ["Lab"]),
        "span_attributes[0].applies_to[0]",
        "Lab",
    ),
    (
        "choice question without choices",
        with_change("document_questions.0", {"key": "dx", "prompt": "Dx", "kind": "choice"}),
        "document_questions[0]",
        "choices",
    ),
    (
        "unknown question kind",
        with_change("document_questions.0.kind", "essay"),
        "document_questions[0].kind",
        "text",
    ),
    ("bad scale", with_change("document_questions.1.scale_max", 1), "document_questions[1]", "scale_min"),
]


@pytest.mark.parametrize("why,schema,field,words", BAD_SCHEMAS, ids=[case[0] for case in BAD_SCHEMAS])
def test_a_bad_schema_names_its_field(why, schema, field, words):
    with pytest.raises(LabelSchemaError) as raised:
        parse_label_schema(schema)
    fields = [f for f, _ in raised.value.problems]
    assert field in fields, raised.value.problems
    message = dict(raised.value.problems)[field]
    assert words.lower() in message.lower(), message


@pytest.mark.parametrize(
    "settings,field",
    [
        ({"idle_threshold_seconds": 0}, "study.idle_threshold_seconds"),
        ({"conditions": ["guessing"]}, "study.conditions[0]"),
        ({"overlap": 0}, "study.overlap"),
    ],
)
def test_bad_study_settings_name_their_field(settings, field):
    with pytest.raises(LabelSchemaError) as raised:
        parse_study_settings(settings)
    assert field in [f for f, _ in raised.value.problems]


def test_study_defaults_follow_the_metric_definitions():
    study = parse_study_settings({})
    assert study.idle_threshold_seconds == 60
    assert set(study.conditions) == {"scratch", "refine_llm", "refine_human"}


# ---- problems in a lead's words, and distinct default colours (issue 20) ----------------------------

DRUG = {"name": "Drug", "color": "#1f77b4"}
NAME_RULE = "start with a letter, then letters, digits, '_' or '-' (at most 64 characters, no spaces)"
SCHEMA_PROBLEMS_IN_WORDS = [
    # (schema, the problem as the page says it)
    (
        {"entity_types": [{"name": "Drug", "color": "#1f77b4"}, {"name": "Dose", "color": "#f00"}]},
        "Label 2 (Dose), colour: must be a colour like #1f77b4",
    ),
    (
        {"entity_types": [DRUG], "relation_types": [{"name": "Of", "head_types": [], "tail_types": ["X"]}]},
        "Relation type 1 (Of), from (head) types: name at least one entity type",
    ),
    (
        {"entity_types": [{"name": "Drug name", "color": "#1f77b4"}]},
        f"Label 1 (Drug name), name: {NAME_RULE}",
    ),
    (
        {"span_attributes": [{"name": "Negated", "values": []}]},
        "Attribute 1 (Negated), values: give at least one value",
    ),
    (
        {"document_questions": [{"key": "dx", "prompt": "", "kind": "text"}]},
        "Question 1 (dx), question: fill it in",
    ),
    (
        {"entity_types": [DRUG], "span_attributes": [{"name": "N", "values": ["y"], "applies_to": ["Dose"]}]},
        "Attribute 1 (N), for types, item 1: unknown entity type 'Dose'",
    ),
]  # fmt: skip


@pytest.mark.parametrize("schema,words", SCHEMA_PROBLEMS_IN_WORDS)
def test_schema_problems_are_said_in_words(schema, words):
    with pytest.raises(LabelSchemaError) as raised:
        parse_label_schema(schema)
    assert raised.value.described == [words]
    assert "List should have" not in str(raised.value) and "String should" not in str(raised.value)


@pytest.mark.parametrize(
    "settings,words",
    [
        ({"conditions": []}, "Study settings, conditions: choose at least one condition"),
        ({"idle_threshold_seconds": 0}, "Study settings, idle time threshold: must be above 0"),
        ({"idle_threshold_seconds": 7200}, "Study settings, idle time threshold: must be at most 3600"),
        ({"overlap": "two"}, "Study settings, physicians per note for agreement: must be a whole number"),
    ],
)
def test_study_setting_problems_are_said_in_words(settings, words):
    with pytest.raises(LabelSchemaError) as raised:
        parse_study_settings(settings)
    assert raised.value.described == [words]


def _cielab(colour: str) -> tuple[float, float, float]:
    """sRGB (D65) to CIELAB, written out here from the CIE formulas, apart from the code under test."""

    def linear(c: float) -> float:
        return ((c + 0.055) / 1.055) ** 2.4 if c > 0.04045 else c / 12.92

    r, g, b = (linear(int(colour[i : i + 2], 16) / 255) for i in (1, 3, 5))
    x = (0.4124 * r + 0.3576 * g + 0.1805 * b) / 0.95047
    y = 0.2126 * r + 0.7152 * g + 0.0722 * b
    z = (0.0193 * r + 0.1192 * g + 0.9505 * b) / 1.08883

    def f(t: float) -> float:
        return t ** (1 / 3) if t > (6 / 29) ** 3 else t / (3 * (6 / 29) ** 2) + 4 / 29

    return 116 * f(y) - 16, 500 * (f(x) - f(y)), 200 * (f(y) - f(z))


def test_default_colours_are_distinct_and_clearly_apart():
    from app.domain.label_schema import LABEL_PALETTE, distinct_colour

    taken: list[str] = []
    for _ in range(40):
        taken.append(distinct_colour(taken))
    assert len(set(taken)) == 40 and taken[:20] == list(LABEL_PALETTE)
    parse_label_schema({"entity_types": [{"name": f"L{i}", "color": c} for i, c in enumerate(taken)]})
    labs = [_cielab(c) for c in LABEL_PALETTE]
    closest = min(
        sum((p - q) ** 2 for p, q in zip(a, b, strict=True)) ** 0.5
        for i, a in enumerate(labs)
        for b in labs[:i]
    )
    assert closest >= 20  # CIE76 ΔE: two labels of the palette never look alike
    # a colour already used is skipped, whatever its case
    assert distinct_colour(["#1F77B4"]) == "#ff7f0e"
