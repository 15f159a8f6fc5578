//go:build tools

// Package kubebuild only pins dependencies; the binaries are built by ../build-kube.
package kubebuild
