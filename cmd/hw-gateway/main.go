// Command hw-gateway is the edge gateway alone: the same as `hazardwatch
// gateway`, without the centre, so that it stays small on a plant-network
// box. It cross-compiles for linux/amd64, arm64 and arm (v7):
//
//	GOOS=linux GOARCH=arm64 go build ./cmd/hw-gateway
//	GOOS=linux GOARCH=arm GOARM=7 go build ./cmd/hw-gateway
package main

import (
	"fmt"
	"os"
	"runtime/debug"

	"hazardwatch/gateway/edge"
)

func main() {
	if len(os.Args) == 2 && (os.Args[1] == "--version" || os.Args[1] == "version") {
		v := "(devel)"
		if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
			v = bi.Main.Version
		}
		fmt.Println("hw-gateway", v)
		return
	}
	os.Exit(edge.Main("hw-gateway", os.Args[1:], os.Stdout, os.Stderr))
}
