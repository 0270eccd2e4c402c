"""Manifest entries -> verified local files.

`data_manifest.yaml` is the only place from which anything is downloaded. Each entry names
a URL (or a local path), its sha256 and, for archives, where to unpack it. A file is used
only once its checksum matches; archives are unpacked with every member checked to stay
inside the target folder.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

import yaml

from .atomic import atomic_directory, atomic_file


class ManifestError(ValueError):
    """A manifest entry that cannot be fetched or verified; the message says what to do."""


@dataclass(frozen=True)
class Entry:
    name: str
    url: str
    sha256: str
    filename: str
    extract: bool = False
    description: str = ""


def read_manifest(path: str | Path) -> dict[str, Entry]:
    """Entries by name, validated."""
    path = Path(path)
    spec = yaml.safe_load(path.read_text()) or {}
    entries = {}
    for name, e in (spec.get("entries") or {}).items():
        if not isinstance(e, dict) or "url" not in e or "sha256" not in e:
            raise ManifestError(f"{path}: entry {name!r} needs 'url' and 'sha256'.")
        sha = str(e["sha256"]).lower()
        if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
            raise ManifestError(f"{path}: entry {name!r} has a malformed sha256 {sha!r}.")
        filename = e.get("filename") or Path(str(e["url"]).split("?")[0]).name or name
        entries[name] = Entry(name=name, url=str(e["url"]), sha256=sha, filename=filename,
                              extract=bool(e.get("extract", False)),
                              description=str(e.get("description", "")))
    return entries


def sha256sum(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _download(url: str, dest: Path, timeout: float) -> None:
    if "://" not in url:  # a local path
        shutil.copyfile(Path(url).expanduser(), dest)
        return
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r, open(dest, "wb") as f:
            shutil.copyfileobj(r, f)
    except OSError as err:
        raise ManifestError(f"Cannot download {url}: {err}. Check the URL and the network, or "
                            "put the file in place by hand and point the entry's url to it.") from err


def _safe_extract(archive: Path, target: Path) -> None:
    """Unpack zip or tar archives, refusing members that would land outside `target`."""
    target = target.resolve()

    def check(member: str) -> None:
        dest = (target / member).resolve()
        if dest != target and target not in dest.parents:
            raise ManifestError(f"{archive}: member {member!r} would be written outside "
                                f"{target}; the archive is unsafe and was not unpacked.")

    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as z:
            for m in z.namelist():
                check(m)
            z.extractall(target)
    elif tarfile.is_tarfile(archive):
        with tarfile.open(archive) as t:
            for m in t.getmembers():
                check(m.name)
                if m.issym() or m.islnk():
                    check(os.path.join(os.path.dirname(m.name), m.linkname))
            t.extractall(target, filter="data")
    else:
        raise ManifestError(f"{archive} is neither a zip nor a tar archive; set extract: false.")


def fetch(entry: Entry, dest_dir: str | Path, timeout: float = 60.0) -> Path:
    """The entry's file (or unpacked folder) under `dest_dir`, downloaded and verified once."""
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    final = dest_dir / entry.filename
    unpacked = dest_dir / entry.name
    if entry.extract and (unpacked / ".verified").exists():
        return unpacked
    if not final.exists() or sha256sum(final) != entry.sha256:
        with atomic_file(final) as tmp:
            _download(entry.url, tmp, timeout)
            got = sha256sum(tmp)
            if got != entry.sha256:
                raise ManifestError(
                    f"Checksum mismatch for {entry.name} from {entry.url}: expected "
                    f"{entry.sha256}, got {got}. The file changed or is corrupt; fix the "
                    "sha256 in data_manifest.yaml only if you trust the new file."
                )
    if not entry.extract:
        return final
    with atomic_directory(unpacked) as work:
        _safe_extract(final, work)
        (work / ".verified").write_text(entry.sha256)
    return unpacked


def fetch_all(manifest: str | Path, dest_dir: str | Path,
              names: list[str] | None = None) -> dict[str, Path]:
    entries = read_manifest(manifest)
    unknown = [n for n in names or [] if n not in entries]
    if unknown:
        raise ManifestError(f"{manifest} has no entries {unknown}; it has {sorted(entries)}.")
    return {n: fetch(entries[n], dest_dir) for n in names or entries}
