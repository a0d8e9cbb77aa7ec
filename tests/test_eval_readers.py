"""Every reader: normal input, a non-ASCII speaker label, and a malformed line named file:line."""

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

from eval import readers  # noqa: E402
from eval.readers import ReaderError  # noqa: E402


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def assert_error_at(exc_info, path: Path, line: int, words: str):
    message = str(exc_info.value)
    assert message.startswith(f"{path}:{line}:"), message
    assert words in message


# ----------------------------------------------------------------------------- RTTM

def test_rttm(tmp_path):
    p = write(tmp_path / "x.rttm",
              "SPEAKER a 1 0.50 1.00 <NA> <NA> MÉO069 <NA> <NA>\n"
              "SPKR-INFO a 1 <NA> <NA> <NA> unknown MÉO069 <NA> <NA>\n"
              "\n"
              "SPEAKER a 1 2.00 0.00 <NA> <NA> B <NA> <NA>\n"
              "SPEAKER b 1 1.00 2.50 <NA> <NA> C <NA> <NA>\n")
    docs = readers.read_rttm(p)
    assert sorted(docs) == ["a", "b"]
    assert [(t.start, t.end, t.speaker) for t in docs["a"].turns] == [(0.5, 1.5, "MÉO069")]  # 0-length dropped
    assert docs["b"].turns[0].end == pytest.approx(3.5)
    assert docs["a"].text is None


@pytest.mark.parametrize("line, reason", [
    ("SPEAKER a 1 0.5 1.0 <NA> <NA>", "expected at least 8 fields"),
    ("SPEAKER a 1 zero 1.0 <NA> <NA> A <NA> <NA>", "start is not a number"),
    ("SPEAKER a 1 0.5 -1.0 <NA> <NA> A <NA> <NA>", "negative duration"),
])
def test_rttm_malformed(tmp_path, line, reason):
    p = write(tmp_path / "bad.rttm", "SPEAKER a 1 0.0 1.0 <NA> <NA> A <NA> <NA>\n\n" + line + "\n")
    with pytest.raises(ReaderError) as e:
        readers.read_rttm(p)
    assert_error_at(e, p, 3, reason)


# ----------------------------------------------------------------------------- STM

def test_stm(tmp_path):
    p = write(tmp_path / "x.stm",
              ";; comment line\n"
              "a 1 MÉO069 0.0 2.0 <o,f0,male> Hello, world\n"
              "a 1 B 2.5 4.0 good morning\n"
              "a 1 inter_segment_gap 4.0 5.0\n"
              "a 1 B 5.0 6.0 ignore_time_segment_in_scoring\n")
    doc = readers.read_stm(p)["a"]
    assert [(s.speaker, s.words, s.start, s.end) for s in doc.text] == [
        ("MÉO069", "Hello, world", 0.0, 2.0), ("B", "good morning", 2.5, 4.0)]
    assert [t.speaker for t in doc.turns] == ["MÉO069", "B"]
    assert doc.has_timed_text


def test_stm_malformed(tmp_path):
    p = write(tmp_path / "bad.stm", ";; x\na 1 A 0.0 1.0 hi\na 1 A 3.0 2.0 backwards\n")
    with pytest.raises(ReaderError) as e:
        readers.read_stm(p)
    assert_error_at(e, p, 3, "end 2.0 before start 3.0")
    p = write(tmp_path / "short.stm", "a 1 A 0.0\n")
    with pytest.raises(ReaderError) as e:
        readers.read_stm(p)
    assert_error_at(e, p, 1, "expected at least 5 fields")


# ----------------------------------------------------------------------------- UEM

def test_uem(tmp_path):
    p = write(tmp_path / "x.uem", "a 1 0.0 30.0\nMÉO 1 1.0 2.0\na 1 40 50\n")
    assert readers.read_uem(p) == {"a": [(0.0, 30.0), (40.0, 50.0)], "MÉO": [(1.0, 2.0)]}


def test_uem_malformed(tmp_path):
    p = write(tmp_path / "x.uem", "a 1 0.0 30.0\na 1 0.0\n")
    with pytest.raises(ReaderError) as e:
        readers.read_uem(p)
    assert_error_at(e, p, 2, "expected 4 fields")


# ----------------------------------------------------------------------------- CSV / TSV

def test_csv_with_header_any_order_and_text(tmp_path):
    p = write(tmp_path / "c.csv", "speaker,start,end,text\nMÉO069,0.5,1.5,\"hello, there\"\nB,2,3,hi\n")
    doc = readers.read_csv(p)["c"]
    assert [(t.start, t.end, t.speaker) for t in doc.turns] == [(0.5, 1.5, "MÉO069"), (2.0, 3.0, "B")]
    assert [s.words for s in doc.text] == ["hello, there", "hi"]


def test_csv_headerless_and_tsv(tmp_path):
    p = write(tmp_path / "c.csv", "0.0,1.0,A\n1.0,2.5,MÉO069\n")
    doc = readers.read_csv(p)["c"]
    assert [(t.start, t.end, t.speaker) for t in doc.turns] == [(0.0, 1.0, "A"), (1.0, 2.5, "MÉO069")]
    assert doc.text is None
    p = write(tmp_path / "t.tsv", "start\tduration\tspeaker\turi\n1.0\t2.0\tA\tfile1\n")
    docs = readers.read_csv(p)
    assert list(docs) == ["file1"] and docs["file1"].turns[0].end == pytest.approx(3.0)
    p = write(tmp_path / "s.csv", "start;end;speaker\n0;1;A\n")
    assert readers.read_csv(p)["s"].turns[0].speaker == "A"


def test_csv_malformed(tmp_path):
    p = write(tmp_path / "c.csv", "start,end,speaker\n0,1,A\n\n0,x,B\n")
    with pytest.raises(ReaderError) as e:
        readers.read_csv(p)
    assert_error_at(e, p, 4, "end is not a number")
    p = write(tmp_path / "d.csv", "begin,who\n0,A\n")
    with pytest.raises(ReaderError) as e:
        readers.read_csv(p)
    assert_error_at(e, p, 1, "header lacks column(s) speaker, end")
    p = write(tmp_path / "e.csv", "0,1,A\n2,3\n")
    with pytest.raises(ReaderError) as e:
        readers.read_csv(p)
    assert_error_at(e, p, 2, "expected at least 3 columns")


# ----------------------------------------------------------------------------- JSON

def diarkit_dict():
    return {
        "version": "1.0", "uri": "rec", "duration": 10.0, "language": "en",
        "speakers": [{"label": "MÉO069", "speaking_time": 2.0, "words": 2}],
        "segments": [{"start": 0.0, "end": 2.0, "text": "Hello world", "speaker": "MÉO069",
                      "words": [{"word": "Hello", "start": 0.1, "end": 0.5, "score": 0.9, "speaker": "MÉO069"},
                                {"word": "world", "start": 0.6, "end": 1.0, "score": 0.8, "speaker": None}]}],
        "diarization": [{"start": 0.0, "end": 2.0, "speaker": "MÉO069"}, {"start": 3.0, "end": 4.0, "speaker": "B"}],
        "models": {}, "timings": {"asr": 1.5, "diarization": 0.5}, "options": {}, "warnings": [],
    }


def test_diarkit_json(tmp_path):
    p = write(tmp_path / "rec.json", json.dumps(diarkit_dict(), ensure_ascii=False))
    doc = readers.read_json(p)["rec"]
    assert doc.kind == "diarkit"
    assert [(t.start, t.end, t.speaker) for t in doc.turns] == [(0.0, 2.0, "MÉO069"), (3.0, 4.0, "B")]
    # words keep their own times; a word without speaker takes its segment's
    assert [(s.words, s.start, s.speaker) for s in doc.text] == [("Hello", 0.1, "MÉO069"), ("world", 0.6, "MÉO069")]
    assert doc.timings == {"asr": 1.5, "diarization": 0.5} and doc.duration == 10.0


def test_diarkit_json_matches_transcript_result_schema(tmp_path):
    """The reader accepts what diarkit's own TranscriptResult.to_dict() writes."""
    import diarkit.result as result_mod
    result = result_mod.TranscriptResult.from_dict(diarkit_dict())
    p = write(tmp_path / "rec.json", json.dumps(result.to_dict(), ensure_ascii=False))
    doc = readers.read_json(p)["rec"]
    assert [t.speaker for t in doc.turns] == ["MÉO069", "B"] and len(doc.text) == 2


def test_whisperx_json(tmp_path):
    data = {"segments": [
        {"start": 0.0, "end": 2.0, "text": " Hi there", "speaker": "SPEAKER_00",
         "words": [{"word": "Hi", "start": 0.1, "end": 0.4, "score": 0.9, "speaker": "SPEAKER_00"},
                   {"word": "there", "start": 0.5, "end": 0.9, "score": 0.9, "speaker": "MÉO069"}]},
        {"start": 2.5, "end": 4.0, "text": " 42 apples", "speaker": "MÉO069",
         "words": [{"word": "42"}, {"word": "apples", "start": 3.0, "end": 3.5, "speaker": "MÉO069"}]},
        {"start": 5.0, "end": 6.0, "text": " no speaker"},
    ], "word_segments": [], "language": "en"}
    p = write(tmp_path / "w.json", json.dumps(data))
    doc = readers.read_json(p)["w"]
    assert doc.kind == "whisperx"
    assert [(t.start, t.end, t.speaker) for t in doc.turns] == [(0.0, 2.0, "SPEAKER_00"), (2.5, 4.0, "MÉO069")]
    words = [(s.words, s.start, s.end, s.speaker) for s in doc.text]
    assert words[1] == ("there", 0.5, 0.9, "MÉO069")
    assert words[2] == ("42", 2.5, 4.0, "MÉO069")  # unaligned numeral: segment span
    assert words[-1] == ("no speaker", 5.0, 6.0, "UNKNOWN")


def test_json_malformed(tmp_path):
    p = write(tmp_path / "bad.json", '{\n  "diarization": [\n    {"start": 0, "end": 1,}\n  ]\n}\n')
    with pytest.raises(ReaderError) as e:
        readers.read_json(p)
    assert_error_at(e, p, 3, "invalid JSON")
    d = diarkit_dict()
    del d["diarization"][1]["speaker"]
    p = write(tmp_path / "nospk.json", json.dumps(d))
    with pytest.raises(ReaderError, match=r"nospk\.json:diarization\[1\]: missing 'speaker'"):
        readers.read_json(p)
    p = write(tmp_path / "other.json", json.dumps({"foo": 1}))
    with pytest.raises(ReaderError, match="unsupported JSON"):
        readers.read_json(p)


# ----------------------------------------------------------------------------- text per speaker, groups

def test_speaker_text(tmp_path):
    p = write(tmp_path / "t.txt", "# reference words\nMÉO069\thello there\nB\tgood morning\nMÉO069\tbye\n")
    doc = readers.read_speaker_text(p)["t"]
    assert doc.turns is None and not doc.has_timed_text
    assert [(s.speaker, s.words) for s in doc.text] == [("MÉO069", "hello there"), ("B", "good morning"),
                                                        ("MÉO069", "bye")]


def test_speaker_text_malformed(tmp_path):
    p = write(tmp_path / "t.txt", "A\thello\nB has no tab\n")
    with pytest.raises(ReaderError) as e:
        readers.read_speaker_text(p)
    assert_error_at(e, p, 2, "expected 'speaker<TAB>text'")


def test_groups(tmp_path):
    p = write(tmp_path / "g.tsv", "file\tgroup\nfilm1\tdrama\nMÉO\tdocumentary\n")
    assert readers.read_groups(p) == {"film1": "drama", "MÉO": "documentary"}
    p = write(tmp_path / "g.csv", "a,drama\nb , documentary\n")
    assert readers.read_groups(p) == {"a": "drama", "b": "documentary"}
    p = write(tmp_path / "g.txt", "a drama\nb\n")
    with pytest.raises(ReaderError) as e:
        readers.read_groups(p)
    assert_error_at(e, p, 2, "expected 2 columns")


def test_not_utf8(tmp_path):
    p = tmp_path / "latin1.rttm"
    p.write_bytes("SPEAKER a 1 0 1 <NA> <NA> MÉO069 <NA> <NA>\n".encode("latin-1"))
    with pytest.raises(ReaderError, match="not UTF-8"):
        readers.read_rttm(p)


# ----------------------------------------------------------------------------- folders

def test_folder_merges_sources_by_file_id(tmp_path):
    write(tmp_path / "a.rttm", "SPEAKER a 1 0 1 <NA> <NA> A <NA> <NA>\n")
    write(tmp_path / "a.stm", "a 1 A 0 1.2 hello\n")
    write(tmp_path / "a.uem", "a 1 0 30\n")
    write(tmp_path / "b.rttm", "SPEAKER b 1 0 2 <NA> <NA> B <NA> <NA>\n")
    write(tmp_path / "notes.md", "ignored\n")
    docs = readers.load_documents(tmp_path)
    assert sorted(docs) == ["a", "b"]
    a = docs["a"]
    assert a.turns[0].end == 1.0  # turns from the RTTM, not the STM
    assert a.text[0].words == "hello"
    assert a.uem == [(0.0, 30.0)]
    assert docs["b"].uem is None and docs["b"].text is None


def test_folder_with_two_sources_of_one_kind_is_an_error(tmp_path):
    write(tmp_path / "all.rttm", "SPEAKER a 1 0 1 <NA> <NA> A <NA> <NA>\n")
    write(tmp_path / "a.rttm", "SPEAKER a 1 0 1 <NA> <NA> A <NA> <NA>\n")
    with pytest.raises(ReaderError, match="second rttm annotation of 'a'"):
        readers.load_documents(tmp_path)


def test_unknown_format(tmp_path):
    p = write(tmp_path / "x.xml", "<a/>")
    with pytest.raises(ReaderError, match="unknown annotation format"):
        readers.load_documents(p)
