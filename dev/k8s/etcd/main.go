// Command etcd is etcd 3.6 built from go.etcd.io/etcd/server/v3, the same
// entry point as the upstream etcd binary (etcdmain.Main), for dev/stack.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
