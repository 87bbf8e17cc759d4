"""Download a package once from npm or the Debian archive, check it, unpack it safely.

    fetch_npm("emoji-datasource-google", "16.0.0", raw_dir)  -> Package(root=<unpacked folder>, ...)
    fetch_deb(DebRelease(...), raw_dir)                      -> Package(root=<unpacked folder>, ...)

Everything lands in `raw_dir` (default data/raw): the registry's manifest, the archive as
downloaded and the unpacked tree. A second run with a pinned version finds all three
there and touches no network; the archive is re-hashed each time, so a file damaged on
disk is caught too. Archives are unpacked member by member in Python: only regular files,
no absolute paths, no "..", so a hostile archive cannot write outside its folder.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import logging
import posixpath
import shutil
import subprocess
import tarfile
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Callable, Optional

logger = logging.getLogger(__name__)

NPM_REGISTRY = "https://registry.npmjs.org"
DEBIAN_MIRROR = "http://deb.debian.org/debian"  # the pool's .debs are checked by SHA256, so http is enough
TIMEOUT_S = 60  # per network read; a stalled registry fails instead of hanging the build
CHUNK = 1 << 20
COMPLETE = ".complete"  # marker written last into an unpacked folder: its absence means "redo"


class FetchError(ValueError):
    """A download that failed; a ValueError so that the command line prints it as one line."""


class IntegrityError(ValueError):
    """A downloaded or cached file whose checksum is not the one the registry published."""


@dataclass
class Package:
    """A fetched, verified and unpacked package."""

    name: str
    version: str
    root: Path  # the unpacked package folder (npm: the tarball's "package/"; deb: the filesystem root)
    archive: Path  # the archive as downloaded, kept in raw_dir
    license: str = ""  # as the registry states it (SPDX for npm)
    homepage: str = ""
    authors: str = ""
    manifest: dict = field(default_factory=dict)


@dataclass
class DebRelease:
    """One .deb in the Debian pool, pinned by its path and SHA256 (from the archive's Packages index)."""

    package: str
    version: str
    filename: str  # pool path, e.g. pool/main/t/tuxpaint-stamps/tuxpaint-stamps-default_2022.06.04-1_all.deb
    sha256: str
    license: str = ""
    homepage: str = ""


# ---------------------------------------------------------------------------- checksums


def file_digest(path: Path, algorithm: str) -> bytes:
    """The raw digest of a file, read in chunks."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            digest.update(chunk)
    return digest.digest()


def verify_npm_integrity(path: Path, integrity: str = "", shasum: str = "") -> str:
    """Check `path` against npm's `dist.integrity` (SRI, e.g. "sha512-<base64>") or `dist.shasum`.

    Returns the algorithm that was checked; raises IntegrityError on a mismatch, naming the
    file and both values. With neither value given nothing can be checked: a warning says so.
    """
    for token in integrity.split():  # SRI may list several hashes; any strong one that matches is enough
        algorithm, _, expected = token.partition("-")
        if algorithm not in ("sha512", "sha384", "sha256"):
            continue
        got = base64.b64encode(file_digest(path, algorithm)).decode()
        if got != expected.split("?")[0]:
            raise IntegrityError(_mismatch(path, f"{algorithm}-{expected}", f"{algorithm}-{got}"))
        return algorithm
    if shasum:
        got = file_digest(path, "sha1").hex()
        if got != shasum.lower():
            raise IntegrityError(_mismatch(path, f"sha1 {shasum}", f"sha1 {got}"))
        return "sha1"
    logger.warning("%s: the registry gave no checksum; the file is used unverified", path)
    return ""


def verify_sha256(path: Path, expected: str) -> None:
    got = file_digest(path, "sha256").hex()
    if got != expected.lower():
        raise IntegrityError(_mismatch(path, f"sha256 {expected}", f"sha256 {got}"))


def _mismatch(path: Path, expected: str, got: str) -> str:
    return (f"{path}: checksum mismatch: the registry says {expected}, the file has {got}; the download is "
            f"damaged or not the published file. Delete {path} and run again; if it happens again, a proxy "
            "or mirror is serving a different file")


# ---------------------------------------------------------------------------- downloads


def _open_url(url: str):
    request = urllib.request.Request(url, headers={"User-Agent": "mini-t2i-data-builder"})
    try:
        return urllib.request.urlopen(request, timeout=TIMEOUT_S)
    except urllib.error.HTTPError as err:
        raise FetchError(f"{url}: HTTP {err.code} {err.reason}; check the package name and version") from None
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise FetchError(f"could not reach {url} ({reason}); the builder needs this registry, or a --raw-dir "
                         "that already holds the download (see docs/data.md)") from None


def get_json(url: str) -> dict:
    with _open_url(url) as response:
        try:
            return json.loads(response.read())
        except json.JSONDecodeError as err:
            raise FetchError(f"{url}: the registry answered with something that is not JSON ({err})") from None


def download(url: str, dest: Path, check: Callable[[Path], object]) -> Path:
    """Stream `url` to `dest` through `dest.part`; `check(part)` must pass before the rename."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    logger.info("downloading %s", url)
    try:
        with _open_url(url) as response, open(part, "wb") as f:
            shutil.copyfileobj(response, f, CHUNK)
        check(part)
    except (OSError, ValueError) as err:
        part.unlink(missing_ok=True)  # never leave a half or a wrong file where the cache looks
        if isinstance(err, ValueError):
            raise
        raise FetchError(f"downloading {url} failed ({err}); run again to retry") from None
    part.replace(dest)
    return dest


# ---------------------------------------------------------------------------- npm


def _npm_safe(name: str) -> str:
    return name.lstrip("@").replace("/", "__")  # "@iconify-json/noto" -> "iconify-json__noto"


def fetch_npm(name: str, version: str, raw_dir: str | Path, registry: str = NPM_REGISTRY) -> Package:
    """Fetch npm package `name` at `version` ("latest" asks the registry each time) into raw_dir/npm.

    The tarball is checked against the manifest's `dist.integrity` (or `dist.shasum`) both
    when it is downloaded and when a cached copy is reused.
    """
    cache = Path(raw_dir) / "npm"
    manifest_path = cache / f"{_npm_safe(name)}-{version}.json"
    if version != "latest" and manifest_path.is_file():
        manifest = json.loads(manifest_path.read_text())
    else:
        manifest = get_json(f"{registry.rstrip('/')}/{name}/{version}")
        if "dist" not in manifest or "version" not in manifest:
            raise FetchError(f"{registry}/{name}/{version}: not an npm version manifest (no dist/version)")
        cache.mkdir(parents=True, exist_ok=True)
        manifest_path = cache / f"{_npm_safe(name)}-{manifest['version']}.json"
        _write_atomic(manifest_path, json.dumps(manifest, indent=1).encode())
    resolved, dist = manifest["version"], manifest["dist"]
    archive = cache / f"{_npm_safe(name)}-{resolved}.tgz"

    def check(path: Path) -> None:
        verify_npm_integrity(path, dist.get("integrity", ""), dist.get("shasum", ""))

    if archive.is_file():
        check(archive)
    else:
        download(dist["tarball"], archive, check)
    unpacked = cache / f"{_npm_safe(name)}-{resolved}"
    if not (unpacked / COMPLETE).is_file():
        with open(archive, "rb") as f:
            extract_tar(f, unpacked, mode="r|gz")
    # npm tarballs hold one top folder, nearly always "package/".
    tops = [p for p in unpacked.iterdir() if p.is_dir()]
    root = unpacked / "package" if (unpacked / "package").is_dir() else tops[0] if len(tops) == 1 else unpacked
    return Package(name=name, version=resolved, root=root, archive=archive, license=_npm_license(manifest),
                   homepage=str(manifest.get("homepage") or ""), authors=_npm_authors(manifest), manifest=manifest)


def _npm_license(manifest: dict) -> str:
    value = manifest.get("license") or ""
    return value.get("type", "") if isinstance(value, dict) else str(value)


def _npm_authors(manifest: dict) -> str:
    people = [manifest.get("author")] + list(manifest.get("contributors") or [])
    names = [p.get("name", "") if isinstance(p, dict) else str(p) for p in people if p]
    return ", ".join(n for n in names if n)


# ---------------------------------------------------------------------------- Debian


def fetch_deb(release: DebRelease, raw_dir: str | Path, mirror: str = DEBIAN_MIRROR,
              keep: Optional[Callable[[str], bool]] = None, local_deb: str | Path | None = None) -> Package:
    """Fetch the pinned .deb from the Debian pool into raw_dir/deb and unpack its data.tar.

    `local_deb`: a .deb already on disk (e.g. from `apt-get download`) to use instead; it is
    still checked against `release.sha256` unless that is empty. `keep(path)` picks the
    members to unpack (paths as in the package, without a leading "./").
    """
    cache = Path(raw_dir) / "deb"
    if local_deb is not None:
        archive = Path(local_deb)
        if not archive.is_file():
            raise FileNotFoundError(f"{archive}: no such .deb file")
        if release.sha256:
            verify_sha256(archive, release.sha256)
    else:
        archive = cache / posixpath.basename(release.filename)
        if archive.is_file():
            verify_sha256(archive, release.sha256)
        else:
            download(f"{mirror.rstrip('/')}/{release.filename}", archive, lambda p: verify_sha256(p, release.sha256))
    unpacked = cache / f"{release.package}_{release.version}"
    if not (unpacked / COMPLETE).is_file():
        extract_deb(archive, unpacked, keep)
    return Package(name=release.package, version=release.version, root=unpacked, archive=archive,
                   license=release.license, homepage=release.homepage)


def _ar_members(f: BinaryIO, where: Path) -> dict[str, tuple[int, int]]:
    """{name: (offset, size)} of an `ar` archive (the container of every .deb)."""
    if f.read(8) != b"!<arch>\n":
        raise ValueError(f"{where}: not a .deb (no ar header); the download may be an error page, delete it")
    members = {}
    while True:
        header = f.read(60)  # name 16, mtime 12, uid 6, gid 6, mode 8, size 10, magic 2
        if len(header) < 60:
            return members
        name = header[:16].decode("ascii", "replace").strip().rstrip("/")
        size = int(header[48:58].decode("ascii").strip())
        members[name] = (f.tell(), size)
        f.seek(size + (size & 1), io.SEEK_CUR)  # members are padded to an even size


def extract_deb(path: Path, dest: Path, keep: Optional[Callable[[str], bool]] = None) -> None:
    """Unpack the data.tar.{xz,gz,bz2,zst} of a .deb into `dest` (no dpkg needed)."""
    with open(path, "rb") as f:
        members = _ar_members(f, path)
        name = next((n for n in members if n.startswith("data.tar")), None)
        if name is None:
            raise ValueError(f"{path}: a .deb without data.tar.* (members: {sorted(members)})")
        offset, size = members[name]
        f.seek(offset)
        data = _Slice(f, size)
        if name.endswith(".zst"):
            with _zstd_stream(data, path) as stream:
                extract_tar(stream, dest, keep=keep, mode="r|")
            return
        modes = {"data.tar": "r|", "data.tar.gz": "r|gz", "data.tar.xz": "r|xz", "data.tar.bz2": "r|bz2"}
        if name not in modes:
            raise ValueError(f"{path}: {name} uses a compression this builder does not know")
        extract_tar(data, dest, keep=keep, mode=modes[name])


class _Slice(io.RawIOBase):
    """A read-only view of `size` bytes of an open file from its current position."""

    def __init__(self, f: BinaryIO, size: int):
        self.f, self.left = f, size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self.f.read(min(len(buffer), self.left))
        buffer[: len(data)] = data
        self.left -= len(data)
        return len(data)


def _zstd_stream(data: BinaryIO, path: Path):
    """A decompressing reader for zstd, from the `zstandard` module or else the `zstd` program."""
    try:
        import zstandard  # optional; Debian's own .debs are still xz, Ubuntu's are zstd
    except ImportError:
        zstandard = None
    if zstandard is not None:
        return zstandard.ZstdDecompressor().stream_reader(data)
    if shutil.which("zstd") is None:
        raise RuntimeError(f"{path}: data.tar.zst needs zstd: `pip install zstandard` or `apt-get install zstd`")
    spool = tempfile.TemporaryFile()
    shutil.copyfileobj(data, spool, CHUNK)
    spool.seek(0)
    output = tempfile.TemporaryFile()
    subprocess.run(["zstd", "-dc"], stdin=spool, stdout=output, check=True)
    spool.close()
    output.seek(0)
    return output


# ---------------------------------------------------------------------------- safe unpacking


def extract_tar(fileobj: BinaryIO, dest: Path, keep: Optional[Callable[[str], bool]] = None,
                mode: str = "r|*") -> int:
    """Unpack the regular files of a tar stream into `dest` via `dest.tmp`; returns the file count.

    Links, devices and members whose path is absolute or climbs out with ".." are skipped:
    archives from a registry are still untrusted input. `dest` appears only when complete.
    """
    from mini_t2i.atomic import atomic_folder

    # A corrupt archive or Ctrl-C leaves no half-unpacked folder behind.
    with atomic_folder(dest) as tmp:
        count = _extract_members(fileobj, tmp, keep, mode)
        (tmp / COMPLETE).write_text(f"{count} files\n")
    return count


def _extract_members(fileobj: BinaryIO, tmp: Path, keep: Optional[Callable[[str], bool]], mode: str) -> int:
    count = 0
    with tarfile.open(fileobj=fileobj, mode=mode) as tar:
        for member in tar:
            name = posixpath.normpath(member.name)
            while name.startswith("./"):
                name = name[2:]
            if not member.isfile() or name.startswith(("/", "..")) or name in (".", ""):
                continue
            if keep is not None and not keep(name):
                continue
            target = tmp / name
            target.parent.mkdir(parents=True, exist_ok=True)
            source = tar.extractfile(member)
            with open(target, "wb") as out:
                shutil.copyfileobj(source, out, CHUNK)
            count += 1
    return count


def _write_atomic(path: Path, data: bytes) -> None:
    part = path.with_name(path.name + ".part")
    part.write_bytes(data)
    part.replace(path)
