"""The fake LLM server's augmentation mode over real HTTP: reworded segments the app accepts, and faults
it rejects, each for its reason (app.domain.augmentation.augment_answer)."""

import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from app.domain import augmentation
from app.domain.augmentation import Link, Mention, Rejected, Segment
from app.domain.label_schema import parse_label_schema
from app.llm.fake_server import (
    AUGMENT_FAULTS,
    GARBAGE_ANSWER,
    PROSE_AUGMENT_ANSWER,
    FakeBehaviour,
    FakeLlmServer,
    augment_prompt_of,
    main,
)

SCHEMA = parse_label_schema(
    {
        "entity_types": [
            {"name": name, "color": "#1f77b4"}
            for name in ("Drug", "Brand", "Route", "Strength", "Frequency", "Reason", "Date")
        ],
        "relation_types": [
            {"name": f"{name}-Drug", "head_types": [name], "tail_types": ["Drug"]}
            for name in ("Strength", "Frequency", "Route", "Reason")
        ],
    }
)
LINES = [
    # No word of the fake's paraphrase table: only lead-ins make its variants; a bracketed (MIMIC) date.
    "Seen at Café Müller 😀 on [**2118-6-15**].",
    # Nested (Drug > Brand, Route) and adjacent (2x|25mg) markers, relations, paraphrasable words.
    "The patient reported migraine aiguë with nausea 🤢 and was given Nurtec ODT 75 mg daily, 2x25mg "
    "after meals.",
    # Starts with the text's own "[" before a marker; a relation; the end of the note.
    "[Aspirin] 81 mg stopped; follow-up in 2 weeks 日本語.",
]
TEXT = LINES[0] + "\n" + LINES[1] + "\r\n" + LINES[2]
SPANS = [
    ("Date", "[**2118-6-15**]"),
    ("Reason", "migraine aiguë"),
    ("Drug", "Nurtec ODT"),
    ("Brand", "Nurtec"),
    ("Route", "ODT"),
    ("Strength", "75 mg"),
    ("Frequency", "daily"),
    ("Frequency", "2x"),
    ("Strength", "25mg"),
    ("Drug", "Aspirin"),
    ("Strength", "81 mg"),
]


def _mentions() -> list[Mention]:
    spans, cursor = [], 0
    for label, mention in SPANS:
        start = TEXT.index(mention, cursor)
        spans.append((label, [(start, start + len(mention))]))
        cursor = start if label == "Drug" else start + len(mention)  # a Drug's parts are inside it
    mentions, discontinuous = augmentation.mentions_of(spans)
    assert discontinuous == []
    return mentions


MENTIONS = _mentions()
ID = {(m.label, TEXT[m.start : m.end]): m.id for m in MENTIONS}
LINKS = [
    Link("Reason-Drug", ID["Reason", "migraine aiguë"], ID["Drug", "Nurtec ODT"]),
    Link("Strength-Drug", ID["Strength", "75 mg"], ID["Drug", "Nurtec ODT"]),
    Link("Frequency-Drug", ID["Frequency", "daily"], ID["Drug", "Nurtec ODT"]),
    Link("Route-Drug", ID["Route", "ODT"], ID["Drug", "Nurtec ODT"]),
    Link("Strength-Drug", ID["Strength", "81 mg"], ID["Drug", "Aspirin"]),
]


def _segment(line: int) -> Segment:
    start = TEXT.index(LINES[line])
    end = start + len(LINES[line])
    return Segment(start, end, tuple(m for m in MENTIONS if start <= m.start and m.end <= end))


SEGMENTS = [_segment(line) for line in range(len(LINES))]
# Why augment_answer (freedom "light") must reject each fault.
REASONS = {
    "drop_marker": {"dropped_marker", "lost_relation_argument"},
    "invent_marker": {"invented_marker"},
    "unbalance": {"unbalanced_marker"},
    "break_marker": {"broken_marker"},
    "change_context": {"changed_context"},
    "wrong_label": {"changed_label"},
    "unknown_label": {"unknown_label"},
    "change_entity_text": {"changed_entity_text"},
    "prose_only": {"no_passage"},
}


@pytest.fixture
def serve():
    started: list[FakeLlmServer] = []

    def start(behaviour: FakeBehaviour | None = None) -> FakeLlmServer:
        server = FakeLlmServer([], SCHEMA, behaviour or FakeBehaviour())
        server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def _messages(segment: Segment, variant: int, variants: int = 3, freedom: str = "light") -> list[dict]:
    return augmentation.messages(
        SCHEMA, TEXT, segment, LINKS, variant=variant, variants=variants, freedom=freedom
    )


def _post(base_url: str, messages: list[dict]) -> httpx.Response:
    body = {"model": "any", "messages": messages, "temperature": 0.7}
    return httpx.post(f"{base_url}/chat/completions", json=body, timeout=10)


def _ask(server: FakeLlmServer, segment: Segment, variant: int, **kwargs) -> str:
    response = _post(server.base_url, _messages(segment, variant, **kwargs))
    assert response.status_code == 200, response.text
    return response.json()["choices"][0]["message"]["content"]


def _accept(answer: str, segment: Segment, freedom: str = "light") -> augmentation.SyntheticNote:
    return augmentation.augment_answer(answer, TEXT, MENTIONS, LINKS, segment, SCHEMA, freedom)


def _reason(answer: str, segment: Segment, freedom: str = "light") -> str:
    try:
        _accept(answer, segment, freedom)
    except Rejected as rejected:
        return rejected.reason
    return "accepted"


def _marked(answer: str) -> str:
    return answer[answer.index(augmentation.REWRITE_OPEN) + len(augmentation.REWRITE_OPEN) : answer.rindex(
        augmentation.REWRITE_CLOSE
    )]  # fmt: skip


def test_the_prompt_is_read_as_the_app_writes_it():
    segment = SEGMENTS[1]
    prompt = augment_prompt_of(_messages(segment, variant=2, variants=5))
    assert prompt is not None
    assert prompt.variant == 2
    assert prompt.marked == augmentation.encode(TEXT, segment)
    assert prompt.left == TEXT[: segment.start] and prompt.right == TEXT[segment.end :]
    assert prompt.text == TEXT[segment.start : segment.end]
    assert [(label, prompt.text[s:e]) for label, s, e in prompt.spans] == [
        (m.label, TEXT[m.start : m.end]) for m in segment.mentions
    ]
    # The bracketed date is read whole, as the app's decode reads it.
    date = augment_prompt_of(_messages(SEGMENTS[0], variant=1))
    assert [(label, date.text[s:e]) for label, s, e in date.spans] == [("Date", "[**2118-6-15**]")]
    # Without "variant K of N" (or with a variant below 1) the first variant is written.
    unnumbered = _messages(segment, variant=2, variants=5)
    unnumbered[-1]["content"] = unnumbered[-1]["content"].replace("Write variant 2 of 5", "Write it")
    assert augment_prompt_of(unnumbered).variant == 1
    assert augment_prompt_of(_messages(segment, variant=0, variants=5)).variant == 0
    pre_annotation = [{"role": "system", "content": "list the entities"}, {"role": "user", "content": "x"}]
    assert augment_prompt_of(pre_annotation) is None


@pytest.mark.parametrize("freedom", ["light", "moderate", "free"])
@pytest.mark.parametrize("line", range(len(LINES)))
def test_clean_answers_become_synthetic_notes_with_the_same_mentions(serve, line, freedom):
    server = serve()
    segment = SEGMENTS[line]
    texts = []
    for variant in (1, 2, 3):
        note = _accept(_ask(server, segment, variant, freedom=freedom), segment, freedom)
        texts.append(note.text)
        # Only the segment changed: the note around it is the original, to the byte (CRLF included).
        assert note.text[: segment.start] == TEXT[: segment.start]
        assert note.text[len(note.text) - (len(TEXT) - segment.end) :] == TEXT[segment.end :]
        # Every mention kept, with its id, label and exact text; every relation kept.
        assert {m.id: (m.label, note.text[m.start : m.end]) for m in note.mentions} == {
            m.id: (m.label, TEXT[m.start : m.end]) for m in MENTIONS
        }
        assert note.links == tuple(LINKS)
        # Accents, emoji and CJK survive untouched, in order.
        assert [c for c in note.text if not c.isascii()] == [c for c in TEXT if not c.isascii()]
        served = server.served[-1]
        assert (served.prompt_schema, served.status, served.variant, served.augment_fault) == (
            "augment",
            200,
            variant,
            None,
        )
        assert served.chunk_text == TEXT[segment.start : segment.end]
        # returned_spans: the marked spans of the rewritten segment, in its own offsets.
        new_segment = note.text[segment.start : len(note.text) - (len(TEXT) - segment.end)]
        assert sorted((label, new_segment[s:e]) for label, s, e in served.returned_spans) == sorted(
            (m.label, TEXT[m.start : m.end]) for m in segment.mentions
        )
    assert len(set(texts)) == 3 and TEXT not in texts
    zeroth = _accept(_ask(server, segment, 0, freedom=freedom), segment, freedom)
    assert zeroth.text == texts[0]  # variant 0 is read as the first, never as the segment unchanged


def test_rewording_depends_on_the_variant_and_only_touches_text_outside_markers(serve):
    server = serve()
    segment = SEGMENTS[1]
    marked = augmentation.encode(TEXT, segment)
    markers = re.compile(r"\[\[[A-Za-z]+#\d+: |\]\]")
    answers = [_marked(_ask(server, segment, variant)) for variant in (1, 2, 3)]
    assert answers[0].startswith(
        "The pt said [[Reason#2: migraine aiguë]] alongside nausea 🤢 plus was started on "
    )
    assert answers[1].startswith(
        "The pt stated [[Reason#2: migraine aiguë]] along with nausea 🤢 as well as was put"
    )
    assert answers[2].startswith(
        "The pt noted [[Reason#2: migraine aiguë]] together with nausea 🤢 plus was prescribed"
    )
    for answer in answers:
        assert answer.endswith(
            "[[Frequency#7: daily]], [[Frequency#8: 2x]][[Strength#9: 25mg]] following meals."
        )
        # The markers and everything between them are as they were.
        assert markers.findall(answer) == markers.findall(marked)
        assert "[[Drug#3: [[Brand#4: Nurtec]] [[Route#5: ODT]]]] [[Strength#6: 75 mg]]" in answer


def test_a_segment_without_paraphrases_gets_lead_ins_all_different(serve):
    server = serve()
    first, third = SEGMENTS[0], SEGMENTS[2]
    assert [_marked(_ask(server, first, variant)) for variant in (1, 2, 3)] == [
        "Of note, seen at Café Müller 😀 on [[Date#1: [**2118-6-15**]]].",
        "Also, seen at Café Müller 😀 on [[Date#1: [**2118-6-15**]]].",
        "Then seen at Café Müller 😀 on [[Date#1: [**2118-6-15**]]].",
    ]
    # One paraphrase with two ways: the third variant would be the first again, so it is led in.
    assert [_marked(_ask(server, third, variant)) for variant in (1, 2, 3)] == [
        "[[[Drug#10: Aspirin]]] [[Strength#11: 81 mg]] discontinued; follow-up in 2 weeks 日本語.",
        "[[[Drug#10: Aspirin]]] [[Strength#11: 81 mg]] held; follow-up in 2 weeks 日本語.",
        "Of note, [[[Drug#10: Aspirin]]] [[Strength#11: 81 mg]] discontinued; follow-up in 2 weeks 日本語.",
    ]
    # Past the list of lead-ins they combine: every variant differs from the others and is accepted.
    notes = [_accept(_ask(server, first, variant, variants=30), first).text for variant in range(1, 31)]
    assert len(set(notes)) == 30


def test_the_same_prompt_gets_the_same_answer(serve):
    behaviour = FakeBehaviour(augment_faults={"invent_marker": 0.5}, seed=3)
    first, second = serve(behaviour), serve(behaviour)
    for segment in SEGMENTS:
        for variant in (1, 2):
            answer = _ask(first, segment, variant)
            assert _ask(first, segment, variant) == answer
            assert _ask(second, segment, variant) == answer


@pytest.mark.parametrize("fault", AUGMENT_FAULTS)
def test_each_fault_is_rejected_for_its_reason(serve, fault):
    server = serve(FakeBehaviour(augment_fault_by_variant={2: fault}))
    for segment in SEGMENTS:
        assert _reason(_ask(server, segment, 2), segment) in REASONS[fault]
        assert server.served[-1].augment_fault == fault
        assert server.served[-1].returned_spans == []
        # The other variants are clean.
        for variant in (1, 3):
            assert _reason(_ask(server, segment, variant), segment) == "accepted"
            assert server.served[-1].augment_fault is None


def test_a_dropped_marker_with_a_relation_loses_the_relation():
    server = FakeLlmServer([], SCHEMA, FakeBehaviour(augment_fault_by_variant={1: "drop_marker"}))
    with server:
        answers = [_ask(server, segment, 1) for segment in SEGMENTS]
    assert [_reason(answer, segment) for answer, segment in zip(answers, SEGMENTS, strict=True)] == [
        "dropped_marker",  # the date is in no relation
        "lost_relation_argument",  # the reason of Nurtec
        "lost_relation_argument",  # Aspirin
    ]
    assert _marked(answers[0]) == "Of note, seen at Café Müller 😀 on [**2118-6-15**]."


def test_entity_text_may_change_under_free_freedom_only(serve):
    server = serve(FakeBehaviour(augment_fault_by_variant={1: "change_entity_text"}))
    segment = SEGMENTS[1]
    answer = _ask(server, segment, 1, freedom="free")
    assert _reason(answer, segment, "moderate") == "changed_entity_text"
    assert _reason(answer, segment, "free") == "accepted"


@pytest.mark.parametrize("seed", [1])
def test_faults_drawn_by_chance_are_rejected_and_recorded(serve, seed):
    chances = {"invent_marker": 0.3, "unbalance": 0.3}
    server = serve(FakeBehaviour(augment_faults=chances, seed=seed))
    segment = SEGMENTS[1]
    reasons = [_reason(_ask(server, segment, variant, variants=40), segment) for variant in range(1, 41)]
    faults = [served.augment_fault for served in server.served]
    for reason, fault in zip(reasons, faults, strict=True):
        assert reason in (REASONS[fault] if fault else {"accepted"})
    assert 10 <= sum(fault is not None for fault in faults) <= 38
    assert {fault for fault in faults} == {None, "invent_marker", "unbalance"}
    everything = serve(FakeBehaviour(augment_faults={"prose_only": 1.0}))
    assert _ask(everything, segment, 1) == PROSE_AUGMENT_ANSWER


def test_unknown_fault_names_are_refused():
    with pytest.raises(ValueError, match="unknown augment faults"):
        FakeBehaviour(augment_faults={"drop_everything": 0.1})
    with pytest.raises(ValueError, match="unknown augment faults"):
        FakeBehaviour(augment_fault_by_variant={2: "drop_everything"})


def test_generic_faults_apply_to_augmentation_prompts_too(serve):
    segment = SEGMENTS[1]
    server = serve(FakeBehaviour(fail_first=1, fail_first_status=503, retry_after_seconds=2))
    first = _post(server.base_url, _messages(segment, 1))
    assert (first.status_code, first.headers["retry-after"]) == (503, "2")
    assert _reason(_ask(server, segment, 1), segment) == "accepted"
    assert [(s.prompt_schema, s.status, s.chunk_text) for s in server.served] == [
        ("augment", 503, TEXT[segment.start : segment.end]),
        ("augment", 200, TEXT[segment.start : segment.end]),
    ]
    assert server.served[0].gold_spans_in_chunk == server.served[1].gold_spans_in_chunk != []

    broken = serve(FakeBehaviour(malformed_first=1))
    with pytest.raises(ValueError):
        _post(broken.base_url, _messages(segment, 1)).json()  # a 200 whose body is cut short
    assert _reason(_ask(broken, segment, 1), segment) == "accepted"  # then the answer

    limited = serve(FakeBehaviour(errors={429: 1.0}))
    assert _post(limited.base_url, _messages(segment, 1)).status_code == 429

    garbage = serve(FakeBehaviour(garbage_rate=1.0))
    assert _ask(garbage, segment, 1) == GARBAGE_ANSWER
    assert _reason(GARBAGE_ANSWER, segment) == "no_passage"


def test_an_answer_in_a_code_fence_with_prose_around_is_still_read(serve):
    server = serve(FakeBehaviour(quirks=["code_fence", "prose"]))
    for segment in SEGMENTS:
        answer = _ask(server, segment, 1)
        assert answer.startswith("Here is the rewritten passage.\n\n```\n<<<PASSAGE\n")
        assert _reason(answer, segment) == "accepted"


def test_pre_annotation_prompts_are_not_taken_for_augmentation(serve):
    server = serve()
    messages = [
        {"role": "system", "content": "Read the text and list the entities, grouped per medication."},
        {"role": "user", "content": "Text:\n<<<\nAspirin 81 mg\n>>>"},
    ]
    response = _post(server.base_url, messages)
    assert response.status_code == 200
    assert server.served[-1].prompt_schema == "direct_chunk" and server.served[-1].variant is None


def test_command_line_sets_faults_by_variant(tmp_path):
    (tmp_path / "a.txt").write_text("Aspirin 81 mg.", encoding="utf-8")
    with pytest.raises(SystemExit):
        main(["--gold", str(tmp_path), "--augment-fault", "2=drop_everything"])
    with pytest.raises(SystemExit):
        main(["--gold", str(tmp_path), "--augment-fault-rate", "unbalance=often"])
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "app.llm.fake_server",
            "--gold",
            str(tmp_path),
            "--augment-fault",
            "2=prose_only",
            "--augment-fault",
            "3=wrong_label",
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        base_url = process.stdout.readline().strip()
        segment = SEGMENTS[1]
        answers = [_post(base_url, _messages(segment, variant)).json() for variant in (1, 2, 3)]
        contents = [answer["choices"][0]["message"]["content"] for answer in answers]
        assert [_reason(content, segment) for content in contents] == [
            "accepted",
            "no_passage",
            "changed_label",
        ]
    finally:
        process.terminate()
        process.wait(timeout=10)
