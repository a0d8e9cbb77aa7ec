"""Stand-ins for the hub artifacts of the production profiles, built in the test session.

Random weights with the exact architecture and file format of each hub file, so that the
libraries' own loaders read them (facts in ../shared/NOTES.md, "Hub profiles offline"):
segmentation-3.0 (PyanNet, powerset 3 speakers / 2 per frame, 10 s chunks) as a Lightning
checkpoint, WeSpeakerResNet34 as pyannote's ``convert.py`` saves it, PLDA npz files, the
torchaudio ``WAV2VEC2_ASR_BASE_960H`` state dict (32-row aux), and the pipeline configs of
speaker-diarization-3.1 and community-1 as they are on the hub. Nothing here is committed;
``build_profile_dir`` lays them out exactly as ``scripts/fetch_models.py`` writes a profile.
Also run on a GPU machine by ``scripts/gpu_check.py``.
"""

from __future__ import annotations

import datetime as _dt
import json
import posixpath
import shutil
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent

# the hub's config.yaml files, as published (hub ids / $model references fetch rewrites)
CONFIG_31 = """\
version: 3.1.0

pipeline:
  name: pyannote.audio.pipelines.SpeakerDiarization
  params:
    clustering: AgglomerativeClustering
    embedding: pyannote/wespeaker-voxceleb-resnet34-LM
    embedding_batch_size: 32
    embedding_exclude_overlap: true
    segmentation: pyannote/segmentation-3.0
    segmentation_batch_size: 32

params:
  clustering:
    method: centroid
    min_cluster_size: 12
    threshold: 0.7045654963945799
  segmentation:
    min_duration_off: 0.0
"""

CONFIG_COMMUNITY_1 = """\
version: 4.0.0

dependencies:
  pyannote.audio: 4.0.0

pipeline:
  name: pyannote.audio.pipelines.SpeakerDiarization
  params:
    segmentation: $model/segmentation
    segmentation_batch_size: 32
    embedding: $model/embedding
    embedding_batch_size: 32
    embedding_exclude_overlap: true
    plda: $model/plda
    clustering: VBxClustering

params:
  segmentation:
    min_duration_off: 0.0
  clustering:
    threshold: 0.6
    Fa: 0.07
    Fb: 0.8
"""


def _lightning_checkpoint(model, path: Path, *, hyper_parameters: bool = True) -> None:
    import lightning
    import torch

    checkpoint = {"state_dict": model.state_dict()}
    if hyper_parameters:  # as Lightning's trainer saves them (convert.py does not)
        checkpoint["hyper_parameters"] = dict(model.hparams)
    model.on_save_checkpoint(checkpoint)
    checkpoint["pytorch-lightning_version"] = lightning.__version__
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(checkpoint, path)


def make_segmentation_30(path: Path, seed: int = 1) -> Path:
    """A PyanNet powerset checkpoint shaped like pyannote/segmentation-3.0."""
    import torch
    from pyannote.audio.core.task import Problem, Resolution, Specifications
    from pyannote.audio.models.segmentation import PyanNet

    torch.manual_seed(seed)
    model = PyanNet(sincnet={"stride": 10}, lstm={"hidden_size": 128, "num_layers": 4, "bidirectional": True,
                                                 "monolithic": True, "dropout": 0.5},
                    linear={"hidden_size": 128, "num_layers": 2})
    model.specifications = Specifications(
        problem=Problem.MONO_LABEL_CLASSIFICATION, resolution=Resolution.FRAME, duration=10.0,
        min_duration=10.0, warm_up=(0.0, 0.0), classes=["speaker#1", "speaker#2", "speaker#3"],
        powerset_max_classes=2, permutation_invariant=True)
    model.build()
    with torch.no_grad():  # random, but scaled so that the output follows the audio: on the
        for name, p in model.named_parameters():  # sample's first 10 s, silence, one and two speakers
            if name.startswith("lstm.weight"):
                p.mul_(3.0)
            elif name.startswith("classifier"):
                p.mul_(4.0)
    _lightning_checkpoint(model, path)
    return path


def make_wespeaker(path: Path, seed: int = 1) -> Path:
    """A WeSpeakerResNet34 checkpoint saved the way pyannote's wespeaker/convert.py does."""
    import torch
    from pyannote.audio.core.task import Problem, Resolution, Specifications
    from pyannote.audio.models.embedding.wespeaker import WeSpeakerResNet34

    torch.manual_seed(seed)
    model = WeSpeakerResNet34()
    model.specifications = Specifications(problem=Problem.REPRESENTATION, resolution=Resolution.CHUNK,
                                          duration=5.0)
    _lightning_checkpoint(model, path, hyper_parameters=False)
    return path


def make_plda(folder: Path, seed: int = 2) -> Path:
    """xvec_transform.npz and plda.npz with the community-1 shapes (tr orthogonal, psi > 0)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    lda, _ = np.linalg.qr(rng.standard_normal((256, 256)))
    np.savez(folder / "xvec_transform.npz", mean1=rng.standard_normal(256) * 0.01,
             mean2=rng.standard_normal(128) * 0.01, lda=lda[:, :128])
    tr, _ = np.linalg.qr(rng.standard_normal((128, 128)))
    np.savez(folder / "plda.npz", mu=rng.standard_normal(128) * 0.01, tr=tr,
             psi=np.sort(rng.uniform(0.5, 30.0, 128))[::-1])
    return folder


def make_wav2vec2(folder: Path, seed: int = 3) -> Path:
    """torchaudio WAV2VEC2_ASR_BASE_960H's state dict file (fairseq's 32-row aux)."""
    import torch
    import torchaudio

    bundle = torchaudio.pipelines.WAV2VEC2_ASR_BASE_960H
    torch.manual_seed(seed)
    params = dict(bundle._params)
    params["aux_num_out"] = 32
    model = torchaudio.models.wav2vec2_model(**params)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / posixpath.basename(bundle._path)
    torch.save(model.state_dict(), path)
    return path


def _place(source: Path, target: Path) -> None:
    """Hard link when possible (the wav2vec2 stand-in is 378 MB), else copy."""
    import os

    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def _fetch_module():
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        import fetch_models
    finally:
        sys.path.remove(str(REPO / "scripts"))
    return fetch_models


class StandIns:
    """Every stand-in file, built once (``root``), then copied into profile directories."""

    def __init__(self, root: Path):
        self.root = root
        self.segmentation = make_segmentation_30(root / "segmentation-3.0" / "pytorch_model.bin")
        self.embedding = make_wespeaker(root / "wespeaker" / "pytorch_model.bin")
        self.plda = make_plda(root / "plda")
        self.wav2vec2 = make_wav2vec2(root / "wav2vec2")
        (root / "configs").mkdir(exist_ok=True)
        self.config_31 = root / "configs" / "3.1.yaml"
        self.config_31.write_text(CONFIG_31)
        self.config_community_1 = root / "configs" / "community-1.yaml"
        self.config_community_1.write_text(CONFIG_COMMUNITY_1)

    def hub_files(self) -> dict[tuple[str, str], Path]:
        """(repo, path in repo) -> stand-in file: what a fake hub serves for the profiles."""
        return {
            ("pyannote/speaker-diarization-3.1", "config.yaml"): self.config_31,
            ("pyannote/segmentation-3.0", "pytorch_model.bin"): self.segmentation,
            ("pyannote/wespeaker-voxceleb-resnet34-LM", "pytorch_model.bin"): self.embedding,
            ("pyannote/speaker-diarization-community-1", "config.yaml"): self.config_community_1,
            ("pyannote/speaker-diarization-community-1", "segmentation/pytorch_model.bin"): self.segmentation,
            ("pyannote/speaker-diarization-community-1", "embedding/pytorch_model.bin"): self.embedding,
            ("pyannote/speaker-diarization-community-1", "plda/plda.npz"): self.plda / "plda.npz",
            ("pyannote/speaker-diarization-community-1", "plda/xvec_transform.npz"):
                self.plda / "xvec_transform.npz",
        }

    def build_profile_dir(self, profile: str, out: Path, asr_dir: Path) -> Path:
        """``out`` laid out as ``fetch_models.py --profile profile`` writes it, with stand-in files.

        The ASR is ``asr_dir`` (the bundled tiny.en: the same faster-whisper loader) copied to
        the profile's target; every other artifact is the stand-in for its hub file; the
        pipeline config is rewritten by fetch_models' own ``rewrite_pipeline_config``.
        """
        from diarkit.models.manifest import Artifact, Manifest, describe_files

        fetch = _fetch_module()
        hub = self.hub_files()
        artifacts = []
        for entry in fetch.PROFILES[profile]:
            source = dict(entry["source"])
            target = out / entry["target"]
            if entry["role"] == "asr":
                shutil.copytree(asr_dir, target)
            elif source["type"] == "torchaudio":
                _place(self.wav2vec2, target / source["file"])
            elif source["type"] == "package":
                fetch.fetch_package(fetch.Plan(entry, {}, []), target, out, {})
            else:
                for rel in fetch.hub_files(entry):
                    dest = target if rel == "." else target / rel
                    if entry.get("rewrite"):  # rewritten below: a copy, never the shared file
                        dest.parent.mkdir(parents=True, exist_ok=True)
                        shutil.copy2(hub[(source["repo"], fetch.repo_path(entry, rel))], dest)
                    else:
                        _place(hub[(source["repo"], fetch.repo_path(entry, rel))], dest)
                if entry.get("rewrite"):
                    target.write_text(fetch.rewrite_pipeline_config(target.read_text(), entry["rewrite"],
                                                                    entry["target"]))
            artifacts.append(Artifact(role=entry["role"], kind=entry["kind"], path=entry["target"],
                                      source=source, files=describe_files(target),
                                      settings=fetch.settings_for(entry)))
        manifest = Manifest(profile=profile, artifacts=artifacts,
                            created=_dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat())
        (out / "manifest.json").write_text(json.dumps(manifest.to_dict(), indent=2) + "\n")
        return out


def main() -> None:  # python tests/standins.py OUT: build the stand-ins and both profile dirs
    root = Path(sys.argv[1])
    root.mkdir(parents=True, exist_ok=True)
    standins = StandIns(root / "files")
    for profile in ("large-v2", "large-v3"):
        standins.build_profile_dir(profile, root / profile, REPO / "model" / "asr" / "tiny.en")
    print(root)


if __name__ == "__main__":
    main()
