"""The web app's parts that need no browser: input checks, pictures, the model cache, progress, the extra's check."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from dgmo_pl.app.inputs import MAX_QUERIES, check_recording, parse_queries, whole_number
from dgmo_pl.app.models import ModelSetting, SeparatorCache
from dgmo_pl.app.progress import ProgressReporter
from dgmo_pl.audio.io import write_audio
from dgmo_pl.entry import main
from dgmo_pl.errors import InputError


def test_queries_are_one_a_line_blank_lines_dropped() -> None:
    assert parse_queries("  dog barking \n\n man speaking\n") == ["dog barking", "man speaking"]


@pytest.mark.parametrize(("text", "message"), [
    (None, "no query"), (" \n ", "no query"), ("\n".join(["q"] * (MAX_QUERIES + 1)), f"at most {MAX_QUERIES}"),
])
def test_no_query_or_too_many_is_refused(text: str | None, message: str) -> None:
    with pytest.raises(InputError, match=message):
        parse_queries(text)


def test_a_recording_is_checked_and_its_length_limited(tmp_path: Path) -> None:
    two_seconds = write_audio(tmp_path / "a.wav", torch.randn(1, 32000) * 0.1, 16000)
    assert check_recording(two_seconds, max_seconds=2.0) == 2.0
    with pytest.raises(InputError, match=r"the recording is 2\.0 s long: this app takes at most 1\.5 s"):
        check_recording(two_seconds, max_seconds=1.5)
    (tmp_path / "notes.wav").write_text("not audio at all")
    with pytest.raises(InputError, match="could not be read as audio"):
        check_recording(tmp_path / "notes.wav", 60.0)
    with pytest.raises(InputError, match="no recording"):
        check_recording(None, 60.0)


@pytest.mark.parametrize("value", [None, 0, 2.5, float("nan"), float("inf")])
def test_a_setting_must_be_a_whole_number(value: float | None) -> None:
    with pytest.raises(InputError, match="rounds is .*: it must be a whole number of at least 1"):
        whole_number("rounds", value)


def test_a_whole_number_passes() -> None:
    assert whole_number("seed", 0.0, minimum=0) == 0 and whole_number("rounds", 3) == 3


def test_pictures_have_the_pages_size_and_the_mask_its_range() -> None:
    pytest.importorskip("PIL", reason='pillow comes with the app extra: pip install -e ".[app]"')
    from dgmo_pl.app.images import HEIGHT, magnitudes, mask_image, spectrogram_image

    mixture = magnitudes(torch.randn(2, 16000))
    assert mixture.shape == (513, 16000 // 256 + 1)
    assert spectrogram_image(mixture).size == (mixture.shape[1], HEIGHT)
    assert mask_image(torch.rand(3, 513, 200)).size == (600, HEIGHT)  # three windows side by side
    kept, removed = mask_image(torch.ones(1, 513, 300)), mask_image(torch.zeros(1, 513, 300))
    assert kept.getextrema() == ((252, 252), (253, 253), (191, 191))  # brightest colour everywhere
    assert removed.getextrema() == ((0, 0), (0, 0), (4, 4))  # darkest


def test_request_folders_keep_only_the_newest(tmp_path: Path) -> None:
    pytest.importorskip("PIL", reason='pillow comes with the app extra: pip install -e ".[app]"')
    from dgmo_pl.app.request import new_request_folder

    folders = [new_request_folder(tmp_path, keep=3) for _ in range(5)]
    assert sorted(tmp_path.iterdir()) == sorted(folders[-3:])


def test_one_separator_per_model_setting_the_oldest_evicted() -> None:
    loads: list[ModelSetting] = []
    cache = SeparatorCache(lambda s: loads.append(s) or object(), size=2)
    a, b, c = (ModelSetting(m, 4, 5) for m in "abc")
    first = cache.get(a)
    assert cache.get(a) is first and cache.get(b) is not first and loads == [a, b]
    cache.get(c)  # evicts a, the least recently used
    cache.get(b)
    cache.get(a)
    assert loads == [a, b, c, a]


def test_progress_names_the_round_and_the_fraction_of_the_fit() -> None:
    reports: list[tuple[float, str]] = []
    reporter = ProgressReporter(lambda f, d: reports.append((f, d)))
    trainer = SimpleNamespace(max_epochs=2, num_training_batches=4, current_epoch=0)
    reporter.on_fit_start(trainer, None)
    reporter.on_train_batch_end(trainer, None, None, None, 3)
    reporter.on_train_epoch_end(trainer, None)
    trainer.current_epoch = 1
    reporter.on_train_batch_end(trainer, None, None, None, 3)
    reporter.on_train_epoch_end(trainer, None)
    assert reports == [(0.0, "fit 1, round 1/2: generating references"), (0.5, "fit 1, round 1/2: fitting the mask"),
                       (0.5, "fit 1, round 2/2: generating references"), (1.0, "fit 1, round 2/2: fitting the mask")]


def test_the_app_without_gradio_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "gradio", None)  # as if not installed
    with pytest.raises(SystemExit) as exit_:
        main(["app", "--port", "0"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err == 'error: the web app needs gradio: pip install -e ".[app]" (in the checkout; see the README)\n'
