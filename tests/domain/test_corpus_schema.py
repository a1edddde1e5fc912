"""A corpus's schema from its annotation.conf and its data, with every addition listed (issue 18)."""

from app.domain.brat import parse_annotation_conf
from app.domain.brat_import import read_brat_document
from app.domain.corpus_schema import extend_schema, schema_for_corpus
from app.domain.label_schema import parse_label_schema
from app.domain.spans import Fragment
from app.domain.uploads import ImportedDocument, ImportedSpan, first_differing_line

# A conf like n2c2's: relations name entity types that [entities] never declares (brat accepts it).
CONF = """[entities]
Drug
Reason
[relations]
Reason-Drug\tArg1:Reason, Arg2:Drug
Dosage-Drug\tArg1:Dosage, Arg2:Drug
[events]
[attributes]
Certainty\tArg:Reason, Value:certain|possible
"""
ANN = (
    "T1\tDrug 0 7\tAspirin\n"
    "T2\tReason 12 22\tchest pain\n"
    "T3\tADE 24 29\trash.\n"
    "A1\tCertainty T2 likely\n"
    "R1\tReason-Drug Arg1:T2 Arg2:T1\n"
)
TEXT = "Aspirin for chest pain, rash."


def test_types_named_only_as_arguments_and_data_labels_are_added_and_listed():
    document, problems, _ = read_brat_document("n1", TEXT, ANN, "n1.ann")
    assert problems == []
    schema, additions = schema_for_corpus(parse_annotation_conf(CONF), [document])
    assert additions == [
        "entity type 'Dosage' (not declared in annotation.conf: an argument of relation 'Dosage-Drug')",
        "entity type 'ADE' (used by the data)",
        "value 'likely' of attribute 'Certainty' (used by the data)",
    ]
    parsed = parse_label_schema(schema)  # before: LabelSchemaError, relation_types[1].head_types[0]
    assert [e.name for e in parsed.entity_types] == ["Drug", "Reason", "Dosage", "ADE"]
    assert len({e.color for e in parsed.entity_types}) == 4  # no two types share a colour
    assert parsed.span_attribute("Certainty").values == ["certain", "possible", "likely"]


def test_a_folder_of_plain_notes_makes_an_empty_schema():
    schema, additions = schema_for_corpus(None, [ImportedDocument("n1", "Fever.", "n1.txt")])
    assert (parse_label_schema(schema).entity_types, additions) == ([], [])


def test_extending_a_schema_adds_only_what_the_data_uses_beyond_it():
    document, _, _ = read_brat_document("n1", TEXT, ANN, "n1.ann")
    current, _ = schema_for_corpus(parse_annotation_conf(CONF), [])
    wider, additions = extend_schema(current, [document])
    assert additions == [
        "entity type 'ADE' (used by the data)",
        "value 'likely' of attribute 'Certainty' (used by the data)",
    ]
    again, nothing = extend_schema(wider, [document])
    assert (again, nothing) == (wider, [])


def test_colours_stay_distinct_past_the_palette():
    labels = [f"New{i}" for i in range(30)]  # the palette has 20 colours
    spans = [ImportedSpan(f"T{i}", label, (Fragment(0, 1),)) for i, label in enumerate(labels)]
    wider, additions = extend_schema({"entity_types": []}, [ImportedDocument("n", "x", "n.txt", spans=spans)])
    assert len(additions) == 30 and len({e["color"] for e in wider["entity_types"]}) == 30
    parse_label_schema(wider)  # and every generated colour is a valid one


def test_the_first_differing_line():
    assert first_differing_line("a\nb\nc\n", "a\nb\nc\n") == 4
    assert first_differing_line("a\nb\nc\n", "a\nb c\n") == 2
    assert first_differing_line("a\nb", "a\nb\nextra") == 2  # "b" then "b\n": the line break differs
    assert first_differing_line("", "text") == 1
