"""Separation metrics as the language-queried separation (LASS) papers report them, and CLAPScore.

* :func:`sdr`: the papers' "SDR", a plain signal-to-noise ratio (no scale invariance, no
  distortion filter), with AudioSep's epsilon handling.
* :func:`si_sdr`: scale-invariant SDR, torchmetrics' definition.
* :func:`separation_metrics`: both, and their improvements over the unprocessed mixture.
* :class:`ClapScorer`: CLAPScore, the reference-free cosine between the CLAP embeddings of the
  separated audio and of the query text (arXiv 2407.04936).

Callers pass signals of equal shape, at the rate and length they want scored (DGMO scores
16 kHz, 10.24 s clips; AudioSep full clips at 32 kHz).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch
import torch.nn.functional as F
import torchaudio.functional as AF
from torchmetrics.functional.audio import scale_invariant_signal_distortion_ratio

__all__ = ["SDR_EPS", "ClapScorer", "sdr", "separation_metrics", "si_sdr"]

#: Floor of both mean powers in :func:`sdr` (AudioSep's ``calculate_sdr`` clips each at 1e-10),
#: so a silent reference or a perfect estimate gives a finite value (at most +-100 dB).
SDR_EPS = 1e-10


def _check_pair(reference: torch.Tensor, estimate: torch.Tensor) -> None:
    """Raise a ValueError unless both are ``[N]`` or ``[C, N]`` tensors of one non-empty shape."""
    if reference.shape != estimate.shape:
        raise ValueError(
            f"reference has shape {list(reference.shape)} but estimate has shape {list(estimate.shape)}: "
            "pass signals of the same shape (same channels and samples)"
        )
    if reference.dim() not in (1, 2) or reference.numel() == 0:
        raise ValueError(f"signals must be non-empty [N] or [C, N] tensors, got shape {list(reference.shape)}")


def sdr(reference: torch.Tensor, estimate: torch.Tensor) -> float:
    """The LASS papers' SDR: ``10 log10(mean(s^2) / mean((s - s_hat)^2))`` in dB.

    A plain signal-to-noise ratio over all channels and samples together (torchmetrics'
    ``signal_noise_ratio``, not BSS Eval's ``signal_distortion_ratio``): a wrong gain counts as
    error. Each mean power is floored at :data:`SDR_EPS` (1e-10) as AudioSep's evaluation code
    does, so a perfect estimate scores 10 log10(mean(s^2) / 1e-10) instead of infinity.
    Computed in float64.

    Args:
        reference: True source, ``[N]`` or ``[C, N]``.
        estimate: Separated signal, the same shape.

    Returns:
        The SDR in dB.

    Raises:
        ValueError: The shapes differ, or are not ``[N]``/``[C, N]`` with samples.
    """
    _check_pair(reference, estimate)
    s, s_hat = reference.detach().double(), estimate.detach().double()
    signal = s.pow(2).mean().clamp_min(SDR_EPS)
    noise = (s - s_hat).pow(2).mean().clamp_min(SDR_EPS)
    return 10.0 * math.log10(float(signal / noise))


def si_sdr(reference: torch.Tensor, estimate: torch.Tensor, zero_mean: bool = False) -> float:
    """Scale-invariant SDR in dB, torchmetrics' ``scale_invariant_signal_distortion_ratio``.

    The reference is scaled by the least-squares gain onto the estimate, so rescaling the
    estimate leaves the value unchanged. Channels of a ``[C, N]`` signal are scored one by one
    and averaged. Computed in float64 (torchmetrics' epsilon is then float64's).

    Args:
        reference: True source, ``[N]`` or ``[C, N]``.
        estimate: Separated signal, the same shape.
        zero_mean: Remove each channel's mean first. False by default, as torchmetrics' default
            and AudioSep's ``calculate_sisdr``; True gives the original SI-SDR paper's form.

    Returns:
        The SI-SDR in dB (mean over channels).

    Raises:
        ValueError: The shapes differ, or are not ``[N]``/``[C, N]`` with samples.
    """
    _check_pair(reference, estimate)
    values = scale_invariant_signal_distortion_ratio(
        estimate.detach().double(), reference.detach().double(), zero_mean=zero_mean
    )
    return float(values.mean())


def separation_metrics(mixture: torch.Tensor, source: torch.Tensor, estimate: torch.Tensor) -> dict[str, float]:
    """SDR and SI-SDR of an estimate, and their improvements over the unprocessed mixture.

    Args:
        mixture: The mixture that was separated, ``[N]`` or ``[C, N]``.
        source: The true queried source, the same shape.
        estimate: The separated signal, the same shape.

    Returns:
        ``sdr`` (:func:`sdr` of source and estimate), ``sdri`` (that minus the mixture's SDR),
        ``si_sdr`` and ``si_sdri`` likewise, all in dB.

    Raises:
        ValueError: The three shapes are not one ``[N]`` or ``[C, N]`` shape.
    """
    if mixture.shape != source.shape:
        raise ValueError(
            f"mixture has shape {list(mixture.shape)} but source has shape {list(source.shape)}: "
            "pass signals of the same shape (same channels and samples)"
        )
    value, baseline = sdr(source, estimate), sdr(source, mixture)
    si_value, si_baseline = si_sdr(source, estimate), si_sdr(source, mixture)
    return {"sdr": value, "sdri": value - baseline, "si_sdr": si_value, "si_sdri": si_value - si_baseline}


# --- CLAPScore ----------------------------------------------------------------------------------

#: The CLAP model CLAPScore is usually computed with.
DEFAULT_CLAP = "laion/clap-htsat-unfused"


def _looks_like_path(name: str) -> bool:
    """Whether ``name`` can only be a local folder, not a hub id (``owner/name`` or ``name``)."""
    return (
        name.startswith((".", "~", "/", "\\"))
        or os.path.isabs(name)
        or name.count("/") > 1
        or "\\" in name
    )


class ClapScorer:
    """CLAPScore: cosine similarity between the CLAP embeddings of audio and of a text.

    Built on transformers' ``ClapModel`` and ``ClapProcessor``; load one with :meth:`load`::

        scorer = ClapScorer.load("laion/clap-htsat-unfused")
        if scorer is None:
            print("no CLAPScore:", ClapScorer.last_error)
        else:
            score = scorer.score(estimate, 16000, "dog barking")

    Attributes:
        last_error: Why the latest :meth:`load` returned ``None`` (one line), else ``None``.
        model: The CLAP model, in eval mode.
        processor: Its processor (feature extractor and tokenizer).
        device: Where the model runs.
    """

    last_error: str | None = None

    def __init__(self, model: torch.nn.Module, processor: object, device: str | torch.device = "cpu") -> None:
        """Wrap a loaded model and processor (see :meth:`load`)."""
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.processor = processor

    @classmethod
    def load(
        cls, name_or_folder: str | os.PathLike = DEFAULT_CLAP, device: str | torch.device = "cpu"
    ) -> ClapScorer | None:
        """Load a CLAP model and processor from a local folder or the Hugging Face hub.

        Never raises for a model that cannot be had (missing folder, no network, offline hub,
        incomplete files): returns ``None`` and sets :attr:`last_error` to a one-line reason
        naming ``name_or_folder``; a successful load sets it to ``None``.

        Args:
            name_or_folder: Hub id (``laion/clap-htsat-unfused``) or folder written by
                ``save_pretrained`` (model and processor).
            device: Where the model runs.

        Returns:
            The scorer, or ``None``.
        """
        from transformers import ClapModel, ClapProcessor

        name = str(name_or_folder)
        local = Path(name).expanduser()
        if not local.exists() and _looks_like_path(name):
            cls.last_error = f"CLAP model folder '{local}' does not exist"
            return None
        source = str(local) if local.exists() else name
        try:
            model = ClapModel.from_pretrained(source)
            processor = ClapProcessor.from_pretrained(source)
        except (OSError, ValueError, KeyError, TypeError, RuntimeError, ImportError) as err:
            where = "" if local.exists() else " (no such folder here, and the hub could not provide it)"
            reason = " ".join(str(err).split())[:300]
            kind = "folder" if local.exists() else "model"
            cls.last_error = f"CLAP {kind} '{source}' could not be loaded{where}: {type(err).__name__}: {reason}"
            return None
        cls.last_error = None
        return cls(model, processor, device)

    @property
    def sample_rate(self) -> int:
        """Rate the model hears, in Hz (the feature extractor's: 48 kHz for LAION's CLAP)."""
        return int(self.processor.feature_extractor.sampling_rate)

    @property
    def window_samples(self) -> int:
        """Samples (at :attr:`sample_rate`) the model hears at once (10 s for LAION's CLAP)."""
        extractor = self.processor.feature_extractor
        return int(getattr(extractor, "nb_max_samples", round(extractor.max_length_s * extractor.sampling_rate)))

    @torch.no_grad()
    def audio_embedding(self, audio: torch.Tensor, sample_rate: int) -> torch.Tensor:
        """Unit-norm CLAP embedding of mono audio: ``[N] -> [D]``.

        The audio is resampled to :attr:`sample_rate`. Audio longer than the model's window is
        cut into consecutive windows (the last one ending at the audio's end) whose embeddings
        are averaged, so the result is deterministic (the feature extractor would otherwise
        crop at random); shorter audio is repeat-padded by the feature extractor.

        Raises:
            ValueError: ``audio`` is not a non-empty ``[N]`` tensor of finite samples, or
                ``sample_rate`` is not positive.
        """
        if audio.dim() != 1 or audio.numel() == 0:
            raise ValueError(
                f"audio must be mono samples [N], got shape {list(audio.shape)}: mix it down to one channel"
            )
        if sample_rate <= 0:
            raise ValueError(f"sample_rate must be a positive number of Hz, got {sample_rate}")
        if not bool(torch.isfinite(audio).all()):
            raise ValueError("audio contains NaN or infinite samples")
        wave = audio.detach().float().cpu()
        if sample_rate != self.sample_rate:
            wave = AF.resample(wave, sample_rate, self.sample_rate)
        size = self.window_samples
        starts = list(range(0, max(wave.shape[0] - size, 0) + 1, size))
        if starts[-1] + size < wave.shape[0]:
            starts.append(wave.shape[0] - size)
        windows = [wave[start:start + size].numpy() for start in starts]
        inputs = self.processor.feature_extractor(windows, sampling_rate=self.sample_rate, return_tensors="pt")
        features = inputs["input_features"].to(self.device, self.model.dtype)
        is_longer = inputs.get("is_longer")
        outputs = self.model.audio_model(
            input_features=features, is_longer=None if is_longer is None else is_longer.to(self.device)
        )
        embeddings = F.normalize(self.model.audio_projection(outputs.pooler_output), dim=-1)
        return F.normalize(embeddings.mean(0), dim=-1).float().cpu()

    @torch.no_grad()
    def text_embedding(self, text: str) -> torch.Tensor:
        """Unit-norm CLAP embedding of a text: ``-> [D]``.

        Raises:
            ValueError: ``text`` is empty.
        """
        if not text.strip():
            raise ValueError("text is empty: pass the query that was separated")
        tokens = self.processor.tokenizer([text], padding=True, truncation=True, return_tensors="pt")
        outputs = self.model.text_model(
            input_ids=tokens["input_ids"].to(self.device), attention_mask=tokens["attention_mask"].to(self.device)
        )
        return F.normalize(self.model.text_projection(outputs.pooler_output), dim=-1)[0].float().cpu()

    def score(self, audio: torch.Tensor, sample_rate: int, text: str) -> float:
        """CLAPScore of ``audio`` for ``text``: the cosine of their CLAP embeddings, in [-1, 1].

        Args:
            audio: Mono samples ``[N]`` (e.g. the separated source).
            sample_rate: Rate of ``audio`` in Hz; it is resampled to the model's with torchaudio.
            text: The query.

        Raises:
            ValueError: See :meth:`audio_embedding` and :meth:`text_embedding`.
        """
        cosine = torch.dot(self.audio_embedding(audio, sample_rate), self.text_embedding(text))
        return float(cosine.clamp(-1.0, 1.0))
