#!/bin/sh
# Build dist/lapps_<version>_<arch>.deb with dpkg-deb (see packaging/README.md for why not debhelper).
#
# The package carries a virtualenv made by Debian's /usr/bin/python3 at /usr/lib/lapps/venv with
# the project (installed from a clean copy, not editable) and its Python dependencies. The venv is
# built in the staging tree and then relocated: every mention of the staging path is rewritten to
# the final one, and the build fails if any byte of the staging or source path is left anywhere.
#
# Needs: gcc, libcap-dev, python3-dev, python3-venv (installed with apt when missing and run as
# root), dpkg-dev (dpkg-shlibdeps), and network access to PyPI (or a pip index in pip's config).
# Environment: DEB_MAINTAINER overrides the Maintainer field.
set -eu

ROOT=$(cd "$(dirname "$0")/.." && pwd)
PKG=$ROOT/packaging
BUILD=$ROOT/build/deb
STAGE=$BUILD/root
SRC=$BUILD/src
DIST=$ROOT/dist
PY=/usr/bin/python3
VENV=/usr/lib/lapps/venv

say() { echo "deb: $*"; }
die() { echo "deb: ERROR: $*" >&2; exit 1; }

umask 022
export LC_ALL=C.UTF-8
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 PYTHONDONTWRITEBYTECODE=1

# --- build dependencies -----------------------------------------------------------------------
missing=""
[ -f /usr/include/sys/capability.h ] || missing="$missing libcap-dev"
command -v gcc >/dev/null || missing="$missing gcc"
$PY -c 'import sysconfig, os, sys; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' \
    2>/dev/null || missing="$missing python3-dev"
$PY -c 'import venv, ensurepip' 2>/dev/null || missing="$missing python3-venv"
command -v dpkg-shlibdeps >/dev/null || missing="$missing dpkg-dev"
command -v dpkg-deb >/dev/null || die "dpkg-deb not found: this builds Debian packages on Debian"
if [ -n "$missing" ]; then
    [ "$(id -u)" = 0 ] || die "missing build dependencies:$missing (apt-get install$missing)"
    say "installing build dependencies:$missing"
    apt-get update -qq
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
fi

# The one version of the project (pyproject.toml reads it too): lapps/__init__.py's __version__.
VERSION=$(sed -n 's/^__version__ = "\([^"]*\)"$/\1/p' "$ROOT/lapps/__init__.py")
[ -n "$VERSION" ] || die "no __version__ = \"X.Y.Z\" line in lapps/__init__.py"
ARCH=$(dpkg --print-architecture)
PYVER=$($PY -c 'import sys; print("%d.%d" % sys.version_info[:2])')
NEXT_PYVER=$($PY -c 'import sys; print("%d.%d" % (sys.version_info[0], sys.version_info[1] + 1))')
DEB=$DIST/lapps_${VERSION}_${ARCH}.deb
MAINTAINER=${DEB_MAINTAINER:-LAppS maintainers <maintainers@users.noreply.r-seed-596f4ec0.example>}

# The changelog's newest entry must be this version (what lintian and apt changelog read).
CHANGELOG_VERSION=$(sed -n '1s/^lapps (\([^)]*\)).*/\1/p' "$PKG/debian/changelog")
[ "$CHANGELOG_VERSION" = "$VERSION" ] || die "packaging/debian/changelog starts with version" \
    "'$CHANGELOG_VERSION' but lapps/__init__.py says '$VERSION': add an entry for $VERSION at its top"

# Timestamps from the last commit, so two builds of one commit differ only where pip's compilers do.
if [ -z "${SOURCE_DATE_EPOCH:-}" ]; then
    SOURCE_DATE_EPOCH=$(git -C "$ROOT" log -1 --format=%ct 2>/dev/null || date +%s)
fi
export SOURCE_DATE_EPOCH

say "building lapps $VERSION for $ARCH (Python $PYVER)"
rm -rf "$BUILD"
mkdir -p "$SRC" "$STAGE" "$DIST"
# Away from the source tree: a python started in it would import ./lapps and see ./lapps.egg-info.
cd "$BUILD"

# --- a clean copy of the project: no build products, no egg-info, no editable-install leftovers --
tar -C "$ROOT" --exclude=__pycache__ --exclude='*.pyc' --exclude='*.so' --exclude='*.egg-info' \
    -cf - pyproject.toml setup.py README.md lapps workers | tar -C "$SRC" -xf -

# --- the virtualenv, made in the staging tree, then relocated to $VENV ---------------------------
SVENV=$STAGE$VENV
$PY -m venv "$SVENV"
say "installing the project and its dependencies into the venv (pip)"
# What pip compiles here (lapps' _speedups, python-prctl) gets Debian's hardening flags (bindnow,
# fortify, stack protector); the wheels from PyPI (lupa, cbor2, psutil) come as they are.
CFLAGS=$(DEB_BUILD_MAINT_OPTIONS=hardening=+all dpkg-buildflags --get CFLAGS)
CPPFLAGS=$(DEB_BUILD_MAINT_OPTIONS=hardening=+all dpkg-buildflags --get CPPFLAGS)
LDFLAGS=$(DEB_BUILD_MAINT_OPTIONS=hardening=+all dpkg-buildflags --get LDFLAGS)
export CFLAGS CPPFLAGS LDFLAGS
"$SVENV/bin/python" -m pip install -q --no-cache-dir --no-compile --use-pep517 "$SRC"
# The C extension is optional for `pip install -e .`; the package must have it.
"$SVENV/bin/python" -I -c 'import lapps, lapps.ws._speedups, workers, lupa.luajit21, cbor2, prctl, toml, psutil' \
    || die "the venv cannot import the project and its dependencies"
# pip and setuptools are only needed to build: the installed server never installs anything.
"$SVENV/bin/python" -m pip uninstall -q -y setuptools pip
"$SVENV/bin/python" -m pip --version >/dev/null 2>&1 && die "pip is still in the venv"

# direct_url.json records where pip installed from (the source copy): drop it and its RECORD line.
for f in "$SVENV"/lib/python*/site-packages/*.dist-info/direct_url.json; do
    [ -e "$f" ] || continue
    sed -i '/\/direct_url\.json,/d' "$(dirname "$f")/RECORD"
    rm -f "$f"
done
# No byte code in the package: postinst compiles it at its final path, prerm removes it.
find "$SVENV" -name __pycache__ -type d -prune -exec rm -rf {} +
find "$SVENV" -name '*.py[co]' -type f -delete
# Debug sections hold build paths, and nothing here is debugged from a .deb (what dh_strip does).
find "$SVENV" -type f -name '*.so*' -exec strip --strip-unneeded --remove-section=.comment \
    --remove-section=.note {} +
# Library modules with a `#!/usr/bin/env python` line (never run as scripts): point it at
# python3, as dh_python3 does, so no file names an interpreter the system may not have.
find "$SVENV/lib" -type f -name '*.py' ! -perm /0111 -exec \
    sed -i -E '1s@^#! ?(/usr/bin/env +python|/usr/bin/python|python)[0-9.]*( |$)@#!/usr/bin/python3\2@' {} +
# venv's include/ is for compiling against the venv; nothing is compiled after this.
rm -rf "$SVENV/include"
# Rewrite the staging path in the text files that hold it (script shebangs, activate, pyvenv.cfg).
grep -rlI --null -F "$SVENV" "$SVENV" | xargs -0 -r sed -i "s|$SVENV|$VENV|g"
sed -i "s|^command = .*|command = $PY -m venv $VENV|" "$SVENV/pyvenv.cfg"

# --- the rest of the tree -------------------------------------------------------------------------
install -d "$STAGE/usr/bin" "$STAGE/etc/lapps" "$STAGE/usr/share/lapps" "$STAGE/usr/share/doc/lapps" \
    "$STAGE/usr/share/man/man1" "$STAGE/lib/systemd/system" "$STAGE/DEBIAN"
install -m 0755 "$PKG/lapps.sh" "$STAGE/usr/bin/lapps"
install -m 0644 "$PKG/lapps.service" "$STAGE/lib/systemd/system/lapps.service"
install -D -m 0644 "$PKG/lapps.bash-completion" "$STAGE/usr/share/bash-completion/completions/lapps"
tar -C "$ROOT" --exclude=__pycache__ -cf - services | tar -C "$STAGE/usr/share/lapps" -xf -
# The demo page (static_dir) with its vendor/ folder (`make js`), and the browser client.
[ -f "$ROOT/clients/demo/vendor/lapps.js" ] || die "clients/demo/vendor is not built: run 'make js' (make deb does)"
tar -C "$ROOT/clients" --exclude=.built -cf - demo | tar -C "$STAGE/usr/share/lapps" -xf -
install -d "$STAGE/usr/share/lapps/js"
install -m 0644 "$ROOT/clients/js/lapps.js" "$ROOT/clients/js/lapps.d.ts" "$ROOT/clients/js/package.json" \
    "$STAGE/usr/share/lapps/js/"

# The shipped config, with the services and the demo page where the package puts them.
sed -e 's|^services_dir = "\.\./services"|services_dir = "/usr/share/lapps/services"|' \
    -e 's|^static_dir = "\.\./clients/demo"|static_dir = "/usr/share/lapps/demo"|' \
    "$ROOT/etc/lapps.toml" > "$STAGE/etc/lapps/lapps.toml"
[ "$(grep -c '^static_dir = "/usr/share/lapps/demo"' "$STAGE/etc/lapps/lapps.toml")" = 1 ] \
    || die "etc/lapps.toml: no line 'static_dir = \"../clients/demo\"' to point at /usr/share/lapps/demo"
[ "$(grep -c '^services_dir = "/usr/share/lapps/services"' "$STAGE/etc/lapps/lapps.toml")" = 1 ] \
    || die "etc/lapps.toml: no line 'services_dir = \"../services\"' to point at /usr/share/lapps/services"
chmod 0644 "$STAGE/etc/lapps/lapps.toml"
# It loads with the venv (here with the services read from the staging tree).
sed -e "s|^services_dir = .*|services_dir = \"$STAGE/usr/share/lapps/services\"|" \
    -e "s|^static_dir = .*|static_dir = \"$STAGE/usr/share/lapps/demo\"|" \
    "$STAGE/etc/lapps/lapps.toml" > "$BUILD/check.toml"
"$SVENV/bin/python" -I -m lapps --config "$BUILD/check.toml" --check-config >/dev/null \
    || die "the packaged lapps.toml does not load: $SVENV/bin/python -I -m lapps --config $BUILD/check.toml --check-config"
find "$SVENV" -name __pycache__ -type d -prune -exec rm -rf {} +

install -m 0644 "$PKG/debian/copyright" "$STAGE/usr/share/doc/lapps/copyright"
gzip -9n < "$PKG/debian/changelog" > "$STAGE/usr/share/doc/lapps/changelog.gz"
gzip -9n < "$ROOT/CHANGELOG.md" > "$STAGE/usr/share/doc/lapps/CHANGELOG.md.gz"
gzip -9n < "$PKG/lapps.1" > "$STAGE/usr/share/man/man1/lapps.1.gz"
# What the venv holds, with versions (the copyright file names their licences).
"$SVENV/bin/python" -I - > "$STAGE/usr/share/doc/lapps/python-packages.txt" <<'EOF'
from importlib.metadata import distributions
for d in sorted(distributions(), key=lambda d: d.metadata["Name"].lower()):
    print(f'{d.metadata["Name"]}=={d.version}  ({d.metadata.get("License-Expression") or d.metadata.get("License") or "see copyright"})'[:200])
EOF
# A dependency added to pyproject.toml needs its own stanza in packaging/debian/copyright.
"$SVENV/bin/python" -I - "$PKG/debian/copyright" <<'EOF' || true
import sys
from importlib.metadata import distributions
text = open(sys.argv[1], encoding="utf-8").read()
for d in distributions():
    if d.metadata["Name"] == "lapps":
        continue
    tops = (d.read_text("top_level.txt") or d.metadata["Name"]).split()
    if not any(f"site-packages/{top}" in text for top in tops):
        print(f"deb: WARNING: {d.metadata['Name']} {d.version} is in the venv but not in "
              f"packaging/debian/copyright (licence: {d.metadata.get('License-Expression') or d.metadata.get('License')})")
EOF
find "$SVENV" -name __pycache__ -type d -prune -exec rm -rf {} +

# --- nothing may point at the staging tree or the source tree ------------------------------------
if leftovers=$(grep -rla -F -e "$BUILD" -e "$ROOT/" "$STAGE"); then
    die "build paths left in the package: $leftovers"
fi

# --- DEBIAN/ --------------------------------------------------------------------------------------
for script in postinst prerm postrm; do
    install -m 0755 "$PKG/debian/$script" "$STAGE/DEBIAN/$script"
done
echo /etc/lapps/lapps.toml > "$STAGE/DEBIAN/conffiles"

# Shared-library dependencies of every ELF object (the wheels' and ours), as dh_shlibdeps does.
SHLIB=$BUILD/shlibdeps
mkdir -p "$SHLIB/debian"
printf 'Source: lapps\n\nPackage: lapps\nArchitecture: any\n' > "$SHLIB/debian/control"
find "$STAGE/usr" -type f \( -name '*.so' -o -name '*.so.*' \) > "$BUILD/elf-files"
# shellcheck disable=SC2046
SHLIBS=$(cd "$SHLIB" && dpkg-shlibdeps -O --ignore-missing-info $(cat "$BUILD/elf-files") 2>"$BUILD/shlibdeps.log" \
    | sed -n 's/^shlibs:Depends=//p') || { cat "$BUILD/shlibdeps.log" >&2; die "dpkg-shlibdeps failed"; }
[ -n "$SHLIBS" ] || die "dpkg-shlibdeps found no dependencies"

INSTALLED_SIZE=$(du -sk --exclude=DEBIAN "$STAGE" | cut -f1)
sed -e "s|@VERSION@|$VERSION|" -e "s|@ARCH@|$ARCH|" -e "s|@MAINTAINER@|$MAINTAINER|" \
    -e "s|@INSTALLED_SIZE@|$INSTALLED_SIZE|" -e "s|@PYVER@|$PYVER|g" -e "s|@NEXT_PYVER@|$NEXT_PYVER|g" \
    -e "s|@SHLIBS@|$SHLIBS|" "$PKG/debian/control.in" > "$STAGE/DEBIAN/control"

(cd "$STAGE" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | LC_ALL=C sort -z \
    | xargs -0 md5sum) > "$STAGE/DEBIAN/md5sums"
chmod 0644 "$STAGE/DEBIAN/control" "$STAGE/DEBIAN/conffiles" "$STAGE/DEBIAN/md5sums"

# Directories 0755, files 0644 unless executable (0755); extension modules are not programs.
find "$STAGE" -type d -exec chmod 0755 {} +
find "$STAGE" -type f -perm /0111 -exec chmod 0755 {} +
find "$STAGE" -type f ! -perm /0111 -exec chmod 0644 {} +
find "$STAGE/usr/lib" -type f -name '*.so' -exec chmod 0644 {} +

rm -f "$DEB"
dpkg-deb --root-owner-group -Zxz --build "$STAGE" "$DEB" >/dev/null
say "wrote ${DEB#"$ROOT"/} ($(du -k "$DEB" | cut -f1) KiB, installed $INSTALLED_SIZE KiB)"
