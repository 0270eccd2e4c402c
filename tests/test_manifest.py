"""Manifest downloads, for real, from a server on 127.0.0.1."""

import functools
import hashlib
import http.server
import io
import json
import tarfile
import threading

import pytest

from mri3dcnn.cohort import Cohort
from mri3dcnn.manifest import ManifestError, fetch, fetch_all, read_manifest


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "served"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a, **k: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _manifest(tmp_path, entries):
    lines = ["entries:"]
    for name, e in entries.items():
        lines.append(f"  {name}:")
        lines += [f"    {k}: {json.dumps(v)}" for k, v in e.items()]
    path = tmp_path / "data_manifest.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_cohort_archive_roundtrip(server, tmp_path, tiny_cohort):
    root, url = server
    archive = root / "cohort.tar.gz"
    with tarfile.open(archive, "w:gz") as t:
        t.add(tiny_cohort, arcname="cohort")
    m = _manifest(tmp_path, {"demo": {"url": f"{url}/cohort.tar.gz", "sha256": _sha(archive),
                                      "extract": True}})
    out = fetch_all(m, tmp_path / "downloads")["demo"]
    cohort = Cohort.from_bids(out / "cohort", ["gm", "fa"])
    assert len(cohort) == 24
    # a second fetch reuses the verified copy, even with the server gone
    archive.unlink()
    assert fetch_all(m, tmp_path / "downloads")["demo"] == out


def test_checksum_mismatch(server, tmp_path):
    root, url = server
    (root / "a.bin").write_bytes(b"payload")
    m = _manifest(tmp_path, {"a": {"url": f"{url}/a.bin", "sha256": "0" * 64}})
    with pytest.raises(ManifestError, match="Checksum mismatch for a"):
        fetch_all(m, tmp_path / "dl")
    assert not (tmp_path / "dl" / "a.bin").exists()


def test_missing_file_on_server(server, tmp_path):
    _, url = server
    m = _manifest(tmp_path, {"a": {"url": f"{url}/nothing.bin", "sha256": "0" * 64}})
    with pytest.raises(ManifestError, match="Cannot download"):
        fetch_all(m, tmp_path / "dl")


def test_unsafe_archive_is_refused(server, tmp_path):
    root, url = server
    archive = root / "evil.tar"
    with tarfile.open(archive, "w") as t:
        info = tarfile.TarInfo("../../escape.txt")
        data = b"x"
        info.size = len(data)
        t.addfile(info, io.BytesIO(data))
    m = _manifest(tmp_path, {"evil": {"url": f"{url}/evil.tar", "sha256": _sha(archive),
                                      "extract": True}})
    entry = read_manifest(m)["evil"]
    with pytest.raises(ManifestError, match="outside"):
        fetch(entry, tmp_path / "dl")
    assert not (tmp_path / "escape.txt").exists()


def test_malformed_entries(tmp_path):
    m = _manifest(tmp_path, {"a": {"url": "x", "sha256": "abc"}})
    with pytest.raises(ManifestError, match="malformed sha256"):
        read_manifest(m)
    m = _manifest(tmp_path, {"a": {"url": "x", "sha256": "0" * 64}})
    with pytest.raises(ManifestError, match="no entries"):
        fetch_all(m, tmp_path, ["nope"])
