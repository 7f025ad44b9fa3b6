# shellcheck shell=bash
# Sourced by packaging/build-image.sh and tests/package/test_image.sh: PODMAN_RUN, the flags
# every container of theirs gets (build steps and test runs alike), and why.
#
# - runc, not podman's default crun: crun 1.8 (Debian 12) refuses hosts whose cgroups are mixed
#   v1/v2 ("cgroups in hybrid mode not supported"); runc runs on v1, v2 and hybrid alike.
# - explicit limits: podman's default raises RLIMIT_NOFILE/NPROC to values a container host may
#   not grant (setrlimit: operation not permitted); 4096 each is plenty for the build and tests.
# shellcheck disable=SC2034
PODMAN_RUN=(--runtime runc --ulimit nofile=4096:4096 --ulimit nproc=4096:4096)
