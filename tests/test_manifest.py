"""Manifest downloads, for real, from a server on 127.0.0.1 that honours Range requests and
can be told to drop a connection part way."""

import hashlib
import http.server
import importlib.util
import io
import json
import os
import tarfile
import threading
import zipfile
from pathlib import Path

import pytest

from mri3dcnn.cli import main
from mri3dcnn.cohort import Cohort
from mri3dcnn.manifest import ManifestError, describe, fetch, fetch_all, read_manifest

ROOT = Path(__file__).resolve().parents[1]


class _Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        srv = self.server
        rng = self.headers.get("Range")
        srv.requests.append((self.path, rng))
        path = srv.root / self.path.lstrip("/")
        if not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        start = int(rng.split("=")[1].split("-")[0]) if rng else 0
        if start >= len(data) and rng:
            self.send_error(416)
            return
        body = data[start:]
        self.send_response(206 if rng else 200)
        if rng:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        cut = srv.cut.pop(self.path, None)
        self.wfile.write(body if cut is None else body[:cut])
        self.wfile.flush()
        self.close_connection = True


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "served"
    root.mkdir()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.root, httpd.cut, httpd.requests = root, {}, []
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}", httpd
    httpd.shutdown()
    httpd.server_close()


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _manifest(tmp_path, entries):
    path = tmp_path / "data_manifest.yaml"
    path.write_text(json.dumps({"entries": entries}))  # JSON is YAML
    return path


def _payload(root, name="a.bin", n=300_000):
    data = os.urandom(n)
    (root / name).write_bytes(data)
    return data


def _leftovers(folder):
    return sorted(p.name for p in Path(folder).rglob("*") if p.is_file())


def test_good_file(server, tmp_path):
    root, url, _ = server
    data = _payload(root)
    m = _manifest(tmp_path, {"a": {"url": f"{url}/a.bin", "sha256": _sha(root / "a.bin"),
                                   "size": len(data), "licence": "CC0"}})
    out = fetch_all(m, tmp_path / "dl", progress=False)["a"]
    assert out == tmp_path / "dl" / "a.bin" and out.read_bytes() == data
    assert _leftovers(tmp_path / "dl") == ["a.bin"]  # no partial or staged copy left


def test_wrong_hash_names_both_and_sets_the_file_aside(server, tmp_path):
    root, url, _ = server
    _payload(root)
    got = _sha(root / "a.bin")
    m = _manifest(tmp_path, {"a": {"url": f"{url}/a.bin", "sha256": "0" * 64}})
    with pytest.raises(ManifestError, match="Checksum mismatch for a") as e:
        fetch_all(m, tmp_path / "dl", progress=False)
    assert "0" * 64 in str(e.value) and got in str(e.value) and "a.bin" in str(e.value)
    assert not (tmp_path / "dl" / "a.bin").exists()
    aside = list((tmp_path / "dl").rglob("a.bin.*.rejected-*")) + list(
        (tmp_path / "dl").rglob("a.bin*rejected*"))
    assert aside and str(aside[0]) in str(e.value)
    assert _sha(aside[0]) == got


def test_served_file_shorter_than_pinned_size(server, tmp_path):
    root, url, _ = server
    data = _payload(root)
    (root / "a.bin").write_bytes(data[:1000])  # the server itself holds a truncated copy
    m = _manifest(tmp_path, {"a": {"url": f"{url}/a.bin", "sha256": hashlib.sha256(data)
                                   .hexdigest(), "size": len(data)}})
    with pytest.raises(ManifestError, match=f"size 1000 bytes, expected {len(data)} bytes") as e:
        fetch_all(m, tmp_path / "dl", progress=False)
    assert hashlib.sha256(data[:1000]).hexdigest() in str(e.value)
    assert hashlib.sha256(data).hexdigest() in str(e.value)
    assert not (tmp_path / "dl" / "a.bin").exists()


def test_truncated_download_fails_and_keeps_the_partial(server, tmp_path):
    root, url, httpd = server
    data = _payload(root)
    httpd.cut["/a.bin"] = 100_000
    m = _manifest(tmp_path, {"a": {"url": f"{url}/a.bin", "sha256": _sha(root / "a.bin")}})
    with pytest.raises(ManifestError, match="Cannot download a .*100000 bytes arrived"):
        fetch_all(m, tmp_path / "dl", progress=False)
    assert not (tmp_path / "dl" / "a.bin").exists()
    part = tmp_path / "dl" / ".incoming" / "a.bin.part"
    assert part.read_bytes() == data[:100_000]


def test_interrupted_download_resumes(server, tmp_path):
    root, url, httpd = server
    data = _payload(root)
    httpd.cut["/a.bin"] = 123_456
    m = _manifest(tmp_path, {"a": {"url": f"{url}/a.bin", "sha256": _sha(root / "a.bin"),
                                   "size": len(data)}})
    with pytest.raises(ManifestError):
        fetch_all(m, tmp_path / "dl", progress=False)
    out = fetch_all(m, tmp_path / "dl", progress=False)["a"]
    assert out.read_bytes() == data
    assert httpd.requests[-1] == ("/a.bin", "bytes=123456-")
    assert _leftovers(tmp_path / "dl") == ["a.bin"]


def test_mirrors_are_tried_in_order(server, tmp_path):
    root, url, _ = server
    _payload(root)
    m = _manifest(tmp_path, {"a": {"urls": [f"{url}/gone.bin", f"{url}/a.bin"],
                                   "sha256": _sha(root / "a.bin"), "filename": "a.bin"}})
    assert fetch_all(m, tmp_path / "dl", progress=False)["a"].exists()


def test_corrupted_copy_on_disk_is_set_aside_and_fetched_again(server, tmp_path):
    root, url, _ = server
    data = _payload(root)
    m = _manifest(tmp_path, {"a": {"url": f"{url}/a.bin", "sha256": _sha(root / "a.bin")}})
    out = fetch_all(m, tmp_path / "dl", progress=False)["a"]
    out.write_bytes(b"tampered")
    assert fetch_all(m, tmp_path / "dl", progress=False)["a"].read_bytes() == data
    assert (tmp_path / "dl" / "a.bin.rejected-0").read_bytes() == b"tampered"


def test_md5_pinned_file_and_files_list(server, tmp_path):
    root, url, _ = server
    _payload(root, "w.h5")
    (root / "sub").mkdir()
    _payload(root / "sub", "t1.nii.gz", 5000)
    md5 = hashlib.md5((root / "w.h5").read_bytes()).hexdigest()
    m = _manifest(tmp_path, {
        "w": {"url": f"{url}/w.h5", "sha256": None, "md5": md5, "dest": "models"},
        "ds": {"files": [{"path": "sub-1/anat/t1.nii.gz", "url": f"{url}/sub/t1.nii.gz",
                          "sha256": _sha(root / "sub" / "t1.nii.gz")}]},
    })
    out = fetch_all(m, tmp_path / "dl", progress=False)
    assert out["w"] == tmp_path / "dl" / "models"
    assert (out["w"] / "w.h5").exists()
    assert (out["ds"] / "sub-1" / "anat" / "t1.nii.gz").exists()


def test_unpinned_file_is_refused_before_any_request(server, tmp_path):
    root, url, httpd = server
    _payload(root)
    m = _manifest(tmp_path, {"a": {"url": f"{url}/a.bin", "sha256": None}})
    with pytest.raises(ManifestError, match=r"(?s)a: 1 file\(s\) not pinned.*sha256sum.*a.bin: http"):
        fetch_all(m, tmp_path / "dl", progress=False)
    assert httpd.requests == []


def test_cohort_archive_roundtrip(server, tmp_path, tiny_cohort):
    root, url, _ = server
    archive = root / "cohort.tar.gz"
    with tarfile.open(archive, "w:gz") as t:
        t.add(tiny_cohort, arcname="cohort")
    m = _manifest(tmp_path, {"demo": {"url": f"{url}/cohort.tar.gz", "sha256": _sha(archive),
                                      "extract": True}})
    out = fetch_all(m, tmp_path / "downloads", progress=False)["demo"]
    cohort = Cohort.from_bids(out / "cohort", ["gm", "fa"])
    assert len(cohort) == 24
    # a second fetch reuses the verified copy, even with the server gone
    archive.unlink()
    assert fetch_all(m, tmp_path / "downloads", progress=False)["demo"] == out


def _tar(path, build):
    with tarfile.open(path, "w") as t:
        build(t)


def _add(t, name, data=b"x", **kw):
    info = tarfile.TarInfo(name)
    for k, v in kw.items():
        setattr(info, k, v)
    info.size = 0 if kw else len(data)
    t.addfile(info, None if kw else io.BytesIO(data))


@pytest.mark.parametrize("build, message", [
    (lambda t: _add(t, "/tmp/absolute-escape.txt"), "outside"),
    (lambda t: (_add(t, "ok.txt"), _add(t, "sub/../../escape.txt")), "outside"),
    (lambda t: _add(t, "sub/link", type=tarfile.SYMTYPE, linkname="../../../etc"), "points outside"),
    (lambda t: _add(t, "link", type=tarfile.SYMTYPE, linkname="/etc/passwd"), "points outside"),
    (lambda t: _add(t, "hard", type=tarfile.LNKTYPE, linkname="../escape.txt"), "outside"),
], ids=["absolute", "dotdot", "symlink-up", "symlink-absolute", "hardlink"])
def test_malicious_tar_is_refused_whole(server, tmp_path, build, message):
    root, url, _ = server
    _tar(root / "evil.tar", build)
    m = _manifest(tmp_path, {"evil": {"url": f"{url}/evil.tar", "sha256": _sha(root / "evil.tar"),
                                      "extract": True}})
    with pytest.raises(ManifestError, match=message):
        fetch(read_manifest(m)["evil"], tmp_path / "dl", progress=False)
    assert not (tmp_path / "dl" / "evil").exists()  # nothing half-unpacked
    assert not (tmp_path / "escape.txt").exists()
    assert [p.name for p in (tmp_path / "dl").iterdir() if p.name.startswith(".evil")] == []


def test_malicious_zip_is_refused(server, tmp_path):
    root, url, _ = server
    with zipfile.ZipFile(root / "evil.zip", "w") as z:
        z.writestr("fine.txt", "x")
        z.writestr("../escape.txt", "x")
    m = _manifest(tmp_path, {"evil": {"url": f"{url}/evil.zip", "sha256": _sha(root / "evil.zip"),
                                      "extract": True}})
    with pytest.raises(ManifestError, match="outside"):
        fetch_all(m, tmp_path / "dl", progress=False)
    assert not (tmp_path / "dl" / "evil").exists() and not (tmp_path / "escape.txt").exists()


def test_safe_links_inside_the_archive_are_kept(server, tmp_path):
    root, url, _ = server
    _tar(root / "ok.tar", lambda t: (_add(t, "d/data.txt", b"hello"),
                                     _add(t, "d/link", type=tarfile.SYMTYPE, linkname="data.txt")))
    m = _manifest(tmp_path, {"ok": {"url": f"{url}/ok.tar", "sha256": _sha(root / "ok.tar"),
                                    "extract": True}})
    out = fetch_all(m, tmp_path / "dl", progress=False)["ok"]
    assert (out / "d" / "link").read_text() == "hello"


def test_malformed_entries(tmp_path):
    m = _manifest(tmp_path, {"a": {"url": "x", "sha256": "abc"}})
    with pytest.raises(ManifestError, match="malformed sha256"):
        read_manifest(m)
    m = _manifest(tmp_path, {"a": {"url": "x"}})
    with pytest.raises(ManifestError, match="needs 'sha256'"):
        read_manifest(m)
    m = _manifest(tmp_path, {"a": {"url": "x", "sha256": None, "sha": 1}})
    with pytest.raises(ManifestError, match=r"unknown key\(s\) \['sha'\]"):
        read_manifest(m)
    m = _manifest(tmp_path, {"a": {"files": [{"path": "../x", "url": "x", "sha256": None}]}})
    with pytest.raises(ManifestError, match="must be relative"):
        read_manifest(m)
    m = _manifest(tmp_path, {"a": {"url": "x", "sha256": "0" * 64}})
    with pytest.raises(ManifestError, match="no entries"):
        fetch_all(m, tmp_path, ["nope"])


def test_project_manifest_entries():
    """The shipped entries: ds000030 pinned file by file (scans by the md5 and size of their
    git-annex keys at a fixed S3 object version), Keras weights pinned by the md5 Keras
    itself checks, each with licence and citation."""
    entries = read_manifest(ROOT / "data_manifest.yaml")
    ds = entries["ds000030"]
    assert {f.path for f in ds.files} >= {"participants.tsv", "dataset_description.json"}
    assert all(f.known_hash is not None and f.size for f in ds.files)
    scans = [f for f in ds.files if f.path.endswith(".nii.gz")]
    assert scans and all(f.md5 and "?versionId=" in f.urls[0] for f in scans)
    assert all(f.urls[0].startswith("https://s3.amazonaws.com/openneuro.org/ds000030/")
               for f in ds.files)
    apps = Path(importlib.util.find_spec("keras").origin).parent / "src" / "applications"
    for name, module in (("vgg16", "vgg16"), ("resnet50", "resnet"),
                         ("inceptionv3", "inception_v3")):
        e = entries[f"keras_{name}_notop"]
        source = (apps / f"{module}.py").read_text()
        assert e.files[0].md5 in source, name
        assert e.url.startswith("https://storage.googleapis.com/tensorflow/keras-applications/")
        folder, fname = e.url.split("/")[-2:]
        assert f"{folder}/" in source and fname.endswith("_notop.h5"), name
        assert e.licence and e.citation and e.dest == "~/.keras/models"
    rows = {r["name"]: r for r in describe(ROOT / "data_manifest.yaml")}
    assert rows["keras_vgg16_notop"]["pinned"] and rows["ds000030"]["pinned"]


def test_cli_data(server, tmp_path, capsys):
    root, url, _ = server
    _payload(root)
    m = _manifest(tmp_path, {"a": {"url": f"{url}/a.bin", "sha256": _sha(root / "a.bin"),
                                   "licence": "CC0", "description": "bytes"}})
    assert main(["data", "--list", "--manifest", str(m)]) == 0
    assert "CC0" in capsys.readouterr().out
    assert main(["data", "a", "--manifest", str(m), "--dest", str(tmp_path / "dl")]) == 0
    assert f"a: {tmp_path / 'dl' / 'a.bin'}" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="(?s)not pinned.*sub-1/t1.nii.gz: http.*sub-1/dwi"):
        main(["data", "ds", "--manifest", str(_manifest(tmp_path, {"ds": {"files": [
            {"path": "sub-1/t1.nii.gz", "url": f"{url}/t1", "sha256": None},
            {"path": "sub-1/dwi.nii.gz", "url": f"{url}/dwi", "sha256": None}]}})),
              "--dest", str(tmp_path / "dl2")])
    assert not (tmp_path / "dl2").exists()
