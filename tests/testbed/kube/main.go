// Command kubebed is one multi-call binary holding the three control-plane
// programs the ContactSync test bed needs: etcd, kube-apiserver and
// kube-controller-manager. Building them from Go modules (instead of
// downloading release binaries) is the only way to get a real API server on
// machines that reach nothing but module proxies.
package main

import (
	"fmt"
	"os"
	"path/filepath"

	"go.etcd.io/etcd/server/v3/etcdmain"
	"k8s.io/component-base/cli"
	apiserver "k8s.io/kubernetes/cmd/kube-apiserver/app"
	controllermanager "k8s.io/kubernetes/cmd/kube-controller-manager/app"
)

const usage = "usage: kubebed etcd|kube-apiserver|kube-controller-manager [flags...]"

func main() {
	// Dispatch on the first argument, or on the program name when the binary
	// is invoked through a symlink (busybox style).
	name := filepath.Base(os.Args[0])
	args := os.Args[1:]
	if name == "kubebed" {
		if len(args) == 0 {
			fmt.Fprintln(os.Stderr, usage)
			os.Exit(2)
		}
		name, args = args[0], args[1:]
	}
	switch name {
	case "etcd":
		etcdmain.Main(append([]string{"etcd"}, args...))
	case "kube-apiserver":
		cmd := apiserver.NewAPIServerCommand()
		cmd.SetArgs(args)
		os.Exit(cli.Run(cmd))
	case "kube-controller-manager":
		cmd := controllermanager.NewControllerManagerCommand()
		cmd.SetArgs(args)
		os.Exit(cli.Run(cmd))
	default:
		fmt.Fprintln(os.Stderr, usage)
		os.Exit(2)
	}
}
