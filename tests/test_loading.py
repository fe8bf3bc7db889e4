"""Loading the diffusion model: local folders, offline hub ids, and the silent-tokenizer trap."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from transformers import RobertaTokenizerFast

from dgmo_pl.diffusion.backbones import load_backbone
from dgmo_pl.diffusion.loading import ModelLoadError
from dgmo_pl.testing.tiny import save_tiny_audioldm


def test_tiny_model_loads_frozen_with_every_component(tiny_model: Path) -> None:
    """from_pretrained on the folder gives frozen networks, a real tokenizer and the DDIM scheduler."""
    parts = load_backbone(str(tiny_model))
    assert parts.unet.config.in_channels == 8 and parts.vae.config.latent_channels == 8
    assert len(parts.vae.config.block_out_channels) == 3  # VAE scale factor 2 ** (3 - 1) = 4
    assert len(parts.tokenizer) == 261
    assert type(parts.scheduler).__name__ == "DDIMScheduler"
    assert parts.vocoder is not None and not parts.vocoder.training


def test_nearly_empty_tokenizer_is_an_error(tmp_path: Path) -> None:
    """A tokenizer with a handful of tokens (what a failed offline load returns) is refused."""
    folder = save_tiny_audioldm(tmp_path / "model")
    shutil.rmtree(folder / "tokenizer")
    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3, "<mask>": 4}
    RobertaTokenizerFast(vocab=vocab, merges=[]).save_pretrained(folder / "tokenizer")
    with pytest.raises(ModelLoadError, match="has only 5 tokens") as err:
        load_backbone(str(folder))
    assert str(folder) in str(err.value) and "--data.model" in str(err.value)


def test_missing_component_names_it(tmp_path: Path) -> None:
    """A folder without its UNet says which component is missing and where it looked."""
    folder = save_tiny_audioldm(tmp_path / "model")
    shutil.rmtree(folder / "unet")
    with pytest.raises(ModelLoadError, match="could not load the 'unet'") as err:
        load_backbone(str(folder))
    assert f"local folder '{folder.resolve()}'" in str(err.value)


def test_folder_without_vocoder_still_loads(tmp_path: Path) -> None:
    """The vocoder is optional: without it references are not vocoded, but generation works."""
    folder = save_tiny_audioldm(tmp_path / "model")
    shutil.rmtree(folder / "vocoder")
    assert load_backbone(str(folder)).vocoder is None


def test_hub_id_offline_says_how_to_use_a_local_copy() -> None:
    """An unreachable hub id names the id, the cache searched and the local-folder flag."""
    with pytest.raises(ModelLoadError) as err:
        load_backbone("cvssp/audioldm-s-full-v2")
    message = str(err.value)
    assert "'cvssp/audioldm-s-full-v2'" in message and "HF_HUB_OFFLINE" in message
    assert "cache:" in message and "--data.model DIR" in message


def test_mistyped_folder_is_called_a_bad_path(tmp_path: Path) -> None:
    """A path that exists neither as a folder nor as a hub id is reported as such."""
    missing = str(tmp_path / "no" / "such-model")
    with pytest.raises(ModelLoadError, match="neither an existing folder nor a hub id") as err:
        load_backbone(missing)
    assert f"'{missing}'" in str(err.value)


def test_tiny_command_writes_a_loadable_diffusers_folder(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """`python -m dgmo_pl.tiny OUT_DIR` writes every component and says it is not a separation model."""
    from dgmo_pl.testing.tiny import main

    main([str(tmp_path / "tiny")])
    assert "not a separation model" in capsys.readouterr().out
    names = {p.name for p in (tmp_path / "tiny").iterdir()}
    assert names == {"model_index.json", "tokenizer", "text_encoder", "unet", "vae", "vocoder", "scheduler"}
    assert load_backbone(str(tmp_path / "tiny")).unet.config.out_channels == 8
