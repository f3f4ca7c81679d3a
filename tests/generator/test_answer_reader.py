"""The answer read in pieces (generator.provider.answer) means what json.loads makes of
the whole body, and an image kept in a file decodes as one kept in memory.
"""

from __future__ import annotations

import base64
import json
import tempfile
from typing import Any

import pytest

from generator import fetch
from generator.fetch import download
from generator.provider import answer as answer_module
from generator.provider.answer import AnswerReader, InlineData

B64 = base64.b64encode(bytes(range(256)) * 3).decode()


def reject_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


def read(body: bytes, piece: int) -> AnswerReader:
    reader = AnswerReader()
    for start in range(0, len(body), piece):
        reader.feed(body[start : start + piece])
    return reader


def depth(value: Any) -> int:
    levels = 0
    while isinstance(value, list) and value:
        value, levels = value[0], levels + 1
    return levels + isinstance(value, list)


def as_text(value: Any) -> Any:
    if isinstance(value, InlineData):
        return value.text()
    if isinstance(value, dict) and "debug" in value:
        # 5,000 lists deep: compared by depth, not walked.
        return {**as_text({k: v for k, v in value.items() if k != "debug"}),
                "debug": depth(value["debug"])}  # fmt: skip
    if isinstance(value, dict):
        return {k: as_text(v) for k, v in value.items()}
    if isinstance(value, list):
        return [as_text(v) for v in value]
    return value


BODIES = [
    json.dumps({"data": [{"b64_json": B64}, {"b64_json": B64[:40]}], "seed": 3}).encode(),
    json.dumps({"images": [{"url": "data:image/png;base64," + B64, "width": 2}]}).encode(),
    json.dumps({"output": {"choices": [{"image_base64": B64}]}}).encode(),
    b'{ "data" : [ { "b64_json"  :\n "' + B64.encode() + b'" } ] }',
    # Escapes and non-ASCII are left to json: "\/" as some encoders send it, a quote.
    json.dumps({"data": [{"b64_json": B64.replace("/", "\\/")}]}).replace("\\\\/", "\\/").encode(),
    json.dumps({"data": [{"b64_json": B64 + '\\"' + "é"}]}).encode(),
    json.dumps({"data": [{"b64_json": B64 + "\ud800"}]}).encode(),
    json.dumps({"data": [{"url": B64, "b64_json": "x" * 300}], "b64_json": B64}).encode(),
    json.dumps({"b64_json": B64, "b64_json ": B64, "x": ["b64_json", B64]}).encode(),
    json.dumps({"data": [{"b64_json": B64}]}).encode("utf-16"),
    b"\xef\xbb\xbf" + json.dumps({"data": [{"b64_json": B64}]}).encode(),
    b'{"data": [{"b64_json": "'
    + B64.encode()
    + b'"}], "debug": '
    + b"[" * 5000
    + b"]" * 5000
    + b"}",
    # Malformed: each fails as json.loads fails on it.
    b'{"data": [{"b64_json": "' + B64.encode(),
    b'{"data": [{"b64_json": "' + B64.encode() + b"\\",
    b'{"data": [{"b64_json": "' + B64.encode() + b'"}]} {}',
    b'{"data": [{"b64_json": "' + B64.encode() + b'\x01"}]}',
    b'{"data": [{"b64_json": "' + B64.encode() + b'\xff"}]}',
    b'{"data": [{"b64_json": "' + B64.encode() + b'"}], "n": NaN}',
    b'{"data": [{"b64_json" "' + B64.encode() + b'"}]}',
    b"",
]


@pytest.mark.parametrize("body", BODIES, ids=range(len(BODIES)))
@pytest.mark.parametrize("piece", [1, 7, 1000, 1 << 20])
def test_reading_in_pieces_means_what_json_reads(
    body: bytes, piece: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(answer_module, "INLINE_MIN_BYTES", 64)
    try:
        expected: Any = as_text(json.loads(body, parse_constant=reject_constant))
    except (ValueError, RecursionError) as exc:
        expected = type(exc)
    reader = read(body, piece)
    try:
        got: Any = as_text(reader.load(reject_constant))
    except (ValueError, RecursionError) as exc:
        got = type(exc)
    assert got == expected
    if body.startswith(b'{"data": [{"b64_json": "' + B64.encode() + b'"}]'):
        assert reader.inline  # the plain image text went to a file


IMAGES = [
    B64,
    " " + B64 + "  ",
    "data:image/png;base64," + B64,
    "DATA:IMAGE/WEBP;BASE64," + B64,
    "data:image/gif;base64," + B64,
    "data:image/png;base64,",
    " ",
    "",
    B64[:-1],
    B64[:400] + "=" + B64[401:],
    B64[:-4] + "AA==",
    B64[:-4] + "A===",
    B64[:100] + " " + B64[100:],
    B64 + "$",
    "=" + B64[1:],
]


@pytest.mark.parametrize("text", IMAGES, ids=range(len(IMAGES)))
@pytest.mark.parametrize("piece", [4, 400, 1 << 18])
def test_an_image_in_a_file_decodes_as_one_in_memory(
    text: str, piece: int, monkeypatch: pytest.MonkeyPatch, settings: Any
) -> None:
    monkeypatch.setattr(download, "B64_PIECE_CHARS", piece)
    settings.MIRROR_MAX_BYTES = 700 if text.startswith(" ") else 10_000
    try:
        expected: Any = fetch.decode_b64_image(text)
    except fetch.MirrorError as exc:
        expected = str(exc)
    spill = tempfile.TemporaryFile()
    spill.write(text.encode())
    with tempfile.TemporaryFile() as target:
        try:
            written = fetch.decode_b64_image_to(InlineData(spill, len(text)), target)
            target.seek(0)
            got: Any = target.read()
            assert written == len(got)
        except fetch.MirrorError as exc:
            got = str(exc)
    spill.close()
    assert got == expected
