#!/bin/bash
# make image: the container image localhost/lapps:<version> (and :latest) from packaging/Dockerfile,
# with podman, pulling nothing from a registry: the base is made here with debootstrap from the
# Debian mirror (minbase bookworm, plus python3, libcap2 and adduser, which the .deb depends on,
# with debian:bookworm-slim's dpkg excludes), imported once as localhost/lapps-base:bookworm.
# The .deb must exist (make image runs make deb first). Root; installs podman, runc and
# debootstrap with apt when missing.
#
# Environment: DEBIAN_MIRROR (default http://deb.debian.org/debian), LAPPS_IMAGE (default
# localhost/lapps), LAPPS_BASE_REBUILD=1 makes the base again.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
IMAGE=${LAPPS_IMAGE:-localhost/lapps}
BASE=localhost/lapps-base:bookworm
WORK=$ROOT/build/image

say() { echo "image: $*"; }
die() { echo "image: ERROR: $*" >&2; exit 1; }

VERSION=$(sed -n 's/^__version__ = "\([^"]*\)"$/\1/p' "$ROOT/lapps/__init__.py")
DEB=$ROOT/dist/lapps_${VERSION}_$(dpkg --print-architecture).deb
[ -f "$DEB" ] || die "no $DEB: run make deb (make image does)"
# The Dockerfile copies dist/lapps_*.deb and wants exactly one.
others=$(find "$ROOT/dist" -maxdepth 1 -name 'lapps_*.deb' ! -path "$DEB")
[ -z "$others" ] || die "dist/ holds other packages than ${DEB##*/}: $others"

missing=""
for tool in podman runc debootstrap; do
    command -v "$tool" >/dev/null || missing="$missing $tool"
done
if [ -n "$missing" ]; then
    [ "$(id -u)" = 0 ] || die "missing:$missing (apt-get install$missing)"
    say "installing$missing"
    apt-get update -qq
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
fi
# shellcheck source=packaging/container/podman.sh
. "$ROOT/packaging/container/podman.sh"

if [ "${LAPPS_BASE_REBUILD:-0}" = 1 ] || ! podman image exists "$BASE"; then
    [ "$(id -u)" = 0 ] || die "debootstrap needs root"
    say "making $BASE with debootstrap from $MIRROR (about a minute)"
    rm -rf "$WORK/rootfs"
    mkdir -p "$WORK/rootfs/etc/dpkg/dpkg.cfg.d"
    # What debian:bookworm-slim leaves out (docs but copyright files, man pages, translations),
    # in place before debootstrap unpacks anything.
    printf '%s\n' 'path-exclude /usr/share/doc/*' 'path-include /usr/share/doc/*/copyright' \
        'path-exclude /usr/share/man/*' 'path-exclude /usr/share/info/*' \
        'path-exclude /usr/share/locale/*' 'path-include /usr/share/locale/locale.alias' \
        'path-exclude /usr/share/lintian/*' > "$WORK/rootfs/etc/dpkg/dpkg.cfg.d/slim"
    debootstrap --variant=minbase --include=python3,libcap2,adduser bookworm "$WORK/rootfs" "$MIRROR" \
        > "$WORK/debootstrap.log" 2>&1 || { tail -20 "$WORK/debootstrap.log" >&2; die "debootstrap failed"; }
    chroot "$WORK/rootfs" apt-get clean
    rm -rf "$WORK/rootfs"/var/lib/apt/lists/* "$WORK/rootfs"/var/log/*.log "$WORK/rootfs"/var/cache/debconf/*-old
    tar --numeric-owner -C "$WORK/rootfs" -cf - . \
        | podman import --change 'CMD ["/bin/bash"]' - "$BASE" >/dev/null
    rm -rf "$WORK/rootfs"
fi

say "building $IMAGE:$VERSION from packaging/Dockerfile (base $BASE)"
# --format docker keeps HEALTHCHECK (the OCI format has no such field); --pull=never: the base
# is local, nothing is fetched from a registry.
podman build --pull=never --format docker "${PODMAN_RUN[@]}" --build-arg "BASE=$BASE" \
    -f "$ROOT/packaging/Dockerfile" -t "$IMAGE:$VERSION" -t "$IMAGE:latest" "$ROOT"
say "built $IMAGE:$VERSION ($(podman image inspect --format '{{.Size}}' "$IMAGE:$VERSION" | awk '{printf "%.0f MB", $1 / 1e6}'))"
