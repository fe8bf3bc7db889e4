"""Evaluation sets: the CSV manifest, AudioSep's benchmark layout, and the small example set."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from dgmo_pl.audio.io import read_audio
from dgmo_pl.errors import InputError
from dgmo_pl.evaluation.manifest import (
    AUDIOSEP_BENCHMARKS,
    Row,
    audiosep_benchmarks,
    load_rows,
    read_audiosep,
    read_manifest,
)
from dgmo_pl.testing.example_set import choose_pairs, make_eval_set, read_labels


def _wav(path: Path) -> Path:
    """A tiny 16 kHz noise clip."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.random.default_rng(0).uniform(-0.1, 0.1, 160).astype(np.float32), 16000)
    return path


def _csv(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def clips(tmp_path: Path) -> Path:
    """A folder with mix1.wav, mix2.wav and src1.wav."""
    for name in ("mix1", "mix2", "src1"):
        _wav(tmp_path / "audio" / f"{name}.wav")
    return tmp_path


# --- read_manifest ------------------------------------------------------------------------------


def test_manifest_rows_paths_ids_and_extra_columns(clips: Path) -> None:
    absolute = clips / "audio" / "mix2.wav"
    manifest = _csv(clips / "manifest.csv", (
        "Mixture, Query ,source,id,notes\n"
        "audio/mix1.wav,dog barking,audio/src1.wav,first,whatever\n"
        f"{absolute},dog barking,,,\n"
        "\n"
        f"{absolute},Dog barking!,,,\n"
        "audio/mix1.wav,church bell,,,\n"
    ))
    rows = read_manifest(manifest)
    assert rows[0] == Row("first", clips / "audio" / "mix1.wav", "dog barking", clips / "audio" / "src1.wav")
    assert [row.id for row in rows[1:]] == ["mix2-dog-barking", "mix2-dog-barking-2", "mix1-church-bell"]
    assert [row.source for row in rows[1:]] == [None, None, None]
    assert rows[1].mixture == absolute
    assert load_rows(manifest) == rows


def test_manifest_default_ids_avoid_given_ids(clips: Path) -> None:
    manifest = _csv(clips / "m.csv", "mixture,query,id\naudio/mix1.wav,dog,\naudio/mix2.wav,dog,mix1-dog\n")
    assert [row.id for row in read_manifest(manifest)] == ["mix1-dog-2", "mix1-dog"]


def test_manifest_missing_file_and_empty_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"manifest '.*nope\.csv' does not exist"):
        read_manifest(tmp_path / "nope.csv")
    with pytest.raises(InputError, match=r"manifest '.*empty\.csv' is empty"):
        read_manifest(_csv(tmp_path / "empty.csv", "\n"))


def test_manifest_missing_column_lists_the_columns_found(clips: Path) -> None:
    manifest = _csv(clips / "m.csv", "mix,text,source\naudio/mix1.wav,dog,\n")
    found = r"\(columns found: 'mix', 'text', 'source'\)"
    with pytest.raises(InputError, match=rf"m\.csv', line 1: no 'mixture' or 'query' column {found}"):
        read_manifest(manifest)


@pytest.mark.parametrize(("line", "column"), [(",dog", "mixture"), ("audio/mix1.wav, ", "query")])
def test_manifest_empty_cell_names_the_line(clips: Path, line: str, column: str) -> None:
    manifest = _csv(clips / "m.csv", f"mixture,query\naudio/mix2.wav,cat\n{line}\n")
    with pytest.raises(InputError, match=rf"m\.csv', line 3: the {column} cell is empty"):
        read_manifest(manifest)


def test_manifest_duplicate_id_names_both_lines(clips: Path) -> None:
    manifest = _csv(
        clips / "m.csv", "id,mixture,query\na,audio/mix1.wav,dog\nb,audio/mix1.wav,cat\na,audio/mix2.wav,dog\n"
    )
    with pytest.raises(InputError, match=r"m\.csv', line 4: id 'a' is already used on line 2"):
        read_manifest(manifest)


@pytest.mark.parametrize("column", ["mixture", "source"])
def test_manifest_missing_audio_names_file_line_and_path(clips: Path, column: str) -> None:
    cells = {"mixture": "audio/mix1.wav", "source": "audio/src1.wav", column: "audio/gone.wav"}
    manifest = _csv(clips / "m.csv", f"mixture,query,source\n{cells['mixture']},dog,{cells['source']}\n")
    with pytest.raises(InputError, match=rf"m\.csv', line 2: {column} file '.*audio/gone\.wav' does not exist"):
        read_manifest(manifest)


def test_load_rows_refuses_other_files(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"'.*list\.txt' does not exist"):
        load_rows(tmp_path / "list.txt")
    with pytest.raises(InputError, match=r"is not a \.csv file"):
        load_rows(_csv(tmp_path / "list.txt", "mixture,query\n"))


# --- AudioSep's layout --------------------------------------------------------------------------


def _audiosep(root: Path, names: tuple[str, ...] = AUDIOSEP_BENCHMARKS) -> Path:
    """A miniature AudioSep checkout: evaluation/metadata/*.csv and evaluation/data/<name>/ clips."""
    meta, data = root / "evaluation" / "metadata", root / "evaluation" / "data"
    if "audiocaps" in names:
        _csv(meta / "audiocaps_eval.csv", (
            "idx,caption,labels,src_wav,noise_wav\n"
            "0,A dog barks twice,Dog Bark,Yabc.wav,Ydef.wav\n"
            '1,"Rain falls, thunder rolls",Rain,Yghi.wav,Yjkl.wav\n'
        ))
    if "vggsound" in names:
        _csv(meta / "vggsound_eval.csv", (
            "file_id,mix_wav,s0_wav,s0_text,s1_wav,s1_text\n"
            "a_1+++b_2,data/mix_wav/a_1+++b_2.wav,data/s0_wav/a_1+++b_2.wav,playing accordion,"
            'data/s1_wav/a_1+++b_2.wav,"pigeon, dove cooing"\n'
        ))
    for name, caption in (("music", "violin"), ("esc50", "dog")):
        if name in names:
            _csv(meta / f"{name}_eval.csv", f"idx,caption,src_wav,noise_wav\n0,{caption},x_0.wav,y_3.wav\n")
    if "audioset" in names:
        _csv(meta / "audioset_eval.csv", "".join(
            ["idx,caption,src_wav,noise_wav\n"]
            + [f'{k},"{label}","evaluation/data/audioset/class_id={k}/class_id={k},index=00{i},source.wav",'
               f'"evaluation/data/audioset/class_id={k}/class_id={k},index=00{i},mixture.wav"\n'
               for k, label in ((0, "Speech"), (1, "Male speech, man speaking")) for i in range(2)]
        ))
    if "clotho" in names:
        _csv(meta / "clotho_eval.csv", (
            "idx,caption,src_wav,noise_wav1,noise_wav1\n"
            "7,A machine whines and squeals.,Santa Motor.wav,\"a, b.wav\",c.wav\n"
        ))
    for name in names:
        if name == "vggsound":
            _wav(data / "vggsound" / "data" / "mix_wav" / "a_1+++b_2.wav")
            _wav(data / "vggsound" / "data" / "s0_wav" / "a_1+++b_2.wav")
        elif name == "audioset":
            for k in (0, 1):
                for i in range(2):
                    for kind in ("source", "mixture"):
                        _wav(data / "audioset" / f"class_id={k}" / f"class_id={k},index=00{i},{kind}.wav")
        else:
            for idx in ((0, 1) if name == "audiocaps" else (7,) if name == "clotho" else (0,)):
                _wav(data / name / f"mixture-{idx}.wav")
                _wav(data / name / f"segment-{idx}.wav")
    return root


def test_audiosep_reads_every_benchmark(tmp_path: Path) -> None:
    root = _audiosep(tmp_path / "AudioSep")
    data = root / "evaluation" / "data"
    rows = read_audiosep(root)
    assert audiosep_benchmarks(root) == list(AUDIOSEP_BENCHMARKS)
    by_id = {row.id: row for row in rows}
    assert len(by_id) == len(rows) == 2 + 1 + 1 + 1 + 4 + 1
    caps = data / "audiocaps"
    assert by_id["audiocaps-1"] == Row(
        "audiocaps-1", caps / "mixture-1.wav", "Rain falls, thunder rolls", caps / "segment-1.wav"
    )
    vgg = by_id["vggsound-a_1+++b_2"]
    assert vgg.query == "playing accordion"
    assert vgg.mixture == data / "vggsound" / "data" / "mix_wav" / "a_1+++b_2.wav"
    assert vgg.source == data / "vggsound" / "data" / "s0_wav" / "a_1+++b_2.wav"
    assert by_id["music-0"].query == "violin" and by_id["esc50-0"].query == "dog"
    audioset = by_id["audioset-1-001"]
    assert audioset.query == "Male speech, man speaking"
    assert audioset.mixture == data / "audioset" / "class_id=1" / "class_id=1,index=001,mixture.wav"
    assert audioset.source == data / "audioset" / "class_id=1" / "class_id=1,index=001,source.wav"
    assert by_id["clotho-7"].source == data / "clotho" / "segment-7.wav"
    order = ["audiocaps"] * 2 + ["vggsound", "music", "esc50"] + ["audioset"] * 4 + ["clotho"]
    assert [row.id.split("-")[0] for row in rows] == order


def test_audiosep_accepts_the_evaluation_and_data_folders_and_a_selection(tmp_path: Path) -> None:
    root = _audiosep(tmp_path / "AudioSep", ("esc50", "clotho"))
    assert [row.id for row in read_audiosep(root / "evaluation")] == ["esc50-0", "clotho-7"]
    assert [row.id for row in load_rows(root / "evaluation" / "data")] == ["esc50-0", "clotho-7"]
    assert [row.id for row in read_audiosep(root, benchmarks=["clotho"])] == ["clotho-7"]
    with pytest.raises(InputError, match=r"benchmark 'music' not found .*found: esc50, clotho"):
        read_audiosep(root, benchmarks=["music"])
    with pytest.raises(InputError, match=r"unknown AudioSep benchmark 'esc-50': pick among audiocaps, vggsound"):
        read_audiosep(root, benchmarks=["esc-50"])


def test_audiosep_missing_clip_names_metadata_line_and_file(tmp_path: Path) -> None:
    root = _audiosep(tmp_path / "AudioSep", ("audiocaps",))
    (root / "evaluation" / "data" / "audiocaps" / "segment-1.wav").unlink()
    expected = r"audiocaps_eval\.csv', line 3: source file '.*segment-1\.wav' does not exist"
    with pytest.raises(InputError, match=expected):
        read_audiosep(root)


def test_audiosep_wrong_header_is_named(tmp_path: Path) -> None:
    root = _audiosep(tmp_path / "AudioSep", ("esc50",))
    _csv(root / "evaluation" / "metadata" / "esc50_eval.csv", "index,label\n0,dog\n")
    expected = r"esc50_eval\.csv', line 1: header starts with index,label, expected idx,caption"
    with pytest.raises(InputError, match=expected):
        read_audiosep(root)


def test_audiosep_nothing_found_says_what_it_looked_for(tmp_path: Path) -> None:
    expected = r"no AudioSep benchmark found in .*metadata/<name>_eval\.csv.*audiocaps, vggsound"
    with pytest.raises(InputError, match=expected):
        load_rows(tmp_path)
    _csv(tmp_path / "evaluation" / "metadata" / "music_eval.csv", "idx,caption,src_wav,noise_wav\n")
    with pytest.raises(InputError, match=r"music_eval\.csv' is there but its clip folder '.*data/music' is not"):
        read_audiosep(tmp_path)
    with pytest.raises(InputError, match=r"'.*missing' does not exist"):
        read_audiosep(tmp_path / "missing")


# --- the example set ----------------------------------------------------------------------------


def test_make_eval_set_writes_mixtures_of_labelled_recordings(shared_audio: Path, tmp_path: Path) -> None:
    manifest = make_eval_set(tmp_path / "set", pairs=3, seed=1, shared=shared_audio)
    rows = read_manifest(manifest)
    assert len(rows) == 3 and len({row.id for row in rows}) == 3
    with (shared_audio / "manifest.csv").open(newline="") as handle:
        labels = {row["label"] for row in csv.DictReader(handle)}
    with manifest.open(newline="") as handle:
        assert next(csv.reader(handle)) == ["id", "mixture", "query", "source"]
    for row in rows:
        assert row.query in labels
        assert row.mixture == manifest.parent / "mixtures" / f"{row.id}.wav"
        assert row.source == manifest.parent / "sources" / f"{row.id}.wav"
        mixture, rate = read_audio(row.mixture)
        source, _ = read_audio(row.source)
        other, _ = read_audio(manifest.parent / "others" / f"{row.id}.wav")
        assert rate == 16000 and mixture.shape == (1, 163_840)
        assert (mixture - source - other).abs().max() < 3 / 32768  # three 16-bit roundings
        assert 0.45 < mixture.abs().max() < 0.55
    recordings = read_labels(shared_audio)
    chosen = choose_pairs(recordings, 3, seed=1)
    assert chosen == choose_pairs(list(reversed(recordings)), 3, seed=1)  # the seed decides, not the order
    assert [queried[1] for queried, _ in chosen] == [row.query for row in rows]
    assert all(queried[1] != other[1] for queried, other in chosen)


def test_make_eval_set_refuses_bad_input(shared_audio: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"pairs must be between 1 and \d+.*got 0"):
        make_eval_set(tmp_path / "set", pairs=0, shared=shared_audio)
    with pytest.raises(InputError, match=r"recordings manifest '.*manifest\.csv' does not exist"):
        make_eval_set(tmp_path / "set", shared=tmp_path)
