"""The reference provider and the generator's batching, one level below a fit (fast tier).

``ReferenceProvider`` is given a counting fake generator: it records every inversion and every
denoising it is asked for and returns tensors determined by its inputs, so these tests see
exactly which work a request causes and which stored entry answered it, in milliseconds. The
same properties through whole fits, with the tiny model's UNet calls counted, are in
tests/test_queries_and_cache.py (integration tier).
"""

from __future__ import annotations

import inspect
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import torch

from dgmo_pl.audio.frontend import SpectrogramConfig
from dgmo_pl.diffusion.cache import TensorCache, tensor_digest
from dgmo_pl.diffusion.provider import ReferenceProvider
from dgmo_pl.diffusion.references import GenerationConfig, ReferenceGenerator

#: References per query, log-mel frames and mel bins: tiny, only the bookkeeping is tested.
K, H, W = 3, 16, 8
SEED = 5
MIXTURE = "mixture-digest"
QUERIES = ["dog barking", "cat meowing"]


def _estimate(offset: float = 0.0) -> torch.Tensor:
    return torch.linspace(-8.0, 0.0, H * W).reshape(1, 1, H, W) + offset


def _code(query: str) -> float:
    """A number that names a query in the fake's references."""
    return float(zlib.crc32(query.encode()) % 1000)


class CountingGenerator:
    """Stands in for :class:`ReferenceGenerator`: the methods the provider calls, counted.

    Its inversion is a seeded draw shifted by the estimate's mean (so it depends on the seed and
    the estimate); a query's references are the inversion's per-sample mean plus a number naming
    the query (so a reference shows which inversion and which query it came from).
    """

    device = torch.device("cpu")

    def __init__(self, numerics: dict[str, object] | None = None) -> None:
        self.numerics = numerics or {"precision": "32-true", "attention": "sdpa", "compile": False}
        self.inversions: list[tuple[str, int]] = []  # (estimate digest, seed) of each inversion
        self.denoised: list[list[str]] = []  # the queries of each denoising call
        self.given: list[torch.Tensor] = []  # the inverted latents each denoising call was handed

    def invert_estimate(
        self, log_mel: torch.Tensor, config: GenerationConfig, generator: torch.Generator, label: str = ""
    ) -> torch.Tensor:
        self.inversions.append((tensor_digest(log_mel), generator.initial_seed()))
        return torch.randn(config.num_references, 2, 4, 2, generator=generator) + log_mel.mean()

    def generate(
        self,
        log_mel: torch.Tensor,
        queries: list[str],
        config: GenerationConfig,
        generator: torch.Generator | None = None,
        inverted: torch.Tensor | None = None,
        label: str = "",
    ) -> torch.Tensor:
        assert inverted is not None, "the provider always hands over the inversion"
        self.denoised.append(list(queries))
        self.given.append(inverted)
        return torch.stack([_references(inverted, q, log_mel.shape) for q in queries])


def _references(inverted: torch.Tensor, query: str, shape: torch.Size) -> torch.Tensor:
    per_sample = inverted.mean(dim=(1, 2, 3)).view(-1, 1, 1, 1)
    return (per_sample + _code(query)).expand(-1, 1, *shape[2:]).clone()


def _expected_inversion() -> torch.Tensor:
    """What the fake inverts from the default estimate under SEED, computed independently."""
    return torch.randn(K, 2, 4, 2, generator=torch.Generator().manual_seed(SEED)) + _estimate().mean()


def _expected(query: str) -> torch.Tensor:
    """The fake's references of ``query`` from the default estimate under SEED."""
    return _references(_expected_inversion(), query, _estimate().shape)


@dataclass
class Request:
    """Everything that goes into one provider call, with a provider built for it."""

    queries: list[str] = field(default_factory=lambda: list(QUERIES))
    estimate: torch.Tensor = field(default_factory=_estimate)
    round_index: int = 0
    seed: int = SEED
    mixture: str = MIXTURE
    config: GenerationConfig = GenerationConfig(num_references=K, ddim_steps=10)
    model: str = "tiny"
    revision: str = "sha256:0"
    backbone: str = "audioldm"
    spec: SpectrogramConfig = SpectrogramConfig()
    numerics: dict[str, object] | None = None

    def provider(self, cache: TensorCache, **kwargs: Any) -> tuple[ReferenceProvider, CountingGenerator]:
        fake = CountingGenerator(self.numerics)
        identity = ReferenceProvider.identity_of(self.model, self.revision, self.spec, self.backbone)
        return ReferenceProvider(fake, self.config, cache, identity, **kwargs), fake  # type: ignore[arg-type]

    def ask(self, provider: ReferenceProvider) -> list[torch.Tensor]:
        return provider.references(self.estimate, self.queries, self.round_index, self.seed, self.mixture)


def _entries(root: Path) -> set[str]:
    return {p.name for p in root.glob("*.safetensors")}


def test_queries_of_one_estimate_share_one_inversion_and_one_denoising(tmp_path: Path) -> None:
    """Round 0 of two queries: one inversion (seeded with the round's seed), one denoising call
    for both, handed that inversion; each query gets its own references, in order."""
    provider, fake = Request().provider(TensorCache(tmp_path))
    refs = Request().ask(provider)
    assert fake.inversions == [(tensor_digest(_estimate()), SEED)]
    assert fake.denoised == [QUERIES]
    assert torch.equal(fake.given[0], _expected_inversion())
    assert len(refs) == 2
    for query, ref in zip(QUERIES, refs):
        assert ref.shape == (K, 1, H, W) and ref.device.type == "cpu"
        assert torch.equal(ref, _expected(query))
    # Two reference entries and one inversion entry stored.
    assert len(_entries(tmp_path)) == 3


def test_a_later_query_of_the_same_estimate_reuses_the_inversion_from_memory() -> None:
    """Without a cache folder, the inversion is still kept in memory for later queries of the same
    estimate (e.g. evaluation rows on one mixture, which share the provider): only their denoising runs."""
    provider, fake = Request().provider(TensorCache(None))
    Request(queries=["dog barking"]).ask(provider)
    (later,) = Request(queries=["church bell"]).ask(provider)
    assert fake.inversions == [(tensor_digest(_estimate()), SEED)]
    assert fake.denoised == [["dog barking"], ["church bell"]]
    assert torch.equal(later, _expected("church bell"))
    # Nothing is stored without a folder: asking again denoises again (the inversion stays shared).
    Request(queries=["dog barking"]).ask(provider)
    assert len(fake.inversions) == 1 and len(fake.denoised) == 3


def test_a_second_provider_over_the_same_folder_finds_everything_bit_for_bit(tmp_path: Path) -> None:
    """A new process (new provider, new generator) over the same cache folder runs nothing and
    returns exactly the stored references, for round 0 and for a later round's own estimate."""
    rounds = [Request(), Request(queries=["dog barking"], round_index=1, seed=SEED + 1, estimate=_estimate(-1.0))]
    first, _ = Request().provider(TensorCache(tmp_path))
    before = [r.ask(first) for r in rounds]
    stored = _entries(tmp_path)

    cache = TensorCache(tmp_path)
    second, fake = Request().provider(cache)
    after = [r.ask(second) for r in rounds]
    assert fake.inversions == [] and fake.denoised == []
    assert (cache.hits, cache.misses, cache.rejected) == (3, 0, 0)  # three references, no inversion looked up
    assert _entries(tmp_path) == stored
    for old, new in zip(before, after):
        assert len(old) == len(new) and all(torch.equal(a, b) for a, b in zip(old, new))


# What a changed setting costs a new provider over a folder filled by Request() (two queries):
# whether the inversion is computed again, the cache's hits and misses (references are looked up
# first, the inversion only when a reference is missing) and the entries added.
EVERYTHING = {"inverts": True, "hits": 0, "misses": 3, "new_entries": 3}
CHANGES = {
    "nothing": ({}, {"inverts": False, "hits": 2, "misses": 0, "new_entries": 0}),
    "query": ({"queries": ["church bell"]}, {"inverts": False, "hits": 1, "misses": 1, "new_entries": 1}),
    "seed": ({"seed": SEED + 1}, EVERYTHING),
    "round": ({"round_index": 1}, EVERYTHING),
    "mixture": ({"mixture": "another-mixture"}, EVERYTHING),
    "estimate-by-one-ulp": ({"estimate": torch.nextafter(_estimate(), torch.tensor(1.0))}, EVERYTHING),
    "num_references": ({"config": GenerationConfig(num_references=K + 1, ddim_steps=10)}, EVERYTHING),
    "ddim_steps": ({"config": GenerationConfig(num_references=K, ddim_steps=20)}, EVERYTHING),
    "noise_level": ({"config": GenerationConfig(num_references=K, ddim_steps=10, noise_level=0.5)}, EVERYTHING),
    "model": ({"model": "another"}, EVERYTHING),
    "revision": ({"revision": "sha256:1"}, EVERYTHING),
    "backbone": ({"backbone": "audioldm2"}, EVERYTHING),
    "front-end": ({"spec": SpectrogramConfig(n_mels=32)}, EVERYTHING),
    "precision": ({"numerics": {"precision": "bf16-mixed", "attention": "sdpa", "compile": False}}, EVERYTHING),
}


@pytest.mark.parametrize(("change", "expected"), CHANGES.values(), ids=CHANGES.keys())
def test_each_setting_in_the_key_decides_hits_and_misses(tmp_path: Path, change: dict, expected: dict) -> None:
    """Only what determines an entry is in its key: a changed query reuses the inversion; any
    change to the estimate, its mixture, round, seed, generation, model or numerics misses both."""
    first, _ = Request().provider(TensorCache(tmp_path))
    Request().ask(first)
    stored = _entries(tmp_path)

    request = Request(**change)
    cache = TensorCache(tmp_path)
    provider, fake = request.provider(cache)
    refs = request.ask(provider)
    assert (cache.hits, cache.misses, cache.rejected) == (expected["hits"], expected["misses"], 0)
    assert len(fake.inversions) == int(expected["inverts"])
    # The queries asked for are denoised together unless their stored references were found.
    assert fake.denoised == ([] if change == {} else [request.queries])
    assert len(_entries(tmp_path) - stored) == expected["new_entries"] and stored <= _entries(tmp_path)
    if change == {} or "queries" in change:
        assert all(torch.equal(ref, _expected(q)) for q, ref in zip(request.queries, refs))


@pytest.mark.parametrize(
    "config",
    [GenerationConfig(K, 10, guidance_scale=2.0), GenerationConfig(K, 10, denoising_offset="scheduler")],
    ids=["guidance_scale", "denoising_offset"],
)
def test_denoising_settings_miss_the_stored_references(tmp_path: Path, config: GenerationConfig) -> None:
    """Settings of the guided denoising give other references: the stored ones are not served."""
    first, _ = Request().provider(TensorCache(tmp_path))
    Request().ask(first)
    cache = TensorCache(tmp_path)
    provider, fake = Request(config=config).provider(cache)
    Request(config=config).ask(provider)
    # Both references missed and were denoised again; the inversion (which these settings do not
    # change) may be found or computed again, and the counts say which.
    assert fake.denoised == [QUERIES]
    assert (cache.hits, cache.misses) == (1 - len(fake.inversions), 2 + len(fake.inversions))


def test_only_the_missing_queries_are_denoised_and_the_order_is_kept(tmp_path: Path) -> None:
    """With one query's references stored, a request for three denoises the other two together,
    finds the stored inversion, and returns all three in the order asked."""
    first, _ = Request().provider(TensorCache(tmp_path))
    Request(queries=["cat meowing"]).ask(first)
    queries = ["dog barking", "cat meowing", "rain"]
    cache = TensorCache(tmp_path)
    provider, fake = Request().provider(cache)
    refs = Request(queries=queries).ask(provider)
    assert fake.inversions == [] and fake.denoised == [["dog barking", "rain"]]
    assert (cache.hits, cache.misses) == (2, 2)  # 1 reference and the inversion found; 2 references missing
    assert all(torch.equal(ref, _expected(q)) for q, ref in zip(queries, refs))


def test_inversions_kept_in_memory_are_bounded() -> None:
    """Memory does not grow with the recording: only the ``max_inversions`` latest stay, the
    least recently used is dropped first."""
    provider, fake = Request().provider(TensorCache(None), max_inversions=2)
    estimates = [_estimate(float(i)) for i in range(3)]
    for i in [0, 1, 2, 1, 0, 2]:
        Request(queries=["dog barking"], estimate=estimates[i]).ask(provider)
    # 0, 1, 2 computed (0 dropped); 1 found; 0 computed again (2 dropped); 2 computed again.
    assert [digest for digest, _ in fake.inversions] == [tensor_digest(estimates[i]) for i in [0, 1, 2, 0, 2]]


def _flip_last_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


def test_damaged_entries_are_reported_computed_again_and_replaced(tmp_path: Path) -> None:
    """Every stored entry damaged: each is warned about once, the work is redone with the same
    result, and the rewritten entries serve the next provider."""
    first, _ = Request().provider(TensorCache(tmp_path))
    before = Request().ask(first)
    entries = sorted(tmp_path.glob("*.safetensors"))
    for path in entries:
        _flip_last_byte(path)

    cache = TensorCache(tmp_path)
    provider, fake = Request().provider(cache)
    with pytest.warns(UserWarning, match="ignoring cache entry") as caught:
        after = Request().ask(provider)
    assert len([w for w in caught if "ignoring cache entry" in str(w.message)]) == len(entries) == 3
    assert cache.rejected == 3 and len(fake.inversions) == 1 and fake.denoised == [QUERIES]
    assert all(torch.equal(a, b) for a, b in zip(before, after))

    third, fake = Request().provider(TensorCache(tmp_path))
    assert all(torch.equal(a, b) for a, b in zip(before, Request().ask(third)))
    assert fake.inversions == [] and fake.denoised == []


def test_paths_name_the_entries_that_references_writes(tmp_path: Path) -> None:
    """``paths`` gives each query's entry (what `main.py references` prints); None without a folder."""
    provider, _ = Request().provider(TensorCache(tmp_path))
    request = Request()
    request.ask(provider)
    paths = provider.paths(request.estimate, request.queries, request.round_index, request.seed, request.mixture)
    assert len(set(paths)) == 2 and all(p.is_file() and p.parent == tmp_path for p in paths)
    disabled, _ = Request().provider(TensorCache(None))
    assert disabled.paths(request.estimate, request.queries, 0, SEED, MIXTURE) == [None, None]


# --- ReferenceGenerator._chunks: the bound on every network call's batch ---------------------


def _chunker(max_batch: int | None) -> ReferenceGenerator:
    """A generator with nothing loaded but its batch bound (``_chunks`` reads nothing else)."""
    generator = object.__new__(ReferenceGenerator)
    generator.max_batch = max_batch
    return generator


@pytest.mark.parametrize(
    ("n", "bound", "sizes"),
    [
        (8, 1, [1] * 8),
        (8, 3, [3, 3, 2]),
        (8, 5, [5, 3]),
        (8, 8, [8]),
        (8, 20, [8]),
        (8, None, [8]),
        (1, 3, [1]),
    ],
)
def test_chunks_are_bounded_in_order_and_aligned(n: int, bound: int | None, sizes: list[int]) -> None:
    """Pieces of at most ``max_batch`` (all of it when unbounded), in order, covering the batch
    once, with the same rows of every tensor together."""
    latents = torch.arange(n * 2, dtype=torch.float32).reshape(n, 2)
    labels = torch.arange(n) * 10
    pieces = list(_chunker(bound)._chunks(latents, labels))
    assert [len(z) for z, _ in pieces] == sizes
    assert all(len(z) == len(y) for z, y in pieces)
    assert torch.equal(torch.cat([z for z, _ in pieces]), latents)
    assert torch.equal(torch.cat([y for _, y in pieces]), labels)
    assert all(torch.equal(y, z[:, 0].long() // 2 * 10) for z, y in pieces)


def test_chunks_of_one_tensor_are_one_tuples() -> None:
    """``decode_mel`` unpacks ``(z,)`` from each piece: one tensor in, 1-tuples out."""
    pieces = list(_chunker(2)._chunks(torch.zeros(5, 4)))
    assert [tuple(t.shape for t in piece) for piece in pieces] == [((2, 4),), ((2, 4),), ((1, 4),)]


def test_fake_matches_the_generator_interface() -> None:
    """The fake has every method the provider calls on a real generator, with the same parameters."""
    for name in ("invert_estimate", "generate"):
        real = list(inspect.signature(getattr(ReferenceGenerator, name)).parameters)
        fake = list(inspect.signature(getattr(CountingGenerator, name)).parameters)
        assert fake == real, name
    assert {"device", "numerics"} <= set(dir(ReferenceGenerator))
