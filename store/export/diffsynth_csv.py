"""metadata_vace.csv for DiffSynth-Studio's Wan VACE training: the edited clip is the target (`video`), the
source clip the VACE context (`vace_video`), the edited key frame the reference (`vace_reference_image`),
the instruction the prompt. Train with

    --dataset_base_path DIR --dataset_metadata_path DIR/metadata_vace.csv
    --data_file_keys video,vace_video,vace_reference_image --extra_inputs vace_video,vace_reference_image

Held-out samples go to metadata_vace_heldout.csv, so training never sees them."""

from __future__ import annotations

from pathlib import Path

import av

from store.dataset import write_csv
from store.export import ExportResult, ExportSample, place_once
from store.video_io import encode_video, read_video

COLUMNS = ["video", "vace_video", "vace_reference_image", "prompt"]
ROLES = {"video": "edited", "vace_video": "source", "vace_reference_image": "edited_keyframe"}


def frame_count(path: Path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for packet in container.demux(video=0) if packet.size)


def equal_length(sample: ExportSample, to: Path, paths: dict[str, str], result: ExportResult) -> None:
    """DiffSynth pairs frame i of the context with frame i of the target: the longer clip of a pair (a
    propagation retried at a lower memory level makes fewer frames) is cut to the shorter one's length."""
    counts = {role: frame_count(sample.files[role]) for role in ("source", "edited")}
    n = min(counts.values())
    for role, count in counts.items():
        if count == n:
            continue
        rel = f"{sample.id}/{role}_{n}f.mp4"
        if not (to / rel).is_file():
            frames, fps = read_video(sample.files[role])
            (to / rel).parent.mkdir(parents=True, exist_ok=True)
            encode_video(frames[:n], fps, to / rel)
            result.files_written += 1
        paths[role] = rel


def export_diffsynth(samples: list[ExportSample], dataset_dir: Path, to: Path) -> ExportResult:
    """In the dataset folder itself (paths relative to it, nothing copied) or, for another folder, with
    the files linked or copied there under the same names."""
    result = ExportResult(path=to / "metadata_vace.csv")
    in_place = to.resolve() == dataset_dir.resolve()
    rows: dict[str, list[dict[str, str]]] = {"train": [], "heldout": []}
    for sample in samples:
        prompt = (sample.record.get("instruction") or "").strip()
        if not prompt:  # pandas reads an empty cell as NaN, and the text encoder fails on it
            result.skipped[sample.id] = "empty instruction"
            continue
        paths = {role: sample.relpaths[role] for role in ROLES.values()}
        if not in_place:
            for role, rel in paths.items():
                place_once(sample.files[role], to / rel, result)
        equal_length(sample, to, paths, result)
        rows[sample.split].append({col: paths[role] for col, role in ROLES.items()} | {"prompt": prompt})
        result.samples += 1
    for split, name in (("train", "metadata_vace.csv"), ("heldout", "metadata_vace_heldout.csv")):
        write_csv(to / name, COLUMNS, rows[split])
        result.files_written += 1
    return result
