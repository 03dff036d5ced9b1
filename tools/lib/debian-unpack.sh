# Sourced by tools/fetch-glslc.sh and tools/fetch-lavapipe-khr.sh, which need newer Debian
# releases' tools and drivers than the system's without installing them (installing their C and
# C++ libraries would replace the system's).
#
# debian_unpack SUITE DIR [--closure] PACKAGE...
# Downloads Debian SUITE's PACKAGEs (with --closure, and everything they depend on, recursively)
# from deb.debian.org and unpacks them into DIR/root, through apt-get with a private configuration
# (its own sources, lists and cache under DIR/apt, no dpkg status): no root, nothing installed.
# Leaves only DIR/root; returns non-zero where apt-get or dpkg-deb fails.
debian_unpack() {
  local suite=$1 d=$2 closure=0
  shift 2
  if [[ ${1:-} == --closure ]]; then closure=1; shift; fi
  mkdir -p "$d/apt/lists/partial" "$d/apt/archives/partial" "$d/debs" "$d/root"
  echo "deb http://deb.debian.org/debian $suite main" >"$d/apt/sources.list"
  local o=(-oDir::Etc::SourceList="$d/apt/sources.list" -oDir::Etc::SourceParts=/dev/null -oDir::State::Lists="$d/apt/lists"
           -oDir::Cache="$d/apt" -oDir::State::status=/dev/null -oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDebug::NoLocking=1)
  apt-get "${o[@]}" update -qq >&2 || return 1
  local packages=("$@")
  if [[ $closure -eq 1 ]]; then
    mapfile -t packages < <(apt-cache "${o[@]}" depends --recurse --no-recommends --no-suggests --no-conflicts --no-breaks --no-replaces \
                              --no-enhances "$@" | grep -v '^ ' | grep -v '<' | sort -u)
  fi
  (cd "$d/debs" && apt-get "${o[@]}" download -qq "${packages[@]}" 2>&1 | grep -v "unsandboxed" >&2 || true)
  local f
  for f in "$d"/debs/*.deb; do dpkg-deb -x "$f" "$d/root" || return 1; done
  rm -rf "$d/debs" "$d/apt"
}
