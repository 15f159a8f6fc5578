# Build settings of ci/kube-lib/build-kube (keep KUBE_VERSION in step with kubecommon.py).
KUBE_VERSION=v1.31.14
KUBE_MINOR=31
KUBE_BIN=${PYBUILDX_CACHE:-/var/cache/pybuildx}/kube-$KUBE_VERSION/bin
