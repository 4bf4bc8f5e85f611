"""Tests of deqir_edu.core.download against a local HTTP server on 127.0.0.1 (never the internet)."""

from __future__ import annotations

import hashlib
import io
import socket
from pathlib import Path

import pytest
import torch

from deqir_edu.core.download import DownloadError, cache_dir, download, file_sha256, sidecar_path, verify


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("DEQIR_EDU_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _checkpoint_bytes() -> bytes:
    """A small real checkpoint (a state dict), 200 kB, different from all zeros."""
    gen = torch.Generator().manual_seed(0)
    buf = io.BytesIO()
    torch.save({"w": torch.randn(50_000, generator=gen), "b": torch.arange(10)}, buf)
    return buf.getvalue()


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_cache_dir_follows_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert cache_dir() == tmp_path / "cache"
    monkeypatch.delenv("DEQIR_EDU_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setattr("sys.platform", "linux")
    assert cache_dir() == tmp_path / "xdg" / "deqir-edu"


def test_download_then_cache_hit_without_request(server, _cache: Path) -> None:
    data = _checkpoint_bytes()
    server.files["/ckpt.pt"] = data
    dest = cache_dir() / "models" / "ckpt.pt"
    out = download(server.url("/ckpt.pt"), dest, size=len(data), progress=True)
    assert out == dest and dest.read_bytes() == data
    assert server.hits["/ckpt.pt"] == 1
    digest = hashlib.sha256(data).hexdigest()
    assert sidecar_path(dest).read_text().split()[0] == digest  # recorded on first download
    assert _leftovers(dest.parent) == ["ckpt.pt", "ckpt.pt.sha256"]  # no temporary file left
    sd = torch.load(dest, weights_only=True)
    assert torch.equal(sd["b"], torch.arange(10))

    again = download(server.url("/ckpt.pt"), dest, size=len(data))
    assert again == dest
    assert server.hits["/ckpt.pt"] == 1  # cache hit: no second request


def test_given_sha256_accepted_and_rejected(server, _cache: Path) -> None:
    data = _checkpoint_bytes()
    server.files["/a.pt"] = data
    good = hashlib.sha256(data).hexdigest()
    dest = _cache / "a.pt"
    download(server.url("/a.pt"), dest, sha256=good, progress=False)
    assert dest.read_bytes() == data

    bad = "0" * 64
    other = _cache / "b.pt"
    with pytest.raises(ValueError, match="sha256 mismatch") as err:
        download(server.url("/a.pt"), other, sha256=bad, progress=False)
    assert bad in str(err.value) and good in str(err.value) and "delete" in str(err.value)
    assert not other.exists() and not sidecar_path(other).exists()
    assert _leftovers(_cache) == ["a.pt"]


def test_truncated_transfer_leaves_no_file(server, _cache: Path) -> None:
    data = _checkpoint_bytes()
    server.files["/cut.pt"] = data
    server.short["/cut.pt"] = len(data) // 3  # Content-Length says all, the body stops early
    dest = _cache / "models" / "cut.pt"
    with pytest.raises(ValueError, match="truncated") as err:
        download(server.url("/cut.pt"), dest, progress=False)
    assert str(len(data)) in str(err.value)
    assert not dest.exists() and not sidecar_path(dest).exists()
    assert _leftovers(dest.parent) == []  # the temporary file is gone too

    del server.short["/cut.pt"]  # the retry the message asks for works
    download(server.url("/cut.pt"), dest, progress=False)
    assert dest.read_bytes() == data


def test_fewer_bytes_than_expected_size(server, _cache: Path) -> None:
    data = _checkpoint_bytes()
    server.files["/small.pt"] = data  # honest Content-Length, but not the size the zoo expects
    dest = _cache / "small.pt"
    with pytest.raises(ValueError, match=f"{len(data)} bytes but {len(data) + 100} are expected"):
        download(server.url("/small.pt"), dest, size=len(data) + 100, progress=False)
    assert _leftovers(_cache) == []


def test_changed_bytes_after_first_download(server, _cache: Path) -> None:
    data = _checkpoint_bytes()
    server.files["/c.pt"] = data
    dest = _cache / "c.pt"
    download(server.url("/c.pt"), dest, progress=False)
    raw = bytearray(dest.read_bytes())
    raw[len(raw) // 2] ^= 0xFF  # one flipped byte, same size
    dest.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="sha256 mismatch") as err:
        download(server.url("/c.pt"), dest, progress=False)
    msg = str(err.value)
    assert hashlib.sha256(data).hexdigest() in msg and file_sha256(dest) in msg
    assert "delete" in msg and str(dest) in msg
    assert server.hits["/c.pt"] == 1  # checked from the cache, not re-fetched


def test_server_file_changed_against_recorded_hash(server, _cache: Path) -> None:
    dest = _cache / "d.pt"
    server.files["/d.pt"] = b"first version" * 100
    download(server.url("/d.pt"), dest, progress=False)
    dest.unlink()  # the sidecar stays: the recorded hash still guards the next download
    server.files["/d.pt"] = b"other version" * 100
    with pytest.raises(ValueError, match="sha256 mismatch"):
        download(server.url("/d.pt"), dest, progress=False)
    assert not dest.exists()


def test_verify_records_hash_of_a_file_placed_by_hand(_cache: Path) -> None:
    _cache.mkdir(parents=True)
    dest = _cache / "manual.pt"
    dest.write_bytes(b"weights placed by hand")
    verify(dest)
    assert sidecar_path(dest).read_text().split()[0] == hashlib.sha256(b"weights placed by hand").hexdigest()
    with pytest.raises(ValueError, match="bytes but 5 are expected"):
        verify(dest, size=5)
    dest.write_bytes(b"weights replaced later")
    with pytest.raises(ValueError, match="sha256 mismatch"):
        verify(dest)


def test_http_error_and_offline_give_clear_message(server, _cache: Path) -> None:
    dest = _cache / "missing.pt"
    with pytest.raises(DownloadError, match="404") as err:
        download(server.url("/missing.pt"), dest, progress=False)
    assert server.url("/missing.pt") in str(err.value) and str(dest) in str(err.value)
    assert _leftovers(_cache) == []

    with socket.socket() as s:  # a port nobody listens on: connection refused, like being offline
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/x.pt"
    with pytest.raises(DownloadError, match="offline") as err:
        download(url, dest, progress=False)
    assert url in str(err.value) and str(dest) in str(err.value)
    assert _leftovers(_cache) == []
