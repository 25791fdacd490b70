//go:build tools

// Package tools pins the Kubernetes commands dev/k8s/build.sh builds (the control
// plane: kube-apiserver, kube-controller-manager, kubectl; the node: kubelet,
// kube-scheduler, kube-proxy) so `go mod tidy` keeps their dependencies in go.sum.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-proxy"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
