#!/usr/bin/env bash
# Installs the real services the tests start privately: Mosquitto (and its clients: the
# integration guide's mosquitto_pub line is run by a test), PostgreSQL 15 and TimescaleDB
# (built from Debian's trixie source package, which bookworm does not ship), and Debian's
# chromium for the console's browser tests (Playwright drives /usr/bin/chromium; it never
# downloads a browser of its own) with fonts, CJK included, for the screenshots.
# Idempotent: every step is skipped when its result is already there.
set -euo pipefail

PG_MAJOR=15
TSDB_VERSION=2.19.3
PG_LIBDIR=/usr/lib/postgresql/$PG_MAJOR/lib
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo

need_pkgs=()
for pkg in mosquitto mosquitto-clients postgresql-$PG_MAJOR postgresql-server-dev-$PG_MAJOR cmake \
    libssl-dev gcc make chromium fonts-liberation fonts-wqy-zenhei; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need_pkgs+=("$pkg")
done
if [ ${#need_pkgs[@]} -gt 0 ]; then
  echo "installing: ${need_pkgs[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}"
fi

if [ -f "$PG_LIBDIR/timescaledb.so" ]; then
  echo "timescaledb: already installed"
  exit 0
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# A private apt state so the machine's own sources stay bookworm-only.
mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
mirror=${mirror:-http://deb.debian.org/debian}
mkdir -p "$work/lists/partial" "$work/src"
echo "deb-src [trusted=yes] $mirror trixie main" > "$work/sources.list"
apt_opts=(-o "Dir::State::Lists=$work/lists" -o "Dir::Etc::SourceList=$work/sources.list"
          -o "Dir::Etc::SourceParts=/dev/null")
apt-get "${apt_opts[@]}" update -qq
(cd "$work/src" && apt-get "${apt_opts[@]}" source --download-only "timescaledb=$TSDB_VERSION+dfsg*" \
  || apt-get "${apt_opts[@]}" source --download-only timescaledb)
tarball=$(ls "$work"/src/timescaledb_*.orig.tar.* | head -n 1)
mkdir "$work/build" && tar -xf "$tarball" -C "$work/build" --strip-components=1
cd "$work/build"
./bootstrap -DAPACHE_ONLY=1 -DREGRESS_CHECKS=OFF -DTAP_CHECKS=OFF -DWARNINGS_AS_ERRORS=OFF \
  -DLINTER=OFF -DGENERATE_DOWNGRADE_SCRIPT=OFF -DPG_CONFIG=/usr/lib/postgresql/$PG_MAJOR/bin/pg_config >/dev/null
make -C build -j"$(nproc)" install >/dev/null
test -f "$PG_LIBDIR/timescaledb.so"
echo "timescaledb: installed into $PG_LIBDIR"
