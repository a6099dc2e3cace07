"""Building the sandbox image from Debian packages, with no registry.

git and busybox-static, and every package they depend on (``apt-cache depends
--recurse``), are fetched with ``apt-get download`` and unpacked with ``dpkg-deb -x``
into a root filesystem; busybox supplies ``sh`` and the usual tools where no package
does. The image gets a non-root ``sandbox`` user (uid 1000) and is built ``FROM
scratch`` through the Docker API. A label records the recipe, so building again is a
no-op unless the recipe changed. Needs a Debian-like host with apt's package lists.
"""

from __future__ import annotations

import asyncio
import io
import os
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path

import aiodocker

from runtime.errors import RuntimeFailure

DEFAULT_TAG = "threadline-sandbox:latest"
PACKAGES = ("git", "busybox-static")
RECIPE = "debian-packages-1:" + ",".join(PACKAGES)
RECIPE_LABEL = "threadline.sandbox.recipe"
PRUNED = ("usr/share/doc", "usr/share/man", "usr/share/info", "usr/share/locale")
DOCKERFILE = f"""FROM scratch
COPY rootfs/ /
ENV PATH=/usr/local/bin:/usr/bin:/bin
WORKDIR /workspace
LABEL {RECIPE_LABEL}="{RECIPE}"
"""
_SKIP = ("--no-recommends", "--no-suggests", "--no-conflicts", "--no-breaks")
_SKIP_MORE = ("--no-replaces", "--no-enhances")

Log = Callable[[str], None]


async def build_image(tag: str = DEFAULT_TAG, *, force: bool = False, log: Log = print) -> bool:
    """Build the image as ``tag``; False when an image of this recipe is there already."""
    async with aiodocker.Docker() as docker:
        if not force and await _has_recipe(docker, tag):
            log(f"{tag} is up to date")
            return False
        with tempfile.TemporaryDirectory(prefix="threadline-image-") as scratch:
            context = await asyncio.to_thread(_build_context, Path(scratch), log)
            log(f"building {tag}")
            archive = await asyncio.to_thread(context.open, "rb")
            try:
                await docker.images.build(fileobj=archive, encoding="identity", tag=tag)
            except aiodocker.DockerError as exc:
                raise RuntimeFailure(f"could not build {tag}: {exc.message}") from exc
            finally:
                archive.close()
    log(f"built {tag}")
    return True


async def _has_recipe(docker: aiodocker.Docker, tag: str) -> bool:
    try:
        info = await docker.images.inspect(tag)
    except aiodocker.DockerError:
        return False
    labels = (info.get("Config") or {}).get("Labels") or {}
    return bool(labels.get(RECIPE_LABEL) == RECIPE)


def _build_context(scratch: Path, log: Log) -> Path:
    packages = dependency_closure(PACKAGES)
    downloads = scratch / "debs"
    downloads.mkdir()
    log(f"downloading {len(packages)} Debian packages")
    _run(["apt-get", "download", "-qq", *packages], cwd=downloads)
    rootfs = scratch / "rootfs"
    rootfs.mkdir()
    for deb in sorted(downloads.glob("*.deb")):
        _run(["dpkg-deb", "-x", str(deb), str(rootfs)])
    _finish_rootfs(rootfs)
    context = scratch / "context.tar"
    with tarfile.open(context, "w") as archive:
        dockerfile = DOCKERFILE.encode()
        entry = tarfile.TarInfo("Dockerfile")
        entry.size = len(dockerfile)
        archive.addfile(entry, io.BytesIO(dockerfile))
        archive.add(rootfs, arcname="rootfs")
    return context


def dependency_closure(packages: tuple[str, ...]) -> list[str]:
    """Every package ``packages`` need to run (Depends and Pre-Depends, recursively)."""
    listing = _run(["apt-cache", "depends", "--recurse", *_SKIP, *_SKIP_MORE, *packages])
    names = sorted(
        {line.strip() for line in listing.splitlines() if line and not line.startswith((" ", "<"))}
    )
    missing = [package for package in packages if package not in names]
    if missing:
        raise RuntimeFailure(f"apt knows no package {', '.join(missing)}: run apt-get update first")
    return names


def _finish_rootfs(rootfs: Path) -> None:
    for pruned in PRUNED:
        shutil.rmtree(rootfs / pruned, ignore_errors=True)
    busybox = rootfs / "bin" / "busybox"
    applets = _run([str(busybox), "--list"]).split()
    taken = {
        name
        for directory in ("bin", "sbin", "usr/bin", "usr/sbin")
        if (rootfs / directory).is_dir()
        for name in os.listdir(rootfs / directory)
    }
    for applet in applets:
        if applet not in taken:
            (rootfs / "bin" / applet).symlink_to("busybox")
    for directory in ("tmp", "workspace", "home/sandbox", "etc"):
        (rootfs / directory).mkdir(parents=True, exist_ok=True)
    (rootfs / "tmp").chmod(0o1777)
    (rootfs / "etc" / "passwd").write_text(
        "root:x:0:0:root:/root:/bin/sh\nsandbox:x:1000:1000:sandbox:/home/sandbox:/bin/sh\n"
    )
    (rootfs / "etc" / "group").write_text("root:x:0:\nsandbox:x:1000:\n")


def _run(command: list[str], cwd: Path | None = None) -> str:
    try:
        result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=False)
    except FileNotFoundError as exc:
        raise RuntimeFailure(f"{command[0]} is missing: the image is built with apt") from exc
    if result.returncode != 0:
        raise RuntimeFailure(f"{' '.join(command[:2])} failed: {result.stderr.strip()[-500:]}")
    return result.stdout
