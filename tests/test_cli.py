"""The command line end to end, in-process, on the tiny model."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import soundfile as sf
import torch
import yaml
from helpers import REPO, fit, images, main, run_dirs, scalars, tiny_args

ROUNDS, STEPS = 3, 7


@pytest.fixture(scope="module")
def tiny_run(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One run with the paper's defaults except fewer DDIM and Adam steps."""
    root = tmp_path_factory.mktemp("logs")
    run = fit(root, *tiny_args(tiny_model, ddim_steps=6, steps_per_round=STEPS), "--monitor.every_n_steps", "3")
    return run / "dog-barking"


@pytest.mark.integration
def test_fit_writes_a_16khz_10s_finite_separation(tiny_run: Path) -> None:
    """The separated file is 16-bit, 16 kHz, mono, 10.24 s, finite and not silent."""
    out = tiny_run / "dog-barking.wav"
    info = sf.info(str(out))
    assert (info.samplerate, info.channels, info.frames, info.subtype) == (16000, 1, 163840, "PCM_16")
    audio = torch.from_numpy(sf.read(str(out), dtype="float32")[0])
    assert torch.isfinite(audio).all() and audio.abs().amax() > 0


@pytest.mark.integration
def test_references_are_vocoded(tiny_run: Path) -> None:
    """The last round's K=4 references are written as audio when the model has a vocoder."""
    refs = sorted((tiny_run / "references").glob("*.wav"))
    assert [p.name for p in refs] == [f"dog-barking_{k}.wav" for k in range(4)]
    assert all(sf.info(str(p)).samplerate == 16000 for p in refs)
    assert all(abs(sf.read(str(p))[0]).max() > 0.01 for p in refs), "vocoded references are silent"


@pytest.mark.integration
def test_tensorboard_has_one_loss_point_per_step_for_all_rounds(tiny_run: Path) -> None:
    """loss/train is logged at every step of every round, the mask statistics at the set interval."""
    loss = scalars(tiny_run, "loss/train")
    assert [step for step, _ in loss] == list(range(ROUNDS * STEPS))
    assert all(torch.isfinite(torch.tensor(v)) for _, v in loss)
    # Mask statistics every 3rd step of each round: steps 0, 3, 6 of rounds 0, 1, 2.
    expected = [r * STEPS + i for r in range(ROUNDS) for i in (0, 3, 6)]
    assert [step for step, _ in scalars(tiny_run, "mask/mean")] == expected
    above = [v for _, v in scalars(tiny_run, "mask/above_half")]
    assert all(0.0 <= v <= 1.0 for v in above)


@pytest.mark.integration
def test_round_end_views_are_logged(tiny_run: Path) -> None:
    """Mask change and the mask/log-mel images are logged once per round."""
    assert len(scalars(tiny_run, "mask/change_since_last_round")) == ROUNDS
    for tag in ("round/mask", "round/mixture", "round/estimate", "round/mean_reference"):
        assert images(tiny_run, tag) == list(range(ROUNDS)), tag


@pytest.mark.integration
def test_checkpoint_holds_the_mask_only(tiny_run: Path) -> None:
    """The checkpoint's weights and optimiser state are the mask's, nothing of the diffusion model; the data
    module's state is the last round's references (what a fit resumed mid-round serves again)."""
    (ckpt,) = (tiny_run / "checkpoints").glob("*.ckpt")
    state = torch.load(ckpt, map_location="cpu", weights_only=False)
    assert list(state["state_dict"]) == ["mask_logits"]
    assert state["state_dict"]["mask_logits"].shape == (1, 1, 513, 1024)  # one mask, one window
    (opt,) = state["optimizer_states"]
    assert len(opt["param_groups"][0]["params"]) == 1 and len(opt["state"]) == 1
    (data,) = [v for k, v in state.items() if k.endswith("FitDataModule")]
    assert int(data["round"]) == 2 and data["references"].shape == (1, 1, 4, 1, 1024, 64)  # [Q, W, K, 1, T, M]
    # Mask + two Adam moments in fp32 is 6.3 MB, the references 1 MB; anything of the UNet or VAE would add more.
    assert ckpt.stat().st_size < 7_600_000


@pytest.mark.integration
def test_resolved_config_is_saved(tiny_run: Path) -> None:
    """The run folder holds the resolved configuration with the paper's settings."""
    config = yaml.safe_load((tiny_run / "config.yaml").read_text())
    assert config["data"]["query"] == "dog barking"
    assert config["data"]["num_references"] == 4
    assert config["model"]["lr"] == 0.01


@pytest.mark.integration
def test_each_run_gets_a_new_folder_and_keeps_the_old(tiny_model: Path, tmp_path: Path) -> None:
    """A second run writes a new run folder and leaves the first one's files untouched."""
    first = fit(tmp_path, *tiny_args(tiny_model, steps_per_round=2), "--trainer.max_epochs", "1")
    digest = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in first.rglob("*") if p.is_file()}
    second = fit(tmp_path, *tiny_args(tiny_model, steps_per_round=2), "--trainer.max_epochs", "1")
    assert second != first and run_dirs(tmp_path) == [first, second]
    assert {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in digest} == digest


@pytest.mark.integration
def test_run_prints_every_file_it_wrote(tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """The run ends by printing the path of each file in its folder."""
    run = fit(tmp_path, *tiny_args(tiny_model, steps_per_round=2), "--trainer.max_epochs", "1")
    out = capsys.readouterr().out
    files = [p for p in run.rglob("*") if p.is_file()]
    assert len(files) >= 5
    assert all(f"wrote {p}" in out for p in files)


@pytest.mark.integration
def test_print_config_shows_paper_defaults_and_overrides(capsys: pytest.CaptureFixture) -> None:
    """--print_config resolves the paper's defaults and command-line overrides."""
    with pytest.raises(SystemExit) as exit_:
        main(["fit", "--config", str(REPO / "configs/dgmo.yaml"), "--model.lr", "0.02",
              "--data.query", "cat meowing", "--print_config"])
    assert exit_.value.code in (0, None)
    config = yaml.safe_load(capsys.readouterr().out)
    assert config["model"] == {"lr": 0.02, "mask_init": 3.0, "threshold": 0.9, "joint": False, "residual": False}
    data = config["data"]
    assert (data["query"], data["model"], data["num_references"], data["ddim_steps"]) == (
        "cat meowing", "cvssp/audioldm", 4, 100)
    assert (data["noise_level"], data["guidance_scale"], data["steps_per_round"]) == (1.0, 5.0, 300)
    assert config["trainer"]["max_epochs"] == 3
    assert data["mixture"].endswith("demo_speech_and_dogs.wav") and Path(data["mixture"]).is_file()


@pytest.mark.integration
def test_output_is_the_mixture_under_the_final_thresholded_mask(tiny_model: Path, tmp_path: Path) -> None:
    """The file is iSTFT(mixture magnitude x thresholded final mask, mixture phase), de-normalised."""
    from dgmo_pl.audio.frontend import SpectrogramConfig, resynthesise
    from dgmo_pl.data import DEMO_MIXTURE, load_mixture

    # A large learning rate moves part of the mask below the threshold within a few steps.
    run = fit(tmp_path, *tiny_args(tiny_model, ddim_steps=3, steps_per_round=4), "--model.lr", "0.5",
              "--trainer.max_epochs", "2")
    (ckpt,) = (run / "dog-barking" / "checkpoints").glob("*.ckpt")
    logits = torch.load(ckpt, map_location="cpu", weights_only=False)["state_dict"]["mask_logits"]
    mask = torch.sigmoid(logits)
    mask = torch.where(mask >= 0.9, torch.ones_like(mask), mask)
    assert ((mask > 0.5) & (mask < 0.9)).any(), "the mask should have moved below the threshold"
    spec = SpectrogramConfig()
    mixture = load_mixture(DEMO_MIXTURE, spec)
    expected = resynthesise(mixture.magnitude * mask, mixture.phase, mixture.stats, spec)[0]
    written = torch.from_numpy(sf.read(str(run / "dog-barking" / "dog-barking.wav"), dtype="float32")[0])
    assert (written - expected).abs().max() < 1.5 / 32768  # 16-bit quantisation


def test_file_names_are_safe_everywhere() -> None:
    """Queries become portable file names; Windows device names get a suffix."""
    from dgmo_pl.naming import slugify

    assert slugify("Dog barking, loudly!") == "dog-barking-loudly"
    assert slugify("con") == "con-sound" and slugify("COM1") == "com1-sound"
    assert slugify("???") == "separated"
