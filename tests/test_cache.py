"""The tensor cache: found when stored, missed on any other key, never trusted when damaged."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from dgmo_pl.diffusion.cache import TensorCache, folder_signature, tensor_digest

KEY = {"kind": "references", "query": "dog barking", "round": 0, "seed": 0, "generation": {"ddim_steps": 100}}


@pytest.fixture
def stored(tmp_path: Path) -> tuple[TensorCache, Path, dict[str, torch.Tensor]]:
    cache = TensorCache(tmp_path / "cache")
    tensors = {"references": torch.randn(4, 1, 16, 8, generator=torch.Generator().manual_seed(0))}
    return cache, cache.store(KEY, tensors), tensors


def test_stored_tensors_come_back_bit_identical(stored) -> None:
    """A stored entry is found under the same key (built in any order) with the same bits."""
    cache, path, tensors = stored
    found = cache.load(dict(reversed(list(KEY.items()))))
    assert torch.equal(found["references"], tensors["references"])
    assert (cache.hits, cache.misses, cache.rejected) == (1, 0, 0)
    assert path.parent == cache.root and path.suffix == ".safetensors"


@pytest.mark.parametrize("change", [{"query": "cat meowing"}, {"round": 1}, {"seed": 1},
                                    {"generation": {"ddim_steps": 99}}, {"model": "another"}])
def test_any_changed_setting_misses(stored, change: dict) -> None:
    """Changing any field of the key finds nothing."""
    cache, _, _ = stored
    assert cache.load({**KEY, **change}) is None
    assert (cache.hits, cache.misses) == (0, 1)


def test_the_key_is_kept_in_the_file(stored) -> None:
    """The entry's metadata holds its full key, readable without this code."""
    _, path, _ = stored
    with safe_open(path, "pt") as file:
        key = json.loads(file.metadata()["key"])
    assert key["query"] == "dog barking" and key["generation"] == {"ddim_steps": 100}


def _damage_last_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", [
    _damage_last_byte,
    lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]),
    lambda p: p.write_bytes(b""),
    lambda p: p.write_bytes(b"not a safetensors file"),
], ids=["flipped-bits", "truncated", "empty", "garbage"])
def test_damaged_entry_is_reported_and_not_used(stored, damage) -> None:
    """A damaged entry is rejected with a warning naming it, then replaced by a new store."""
    cache, path, tensors = stored
    damage(path)
    with pytest.warns(UserWarning, match=f"ignoring cache entry '{path}'"):
        assert cache.load(KEY) is None
    assert cache.rejected == 1
    cache.store(KEY, tensors)
    assert torch.equal(cache.load(KEY)["references"], tensors["references"])


def test_entry_of_another_key_under_this_name_is_not_used(stored, tmp_path: Path) -> None:
    """A file whose recorded key differs from the one asked for (e.g. copied over) is rejected."""
    cache, path, tensors = stored
    other = TensorCache(tmp_path / "other").store({**KEY, "query": "cat meowing"}, tensors)
    path.write_bytes(other.read_bytes())
    with pytest.warns(UserWarning, match="stored for other settings"):
        assert cache.load(KEY) is None


def test_non_finite_values_are_not_used(tmp_path: Path) -> None:
    """An entry holding NaN (e.g. from a failed fp16 run) is not served."""
    cache = TensorCache(tmp_path)
    cache.store(KEY, {"references": torch.tensor([1.0, float("nan")])})
    with pytest.warns(UserWarning, match="non-finite"):
        assert cache.load(KEY) is None


def test_store_leaves_no_temporary_files(stored) -> None:
    """Only complete entries are in the folder."""
    cache, path, _ = stored
    assert [p.name for p in cache.root.iterdir()] == [path.name]


def test_disabled_cache_stores_nothing(tmp_path: Path) -> None:
    """With no folder, nothing is written and nothing is found."""
    cache = TensorCache(None)
    assert cache.store(KEY, {"x": torch.ones(1)}) is None and cache.load(KEY) is None


def test_digests_see_every_bit_and_the_shape() -> None:
    """Tensor digests change with one ulp, with the shape and with the dtype."""
    x = torch.linspace(0, 1, 12)
    assert tensor_digest(x) == tensor_digest(x.clone())
    assert tensor_digest(x) != tensor_digest(torch.nextafter(x, x + 1))
    assert tensor_digest(x) != tensor_digest(x.reshape(3, 4))
    assert tensor_digest(x) != tensor_digest(x.double())


def test_folder_signature_follows_names_sizes_and_times_without_reading(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A model folder's signature changes with a file's size, time or name; no file is opened to make it."""
    weights = tmp_path / "unet" / "w.bin"
    weights.parent.mkdir()
    weights.write_bytes(b"abc")
    os.utime(weights, ns=(1_000_000_000, 1_000_000_000))
    signatures = [folder_signature(tmp_path)]
    weights.write_bytes(b"abcd")
    os.utime(weights, ns=(1_000_000_000, 1_000_000_000))
    signatures.append(folder_signature(tmp_path))  # size
    os.utime(weights, ns=(2_000_000_000, 2_000_000_000))
    signatures.append(folder_signature(tmp_path))  # time
    weights.rename(weights.with_name("v.bin"))
    signatures.append(folder_signature(tmp_path))  # name
    assert len(set(signatures)) == 4

    def no_reading(*args: object, **kwargs: object) -> None:
        raise AssertionError("a file was opened")

    monkeypatch.setattr(Path, "open", no_reading)
    monkeypatch.setattr("builtins.open", no_reading)
    assert folder_signature(tmp_path) == signatures[-1]


def test_a_pinned_revision_replaces_the_folders_signature(tmp_path: Path) -> None:
    from dgmo_pl.diffusion.loading import model_revision

    assert model_revision(str(tmp_path), "my-finetune-v2") == "pinned:my-finetune-v2"
    assert model_revision(str(tmp_path)) == f"files:{folder_signature(tmp_path)}"
