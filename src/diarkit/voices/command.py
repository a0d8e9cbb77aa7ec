"""``diarkit voices {add,add-from,list,remove}``: manage a voice library (folder or s3:// prefix)."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

from diarkit.errors import DiarkitError
from diarkit.models.manifest import DEFAULT_MODEL_DIR

logger = logging.getLogger(__name__)

#: result files next to a transcript that are not its media
_RESULT_SUFFIXES = {".json", ".srt", ".vtt", ".rttm", ".txt", ".tsv", ".csv", ".md"}


def add_subcommand(subparsers) -> None:
    p = subparsers.add_parser(
        "voices", help="voice library: enroll recurring speakers, named in later recordings",
        description="A voice library is a folder or an s3://bucket/prefix/ with one NAME.voice.json per "
                    "voice. `diarkit transcribe --voices LIB` names the speakers that match a voice.")
    sub = p.add_subparsers(dest="voices_command", required=True)

    def common(q, model: bool = True):
        q.add_argument("library", metavar="LIB", help="library folder or s3://bucket/prefix/")
        if model:
            q.add_argument("--model-dir", default=DEFAULT_MODEL_DIR, help="model directory (default: model/)")
            q.add_argument("--device", default="cpu", help="cpu (default), cuda or auto")
        q.add_argument("-v", "--verbose", action="store_true", help="log details")

    add = sub.add_parser("add", help="enroll a voice from clips of that person alone",
                         description="Embed the speech of each clip (silence left out) and add it to the "
                                     "voice NAME (created if new). A few clean seconds per clip; 20 s or "
                                     "more in all name best.")
    common(add)
    add.add_argument("name", metavar="NAME", help="the name results will show, e.g. ALICE")
    add.add_argument("clips", nargs="+", metavar="CLIP", help="audio or video files of that voice alone")
    add.add_argument("--replace", action="store_true", help="start the voice over instead of adding to it")
    add.set_defaults(handler=cmd_add)

    add_from = sub.add_parser(
        "add-from", help="enroll voices from a transcribed episode whose speakers a person named",
        description="Take the single-speaker speech of each named speaker of RESULT.json (a diarkit JSON "
                    "result) from its media, and add it to the voice of that name.")
    common(add_from)
    add_from.add_argument("result", metavar="RESULT.json")
    add_from.add_argument("pairs", nargs="+", metavar="SPEAKER=NAME", help="e.g. SPEAKER_00=ALICE")
    add_from.add_argument("--media", help="the episode's media (default: the file next to RESULT.json "
                                          "named after its uri)")
    add_from.add_argument("--replace", action="store_true", help="start the voices over instead of adding")
    add_from.set_defaults(handler=cmd_add_from)

    listing = sub.add_parser("list", help="the voices of a library (and any corrupt entry)")
    common(listing, model=False)
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")
    listing.set_defaults(handler=cmd_list)

    remove = sub.add_parser("remove", help="remove a voice")
    common(remove, model=False)
    remove.add_argument("name", metavar="NAME")
    remove.set_defaults(handler=cmd_remove)


def _fail(exc: Exception) -> int:
    print(f"diarkit voices: error: {exc}", file=sys.stderr)
    return 2


class Enroller:
    """The two models enrollment needs (segmentation for voice activity, the speaker encoder)."""

    def __init__(self, model_dir: str, device: str = "cpu"):
        import os

        from diarkit.models.manifest import ModelDirectory
        from diarkit.models.registry import LoadContext
        from diarkit.pipeline import pick_device
        from diarkit.voices.library import EmbeddingModel

        directory = ModelDirectory(model_dir)
        directory.check_files()
        context = LoadContext(device=pick_device(device), cpu_threads=max(1, os.cpu_count() or 1))
        self.segmenter = directory.load("segmentation", context)
        self.encoder = directory.load("embedding", context)
        self.model = EmbeddingModel.of(directory)


def _save(store, name: str, model, additions: list[tuple], *, replace: bool) -> "object":
    """Append (embedding, source dict) pairs to voice ``name`` and write it; returns the entry."""
    import numpy as np

    from diarkit.voices.library import VoiceEntry, VoiceLibraryError, now, read_entry

    entry = None
    if not replace and store.exists(name):
        try:
            entry = read_entry(store, name)
        except VoiceLibraryError:
            raise
        except Exception as exc:  # noqa: BLE001 - a corrupt entry: say so, do not overwrite it silently
            raise VoiceLibraryError(f"voice {name!r} exists but is corrupt ({exc})", path=store.describe(name),
                                    hint="use --replace to enroll it again, or remove it") from None
        if entry.model != model:
            raise VoiceLibraryError(
                f"voice {name!r} was made with another speaker-embedding model ({entry.model}); "
                f"this model directory's is {model}", path=store.describe(name),
                hint="use --replace to enroll it again with this model")
    stamp = now()
    embeddings = np.stack([e for e, _ in additions])
    sources = [dict(s, added=stamp) for _, s in additions]
    if entry is None:
        entry = VoiceEntry(name=name, model=model, embeddings=embeddings, seconds=0.0, sources=[], created=stamp)
    else:
        embeddings = np.concatenate([entry.embeddings, embeddings])
    entry.embeddings = embeddings
    entry.sources = entry.sources + sources
    entry.seconds = float(sum(float(s.get("seconds", 0.0)) for s in entry.sources))
    entry.updated = stamp
    store.write(name, (json.dumps(entry.to_dict(), indent=1) + "\n").encode("utf-8"))
    return entry


def cmd_add(args) -> int:
    _logging(args)
    from diarkit import audio as audio_io
    from diarkit.audio import SAMPLE_RATE
    from diarkit.voices.library import VoiceLibraryError, check_name, open_store
    from diarkit.voices.speech import MIN_SECONDS, clip_speech, pooled_embedding

    try:
        name = check_name(args.name)
        store = open_store(args.library)
        enroller = Enroller(args.model_dir, args.device)
        additions = []
        for clip in args.clips:
            samples = audio_io.decode(clip)
            speech = clip_speech(enroller.segmenter, samples)
            embedding = pooled_embedding(enroller.encoder, speech)
            if embedding is None:
                raise VoiceLibraryError(f"only {len(speech) / SAMPLE_RATE:.1f} s of speech found, "
                                        f"{MIN_SECONDS:.0f} s at least are needed", path=clip,
                                        hint="use a longer clip of that voice alone")
            additions.append((embedding, {"kind": "clip", "source": str(clip),
                                          "seconds": round(len(speech) / SAMPLE_RATE, 3)}))
        entry = _save(store, name, enroller.model, additions, replace=args.replace)
    except DiarkitError as exc:
        return _fail(exc)
    print(f"{name}: {len(entry.embeddings)} source(s), {entry.seconds:.1f} s of speech -> {store.describe(name)}")
    return 0


def _find_media(result_path: Path, uri: str) -> Path:
    from diarkit.voices.library import VoiceLibraryError

    candidates = [p for p in sorted(result_path.parent.glob(f"{uri}.*"))
                  if p.suffix.lower() not in _RESULT_SUFFIXES and p.is_file()]
    if not candidates:
        raise VoiceLibraryError(f"no media file named {uri}.* next to the result", path=str(result_path),
                                hint="give it with --media")
    return candidates[0]


def enroll_from_result(store, enroller: Enroller, result, result_path: Path, media: Path, pairs: dict[str, str], *,
                       replace: bool = False) -> list[tuple]:
    """Enroll the single-speaker speech of ``pairs`` (speaker label -> voice name) of a result.

    Every speaker is checked before any voice is written; returns (name, entry, source) each.
    ``diarkit voices add-from`` and ``diarkit review --voices`` (on save) both come here.
    """
    from diarkit import audio as audio_io
    from diarkit.voices.library import VoiceLibraryError
    from diarkit.voices.speech import MIN_SECONDS, runs_embedding, single_speaker_runs, speech_seconds

    samples = audio_io.decode(media)
    runs = single_speaker_runs(result.turns, samples.shape[0])
    prepared = []
    for label, name in pairs.items():
        seconds = speech_seconds(runs[label])
        embedding = runs_embedding(enroller.encoder, samples, runs[label])
        if embedding is None:
            raise VoiceLibraryError(
                f"{label} has only {seconds:.1f} s of single-speaker speech, "
                f"{MIN_SECONDS:.0f} s at least are needed", path=str(result_path),
                hint="enroll that voice from another episode or from clips")
        prepared.append((name, embedding, {"kind": "result", "source": str(media), "result": str(result_path),
                                           "speaker": label, "seconds": round(seconds, 3)}))
    return [(name, _save(store, name, enroller.model, [(embedding, source)], replace=replace), source)
            for name, embedding, source in prepared]


def cmd_add_from(args) -> int:
    _logging(args)
    from diarkit.errors import OptionsError
    from diarkit.result import TranscriptResult
    from diarkit.voices.library import check_name, open_store

    try:
        pairs: dict[str, str] = {}
        for pair in args.pairs:
            label, sep, name = pair.partition("=")
            if not sep or not label.strip():
                raise OptionsError(f"{pair!r} is not SPEAKER=NAME", hint="e.g. SPEAKER_00=ALICE")
            if label.strip() in pairs:
                raise OptionsError(f"speaker {label.strip()} is named twice")
            pairs[label.strip()] = check_name(name.strip())
        if len(set(pairs.values())) != len(pairs):
            raise OptionsError("two speakers are given the same name",
                               hint="one speaker per name: the library keeps voices apart")
        result_path = Path(args.result)
        try:
            result = TranscriptResult.from_dict(json.loads(result_path.read_text("utf-8")))
        except FileNotFoundError:
            raise OptionsError("result file not found", path=str(result_path)) from None
        except (ValueError, KeyError, TypeError) as exc:
            raise OptionsError(f"not a diarkit JSON result ({exc})", hint="pass the .json that "
                               "diarkit transcribe wrote") from None
        labels = {t.speaker for t in result.turns}
        unknown = sorted(set(pairs) - labels)
        if unknown:
            raise OptionsError(f"speaker(s) {', '.join(unknown)} not in {result_path}",
                               hint=f"its speakers: {', '.join(sorted(labels)) or 'none'}")
        media = Path(args.media) if args.media else _find_media(result_path, result.uri)
        store = open_store(args.library)
        enroller = Enroller(args.model_dir, args.device)
        for name, entry, source in enroll_from_result(store, enroller, result, result_path, media, pairs,
                                                      replace=args.replace):
            print(f"{name}: from {source['speaker']}, {source['seconds']:.1f} s of speech; "
                  f"{len(entry.embeddings)} source(s) in all -> {store.describe(name)}")
    except (DiarkitError, OSError) as exc:
        if isinstance(exc, OSError) and not isinstance(exc, DiarkitError):
            exc = OptionsError(f"{getattr(exc, 'filename', '') or args.result}: {exc.strerror or exc}")
        return _fail(exc)
    return 0


def cmd_list(args) -> int:
    _logging(args)
    from diarkit.voices.library import load_library

    try:
        library = load_library(args.library, None)
    except DiarkitError as exc:
        return _fail(exc)
    if args.json:
        print(json.dumps({"library": args.library, "voices": [
            {"name": v.name, "seconds": round(v.seconds, 3), "sources": len(v.sources),
             "embedding_model": {"kind": v.model.kind, "sha256": v.model.sha256}, "created": v.created,
             "updated": v.updated} for v in library.voices], "problems": library.problems}, indent=2))
        return 0
    if not library.voices and not library.problems:
        print(f"{args.library}: no voices")
    for v in library.voices:
        print(f"{v.name}\t{v.seconds:.1f} s\t{len(v.sources)} source(s)\t{v.model}\tupdated {v.updated}")
    for problem in library.problems:
        print(f"CORRUPT: {problem}", file=sys.stderr)
    return 0


def cmd_remove(args) -> int:
    _logging(args)
    from diarkit.voices.library import LocalStore, VoiceLibraryError, open_store

    try:
        store = open_store(args.library)
        if isinstance(store, LocalStore):
            store.fingerprint()  # a missing folder: its own error
        if not store.exists(args.name):
            raise VoiceLibraryError(f"no voice named {args.name!r}", path=args.library,
                                    hint=f"voices: {', '.join(store.names()) or 'none'}")
        store.delete(args.name)
    except DiarkitError as exc:
        return _fail(exc)
    print(f"removed {args.name} from {args.library}")
    return 0


def _logging(args) -> None:
    logging.getLogger("diarkit").setLevel(logging.INFO if getattr(args, "verbose", False) else logging.WARNING)
