"""Hot deploy: a service archive turned into a service folder under `services_dir`.

An archive (tar, tar.gz or tar.bz2) holds one folder NAME with the original LAppS's
descriptor NAME/NAME.json and the service's Lua files (NAME/NAME.lua and its modules). It is
checked before anything changes: only plain files and folders, no absolute paths, no "..",
no links or devices, one top folder whose name is a service name, at most `MAX_FILES` files
and `MAX_BYTES` bytes unpacked, the descriptor a JSON object, the script present. Then it is
unpacked beside `services_dir` (same file system, so the swap is a rename), the descriptor
becomes the folder's `service.toml` (its `[services.NAME]` table, through the same rules as
`lapps migrate-config`, with a comment on every key dropped or changed), and `install` swaps
the folder in, keeping the old one until `commit` or `rollback`.

What the master does with it (the compile check, the new config, telling the workers) is in
lapps/master/deployer.py; `lapps deploy FILE` (lapps/commands/deploy.py) runs the same checks
first so that a bad archive is refused where it was given.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .migrate import service_toml

MAX_FILES = 10_000
MAX_BYTES = 64 * 1024 * 1024
SUFFIXES = (".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar")
SERVICE_TOML = "service.toml"
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")   # as config.py's service names


class DeployError(Exception):
    """An archive that cannot be deployed; the message says why."""


def is_archive(path: str | Path) -> bool:
    """Whether `path` names an archive the deployer takes (by its suffix)."""
    name = str(path).lower()
    return any(name.endswith(s) for s in SUFFIXES) and not os.path.basename(name).startswith(".")


def check_members(members: list[tarfile.TarInfo]) -> str:
    """The service name of an archive whose `members` are as the module docstring says;
    raises DeployError naming the first member that is not."""
    tops: set[str] = set()
    total = files = 0
    for m in members:
        parts = Path(m.name).parts
        if m.name.startswith("/") or not parts or ".." in parts:
            raise DeployError(f"{m.name!r}: a path outside the service folder")
        if not (m.isfile() or m.isdir()):
            raise DeployError(f"{m.name!r}: only plain files and folders may be deployed "
                              "(no links, devices or fifos)")
        tops.add(parts[0])
        if m.isfile():
            files += 1
            total += m.size
    if len(tops) != 1:
        raise DeployError(f"expected one top folder (the service), found {len(tops)}: "
                          + ", ".join(sorted(tops)[:5]) if tops else "an empty archive")
    if files > MAX_FILES or total > MAX_BYTES:
        raise DeployError(f"{files} files, {total} bytes: more than {MAX_FILES} files or {MAX_BYTES} bytes")
    name = tops.pop()
    if not _NAME.match(name):
        raise DeployError(f"{name!r}: a service name is letters, digits and _ (not starting with a digit)")
    return name


@dataclass
class Staged:
    """An archive unpacked next to services_dir, ready to be installed as `name`."""
    name: str
    folder: Path          # the unpacked service folder
    scratch: Path         # what to remove afterwards
    warnings: list[str]   # keys of the descriptor dropped (not settings of this server)


def unpack(archive: Path, scratch_root: Path, configured: set[str]) -> Staged:
    """Check and unpack `archive` into a new folder under `scratch_root` (services_dir, so
    that `install` is a rename); the service folder gets its service.toml. `configured` are
    the services the server has (a `depends` on others is dropped)."""
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            name = check_members(members)
            scratch = Path(tempfile.mkdtemp(prefix=f".deploy-{name}-", dir=scratch_root))
            try:
                tar.extractall(scratch, filter="data")
            except (OSError, tarfile.TarError) as e:
                shutil.rmtree(scratch, ignore_errors=True)
                raise DeployError(f"cannot unpack: {e}") from None
    except (OSError, tarfile.TarError, EOFError) as e:
        raise DeployError(f"not a readable tar archive: {e}") from None
    folder = scratch / name
    try:
        return _describe(name, folder, scratch, configured)
    except DeployError:
        shutil.rmtree(scratch, ignore_errors=True)
        raise


def _describe(name: str, folder: Path, scratch: Path, configured: set[str]) -> Staged:
    descriptor_path = folder / f"{name}.json"
    if not (folder / f"{name}.lua").is_file():
        raise DeployError(f"no {name}/{name}.lua in the archive (the service's script)")
    try:
        descriptor = json.loads(descriptor_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DeployError(f"no {name}/{name}.json in the archive (the service's descriptor)") from None
    except (OSError, ValueError) as e:
        raise DeployError(f"{name}/{name}.json: {e}") from None
    if not isinstance(descriptor, dict):
        raise DeployError(f"{name}/{name}.json: expected a JSON object")
    if descriptor.get("name", name) != name:
        raise DeployError(f"{name}/{name}.json names the service {descriptor['name']!r}, not {name!r}")
    migration = service_toml(name, descriptor, configured)
    (folder / SERVICE_TOML).write_text(migration.text, encoding="utf-8")
    return Staged(name, folder, scratch, migration.warnings)


@dataclass
class Installed:
    """A staged folder swapped in; `backup` is the folder it replaced (None: a new service)."""
    target: Path
    backup: Path | None
    staged: Staged


def install(staged: Staged, services_dir: Path) -> Installed:
    """Swap the staged folder in as services_dir/NAME (renames only)."""
    target = services_dir / staged.name
    backup = None
    if target.exists():
        backup = staged.scratch / f"{staged.name}.previous"
        os.rename(target, backup)
    os.rename(staged.folder, target)
    return Installed(target, backup, staged)


def rollback(done: Installed) -> None:
    """Put back what `install` replaced (or remove a new service), then clean up."""
    shutil.rmtree(done.target, ignore_errors=True)
    if done.backup is not None:
        os.rename(done.backup, done.target)
    shutil.rmtree(done.staged.scratch, ignore_errors=True)


def commit(done: Installed) -> None:
    """Forget the replaced folder."""
    shutil.rmtree(done.staged.scratch, ignore_errors=True)


def discard(staged: Staged) -> None:
    shutil.rmtree(staged.scratch, ignore_errors=True)
