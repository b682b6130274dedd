// Package configs ships the reference tables and the demo plant inside the
// binary, so that `hazardwatch demo` and `check` work from any folder.
package configs

import (
	"embed"
	"io/fs"
)

//go:embed reference/*.csv
var reference embed.FS

//go:embed demo
var demo embed.FS

// Reference returns the folder of reference tables (GB 18218-2018, GBZ 2.1-2019, LEL/UEL).
func Reference() fs.FS {
	sub, err := fs.Sub(reference, "reference")
	if err != nil {
		panic(err) // the embed pattern guarantees the folder
	}
	return sub
}

// Demo returns the demo plant's folder of plant and rule files.
func Demo() fs.FS {
	sub, err := fs.Sub(demo, "demo")
	if err != nil {
		panic(err)
	}
	return sub
}
