"""The fake LLM server over real HTTP on loopback: answers rendered from gold, noise, quirks and faults."""

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yaml

from app.domain.label_schema import parse_label_schema
from app.domain.tokens import tokenize
from app.llm.fake_server import (
    GARBAGE_ANSWER,
    FakeBehaviour,
    FakeLlmServer,
    GoldNote,
    chunk_of,
    read_gold_dir,
)

SCHEMA = parse_label_schema(
    {
        "entity_types": [
            {"name": name, "color": "#1f77b4"}
            for name in ("Drug", "Strength", "Frequency", "Route", "Reason")
        ],
        "relation_types": [
            {"name": f"{name}-Drug", "head_types": [name], "tail_types": ["Drug"]}
            for name in ("Strength", "Frequency", "Route", "Reason")
        ],
    }
)
JSON_FORMAT = {"type": "json_schema", "json_schema": {"name": "direct_chunk", "schema": {}, "strict": True}}
IOB_SYSTEM = "You are a medical assistant. Answer with one line per token: token, tag, groups."
DIRECT_SYSTEM = "You are a medical assistant. Read the text and list the entities, grouped per medication."


def _note(text: str, mentions: list[tuple[str, str]], relations: list[tuple[str, int, int]]) -> GoldNote:
    """A gold note whose spans are found by their text, each after the previous one."""
    spans, cursor = [], 0
    for label, mention in mentions:
        start = text.index(mention, cursor)
        spans.append((label, start, start + len(mention)))
        cursor = start + len(mention)
    return GoldNote(text, spans, relations)


NOTE_1 = _note(
    "Aspirin 81 mg daily for chest pain.\nMetoprolol 25 mg twice daily.\n",
    [
        ("Drug", "Aspirin"),
        ("Strength", "81 mg"),
        ("Frequency", "daily"),
        ("Reason", "chest pain"),
        ("Drug", "Metoprolol"),
        ("Strength", "25 mg"),
        ("Frequency", "twice daily"),
    ],
    [
        ("Strength-Drug", 1, 0),
        ("Frequency-Drug", 2, 0),
        ("Reason-Drug", 3, 0),
        ("Strength-Drug", 5, 4),
        ("Frequency-Drug", 6, 4),
    ],
)
NOTE_2 = _note(
    "Heparin 5000 units subcutaneously every 8 hours.",
    [
        ("Drug", "Heparin"),
        ("Strength", "5000 units"),
        ("Route", "subcutaneously"),
        ("Frequency", "every 8 hours"),
    ],
    [("Strength-Drug", 1, 0), ("Route-Drug", 2, 0), ("Frequency-Drug", 3, 0)],
)
DRUGS = ["aspirin", "heparin", "lisinopril", "metformin", "warfarin", "insulin", "furosemide", "digoxin"]
LONG_TEXT = " ".join(f"{drug} {10 + i} mg daily." for i, drug in enumerate(DRUGS * 3))
LONG_NOTE = _note(
    LONG_TEXT,
    [
        (label, mention)
        for i, drug in enumerate(DRUGS * 3)
        for label, mention in (("Drug", drug), ("Strength", f"{10 + i} mg"), ("Frequency", "daily"))
    ],
    [],
)
CORPUS = [NOTE_1, NOTE_2, LONG_NOTE]


def _messages(system: str, chunk: str) -> list[dict[str, str]]:
    # A few-shot example first, so the chunk must come from the LAST user message.
    return [
        {"role": "system", "content": system},
        {"role": "user", "content": "Example.\nText:\n<<<\nHeparin 5000 units\n>>>"},
        {"role": "assistant", "content": "an example answer"},
        {"role": "user", "content": f"Now this one.\nText:\n<<<\n{chunk}\n>>>"},
    ]


def _ask(
    server: FakeLlmServer, system: str, chunk: str, response_format: dict | None = None
) -> httpx.Response:
    body = {"model": "any", "messages": _messages(system, chunk), "temperature": 0}
    if response_format is not None:
        body["response_format"] = response_format
    return httpx.post(f"{server.base_url}/chat/completions", json=body, timeout=10)


def _content(response: httpx.Response) -> str:
    assert response.status_code == 200, response.text
    return response.json()["choices"][0]["message"]["content"]


def _iob_spans(chunk: str, answer: str) -> list[tuple[str, int, int, str]]:
    """(label, start, end, groups) read from a text-form iob_token answer aligned to the chunk's tokens."""
    tokens = tokenize(chunk)
    lines = answer.splitlines()
    assert [line.split("\t")[0] for line in lines] == [chunk[t.start : t.end] for t in tokens]
    spans: list[list] = []
    for token, line in zip(tokens, lines, strict=True):
        parts = line.split("\t")
        if parts[1].startswith("B-"):
            spans.append([parts[1][2:], token.start, token.end, parts[2]])
        elif parts[1].startswith("I-"):
            spans[-1][2] = token.end
    return [tuple(span) for span in spans]


@pytest.fixture
def serve():
    started: list[FakeLlmServer] = []

    def start(behaviour: FakeBehaviour | None = None, notes: list[GoldNote] = CORPUS) -> FakeLlmServer:
        server = FakeLlmServer(notes, SCHEMA, behaviour or FakeBehaviour())
        server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("Text:\n<<<\nabc\n>>>", "abc"),
        ("Intro\nText:\n<<<\na\n>>>\nb\n>>>", "a\n>>>\nb"),  # the LAST end marker closes the chunk
        ("Text:\n<<<\nText:\n<<<\nx\n>>>", "Text:\n<<<\nx"),  # the FIRST start marker opens it
        ("Text:\n<<<\n\n>>>", ""),
        ("no markers at all", None),
    ],
)
def test_chunk_is_read_between_the_markers_of_the_last_user_message(content, expected):
    messages = [{"role": "user", "content": "Text:\n<<<\nearlier\n>>>"}, {"role": "user", "content": content}]
    assert chunk_of(messages) == expected


def test_iob_token_text_answer_is_the_contract_example(serve):
    server = serve()
    answer = _content(_ask(server, IOB_SYSTEM, "Aspirin 81 mg daily"))
    assert answer == "Aspirin\tB-Drug\t1\n81\tB-Strength\t1\nmg\tI-Strength\t1\ndaily\tB-Frequency\t1"
    served = server.served[-1]
    assert served.prompt_schema == "iob_token"
    assert (
        served.returned_spans
        == served.gold_spans_in_chunk
        == [
            ("Drug", 0, 7),
            ("Strength", 8, 13),
            ("Frequency", 14, 19),
        ]
    )


def test_iob_token_answer_has_exactly_the_gold_spans_and_groups_per_medication(serve):
    server = serve()
    chunk = NOTE_1.text.strip()
    spans = _iob_spans(chunk, _content(_ask(server, IOB_SYSTEM, chunk)))
    gold = [(label, start, end) for label, start, end in NOTE_1.spans]
    assert [span[:3] for span in spans] == gold
    # Aspirin's group holds its strength, frequency and reason; Metoprolol's is the next group.
    assert [span[3] for span in spans] == ["1", "1", "1", "1", "2", "2", "2"]
    assert server.served[-1].returned_spans == gold


def test_direct_chunk_json_answer_lists_the_gold_mentions_grouped(serve):
    server = serve()
    chunk = NOTE_1.text.strip()
    payload = json.loads(_content(_ask(server, DIRECT_SYSTEM, chunk, JSON_FORMAT)))
    assert payload == {
        "groups": [
            {
                "id": 1,
                "entities": [
                    {"label": "Drug", "text": "Aspirin"},
                    {"label": "Strength", "text": "81 mg"},
                    {"label": "Frequency", "text": "daily"},
                    {"label": "Reason", "text": "chest pain"},
                ],
            },
            {
                "id": 2,
                "entities": [
                    {"label": "Drug", "text": "Metoprolol"},
                    {"label": "Strength", "text": "25 mg"},
                    {"label": "Frequency", "text": "twice daily"},
                ],
            },
        ]
    }
    served = server.served[-1]
    assert served.prompt_schema == "direct_chunk"
    assert served.returned_spans == served.gold_spans_in_chunk


def test_direct_chunk_text_answer_is_fenced_yaml_of_the_same_groups(serve):
    server = serve()
    chunk = NOTE_2.text
    answer = _content(_ask(server, DIRECT_SYSTEM, chunk))
    assert answer.startswith("```yaml\n") and answer.endswith("\n```")
    payload = yaml.safe_load(answer.removeprefix("```yaml\n").removesuffix("```"))
    assert payload == {
        "groups": [
            {
                "id": 1,
                "entities": [
                    {"label": "Drug", "text": "Heparin"},
                    {"label": "Strength", "text": "5000 units"},
                    {"label": "Route", "text": "subcutaneously"},
                    {"label": "Frequency", "text": "every 8 hours"},
                ],
            }
        ]
    }


def test_only_spans_wholly_inside_the_chunk_are_returned_rebased(serve):
    server = serve()
    chunk = "pain.\nMetoprolol 25 mg"  # cuts "chest pain" in half
    _ask(server, DIRECT_SYSTEM, chunk, JSON_FORMAT)
    assert server.served[-1].returned_spans == [("Drug", 6, 16), ("Strength", 17, 22)]


def test_a_chunk_in_no_note_gets_an_empty_answer(serve):
    server = serve()
    assert json.loads(_content(_ask(server, DIRECT_SYSTEM, "Nothing here.", JSON_FORMAT))) == {"groups": []}
    assert _content(_ask(server, IOB_SYSTEM, "Nothing here.")) == "Nothing\tO\nhere\tO\n.\tO"
    assert [s.gold_spans_in_chunk for s in server.served] == [[], []]


def test_missed_half_returns_about_half_and_the_same_each_time(serve):
    gold = [(label, start, end) for label, start, end in LONG_NOTE.spans]
    server = serve(FakeBehaviour(missed=0.5, seed=7))
    for _ in range(2):
        _ask(server, DIRECT_SYSTEM, LONG_TEXT, JSON_FORMAT)
    first, second = (served.returned_spans for served in server.served)
    assert 0.3 * len(gold) <= len(first) <= 0.7 * len(gold)
    assert set(first) <= set(gold)
    assert first == second
    # The same seed on another server gives the same answer; another seed a different one.
    again = serve(FakeBehaviour(missed=0.5, seed=7))
    _ask(again, DIRECT_SYSTEM, LONG_TEXT, JSON_FORMAT)
    other = serve(FakeBehaviour(missed=0.5, seed=8))
    _ask(other, DIRECT_SYSTEM, LONG_TEXT, JSON_FORMAT)
    assert again.served[0].returned_spans == first
    assert other.served[0].returned_spans != first


@pytest.mark.parametrize(
    ("behaviour", "label_kept", "offsets_kept"),
    [(FakeBehaviour(wrong_label=1), False, True), (FakeBehaviour(jitter=1), True, False)],
)
def test_every_span_is_changed_when_the_rate_is_one(serve, behaviour, label_kept, offsets_kept):
    server = serve(behaviour)
    # direct_chunk: jittered spans may overlap their neighbours, which IOB tags could not say
    _ask(server, DIRECT_SYSTEM, NOTE_2.text, JSON_FORMAT)
    served = server.served[-1]
    assert len(served.gold_spans_in_chunk) == 4
    for gold, returned in zip(served.gold_spans_in_chunk, served.returned_spans, strict=True):
        assert (gold[0] == returned[0], gold[1:] == returned[1:]) == (label_kept, offsets_kept)


def test_spurious_one_makes_every_other_word_a_span(serve):
    server = serve(FakeBehaviour(spurious=1))
    chunk = "Aspirin 81 mg daily for chest pain."
    _ask(server, DIRECT_SYSTEM, chunk, JSON_FORMAT)
    served = server.served[-1]
    extra = [(start, end) for _, start, end in set(served.returned_spans) - set(served.gold_spans_in_chunk)]
    assert sorted(extra) == [(20, 23)]  # "for": the only word outside gold spans; "." is no word


@pytest.mark.parametrize(
    ("quirk", "system", "response_format", "check"),
    [
        (
            "code_fence",
            IOB_SYSTEM,
            None,
            lambda a: a.startswith("```\nAspirin\tB-Drug") and a.endswith("\n```"),
        ),
        ("code_fence", DIRECT_SYSTEM, JSON_FORMAT, lambda a: a.startswith('```json\n{"groups"')),
        ("prose", DIRECT_SYSTEM, None, lambda a: a.startswith("Here are") and "```yaml\ngroups:" in a),
        ("yaml_for_json", DIRECT_SYSTEM, JSON_FORMAT, lambda a: yaml.safe_load(a)["groups"][0]["id"] == 1),
        ("wrong_case", DIRECT_SYSTEM, JSON_FORMAT, lambda a: "aspirin" in a and "Aspirin" not in a),
        ("misspell", DIRECT_SYSTEM, JSON_FORMAT, lambda a: "Aspirin" not in a and "81 mg" in a),
    ],
)
def test_quirks_appear_in_the_answer(serve, quirk, system, response_format, check):
    server = serve(FakeBehaviour(quirks=[quirk]))
    answer = _content(_ask(server, system, "Aspirin 81 mg daily for chest pain.", response_format))
    assert check(answer), answer
    if quirk == "yaml_for_json":
        with pytest.raises(json.JSONDecodeError):
            json.loads(answer)
    # Quirks change how the answer is written, not what it means.
    assert server.served[-1].returned_spans == server.served[-1].gold_spans_in_chunk


def test_fail_first_gives_two_500s_then_the_answer(serve):
    server = serve(FakeBehaviour(fail_first=2))
    statuses = [_ask(server, IOB_SYSTEM, "Aspirin 81 mg daily").status_code for _ in range(3)]
    assert statuses == [500, 500, 200]
    assert [s.status for s in server.served] == [500, 500, 200]
    assert [s.returned_spans for s in server.served][:2] == [[], []]
    # Counted per prompt: another chunk starts its own two failures.
    assert _ask(server, IOB_SYSTEM, "Metoprolol 25 mg").status_code == 500
    assert server.request_count == 4


def test_429_carries_retry_after_and_garbage_is_prose(serve):
    server = serve(FakeBehaviour(fail_first=1, fail_first_status=429, retry_after_seconds=3, garbage_rate=1))
    first = _ask(server, IOB_SYSTEM, "Aspirin 81 mg daily")
    assert (first.status_code, first.headers["retry-after"]) == (429, "3")
    assert _content(_ask(server, IOB_SYSTEM, "Aspirin 81 mg daily")) == GARBAGE_ANSWER


def test_server_without_structured_output_refuses_response_format(serve):
    server = serve(FakeBehaviour(structured_output=False))
    assert _ask(server, DIRECT_SYSTEM, NOTE_2.text, JSON_FORMAT).status_code == 400
    assert _content(_ask(server, DIRECT_SYSTEM, NOTE_2.text)).startswith("```yaml")


def test_models_and_usage(serve):
    server = serve()
    models = httpx.get(f"{server.base_url}/models", timeout=10)
    assert models.status_code == 200
    assert [model["id"] for model in models.json()["data"]] == ["clinann-fake"]
    usage = _ask(server, IOB_SYSTEM, "Aspirin 81 mg daily").json()["usage"]
    assert usage["prompt_tokens"] > 20 and usage["completion_tokens"] > 5
    assert httpx.get(f"{server.base_url}/nothing", timeout=10).status_code == 404


def _write_brat(folder: Path) -> None:
    (folder / "a.txt").write_bytes(b"Aspirin 81 mg daily.\r\nHeparin")
    (folder / "a.ann").write_text(
        "T1\tDrug 0 7\tAspirin\nT2\tStrength 8 13\t81 mg\nT3\tDrug 22 29\tHeparin\n"
        "T4\tFrequency 14 19;22 29\tdaily Heparin\nR1\tStrength-Drug Arg1:T2 Arg2:T1\n",
        encoding="utf-8",
    )
    (folder / "b.txt").write_text("No annotations.", encoding="utf-8")


def test_gold_is_read_from_brat_pairs(tmp_path):
    _write_brat(tmp_path)
    first, second = read_gold_dir(tmp_path)
    assert first.text.startswith("Aspirin 81 mg daily.\r\n")  # CRLF kept: offsets count the \r
    # The two-fragment T4 is left out; the relation's indices point into the spans kept.
    assert first.spans == [("Drug", 0, 7), ("Strength", 8, 13), ("Drug", 22, 29)]
    assert first.relations == [("Strength-Drug", 1, 0)]
    assert (second.spans, second.relations) == ([], [])


def test_command_line_serves_the_gold_folder(tmp_path):
    _write_brat(tmp_path)
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "app.llm.fake_server",
            "--gold",
            str(tmp_path),
            "--port",
            "0",
            "--missed",
            "0",
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        base_url = process.stdout.readline().strip()
        assert base_url.startswith("http://127.0.0.1:") and base_url.endswith("/v1")
        body = {"model": "m", "messages": _messages(IOB_SYSTEM, "Aspirin 81 mg")}
        answer = httpx.post(f"{base_url}/chat/completions", json=body, timeout=10).json()
        content = answer["choices"][0]["message"]["content"]
        assert content == "Aspirin\tB-Drug\t1\n81\tB-Strength\t1\nmg\tI-Strength\t1"
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_a_reason_shared_by_two_drugs_is_in_both_groups(serve):
    shared = _note(
        "Tylenol and ibuprofen for pain.",
        [("Drug", "Tylenol"), ("Drug", "ibuprofen"), ("Reason", "pain")],
        [("Reason-Drug", 2, 0), ("Reason-Drug", 2, 1)],
    )
    server = serve(notes=[shared])
    iob = _content(_ask(server, IOB_SYSTEM, shared.text))
    assert "pain\tB-Reason\t1,2" in iob.splitlines()
    payload = json.loads(_content(_ask(server, DIRECT_SYSTEM, shared.text, JSON_FORMAT)))
    assert [[e["text"] for e in group["entities"]] for group in payload["groups"]] == [
        ["Tylenol", "pain"],
        ["ibuprofen", "pain"],
    ]
    assert server.served[-1].returned_spans == [("Drug", 0, 7), ("Drug", 12, 21), ("Reason", 26, 30)]
