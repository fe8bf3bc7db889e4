"""The full-size random AudioLDM-S of ``dgmo_pl.testing.tiny`` has the real architecture (ALGORITHM.md section 5).

Built on the ``meta`` device: shapes and parameter counts without allocating or initialising
weights, so the test takes seconds and no disk.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from diffusers import UNet2DConditionModel
from diffusers.models.attention_processor import Attention

from dgmo_pl.testing.tiny import (
    FULL_ATTENTION_HEADS,
    full_components,
    full_unet_config,
    parameter_counts,
    save_audioldm,
)

#: AudioLDM-S's UNet as ALGORITHM.md section 5 gives it.
UNET_PARAMETERS = 185e6
#: Latent of one 10.24 s segment: 8 channels, 1024 frames / 4, 64 mels / 4.
LATENT_SHAPE = (1, 8, 256, 16)


@pytest.fixture(scope="module")
def meta_unet() -> UNet2DConditionModel:
    """The full-size UNet with its parameters on the meta device."""
    with torch.device("meta"):
        return UNet2DConditionModel(**full_unet_config()).eval()


def test_full_unet_has_about_185m_parameters(meta_unet: UNet2DConditionModel) -> None:
    """The UNet's parameter count is the published 185 M, within 5 %."""
    count = sum(p.numel() for p in meta_unet.parameters())
    assert count == pytest.approx(UNET_PARAMETERS, rel=0.05)


@pytest.mark.parametrize(("base_width", "published"), [(192, 416e6), (256, 739e6)])
def test_medium_and_large_unets_have_their_published_sizes(base_width: int, published: float) -> None:
    """AudioLDM-M and -L (``--size full-m`` / ``full-l``): the S architecture at base width 192 and 256."""
    with torch.device("meta"):
        unet = UNet2DConditionModel(**full_unet_config(base_width))
    assert sum(p.numel() for p in unet.parameters()) == pytest.approx(published, rel=0.02)


def test_full_unet_maps_a_latent_to_a_latent(meta_unet: UNet2DConditionModel) -> None:
    """A latent [1, 8, 256, 16] with a 512-d CLAP embedding as class label gives a latent of its shape."""
    sample = torch.empty(LATENT_SHAPE, device="meta")
    labels = torch.empty(1, 512, device="meta")
    with torch.no_grad():
        out = meta_unet(sample, torch.tensor(500, device="meta"), encoder_hidden_states=None, class_labels=labels)
    assert tuple(out.sample.shape) == LATENT_SHAPE


def test_full_unet_attends_over_the_latent_with_8_heads(meta_unet: UNet2DConditionModel) -> None:
    """Down: one plain block then three with attention (up mirrored); 8 heads in every attention.

    As the hub's diffusers configs have it (``attention_head_dim`` 8, read as heads: 32, 48 and 80
    channels a head at widths 256, 384, 640), not the original code's 32 channels in every head.
    """
    config = meta_unet.config
    assert list(config.block_out_channels) == [128, 256, 384, 640]
    assert list(config.down_block_types) == ["DownBlock2D"] + ["CrossAttnDownBlock2D"] * 3
    assert list(config.up_block_types) == ["CrossAttnUpBlock2D"] * 3 + ["UpBlock2D"]
    attentions = [m for m in meta_unet.modules() if isinstance(m, Attention)]
    assert attentions
    assert {m.heads for m in attentions} == {FULL_ATTENTION_HEADS} == {8}
    assert {m.inner_dim // m.heads for m in attentions} == {32, 48, 80}
    # Cross-attention over the latent itself: its key width is the block width, not a text width.
    assert all(m.to_k.in_features == m.inner_dim for m in attentions)


def test_full_components_have_the_published_sizes() -> None:
    """Text tower RoBERTa-base sized (with RoBERTa's vocabulary), VAE and HiFi-GAN of AudioLDM-S."""
    with torch.device("meta"):
        parts = full_components()
    counts = parameter_counts(parts)
    assert counts["unet"] == pytest.approx(UNET_PARAMETERS, rel=0.05)
    assert counts["text_encoder"] == pytest.approx(125e6, rel=0.05)
    text = parts["text_encoder"].config
    assert (text.hidden_size, text.num_hidden_layers, text.projection_dim) == (768, 12, 512)
    vae = parts["vae"].config
    # cvssp/audioldm's vae/config.json gives the learnt scale to full precision.
    assert (vae.latent_channels, list(vae.block_out_channels)) == (8, [128, 256, 512])
    assert vae.scaling_factor == 0.9227914214134216
    vocoder = parts["vocoder"].config
    assert (vocoder.model_in_dim, vocoder.upsample_initial_channel, vocoder.sampling_rate) == (64, 1024, 16000)
    assert parts["scheduler"].config.num_train_timesteps == 1000


def test_unknown_size_is_refused(tmp_path: Path) -> None:
    """``save_audioldm`` names the sizes it knows."""
    with pytest.raises(ValueError, match="tiny, full, full-m, full-l, got 'medium'"):
        save_audioldm(tmp_path, size="medium")
