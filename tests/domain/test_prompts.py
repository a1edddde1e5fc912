"""Prompts follow the wire contract: messages, perfect answers of few-shot examples, and their selection."""

import json
from typing import Any

import pytest
import yaml

from app.domain.label_schema import parse_label_schema
from app.domain.prompts import (
    PROMPT_SCHEMAS,
    ExampleRelation,
    ExampleSpan,
    FewShotExample,
    build_messages,
    chunk_of_prompt,
    examples_from_note,
    groups_of,
    prompt_fingerprint,
    render_answer,
    response_format,
    select_examples,
)

SCHEMA = parse_label_schema(
    {
        "entity_types": [
            {"name": "Drug", "color": "#1f77b4", "description": "a medication, by brand or generic name"},
            {"name": "Strength", "color": "#ff7f0e", "description": "amount of drug in one unit"},
            {"name": "Frequency", "color": "#2ca02c"},
            {"name": "Reason", "color": "#d62728", "description": "why the drug is given"},
        ],
        "relation_types": [
            {"name": f"{name}-Drug", "head_types": [name], "tail_types": ["Drug"]}
            for name in ("Strength", "Frequency", "Reason")
        ],
    }
)
GUIDELINES = "Label brand names as Drug too."


def example(text: str, spans: list[tuple[str, str]], relations: list[tuple[str, int, int]]) -> FewShotExample:
    """An example from (label, mention) pairs, each mention found after the previous one."""
    found, cursor = [], 0
    for label, mention in spans:
        start = text.index(mention, cursor)
        found.append(ExampleSpan(label, start, start + len(mention)))
        cursor = start + len(mention)
    return FewShotExample(text, tuple(found), tuple(ExampleRelation(*relation) for relation in relations))


ASPIRIN = example(
    "aspirin 81 mg daily",
    [("Drug", "aspirin"), ("Strength", "81 mg"), ("Frequency", "daily")],
    [("Strength-Drug", 1, 0), ("Frequency-Drug", 2, 0)],
)
# One reason for two drugs: the reason is in both drugs' groups.
SHARED_REASON = example(
    "aspirin 81 mg and heparin for chest pain",
    [("Drug", "aspirin"), ("Strength", "81 mg"), ("Drug", "heparin"), ("Reason", "chest pain")],
    [("Strength-Drug", 1, 0), ("Reason-Drug", 3, 0), ("Reason-Drug", 3, 2)],
)
UNRELATED = example("Tylenol, aspirin.", [("Drug", "Tylenol"), ("Drug", "aspirin")], [])
NOTHING = FewShotExample("Patient ambulating.", (), ())

# --- groups ---------------------------------------------------------------------------------------------

# (example, prompt schema, expected groups of span indices)
GROUP_DATA: list[tuple[FewShotExample, str, list[list[int]]]] = [
    (ASPIRIN, "iob_token", [[0, 1, 2]]),
    (SHARED_REASON, "iob_token", [[0, 1, 3], [2, 3]]),
    # direct_chunk lists a string once: the shared reason stays in its first group.
    (SHARED_REASON, "direct_chunk", [[0, 1, 3], [2]]),
    (UNRELATED, "iob_token", [[0], [1]]),
    (NOTHING, "direct_chunk", []),
    # Groups are ordered by their first span, members by start, whatever the order of spans and relations.
    (
        FewShotExample(
            "heparin 5000 units",
            (ExampleSpan("Strength", 8, 18), ExampleSpan("Drug", 0, 7)),
            (ExampleRelation("Strength-Drug", 0, 1),),
        ),
        "iob_token",
        [[1, 0]],
    ),
]


@pytest.mark.parametrize(("example_", "prompt_schema", "expected"), GROUP_DATA)
def test_groups_of(example_, prompt_schema, expected):
    assert groups_of(example_, prompt_schema) == expected


# --- perfect answers ------------------------------------------------------------------------------------

# (example, expected iob_token text answer)
IOB_DATA: list[tuple[FewShotExample, str]] = [
    # The contract's own example.
    (ASPIRIN, "aspirin\tB-Drug\t1\n81\tB-Strength\t1\nmg\tI-Strength\t1\ndaily\tB-Frequency\t1"),
    (
        SHARED_REASON,
        "aspirin\tB-Drug\t1\n81\tB-Strength\t1\nmg\tI-Strength\t1\nand\tO\nheparin\tB-Drug\t2\nfor\tO\n"
        "chest\tB-Reason\t1,2\npain\tI-Reason\t1,2",
    ),
    # Two mentions side by side: the second starts with B-.
    (UNRELATED, "Tylenol\tB-Drug\t1\n,\tO\naspirin\tB-Drug\t2\n.\tO"),
    (NOTHING, "Patient\tO\nambulating\tO\n.\tO"),
    # Overlapping spans: each token goes to the longest span covering it; the groups are numbered as they
    # appear, so the swallowed span's group leaves no gap.
    (
        FewShotExample(
            "insulin glargine 10 units",
            (ExampleSpan("Drug", 8, 16), ExampleSpan("Drug", 0, 16), ExampleSpan("Strength", 17, 25)),
            (),
        ),
        "insulin\tB-Drug\t1\nglargine\tI-Drug\t1\n10\tB-Strength\t2\nunits\tI-Strength\t2",
    ),
    (
        FewShotExample(
            "aspirin 81 mg daily",
            (ExampleSpan("Drug", 0, 13), ExampleSpan("Frequency", 8, 19)),
            (),
        ),
        "aspirin\tB-Drug\t1\n81\tI-Drug\t1\nmg\tI-Drug\t1\ndaily\tB-Frequency\t2",
    ),
    # A mention shorter than its token still tags the whole token.
    (FewShotExample("ASA81", (ExampleSpan("Drug", 0, 3),), ()), "ASA81\tB-Drug\t1"),
]


@pytest.mark.parametrize(("example_", "expected"), IOB_DATA)
def test_iob_token_text_answer(example_, expected):
    assert render_answer("iob_token", example_, structured=False) == expected


@pytest.mark.parametrize(("example_", "expected"), IOB_DATA)
def test_iob_token_json_answer_says_the_same(example_, expected):
    answer = json.loads(render_answer("iob_token", example_, structured=True))
    lines = [line.split("\t") for line in expected.split("\n")]
    assert answer == {
        "tokens": [
            {
                "token": line[0],
                "tag": line[1],
                "groups": [int(g) for g in line[2].split(",")] if line[2:] else [],
            }
            for line in lines
        ]
    }


# (example, expected groups as the YAML answer lists them)
DIRECT_DATA: list[tuple[FewShotExample, list[dict[str, Any]]]] = [
    (
        ASPIRIN,
        [
            {
                "id": 1,
                "entities": [
                    {"label": "Drug", "text": "aspirin"},
                    {"label": "Strength", "text": "81 mg"},
                    {"label": "Frequency", "text": "daily"},
                ],
            }
        ],
    ),
    (
        SHARED_REASON,
        [
            {
                "id": 1,
                "entities": [
                    {"label": "Drug", "text": "aspirin"},
                    {"label": "Strength", "text": "81 mg"},
                    {"label": "Reason", "text": "chest pain"},
                ],
            },
            {"id": 2, "entities": [{"label": "Drug", "text": "heparin"}]},
        ],
    ),
    (NOTHING, []),
    # Texts YAML would otherwise read as something else, and exact characters with their typos.
    (
        example(
            "yes: 1.5 #tabs of 'Tyelnol'  😀\tq.d.",
            [("Reason", "yes"), ("Strength", "1.5 #tabs"), ("Drug", "'Tyelnol'  😀"), ("Frequency", "q.d.")],
            [],
        ),
        [
            {"id": 1, "entities": [{"label": "Reason", "text": "yes"}]},
            {"id": 2, "entities": [{"label": "Strength", "text": "1.5 #tabs"}]},
            {"id": 3, "entities": [{"label": "Drug", "text": "'Tyelnol'  😀"}]},
            {"id": 4, "entities": [{"label": "Frequency", "text": "q.d."}]},
        ],
    ),
    (
        FewShotExample("aspirin\r\n81 mg", (ExampleSpan("Drug", 0, 14),), ()),
        [{"id": 1, "entities": [{"label": "Drug", "text": "aspirin\r\n81 mg"}]}],
    ),
]


@pytest.mark.parametrize(("example_", "expected"), DIRECT_DATA)
def test_direct_chunk_yaml_answer_parses_back(example_, expected):
    answer = render_answer("direct_chunk", example_, structured=False)
    assert answer.startswith("```yaml\n") and answer.endswith("\n```")
    assert yaml.safe_load(answer.removeprefix("```yaml\n").removesuffix("```")) == {"groups": expected}


def test_direct_chunk_yaml_answer_looks_like_the_contract():
    assert render_answer("direct_chunk", ASPIRIN, structured=False) == (
        "```yaml\ngroups:\n  - id: 1\n    entities:\n      - label: Drug\n        text: aspirin\n"
        "      - label: Strength\n        text: 81 mg\n      - label: Frequency\n        text: daily\n```"
    )


@pytest.mark.parametrize(("example_", "expected"), DIRECT_DATA)
def test_direct_chunk_json_answer_says_the_same(example_, expected):
    assert json.loads(render_answer("direct_chunk", example_, structured=True)) == {"groups": expected}


def test_unknown_prompt_schema_is_refused():
    with pytest.raises(ValueError, match="unknown prompt schema"):
        render_answer("free_text", ASPIRIN, structured=False)


# --- response_format ------------------------------------------------------------------------------------


def conforms(value: Any, schema: dict[str, Any]) -> bool:
    """Whether value has the shape of a strict JSON schema of objects, arrays, strings, integers and enums."""
    if "enum" in schema and value not in schema["enum"]:
        return False
    kind = schema["type"]
    if kind == "object":
        return (
            isinstance(value, dict)
            and set(value) == set(schema["required"]) == set(schema["properties"])
            and schema["additionalProperties"] is False
            and all(conforms(value[key], schema["properties"][key]) for key in value)
        )
    if kind == "array":
        return isinstance(value, list) and all(conforms(item, schema["items"]) for item in value)
    if kind == "integer":
        return isinstance(value, int) and value >= schema.get("minimum", value)
    return kind == "string" and isinstance(value, str)


def test_response_format_iob_token():
    form = response_format("iob_token", SCHEMA)
    assert form["type"] == "json_schema"
    assert form["json_schema"]["name"] == "iob_token" and form["json_schema"]["strict"] is True
    tag = form["json_schema"]["schema"]["properties"]["tokens"]["items"]["properties"]["tag"]
    assert tag["enum"] == ["O"] + [
        f"{p}-{name}" for name in ("Drug", "Strength", "Frequency", "Reason") for p in "BI"
    ]


def test_response_format_direct_chunk():
    form = response_format("direct_chunk", SCHEMA)
    assert form["json_schema"]["name"] == "direct_chunk" and form["json_schema"]["strict"] is True
    group = form["json_schema"]["schema"]["properties"]["groups"]["items"]
    label = group["properties"]["entities"]["items"]["properties"]["label"]
    assert label["enum"] == ["Drug", "Strength", "Frequency", "Reason"]


@pytest.mark.parametrize("prompt_schema", PROMPT_SCHEMAS)
@pytest.mark.parametrize("example_", [ASPIRIN, SHARED_REASON, UNRELATED, NOTHING])
def test_json_answers_conform_to_the_response_format(prompt_schema, example_):
    schema = response_format(prompt_schema, SCHEMA)["json_schema"]["schema"]
    assert conforms(json.loads(render_answer(prompt_schema, example_, structured=True)), schema)


@pytest.mark.parametrize(
    ("prompt_schema", "answer"),
    [
        ("iob_token", {"tokens": [{"token": "x", "tag": "B-Dose", "groups": [1]}]}),  # not a label
        ("iob_token", {"tokens": [{"token": "x", "tag": "O"}]}),  # groups missing
        ("direct_chunk", {"groups": [{"id": 0, "entities": []}]}),  # ids are positive
        ("direct_chunk", {"groups": [{"id": 1, "entities": [{"label": "Drug", "text": "x", "n": 2}]}]}),
    ],
)
def test_the_response_format_refuses_wrong_answers(prompt_schema, answer):
    # The checker of the test above, shown to say no.
    assert not conforms(answer, response_format(prompt_schema, SCHEMA)["json_schema"]["schema"])


# --- messages -------------------------------------------------------------------------------------------

PHRASES = {"iob_token": "one line per token", "direct_chunk": "list the entities"}


@pytest.mark.parametrize("structured", [False, True])
@pytest.mark.parametrize("prompt_schema", PROMPT_SCHEMAS)
def test_build_messages(prompt_schema, structured):
    chunk = "heparin 5000 units sc q8h"
    messages = build_messages(
        SCHEMA, GUIDELINES, prompt_schema, chunk, [ASPIRIN, UNRELATED], structured=structured
    )
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user", "assistant", "user"]
    system = messages[0]["content"]
    assert system.startswith("You are a medical assistant")
    assert PHRASES[prompt_schema] in system
    other = next(s for s in PROMPT_SCHEMAS if s != prompt_schema)
    assert PHRASES[other] not in system
    assert "when in doubt, include it" in system
    assert "- Drug: a medication, by brand or generic name" in system
    assert "- Frequency\n" in system  # a type without a description is still defined
    assert GUIDELINES in system
    exact = "the EXACT characters in the raw input, including punctuation, and typos"
    assert (exact in system) == (prompt_schema == "direct_chunk")
    assert ("JSON" in system) == structured
    # Each example is asked like the real chunk and answered perfectly.
    for index, shown in ((1, ASPIRIN), (3, UNRELATED)):
        assert messages[index]["content"].endswith("Text:\n<<<\n" + shown.text + "\n>>>")
        assert messages[index + 1]["content"] == render_answer(prompt_schema, shown, structured=structured)
    assert messages[-1]["content"].endswith("Text:\n<<<\n" + chunk + "\n>>>")
    assert chunk_of_prompt(messages) == chunk


def test_build_messages_leaves_out_labels_the_schema_does_not_have():
    # An adjudicated note from before a label was removed must not teach the model that label.
    old = example("aspirin 81 mg po", [("Drug", "aspirin"), ("Route", "po")], [("Route-Drug", 1, 0)])
    messages = build_messages(SCHEMA, "", "iob_token", "x", [old], structured=False)
    assert messages[2]["content"] == "aspirin\tB-Drug\t1\n81\tO\nmg\tO\npo\tO"
    assert "Project guidelines" not in messages[0]["content"]


def test_build_messages_without_examples():
    messages = build_messages(SCHEMA, GUIDELINES, "direct_chunk", "aspirin", [], structured=False)
    assert [m["role"] for m in messages] == ["system", "user"]


@pytest.mark.parametrize(
    "chunk",
    [
        "aspirin",
        "a >>> b",
        "x\n>>>",
        "line one\nline two\n",
        "Text:\n<<<\nnested\n>>>",
        "pain 😀\tok",
        "",
        "\n",
    ],
)
def test_chunk_of_prompt_returns_the_chunk_verbatim(chunk):
    messages = build_messages(SCHEMA, GUIDELINES, "iob_token", chunk, [ASPIRIN], structured=False)
    assert messages[-1]["content"].endswith("Text:\n<<<\n" + chunk + "\n>>>")
    assert chunk_of_prompt(messages) == chunk


@pytest.mark.parametrize(
    "messages",
    [
        [{"role": "system", "content": "You are a medical assistant."}],
        [{"role": "user", "content": "Annotate this.\n\nText:\n<<<\naspirin"}],
        [{"role": "user", "content": "aspirin\n>>>"}],
    ],
)
def test_chunk_of_prompt_refuses_a_prompt_without_a_chunk(messages):
    with pytest.raises(ValueError):
        chunk_of_prompt(messages)


# --- examples from adjudicated notes --------------------------------------------------------------------

NOTE = "Meds: aspirin 81 mg daily.\nChest pain. Heparin 5000 units sc for DVT prophylaxis."
NOTE_MENTIONS = [
    ("Drug", "aspirin"),
    ("Strength", "81 mg"),
    ("Frequency", "daily"),
    ("Drug", "Heparin"),
    ("Strength", "5000 units"),
    ("Reason", "DVT prophylaxis"),
]
NOTE_SPANS = [(label, NOTE.index(m), NOTE.index(m) + len(m)) for label, m in NOTE_MENTIONS]
NOTE_RELATIONS = [
    ("Strength-Drug", 1, 0),
    ("Frequency-Drug", 2, 0),
    ("Strength-Drug", 4, 3),
    ("Reason-Drug", 5, 3),
]


def mentions(example_: FewShotExample) -> list[tuple[str, str]]:
    return [(span.label, example_.text[span.start : span.end]) for span in example_.spans]


def test_examples_from_note_rebase_spans_and_relations():
    examples = examples_from_note(NOTE, NOTE_SPANS, NOTE_RELATIONS, 60)
    assert [e.text for e in examples] == [
        "Meds: aspirin 81 mg daily.\nChest pain.",
        "Heparin 5000 units sc for DVT prophylaxis.",
    ]
    assert mentions(examples[0]) == NOTE_MENTIONS[:3]
    assert examples[0].relations == (
        ExampleRelation("Strength-Drug", 1, 0),
        ExampleRelation("Frequency-Drug", 2, 0),
    )
    assert mentions(examples[1]) == NOTE_MENTIONS[3:]
    # Note spans 3, 4, 5 are this example's 0, 1, 2.
    assert examples[1].relations == (
        ExampleRelation("Strength-Drug", 1, 0),
        ExampleRelation("Reason-Drug", 2, 0),
    )


def test_relations_across_chunks_are_dropped():
    examples = examples_from_note(NOTE, NOTE_SPANS, NOTE_RELATIONS, 30)
    assert [e.text for e in examples] == [
        "Meds: aspirin 81 mg daily.",
        "Chest pain. Heparin 5000 units",
        "sc for DVT prophylaxis.",
    ]
    assert mentions(examples[1]) == [("Drug", "Heparin"), ("Strength", "5000 units")]
    assert examples[1].relations == (ExampleRelation("Strength-Drug", 1, 0),)
    # The reason is in the next chunk, away from its drug.
    assert mentions(examples[2]) == [("Reason", "DVT prophylaxis")]
    assert examples[2].relations == ()


def test_a_chunk_that_cuts_a_mention_is_not_an_example():
    # The chunks are "Tylenol", "extra", "strength", "500 mg": none of the first three has a perfect answer.
    note = "Tylenol extra strength 500 mg"
    spans = [("Drug", 0, 22), ("Strength", 23, 29)]
    examples = examples_from_note(note, spans, [("Strength-Drug", 1, 0)], 10)
    assert [(e.text, mentions(e), e.relations) for e in examples] == [
        ("500 mg", [("Strength", "500 mg")], ())
    ]


@pytest.mark.parametrize(
    ("spans", "relations", "message"),
    [
        ([("Drug", 5, 3)], [], "not inside the note"),
        ([("Drug", 0, len(NOTE) + 1)], [], "not inside the note"),
        ([("Drug", 0, 4)], [("Reason-Drug", 1, 0)], "does not exist"),
    ],
)
def test_examples_from_note_refuses_bad_offsets(spans, relations, message):
    with pytest.raises(ValueError, match=message):
        examples_from_note(NOTE, spans, relations, 60)


# --- choosing examples ----------------------------------------------------------------------------------

CANDIDATES = [
    FewShotExample("Patient ambulating in the hallway.", (), ()),
    FewShotExample("metformin 500 mg bid", (), ()),
    FewShotExample("aspirin 325 mg daily for chest pain", (), ()),
    FewShotExample("mg", (), ()),
    FewShotExample("aspirin 81 mg daily", (), ()),  # the chunk itself
]


def test_select_examples_picks_the_most_similar_and_never_the_chunk():
    assert [c.text for c in select_examples("aspirin 81 mg daily", CANDIDATES, 1)] == [
        "aspirin 325 mg daily for chest pain"
    ]
    assert [c.text for c in select_examples("Metformin 1000 mg BID", CANDIDATES, 1)] == [
        "metformin 500 mg bid"
    ]
    assert [c.text for c in select_examples("walking in the hallway", CANDIDATES, 1)] == [CANDIDATES[0].text]
    everything = select_examples("aspirin 81 mg daily", CANDIDATES, len(CANDIDATES))
    assert CANDIDATES[4] not in everything and len(everything) == len(CANDIDATES) - 1


def test_select_examples_prefers_a_like_example_to_a_short_one_whose_words_all_occur():
    # "mg" alone shares its only word with the chunk, which a token-set ratio would score as a perfect match.
    chosen = select_examples("aspirin 81 mg daily", [CANDIDATES[3], CANDIDATES[2]], 1)
    assert [c.text for c in chosen] == ["aspirin 325 mg daily for chest pain"]


def test_select_examples_breaks_ties_by_order():
    twins = [
        FewShotExample("heparin sc", (), ()),
        FewShotExample("heparin sc", (ExampleSpan("Drug", 0, 7),), ()),
    ]
    chosen = select_examples("Heparin 5000 units SC", [CANDIDATES[0], twins[1], twins[0]], 2)
    assert chosen == [twins[1], twins[0]]
    assert select_examples("Heparin 5000 units SC", [CANDIDATES[0], twins[0], twins[1]], 2) == twins


@pytest.mark.parametrize(("k", "expected"), [(0, 0), (-1, 0), (3, 3), (10, 4)])
def test_select_examples_returns_at_most_k(k, expected):
    assert len(select_examples("aspirin 81 mg daily", CANDIDATES, k)) == expected


# --- the response cache key -----------------------------------------------------------------------------


def test_prompt_fingerprint():
    messages = build_messages(SCHEMA, GUIDELINES, "iob_token", "aspirin", [ASPIRIN], structured=True)
    form = response_format("iob_token", SCHEMA)
    key = prompt_fingerprint("llama-3-8b", messages, form)
    assert len(key) == 64 and int(key, 16) >= 0
    # The same request in another key order is the same request.
    reordered = [dict(reversed(list(m.items()))) for m in messages]
    assert prompt_fingerprint("llama-3-8b", reordered, dict(reversed(list(form.items())))) == key
    assert prompt_fingerprint("llama-3-70b", messages, form) != key
    assert prompt_fingerprint("llama-3-8b", messages, None) != key
    assert prompt_fingerprint("llama-3-8b", messages[:-1], form) != key


def test_the_prepared_index_ranks_exactly_as_tf_idf_over_candidates_and_chunk():
    import random

    from app.domain.prompts import _WORD, ExampleIndex, _tf_idf

    vocabulary = [
        "aspirin",
        "81",
        "mg",
        "daily",
        "metoprolol",
        "po",
        "bid",
        "for",
        "pain",
        "lasix",
        "iv",
        "x",
    ]
    generator = random.Random(5)
    for _ in range(200):
        texts = [" ".join(generator.choices(vocabulary, k=generator.randint(1, 8))) for _ in range(12)]
        chunk = " ".join(generator.choices(vocabulary, k=generator.randint(1, 8)))
        candidates = [FewShotExample(text, (), ()) for text in texts if text != chunk]
        documents = [_WORD.findall(chunk.lower())] + [_WORD.findall(c.text.lower()) for c in candidates]
        query, *vectors = _tf_idf(documents)
        scores = [sum(w * query.get(word, 0.0) for word, w in vector.items()) for vector in vectors]
        expected = sorted(range(len(candidates)), key=lambda i: (-round(scores[i], 9), i))
        chosen = ExampleIndex(candidates).select(chunk, len(candidates))
        got = [candidates.index(c) for c in chosen]
        assert [round(scores[i], 9) for i in got] == [round(scores[i], 9) for i in expected]
