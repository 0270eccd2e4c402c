"""Manifest entries -> verified local files.

`data_manifest.yaml` is the only place from which anything is downloaded. Each entry says
what it holds, under which licence, how to cite it, where its files go and, per file, the
URL(s), size and hash. A file is used only once its size and hash match: downloads go to a
`.part` file that survives an interruption and is resumed with an HTTP Range request, a
verified file is renamed into place, and a file that does not verify is set aside under a
`.rejected-` name so it is never used. Archives are unpacked into a temporary folder, every
member checked to stay inside it, and renamed into place once complete.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import shutil
import stat
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import yaml

from .atomic import atomic_directory


class ManifestError(ValueError):
    """A manifest entry that cannot be fetched or verified; the message says what to do."""


ENTRY_KEYS = {"url", "urls", "sha256", "md5", "size", "filename", "files", "extract", "dest",
              "description", "licence", "citation"}
FILE_KEYS = {"path", "url", "urls", "sha256", "md5", "size"}


@dataclass(frozen=True)
class RemoteFile:
    """One file of an entry: where it goes (relative to the entry's folder) and how to check it."""

    path: str
    urls: tuple[str, ...]
    #: None means "not pinned yet": fetching refuses until a hash is written in
    sha256: str | None
    #: only for files whose publisher ships an md5 (the Keras weight files)
    md5: str | None = None
    size: int | None = None

    @property
    def known_hash(self) -> tuple[str, str] | None:
        """(algorithm, hex digest) a download is checked against; sha256 wins over md5."""
        if self.sha256:
            return "sha256", self.sha256
        if self.md5:
            return "md5", self.md5
        return None


@dataclass(frozen=True)
class Entry:
    """A named download: its files plus what a user must know before using them."""

    name: str
    files: tuple[RemoteFile, ...]
    #: folder the files go to, relative to the download root unless absolute or ``~``
    dest: str = "."
    extract: bool = False
    description: str = ""
    licence: str = ""
    citation: str = ""

    @property
    def url(self) -> str:
        """First URL of the first file (single-file entries have just one)."""
        return self.files[0].urls[0]

    @property
    def sha256(self) -> str | None:
        """Pinned sha256 of the first file."""
        return self.files[0].sha256

    @property
    def filename(self) -> str:
        """Where the first file goes, relative to the entry's folder."""
        return self.files[0].path


def _hex(value: object, length: int, what: str, where: str) -> str | None:
    if value is None:
        return None
    text = str(value).lower()
    if len(text) != length or any(c not in "0123456789abcdef" for c in text):
        raise ManifestError(f"{where} has a malformed {what} {text!r}; it must be {length} hex "
                            "digits, or null while the file is not pinned yet.")
    return text


def _file(spec: dict, where: str) -> RemoteFile:
    unknown = sorted(set(spec) - FILE_KEYS)
    if unknown:
        raise ManifestError(f"{where}: unknown key(s) {unknown}; valid keys are "
                            f"{sorted(FILE_KEYS)}.")
    urls = spec.get("urls") or ([spec["url"]] if spec.get("url") else [])
    if isinstance(urls, str):
        urls = [urls]
    if not urls:
        raise ManifestError(f"{where} needs 'url' (or a list 'urls').")
    if "sha256" not in spec:
        raise ManifestError(f"{where} needs 'sha256' (64 hex digits, or null to say the file is "
                            "not pinned yet).")
    path = spec.get("path") or PurePosixPath(str(urls[0]).split("?")[0]).name
    pure = PurePosixPath(str(path))
    if pure.is_absolute() or ".." in pure.parts or not pure.parts:
        raise ManifestError(f"{where}: path {path!r} must be relative and stay inside the "
                            "entry's folder.")
    size = spec.get("size")
    return RemoteFile(path=str(pure), urls=tuple(str(u) for u in urls),
                      sha256=_hex(spec.get("sha256"), 64, "sha256", where),
                      md5=_hex(spec.get("md5"), 32, "md5", where),
                      size=None if size is None else int(size))


def read_manifest(path: str | Path) -> dict[str, Entry]:
    """Entries by name, validated: unknown keys, malformed hashes and unsafe paths are errors."""
    path = Path(path)
    spec = yaml.safe_load(path.read_text()) or {}
    entries = {}
    for name, e in (spec.get("entries") or {}).items():
        where = f"{path}: entry {name!r}"
        if not isinstance(e, dict):
            raise ManifestError(f"{where} must be a mapping of keys such as url and sha256.")
        unknown = sorted(set(e) - ENTRY_KEYS)
        if unknown:
            raise ManifestError(f"{where}: unknown key(s) {unknown}; valid keys are "
                                f"{sorted(ENTRY_KEYS)}.")
        if "files" in e:
            files = tuple(_file(f, f"{where}, file {i}")
                          for i, f in enumerate(e["files"] or []))
            if not files:
                raise ManifestError(f"{where}: 'files' is empty.")
            default_dest = name
        else:
            single = {k: v for k, v in e.items() if k in FILE_KEYS}
            files = (_file(single | {"path": e.get("filename")}, where),)
            default_dest = "."
        extract = bool(e.get("extract", False))
        if extract and len(files) != 1:
            raise ManifestError(f"{where}: 'extract' needs exactly one archive file.")
        entries[name] = Entry(name=name, files=files, dest=str(e.get("dest") or default_dest),
                              extract=extract, description=str(e.get("description", "")).strip(),
                              licence=str(e.get("licence", "")).strip(),
                              citation=str(e.get("citation", "")).strip())
    return entries


def sha256sum(path: str | Path) -> str:
    """Hex sha256 of a file, the digest a manifest entry pins."""
    return file_hash(path, "sha256")


def file_hash(path: str | Path, algorithm: str = "sha256") -> str:
    """Hex digest of a file read in 1 MiB blocks, so large downloads need little memory."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# --- downloading ------------------------------------------------------------------------

class ResumableDownloader:
    """A pooch downloader that keeps what arrived in `partial` and resumes it with a Range
    request, so an interrupted download of a large file restarts where it stopped."""

    def __init__(self, partial: Path, progress: bool = True, timeout: float = 60.0):
        self.partial = Path(partial)
        self.progress = progress
        self.timeout = timeout

    def __call__(self, url: str, output_file: str, pooch_obj: object,
                 check_only: bool = False) -> bool | None:
        import requests
        from tqdm.auto import tqdm

        if check_only:
            return requests.head(url, timeout=self.timeout, allow_redirects=True).ok
        have = self.partial.stat().st_size if self.partial.exists() else 0
        headers = {"Range": f"bytes={have}-"} if have else {}
        with requests.get(url, headers=headers, stream=True, timeout=self.timeout) as r:
            if r.status_code == 416:  # the partial file is already complete
                _link_or_copy(self.partial, Path(output_file))
                return None
            r.raise_for_status()
            if r.status_code != 206:  # the server ignored the range: start over
                have = 0
            length = r.headers.get("Content-Length")
            total = have + int(length) if length is not None else None
            bar = tqdm(total=total, initial=have, unit="B", unit_scale=True, leave=False,
                       desc=Path(self.partial.name).name.removesuffix(".part"),
                       disable=not self.progress)
            r.raw.enforce_content_length = False  # keep every byte that arrives
            with bar, open(self.partial, "ab" if have else "wb") as f:
                for chunk in r.iter_content(1 << 16):
                    f.write(chunk)
                    bar.update(len(chunk))
            if total is not None and self.partial.stat().st_size < total:
                raise ConnectionError(f"connection closed after {self.partial.stat().st_size} "
                                      f"of {total} bytes")
        _link_or_copy(self.partial, Path(output_file))
        return None


def _link_or_copy(src: Path, dst: Path) -> None:
    """Hand pooch the finished file without doubling the disk space where links work."""
    dst.unlink(missing_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def _set_aside(path: Path) -> Path:
    """Rename a file that failed verification so nothing reads it by its usual name."""
    n = 0
    while (aside := path.with_name(f"{path.name}.rejected-{n}")).exists():
        n += 1
    os.replace(path, aside)
    return aside


def _mismatch(path: Path, f: RemoteFile) -> str | None:
    """Why `path` is not the file the manifest pins, or None when it is."""
    size = path.stat().st_size
    algorithm, expected = f.known_hash
    got = file_hash(path, algorithm)
    hashes = f"{algorithm} {got}, expected {algorithm} {expected}"
    if f.size is not None and size != f.size:
        return f"size {size} bytes, expected {f.size} bytes; {hashes}"
    return hashes if got != expected else None


def _download(entry: Entry, f: RemoteFile, final: Path, progress: bool, timeout: float) -> None:
    import pooch
    import requests

    staging = final.parent / ".incoming"
    staging.mkdir(parents=True, exist_ok=True)
    partial = staging / f"{final.name}.part"
    errors = []
    for url in f.urls:
        if "://" not in url:  # a local path
            src = Path(url).expanduser()
            if not src.is_file():
                errors.append(f"{url}: no such file")
                continue
            shutil.copyfile(src, partial)
            break
        try:
            got = pooch.retrieve(url, known_hash=None, fname=final.name, path=staging,
                                 downloader=ResumableDownloader(partial, progress, timeout),
                                 progressbar=False)
            Path(got).unlink()  # the verified copy is made from `partial` below
            break
        except (OSError, requests.RequestException) as err:
            errors.append(f"{url}: {err}")
    else:
        kept = (f" {partial.stat().st_size} bytes arrived and are kept in {partial}; run "
                "again to resume." if partial.exists() and partial.stat().st_size else "")
        raise ManifestError(f"Cannot download {entry.name} ({f.path}): {'; '.join(errors)}."
                            f"{kept} Check the URL and the network, or put the file in place "
                            "by hand and point the entry's url to it.")
    why = _mismatch(partial, f)
    if why:
        aside = _set_aside(partial)
        raise ManifestError(
            f"Checksum mismatch for {entry.name} ({f.path}) from {f.urls[0]}: {why}. The file "
            f"was set aside as {aside} and not used. The download was corrupt or the file "
            "changed upstream; fix the hash in data_manifest.yaml only if you trust the new file."
        )
    os.replace(partial, final)


def _fetch_file(entry: Entry, f: RemoteFile, final: Path, progress: bool,
                timeout: float) -> Path:
    if final.exists():
        why = _mismatch(final, f)
        if why is None:
            return final
        aside = _set_aside(final)
        print(f"{final} did not verify ({why}); set aside as {aside}, downloading it again.")
    final.parent.mkdir(parents=True, exist_ok=True)
    _download(entry, f, final, progress, timeout)
    return final


def entry_folder(entry: Entry, dest_dir: str | Path) -> Path:
    """Where an entry's files go: `dest` under the download root, or as written if absolute."""
    dest = Path(entry.dest).expanduser()
    return dest if dest.is_absolute() else Path(dest_dir) / dest


# --- safe extraction ----------------------------------------------------------------------

def _check_member(archive: Path, name: str, link: str | None = None) -> None:
    """Refuse absolute names, `..` components and links that resolve outside the target."""
    pure = PurePosixPath(name.replace("\\", "/"))
    if pure.is_absolute() or ".." in pure.parts or name[1:3] == ":/":
        raise ManifestError(f"{archive}: member {name!r} would be written outside the target "
                            "folder; the archive is unsafe and was not unpacked.")
    if link is not None:
        resolved = posixpath.normpath(posixpath.join(str(pure.parent), link.replace("\\", "/")))
        if posixpath.isabs(link) or resolved == ".." or resolved.startswith("../"):
            raise ManifestError(f"{archive}: link {name!r} -> {link!r} points outside the target "
                                "folder; the archive is unsafe and was not unpacked.")


def safe_extract(archive: Path, target: Path) -> None:
    """Unpack a zip or tar archive into `target`, refusing it whole if any member is unsafe."""
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as z:
            for info in z.infolist():
                is_link = stat.S_ISLNK(info.external_attr >> 16)
                _check_member(archive, info.filename, z.read(info).decode() if is_link else None)
            z.extractall(target)
    elif tarfile.is_tarfile(archive):
        with tarfile.open(archive) as t:
            members = t.getmembers()
            for m in members:
                if m.issym():
                    _check_member(archive, m.name, m.linkname)
                elif m.islnk():
                    _check_member(archive, m.name)
                    _check_member(archive, m.linkname)
                else:
                    _check_member(archive, m.name)
            try:
                t.extractall(target, filter="data")
            except tarfile.FilterError as err:
                raise ManifestError(f"{archive}: {err}; the archive is unsafe.") from err
    else:
        raise ManifestError(f"{archive} is neither a zip nor a tar archive; set extract: false.")


# --- entry points ------------------------------------------------------------------------

def fetch(entry: Entry, dest_dir: str | Path, timeout: float = 60.0,
          progress: bool = True) -> Path:
    """The entry's file, folder of files, or unpacked archive, downloaded and verified once.

    Parameters
    ----------
    entry : Entry
        From :func:`read_manifest`.
    dest_dir : path
        Download root; the entry's ``dest`` is relative to it unless absolute.

    Returns
    -------
    Path
        The single file, the entry's folder (several files), or the unpacked folder.
    """
    unpinned = [f for f in entry.files if f.known_hash is None]
    if unpinned:
        listing = "".join(f"\n  {f.path}: {f.urls[0]}" for f in unpinned)
        raise ManifestError(
            f"{entry.name}: {len(unpinned)} file(s) not pinned (sha256: null in the manifest), "
            "so nothing would check what arrives and nothing was downloaded. Download them "
            "yourself, check them, and write the output of `sha256sum FILE` as each sha256:"
            f"{listing}"
        )
    folder = entry_folder(entry, dest_dir)
    if entry.extract:
        unpacked = Path(dest_dir) / entry.name if entry.dest == "." else folder
        if (unpacked / ".verified").exists():
            return unpacked
        root = Path(dest_dir) if entry.dest == "." else folder.parent
        archive = _fetch_file(entry, entry.files[0], root / entry.files[0].path, progress,
                              timeout)
        with atomic_directory(unpacked) as work:
            safe_extract(archive, work)
            (work / ".verified").write_text(file_hash(archive))
        return unpacked
    paths = [_fetch_file(entry, f, folder / f.path, progress, timeout) for f in entry.files]
    return paths[0] if len(entry.files) == 1 and entry.dest == "." else folder


def fetch_all(manifest: str | Path, dest_dir: str | Path, names: list[str] | None = None,
              progress: bool = True) -> dict[str, Path]:
    """Fetch the named entries (all when `names` is empty), stopping at the first failure."""
    entries = read_manifest(manifest)
    unknown = [n for n in names or [] if n not in entries]
    if unknown:
        raise ManifestError(f"{manifest} has no entries {unknown}; it has {sorted(entries)}.")
    return {n: fetch(entries[n], dest_dir, progress=progress) for n in names or entries}


def describe(manifest: str | Path) -> list[dict]:
    """One row per entry: what it holds, its licence, size and whether it is pinned."""
    rows = []
    for e in read_manifest(manifest).values():
        sizes = [f.size for f in e.files]
        rows.append({"name": e.name, "files": len(e.files),
                     "bytes": sum(sizes) if None not in sizes else None,
                     "pinned": all(f.known_hash for f in e.files), "licence": e.licence,
                     "dest": e.dest, "description": e.description})
    return rows
