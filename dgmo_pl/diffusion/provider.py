"""Reference log-mels on demand: from the cache when stored, else generated (sharing work) and stored."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from dgmo_pl.audio.frontend import SpectrogramConfig
from dgmo_pl.diffusion.cache import TensorCache, key_digest, tensor_digest
from dgmo_pl.diffusion.references import GenerationConfig, ReferenceGenerator


class ReferenceProvider:
    """Gives the references of a round for several queries, doing each piece of work once.

    The query-independent half of a round (VAE samples and DDIM inversion of the estimate) is
    computed once per estimate and seed and shared by all queries; the queries that still need
    references are denoised together. Both halves are stored in ``cache`` under keys that name
    everything that determines them, so a repeated run, or one that changes only mask settings,
    finds them instead of running the diffusion model.

    Args:
        generator: The loaded reference generator.
        config: Generation settings.
        cache: Where references and inversions are stored (a disabled cache keeps them in memory only).
        identity: What identifies the inputs beyond the mixture window and the estimate: model
            id and revision, front end; part of every key.
        max_inversions: Inversions kept in memory for reuse by later queries (the oldest are
            dropped: memory must not grow with the recording's length; the cache keeps them all).
    """

    def __init__(
        self,
        generator: ReferenceGenerator,
        config: GenerationConfig,
        cache: TensorCache,
        identity: dict[str, Any],
        max_inversions: int = 16,
    ) -> None:
        self.generator, self.config, self.cache = generator, config, cache
        self.identity = {**identity, "generation": asdict(config), "numerics": generator.numerics}
        self.max_inversions = max_inversions
        self._inversions: OrderedDict[str, torch.Tensor] = OrderedDict()

    @staticmethod
    def identity_of(model: str, revision: str, spec: SpectrogramConfig, backbone: str) -> dict[str, Any]:
        """The key fields shared by every entry of one model, backbone and front end."""
        return {"model": model, "revision": revision, "backbone": backbone, "front_end": asdict(spec)}

    def key(
        self, kind: str, mixture: str, estimate_digest: str, round_index: int, seed: int, query: str | None = None
    ) -> dict:
        """The cache key of an inversion (``query=None``) or of one query's references."""
        key = {
            **self.identity, "kind": kind, "mixture": mixture, "estimate": estimate_digest,
            "round": round_index, "seed": seed,
        }  # fmt: skip
        return key if query is None else {**key, "query": query}

    def references(
        self, estimate: torch.Tensor, queries: list[str], round_index: int, seed: int, mixture: str, label: str = ""
    ) -> list[torch.Tensor]:
        """Reference log-mels of each query from one estimate, ``[K, 1, T, M]`` each, on the CPU.

        Args:
            estimate: Log-mel of the current estimate in diffusion layout, ``[1, 1, T, M]``.
            queries: Texts naming the sounds.
            round_index: The round (part of the key).
            seed: Seeds the VAE posterior samples.
            mixture: Digest of the mixture window the estimate comes from (part of the key).
            label: Progress bar prefix.
        """
        digest = tensor_digest(estimate)
        keys = self._reference_keys(digest, queries, round_index, seed, mixture)
        found = [self.cache.load(k) for k in keys]
        missing = [i for i, entry in enumerate(found) if entry is None]
        if missing:
            inverted = self._inversion(estimate, mixture, digest, round_index, seed, label)
            refs = self.generator.generate(
                estimate, [queries[i] for i in missing], self.config, inverted=inverted, label=label
            ).cpu()
            for i, ref in zip(missing, refs, strict=True):
                found[i] = {"references": ref}
                self.cache.store(keys[i], found[i])
        return [entry["references"] for entry in found]

    def paths(
        self, estimate: torch.Tensor, queries: list[str], round_index: int, seed: int, mixture: str
    ) -> list[Path | None]:
        """Where :meth:`references` stores each query's entry (None without a cache folder)."""
        keys = self._reference_keys(tensor_digest(estimate), queries, round_index, seed, mixture)
        return [self.cache.path(key) for key in keys]

    def _reference_keys(
        self, digest: str, queries: list[str], round_index: int, seed: int, mixture: str
    ) -> list[dict[str, Any]]:
        return [self.key("references", mixture, digest, round_index, seed, q) for q in queries]

    def _inversion(
        self, estimate: torch.Tensor, mixture: str, digest: str, round_index: int, seed: int, label: str
    ) -> torch.Tensor:
        """Inverted latents of the estimate, from memory, the cache, or computed: ``[K, C, h, w]``."""
        key = self.key("inversion", mixture, digest, round_index, seed)
        name = key_digest(key)
        if name not in self._inversions:
            entry = self.cache.load(key)
            if entry is None:
                generator = torch.Generator().manual_seed(seed)
                entry = {"latents": self.generator.invert_estimate(estimate, self.config, generator, label).cpu()}
                self.cache.store(key, entry)
            self._inversions[name] = entry["latents"]
            while len(self._inversions) > self.max_inversions:
                self._inversions.popitem(last=False)
        self._inversions.move_to_end(name)
        return self._inversions[name].to(self.generator.device)
