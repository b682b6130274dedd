// Package dashboards holds what people look at: the control-room web page
// embedded in the binary (web/) and, with issue #8, the Grafana dashboards.
package dashboards

import (
	"embed"
	"io/fs"
)

//go:embed web
var web embed.FS

// Web returns the control-room page's files: index.html, app.js, style.css.
func Web() fs.FS {
	sub, err := fs.Sub(web, "web")
	if err != nil {
		panic(err) // the embed pattern guarantees the folder
	}
	return sub
}
