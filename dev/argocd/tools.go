//go:build tools

// Package tools pins the argo-cd multi-call binary that dev/argocd/build.sh
// builds, so `go mod tidy` keeps its dependencies in go.sum.
package tools

import (
	_ "github.com/argoproj/argo-cd/v3/cmd"
)
