"""Request options, Accept negotiation and the JSON envelope (shared by the server and inference.py)."""

from __future__ import annotations

import base64
import json

import pytest

from diarkit.errors import DiarkitError, MediaError, OptionsError
from diarkit.serving.protocol import (
    BadRequestError, NotAcceptableError, RequestOptions, UnsupportedContentTypeError, error_body,
    negotiate_format, parse_custom_attributes, parse_json_payload, request_kind,
)


def test_custom_attributes_string():
    options = parse_custom_attributes(" num_speakers=2; language=EN ;format=vtt;")
    assert options == RequestOptions(num_speakers=2, language="en", format="vtt")
    assert parse_custom_attributes("min-speakers=1;max_speakers=3") == RequestOptions(min_speakers=1, max_speakers=3)
    assert parse_custom_attributes("") == parse_custom_attributes(None) == RequestOptions()


@pytest.mark.parametrize("text,fragment", [
    ("num_speakers=two", "whole number"),
    ("num_speakers=2.5", "whole number"),
    ("num_speakers=0", "between 1 and 50"),
    ("min_speakers=4;max_speakers=2", "larger than max_speakers"),
    ("colour=red", "unknown option 'colour'"),
    ("num_speakers", "not key=value"),
    ("=2", "not key=value"),
    ("num_speakers=2;num_speakers=3", "given twice"),
    ("language=english please", "language code"),
    ("language=", "non-empty"),
    ("format=docx", "unknown output format"),
    ("format=srt,vtt", "one format"),
])
def test_bad_custom_attributes_are_400(text, fragment):
    with pytest.raises(OptionsError) as info:
        parse_custom_attributes(text)
    assert info.value.status == 400
    assert fragment in str(info.value)


def test_custom_attributes_override_json_options():
    body = RequestOptions.from_mapping({"num_speakers": 3, "language": "en"})
    merged = body.merged(parse_custom_attributes("num_speakers=2;format=txt"))
    assert merged == RequestOptions(num_speakers=2, language="en", format="txt")
    with pytest.raises(OptionsError):  # merged hints are checked again
        RequestOptions.from_mapping({"min_speakers": 3}).merged(parse_custom_attributes("max_speakers=2"))


@pytest.mark.parametrize("value", [True, 2.0, [2], "2x"])
def test_json_option_types(value):
    with pytest.raises(OptionsError):
        RequestOptions.from_mapping({"num_speakers": value})


@pytest.mark.parametrize("accept,override,expected", [
    (None, None, "json"),
    ("", None, "json"),
    ("*/*", None, "json"),
    ("application/json", None, "json"),
    ("text/vtt", None, "vtt"),
    ("text/vtt; charset=utf-8", None, "vtt"),
    ("application/x-subrip", None, "srt"),
    ("text/x-rttm", None, "rttm"),
    ("text/plain", None, "txt"),
    ("image/png, text/plain;q=0.5, application/json;q=0.9", None, "json"),
    ("image/png, */*;q=0.1", None, "json"),
    ("text/vtt", "srt", "srt"),
    ("image/png", "txt", "txt"),
])
def test_accept_negotiation(accept, override, expected):
    assert negotiate_format(accept, override) == expected


def test_unacceptable_accept_is_406():
    with pytest.raises(NotAcceptableError) as info:
        negotiate_format("image/png")
    assert info.value.status == 406


@pytest.mark.parametrize("content_type,kind", [
    ("audio/wav", "media"), ("audio/x-wav", "media"), ("video/mp4", "media"), ("AUDIO/MPEG", "media"),
    ("application/octet-stream", "media"), (None, "media"), ("application/json", "json"),
    ("application/json; charset=utf-8", "json"),
])
def test_request_kind(content_type, kind):
    assert request_kind(content_type) == kind


@pytest.mark.parametrize("content_type", ["text/plain", "image/png", "application/x-www-form-urlencoded",
                                          "multipart/form-data; boundary=x"])
def test_unsupported_content_type_is_415(content_type):
    with pytest.raises(UnsupportedContentTypeError) as info:
        request_kind(content_type)
    assert info.value.status == 415 and isinstance(info.value, MediaError)


def test_json_envelope():
    audio = b"RIFF....WAVEfmt "
    text = json.dumps({"audio_base64": base64.b64encode(audio).decode(), "options": {"num_speakers": "2"}})
    for data in (text, text.encode()):  # the toolkits hand JSON over as str, the server as bytes
        payload = parse_json_payload(data)
        assert payload.audio == audio and payload.options == RequestOptions(num_speakers=2)


@pytest.mark.parametrize("data,error", [
    (b"{not json", BadRequestError),
    (b"[1, 2]", BadRequestError),
    (b'{"audio": "AAAA"}', BadRequestError),
    (b'{"audio_base64": ""}', BadRequestError),
    (b'{"audio_base64": "not base64!!"}', BadRequestError),
    (b'{"audio_base64": "AAAA", "options": {"speed": 2}}', OptionsError),
    (b'{"audio_base64": "AAAA", "options": [1]}', OptionsError),
])
def test_bad_json_envelope_is_400(data, error):
    with pytest.raises(error) as info:
        parse_json_payload(data)
    assert info.value.status == 400


def test_error_body_hides_temporary_paths():
    exc = MediaError("not a readable audio or video file (/tmp/x/body: Invalid data)", path="/tmp/x/body",
                     hint="send wav")
    assert error_body(exc) == {"error": "unsupported_media",
                               "detail": "not a readable audio or video file (request body: Invalid data) (send wav)"}
    assert set(error_body(DiarkitError("boom"))) == {"error", "detail"}
