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
    ("name with space", with_change("entity_types.0.name", "Drug name"), "entity_types[0].name", "pattern"),
    (
        "unknown field",
        with_change("entity_types.0.colour", "#000000"),
        "entity_types[0].colour",
        "not permitted",
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
