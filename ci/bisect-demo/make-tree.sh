#!/usr/bin/env bash
# A kernel git repository to bisect with ci/git-bisect-run.sh, made from Debian's
# kernel source package: commit 1 is linux-source-6.1 as Debian ships it (tag
# `good`), then ci/bisect-demo/series/*.patch as one commit each (the last is tagged
# `bad`). One patch of the series reverts "netfilter: nat: never update the UDP
# checksum when it's 0" (v5.7), which the S-VXLAN noudpcsum cells catch; the others
# touch comments and documentation in files a bisection rebuilds.
#
#   ci/bisect-demo/make-tree.sh ~/src/linux-bisect-demo
#   cd ~/src/linux-bisect-demo && git bisect start bad good
#   git bisect run /path/to/nslab/ci/git-bisect-run.sh \
#       'labtests/test_vxlan_overlay.py::test_checksums_on_the_wire[noudpcsum-vxtx_on-ultx_on-masq_random_fully-none]'
#
# Commit dates and identities are fixed, so the same source package gives the same
# commit ids. Needs apt-get (Debian/Ubuntu with bookworm's sources) and git.
set -euo pipefail

die() { echo "make-tree: $*" >&2; exit 2; }
[ $# -eq 1 ] || die "usage: make-tree.sh NEW_DIRECTORY"
dest=$1
[ -e "$dest" ] && die "$dest exists (give a directory to create)"
parent=$(dirname -- "$dest")
[ -d "$parent" ] || die "no directory $parent to create $(basename -- "$dest") in"
for tool in apt-get dpkg-deb git tar xz; do
    command -v "$tool" >/dev/null || die "$tool not found"
done
series_dir=$(cd "$(dirname "$0")" && pwd)/series
package=linux-source-6.1

# Everything happens in a scratch directory beside the destination, renamed into
# place at the end: a failure or Ctrl-C leaves nothing behind.
work=$(mktemp -d "$parent/.make-tree.XXXXXX")
trap 'rm -rf -- "$work"' EXIT
echo "make-tree: downloading $package" >&2
(cd "$work" && apt-get download -q "$package" 2>&1 | grep -v "unsandboxed" >&2) ||
    die "apt-get download $package failed (is bookworm in the apt sources?)"
deb=$(ls "$work"/${package}_*.deb)
version=$(dpkg-deb -f "$deb" Version)
echo "make-tree: unpacking $package $version" >&2
dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$work" "./usr/src/$package.tar.xz"
mkdir "$work/tree"
tar -xJf "$work/usr/src/$package.tar.xz" -C "$work/tree" --strip-components=1
rm -rf -- "$work/usr" "$deb"

cd "$work/tree"
export GIT_AUTHOR_NAME="nslab bisect demo" GIT_AUTHOR_EMAIL="nslab@localhost"
export GIT_COMMITTER_NAME="nslab bisect demo" GIT_COMMITTER_EMAIL="nslab@localhost"
export GIT_AUTHOR_DATE="2026-01-01T00:00:00Z" GIT_COMMITTER_DATE="2026-01-01T00:00:00Z"
git init -q
git config core.autocrlf false
# -f: Debian's .gitignore ignores the whole top level (its packaging repository's
# rule); the tarball is all source, every file of it tracked.
git add -A -f
git commit -q -m "Debian $package $version as shipped"
git tag good
for patch in "$series_dir"/*.patch; do
    git am -q --committer-date-is-author-date "$patch" || die "$(basename "$patch") does not apply to $version"
done
git tag bad
cd - >/dev/null
mv -- "$work/tree" "$dest"
echo "make-tree: $dest: $(git -C "$dest" rev-list --count good..bad) commits from good to bad on $package $version" >&2
